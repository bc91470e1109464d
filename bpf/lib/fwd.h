/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Next hop by bpf_fib_lookup, out by XDP_TX (same interface) or a devmap redirect. */
#ifndef SLUICE_BPF_FWD_H
#define SLUICE_BPF_FWD_H

#include "common.h"
#include "reasons.h"
#include "maps.h"
#include "stats.h"
#include "clock.h"

/* sl_fib_lookup(): the on-link request bit (its refusal, SL_FIB_DSR_GATEWAY: reasons.h). */
#define SL_FIB_ONLINK (1ull << 48)

/*
 * bpf_fib_lookup toward `dst` for a packet from `src`; `l4` packs what the multipath hash
 * may use: family | proto << 8 | sport << 16 | (u64)dport << 32 (wire order ports), and bit
 * 48 asks for an on-link next hop: a dsr frame still names the VIP, so a router handed it
 * would route it by the VIP, which may lead straight back here (a loop as fast as XDP). Then
 * a next hop that is a gateway (bpf_fib_lookup() replaces the destination it was asked about
 * with the gateway's) is refused with SL_FIB_DSR_GATEWAY and nothing cached; nat frames name
 * the backend itself and may be routed. Deciding it here keeps the branch out of the
 * program's own walk (the verifier's budget). A global
 * function: its 64-byte request stays out of the program's own frame, which every call chain
 * shares (512 bytes in all); a FIB lookup costs ~150 ns, the call ~2. It cannot take the
 * parsed packet (its spilled packet pointers would be clobbered for the caller).
 */
__noinline long sl_fib_lookup(struct xdp_md *ctx, const struct sl_addr *src,
			      const struct sl_addr *dst, struct sl_nexthop *nh, __u64 l4)
{
	struct bpf_fib_lookup fib = {};
	long rc;

	if (!ctx || !src || !dst || !nh)
		return BPF_FIB_LKUP_RET_NOT_FWDED;
	fib.ifindex = ctx->ingress_ifindex;
	fib.l4_protocol = (l4 >> 8) & 0xff;
	fib.sport = (l4 >> 16) & 0xffff;
	fib.dport = (l4 >> 32) & 0xffff;
	if ((l4 & 0xff) == SL_AF_INET) {
		fib.family = AF_INET;
		fib.ipv4_src = src->w[0];
		fib.ipv4_dst = dst->w[0];
	} else {
		fib.family = AF_INET6;
		__builtin_memcpy(fib.ipv6_src, src->w, sizeof(fib.ipv6_src));
		__builtin_memcpy(fib.ipv6_dst, dst->w, sizeof(fib.ipv6_dst));
	}
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		int via_gw;

		if ((l4 & 0xff) == SL_AF_INET)
			via_gw = fib.ipv4_dst != dst->w[0];
		else
			via_gw = fib.ipv6_dst[0] != dst->w[0] || fib.ipv6_dst[1] != dst->w[1] ||
				 fib.ipv6_dst[2] != dst->w[2] || fib.ipv6_dst[3] != dst->w[3];
		if (via_gw && (l4 & SL_FIB_ONLINK))
			return SL_FIB_DSR_GATEWAY;
		nh->ifindex = fib.ifindex;
		__builtin_memcpy(nh->smac, fib.smac, ETH_ALEN);
		__builtin_memcpy(nh->dmac, fib.dmac, ETH_ALEN);
	}
	return rc;
}

/* `onlink`: refuse a gateway next hop (dsr), see sl_fib_lookup(). */
static __always_inline long sl_fib(struct xdp_md *ctx, const struct sl_pkt *p,
				   const struct sl_addr *dst, struct sl_nexthop *nh, int onlink)
{
	return sl_fib_lookup(ctx, &p->src, dst, nh,
			     p->family | (__u32)p->proto << 8 | (__u32)p->sport << 16 |
				     (__u64)p->dport << 32 | (onlink ? SL_FIB_ONLINK : 0));
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
	return sl_drop(p, rc == SL_FIB_DSR_GATEWAY ? SL_DROP_DSR_GATEWAY : SL_DROP_FIB);
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
 * data path's own clock: the FIB lookup costs more than the rest of the fast path. The clock
 * is the kernel's, so a changed neighbour or route takes effect within the TTL whether or not
 * an agent runs. The cache ignores the source address, so source-based policy routing toward
 * backends is not supported.
 * A dsr backend must be on-link (sl_fib_lookup()): a gateway next hop is dropped as
 * SL_DROP_DSR_GATEWAY, and not cached, so a misconfigured backend costs a FIB lookup per
 * packet until it is fixed.
 */
static __always_inline int sl_forward_backend(struct xdp_md *ctx, const struct sl_pkt *p,
					      const struct sl_backend *be, __u32 id, int nat)
{
	struct sl_nexthop *nh = bpf_map_lookup_elem(&nh_cache, &id);
	__u64 now = sl_clock_ns();
	struct sl_nexthop fresh = {};
	long rc;

	if (nh && nh->expires_ns > now)
		return sl_xmit(ctx, p, nh);
	rc = sl_fib(ctx, p, &be->ep.addr, &fresh, !nat);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return sl_fib_failed(p, rc, nat);
	if (nh) {
		fresh.expires_ns = now + SL_NEXTHOP_TTL_NS;
		*nh = fresh;
	}
	return sl_xmit(ctx, p, &fresh);
}

/*
 * Whether a NAT reply from backend `id` (source `src`) arrived on the interface that leads to
 * that backend. For UDP, which is stateless, this is all that tells a backend's reply from a
 * datagram forged with a backend's source on the clients' side; for TCP it comes before the
 * flow's entry and windows are consulted, so a forger there cannot touch them. The next hop cached
 * for the backend names the interface; on a miss the FIB is asked for the route only (no neighbour
 * needed). A global function: its 64-byte FIB request would otherwise sit in the program's own
 * frame, which every call chain shares (512 bytes in all).
 */
__noinline int sl_from_backend_side(struct xdp_md *ctx, const struct sl_addr *src, __u32 family,
				    __u32 id)
{
	struct bpf_fib_lookup fib = {};
	struct sl_nexthop *nh;
	__u32 in;

	if (!ctx || !src)
		return 0;
	/* Read once, up front: a ctx field read in two branches can be merged by the compiler
	 * into one load through a modified ctx pointer, which the verifier refuses. */
	in = ctx->ingress_ifindex;
	nh = bpf_map_lookup_elem(&nh_cache, &id);
	if (nh && nh->expires_ns > sl_clock_ns())
		return nh->ifindex == in;
	fib.ifindex = in;
	if (family == SL_AF_INET) {
		fib.family = AF_INET;
		fib.ipv4_dst = src->w[0];
	} else {
		fib.family = AF_INET6;
		__builtin_memcpy(fib.ipv6_dst, src->w, sizeof(fib.ipv6_dst));
	}
	if (bpf_fib_lookup(ctx, &fib, sizeof(fib), BPF_FIB_LOOKUP_SKIP_NEIGH) !=
	    BPF_FIB_LKUP_RET_SUCCESS)
		return 0;
	return fib.ifindex == in;
}

#endif /* SLUICE_BPF_FWD_H */
