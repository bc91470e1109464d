// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Backend sink for the forwarding benchmark: counts IPv4 frames and drops them, so the
 * backends' stacks cost no CPU and the delivered count is exact. Everything else (ARP)
 * goes to the stack. On a veth, an attached XDP program also makes the device accept
 * XDP-redirected frames from its peer.
 * Two attach points with the same contract: `sink_xdp` (the default) and `sink_tc` (clsact
 * ingress, for kernel-forwarded traffic: see fwd_bench.cc, --sink tc).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "fwd_abi.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define ETH_P_IP 0x0800
#define TC_ACT_OK 0
#define TC_ACT_SHOT 2

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fb_count);
} counts SEC(".maps");

struct fb_sample sample; /* racy across CPUs by design: a diagnostic, not a counter */

/* Returns 1 if the frame was an IPv4 frame (counted), 0 otherwise. */
static __always_inline int sink(void *data, void *end)
{
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct fb_count *c;
	__u32 zero = 0;

	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return 0;
	c = bpf_map_lookup_elem(&counts, &zero);
	if (c) {
		c->packets++;
		c->bytes += end - data;
	}
	sample.saddr = ip->saddr;
	sample.daddr = ip->daddr;
	sample.proto = ip->protocol;
	if (ip->ihl == 5 && (void *)ip + 24 <= end) {
		__be16 *ports = (void *)(ip + 1);

		sample.sport = ports[0];
		sample.dport = ports[1];
	}
	return 1;
}

SEC("xdp")
int sink_xdp(struct xdp_md *ctx)
{
	return sink((void *)(long)ctx->data, (void *)(long)ctx->data_end) ? XDP_DROP : XDP_PASS;
}

SEC("tc")
int sink_tc(struct __sk_buff *skb)
{
	return sink((void *)(long)skb->data, (void *)(long)skb->data_end) ? TC_ACT_SHOT : TC_ACT_OK;
}
