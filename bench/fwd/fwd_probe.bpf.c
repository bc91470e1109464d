// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * CPU-cost probe of the forwarding benchmark.
 *
 * 1. Time spent in each softirq vector, per CPU, from the softirq_entry/softirq_exit
 *    tracepoints. This kernel has no IRQ_TIME_ACCOUNTING, so /proc/stat's softirq column is
 *    only tick-sampled (4 ms at HZ=250); this measures it exactly. Softirqs do not nest on a
 *    CPU, so one start stamp per vector suffices.
 * 2. Within NET_RX, the split between the LB's client-facing device (lc: receive, the LB's
 *    decision, transmit into the backend's veth; for nftables the whole stack path), the
 *    backends' devices (whose polls run the sinks: in this topology the backends' receive
 *    runs on the LB's CPU, which a real LB would not pay), the per-CPU backlog (netif_rx;
 *    no device to attribute it to), and anything else ("foreign": other namespaces'
 *    traffic on a shared machine).
 *    fentry on __napi_poll is not permitted on this machine, so the split uses the
 *    napi:napi_poll tracepoint, which fires right after each driver poll: the time since
 *    the previous poll event (or since NET_RX began) is charged to the device just polled.
 *    That interval also holds net_rx_action's bookkeeping between polls and, after a poll
 *    that used its whole budget, that poll's final GRO flush (at most gro_normal_batch - 1
 *    = 7 packets of stack work), which is charged to the next poll: small next to a poll
 *    of up to 64 packets.
 * 3. XDP errors (exceptions, failed redirects): these tracepoints fire only on failures,
 *    so they cost nothing on a healthy path. (xdp_devmap_xmit and xdp_bulk_tx would also
 *    report drops, but they fire on every flush and would tax the path being measured.)
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "fwd_abi.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The LB's client-facing device, set by userspace before load: its ifindex and the inode
 * of its network namespace (ifindexes repeat across namespaces). */
const volatile __u32 lb_ifindex;
const volatile __u32 lb_netns_ino;
/* The backends' network namespaces: every poll there counts as "backend". */
const volatile __u32 backend_netns_ino[FB_MAX_TARGETS];

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fb_softirq);
} softirq SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fb_napi);
} napi SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FB_XDP_ERR_MAX);
	__type(key, __u32);
	__type(value, __u64);
} xdp_errors SEC(".maps");

static __always_inline struct fb_softirq *softirq_state(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&softirq, &zero);
}

static __always_inline struct fb_napi *napi_state(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&napi, &zero);
}

/* The vector as an index into fb_softirq's arrays. Without the barrier, clang checks the
 * bound on a 32-bit copy of `vec` and indexes with another register, and the verifier
 * rejects the unbounded index (EACCES, "R6 unbounded memory access"): one register for both. */
static __always_inline __u64 softirq_vec(unsigned int vec)
{
	__u64 v = vec;

	barrier_var(v);
	return v;
}

SEC("tp_btf/softirq_entry")
int BPF_PROG(on_softirq_entry, unsigned int vec)
{
	struct fb_softirq *s = softirq_state();
	__u64 v = softirq_vec(vec);
	struct fb_napi *n;
	__u64 now;

	if (!s || v >= FB_NR_SOFTIRQS)
		return 0;
	now = bpf_ktime_get_ns();
	s->start_ns[v] = now;
	if (vec == FB_NET_RX_SOFTIRQ && (n = napi_state()))
		n->start_ns = now;
	return 0;
}

SEC("tp_btf/softirq_exit")
int BPF_PROG(on_softirq_exit, unsigned int vec)
{
	struct fb_softirq *s = softirq_state();
	__u64 v = softirq_vec(vec);
	struct fb_napi *n;

	if (!s || v >= FB_NR_SOFTIRQS || !s->start_ns[v])
		return 0;
	s->total_ns[v] += bpf_ktime_get_ns() - s->start_ns[v];
	s->runs[v]++;
	s->start_ns[v] = 0;
	if (vec == FB_NET_RX_SOFTIRQ && (n = napi_state()))
		n->start_ns = 0;
	return 0;
}

SEC("tp_btf/napi_poll")
int BPF_PROG(on_napi_poll, struct napi_struct *np, int work, int budget)
{
	struct fb_napi *s = napi_state();
	struct net_device *dev = np->dev;
	__u32 ino;
	__u64 now, d;
	int i;

	/* Polls outside NET_RX (threaded NAPI, busy polling) are not ours to split. */
	if (!s || !s->start_ns)
		return 0;
	now = bpf_ktime_get_ns();
	d = now - s->start_ns;
	s->start_ns = now;
	if (!dev) {
		/* The backlog: skbs queued by netif_rx, e.g. a veth transmitting to a peer whose
		 * NAPI is off or that cannot take the skb through GRO. Its owner is unknown. */
		s->backlog_ns += d;
		s->backlog_polls++;
		return 0;
	}
	ino = dev->nd_net.net->ns.inum;
	if (ino == lb_netns_ino && dev->ifindex == lb_ifindex) {
		s->lb_ns += d;
		s->lb_polls++;
		s->lb_work += work;
		return 0;
	}
	for (i = 0; i < FB_MAX_TARGETS; i++) {
		if (ino == backend_netns_ino[i]) {
			s->backend_ns += d;
			s->backend_polls++;
			s->backend_work += work;
			return 0;
		}
	}
	s->foreign_ns += d;
	s->foreign_polls++;
	return 0;
}

static __always_inline void count_error(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&xdp_errors, &idx);

	if (v)
		(*v)++;
}

SEC("tp_btf/xdp_exception")
int BPF_PROG(on_xdp_exception)
{
	count_error(FB_XDP_EXCEPTION);
	return 0;
}

SEC("tp_btf/xdp_redirect_err")
int BPF_PROG(on_xdp_redirect_err)
{
	count_error(FB_XDP_REDIRECT_ERR);
	return 0;
}
