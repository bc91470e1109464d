// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The floor for any XDP load balancer: rewrite the MAC addresses to the next backend in
 * round-robin order and redirect through a devmap. No parsing beyond Ethernet, no lookups
 * besides the devmap, no IP rewrite. Targets are set by userspace before load (MACs) and
 * after it (devmap, filled from inside the LB's network namespace).
 *
 * `fwd_fib` is the same plus what the spec requires of any sluice forwarding mode: the next
 * hop from bpf_fib_lookup (on the chosen backend's address, as sluice does after picking
 * one) and the redirect through a devmap keyed by the FIB's egress ifindex. It shows how
 * much of an XDP LB's cost the FIB lookup alone takes.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "fwd_abi.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile struct fb_target targets[FB_MAX_TARGETS];
const volatile __u32 ntargets = 1;

/* Slot i -> egress ifindex of targets[i]. */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, FB_MAX_TARGETS);
	__type(key, __u32);
	__type(value, __u32);
} tx SEC(".maps");

/* Egress ifindex -> itself, for fwd_fib (like sluice's tx_ports). */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, FB_MAX_TARGETS);
	__type(key, __u32);
	__type(value, __u32);
} tx_ifindex SEC(".maps");

/* Round-robin cursor. The benchmark has one generator CPU; with several, the race only
 * skews the spread, it never picks an invalid slot. */
__u32 rr;

SEC("xdp")
int fwd_trivial(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u32 i = rr;

	if ((void *)(eth + 1) > end)
		return XDP_DROP;
	if (i >= ntargets || i >= FB_MAX_TARGETS)
		i = 0;
	rr = i + 1;
	__builtin_memcpy(eth->h_dest, (const void *)targets[i].dmac, 6);
	__builtin_memcpy(eth->h_source, (const void *)targets[i].smac, 6);
	return bpf_redirect_map(&tx, i, XDP_DROP);
}

#define AF_INET 2
#define ETH_P_IP 0x0800

SEC("xdp")
int fwd_fib(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct bpf_fib_lookup fib = {};
	__u32 i = rr;

	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	if (i >= ntargets || i >= FB_MAX_TARGETS)
		i = 0;
	rr = i + 1;
	fib.family = AF_INET;
	fib.ifindex = ctx->ingress_ifindex;
	fib.l4_protocol = ip->protocol;
	fib.tot_len = bpf_ntohs(ip->tot_len);
	fib.ipv4_src = ip->saddr;
	fib.ipv4_dst = targets[i].addr;
	if (bpf_fib_lookup(ctx, &fib, sizeof(fib), 0) != BPF_FIB_LKUP_RET_SUCCESS)
		return XDP_DROP;
	__builtin_memcpy(eth->h_dest, fib.dmac, 6);
	__builtin_memcpy(eth->h_source, fib.smac, 6);
	return bpf_redirect_map(&tx_ifindex, fib.ifindex, XDP_DROP);
}
