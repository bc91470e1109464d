/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Structs shared by the forwarding benchmark's BPF programs (gen, fwd_trivial, fwd_sink,
 * fwd_probe) and its driver (fwd_bench.cc). Benchmark-only: nothing here is sluice ABI.
 */
#ifndef SLUICE_BENCH_FWD_ABI_H
#define SLUICE_BENCH_FWD_ABI_H

#ifndef __BPF__
#include <linux/types.h>
#endif

/* Frames the generator sends: a minimum Ethernet frame without FCS. */
#define FB_FRAME_LEN 60
/* Offsets into that frame (Ethernet + IPv4 without options). */
#define FB_OFF_IP 14
#define FB_OFF_IP_CSUM (FB_OFF_IP + 10)
#define FB_OFF_SADDR (FB_OFF_IP + 12)
#define FB_OFF_L4 (FB_OFF_IP + 20)
#define FB_OFF_UDP_CSUM (FB_OFF_L4 + 6)
#define FB_OFF_TCP_CSUM (FB_OFF_L4 + 16)

/* Round-robin targets of the trivial forwarder. */
#define FB_MAX_TARGETS 4

/* One next hop of the trivial forwarder (its rodata `targets`). */
struct fb_target {
	__u8 dmac[6];
	__u8 smac[6];
	__be32 addr; /* the backend's address: what fwd_fib looks up */
};

/* Per-CPU value of the sink's `counts` map. */
struct fb_count {
	__u64 packets;
	__u64 bytes;
};

/* The last packet a sink saw (wire order): shows what the LB rewrote. */
struct fb_sample {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

/* Softirq vectors tracked by the probe (NR_SOFTIRQS is 10 on every current kernel). */
#define FB_NR_SOFTIRQS 10
/* NET_RX_SOFTIRQ of the kernel's softirq enum (stable since 2.6). */
#define FB_NET_RX_SOFTIRQ 3

/* Per-CPU value of the probe's `softirq` map. */
struct fb_softirq {
	__u64 start_ns[FB_NR_SOFTIRQS]; /* 0 when the vector is not running */
	__u64 total_ns[FB_NR_SOFTIRQS];
	__u64 runs[FB_NR_SOFTIRQS];
};

/* Per-CPU value of the probe's `napi` map: NET_RX time split by the device polled: the
 * LB's client-facing device, the backends' devices (by network namespace), the per-CPU
 * backlog, and anything else (other namespaces' traffic on a shared machine). See
 * fwd_probe.bpf.c. */
struct fb_napi {
	__u64 start_ns; /* NET_RX start or the last poll event; 0 outside NET_RX */
	__u64 lb_ns;
	__u64 lb_polls;
	__u64 lb_work; /* packets the LB device's polls processed */
	__u64 backend_ns;
	__u64 backend_polls;
	__u64 backend_work;
	__u64 foreign_ns; /* devices of other network namespaces */
	__u64 foreign_polls;
	__u64 backlog_ns; /* the per-CPU backlog (netif_rx), which has no device */
	__u64 backlog_polls;
};

/* Indexes of the probe's `xdp_errors` per-CPU array. */
enum fb_xdp_error {
	FB_XDP_EXCEPTION = 0,	 /* xdp:xdp_exception (XDP_ABORTED, bad action, ...) */
	FB_XDP_REDIRECT_ERR = 1, /* xdp:xdp_redirect_err (also covers map redirects) */
	FB_XDP_ERR_MAX = 2,
};

#endif /* SLUICE_BENCH_FWD_ABI_H */
