/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Next hop by bpf_fib_lookup, out by XDP_TX (same interface) or a devmap redirect. */
#ifndef SLUICE_BPF_FWD_H
#define SLUICE_BPF_FWD_H

#include "common.h"
#include "maps.h"
#include "stats.h"

/* On success, nh->via_gw says whether the next hop is a gateway rather than `dst` itself:
 * bpf_fib_lookup() replaces the destination it was asked about with the gateway's address. */
static __always_inline long sl_fib(struct xdp_md *ctx, const struct sl_pkt *p,
				   const struct sl_addr *dst, struct sl_nexthop *nh)
{
	struct bpf_fib_lookup fib = {};
	long rc;

	fib.ifindex = ctx->ingress_ifindex;
	fib.l4_protocol = p->proto;
	fib.sport = p->sport;
	fib.dport = p->dport;
	if (p->family == SL_AF_INET) {
		fib.family = AF_INET;
		fib.ipv4_src = p->src.w[0];
		fib.ipv4_dst = dst->w[0];
	} else {
		fib.family = AF_INET6;
		__builtin_memcpy(fib.ipv6_src, p->src.w, sizeof(fib.ipv6_src));
		__builtin_memcpy(fib.ipv6_dst, dst->w, sizeof(fib.ipv6_dst));
	}
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		if (p->family == SL_AF_INET)
			nh->via_gw = fib.ipv4_dst != dst->w[0];
		else
			nh->via_gw = fib.ipv6_dst[0] != dst->w[0] || fib.ipv6_dst[1] != dst->w[1] ||
				     fib.ipv6_dst[2] != dst->w[2] || fib.ipv6_dst[3] != dst->w[3];
		nh->ifindex = fib.ifindex;
		__builtin_memcpy(nh->smac, fib.smac, ETH_ALEN);
		__builtin_memcpy(nh->dmac, fib.dmac, ETH_ALEN);
	}
	return rc;
}

/*
 * A failed lookup. nat: the IP header already names the real destination, so when the
 * neighbour is not resolved yet the kernel can forward this packet itself and resolve it
 * (XDP_PASS); a DSR packet still carries the VIP and must not reach the kernel's routing.
 */
static __always_inline int sl_fib_failed(const struct sl_pkt *p, long rc, int nat)
{
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH && nat)
		return sl_pass(p, SL_PASS_FIB);
	return sl_drop(p, SL_DROP_FIB);
}

static __always_inline int sl_xmit(struct xdp_md *ctx, const struct sl_pkt *p,
				   const struct sl_nexthop *nh)
{
	struct ethhdr *eth = (void *)(long)ctx->data;
	long rc;

	if ((void *)(eth + 1) > (void *)(long)ctx->data_end)
		return sl_drop(p, SL_DROP_FIB);
	__builtin_memcpy(eth->h_dest, nh->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, nh->smac, ETH_ALEN);
	if (nh->ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	/* An egress interface sluice does not manage falls back to XDP_DROP. */
	rc = bpf_redirect_map(&tx_ports, nh->ifindex, XDP_DROP);
	if (rc == XDP_DROP)
		return sl_drop(p, SL_DROP_FIB);
	return rc;
}

/*
 * Toward a backend. The next hop is cached per backend and CPU for SL_NEXTHOP_TTL_NS of the
 * agent's coarse clock: the FIB lookup costs more than the rest of the fast path. While the
 * agent is down its clock stands still and cached next hops stay in use. The cache ignores
 * the source address, so source-based policy routing toward backends is not supported.
 * A dsr backend must be on-link: a dsr frame still names the VIP, so a router handed it
 * would route it by the VIP, which may lead straight back here (a loop as fast as XDP).
 * A next hop that is a gateway refuses it (SL_DROP_DSR_GATEWAY); the answer is cached like
 * any other, so a misconfigured backend costs no FIB lookup per packet. nat frames name the
 * backend itself and may be routed.
 */
static __always_inline int sl_forward_backend(struct xdp_md *ctx, const struct sl_pkt *p,
					      const struct sl_backend *be, __u32 id, int nat)
{
	struct sl_nexthop *nh = bpf_map_lookup_elem(&nh_cache, &id);
	__u64 now = sl_now_ns;
	struct sl_nexthop fresh = {};
	long rc;

	if (nh && nh->expires_ns > now) {
		if (!nat && nh->via_gw)
			return sl_drop(p, SL_DROP_DSR_GATEWAY);
		return sl_xmit(ctx, p, nh);
	}
	rc = sl_fib(ctx, p, &be->ep.addr, &fresh);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return sl_fib_failed(p, rc, nat);
	if (nh) {
		fresh.expires_ns = now + SL_NEXTHOP_TTL_NS;
		*nh = fresh;
	}
	if (!nat && fresh.via_gw)
		return sl_drop(p, SL_DROP_DSR_GATEWAY);
	return sl_xmit(ctx, p, &fresh);
}

#endif /* SLUICE_BPF_FWD_H */
