/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Next hop by bpf_fib_lookup, out by XDP_TX (same interface) or a devmap redirect. */
#ifndef SLUICE_BPF_FWD_H
#define SLUICE_BPF_FWD_H

#include "common.h"
#include "maps.h"
#include "stats.h"

/*
 * Routes the (already rewritten) packet toward `dst` and rewrites the MACs.
 * nat: the IP header already names the real destination, so when the neighbour is not
 * resolved yet the kernel can forward this packet itself and resolve it (XDP_PASS); a DSR
 * packet still carries the VIP and must not reach the kernel's routing, so it is dropped.
 */
static __always_inline int sl_forward(struct xdp_md *ctx, struct sl_pkt *p,
				      const struct sl_addr *dst, int nat)
{
	struct ethhdr *eth = (void *)(long)ctx->data;
	struct bpf_fib_lookup fib = {};
	long rc;

	if ((void *)(eth + 1) > (void *)(long)ctx->data_end)
		return sl_drop(p, SL_DROP_FIB);
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
	if (rc != BPF_FIB_LKUP_RET_SUCCESS) {
		if (rc == BPF_FIB_LKUP_RET_NO_NEIGH && nat)
			return sl_pass(p, SL_PASS_FIB);
		return sl_drop(p, SL_DROP_FIB);
	}
	__builtin_memcpy(eth->h_dest, fib.dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, fib.smac, ETH_ALEN);
	if (fib.ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	/* An egress interface sluice does not manage falls back to XDP_DROP. */
	rc = bpf_redirect_map(&tx_ports, fib.ifindex, XDP_DROP);
	if (rc == XDP_DROP)
		return sl_drop(p, SL_DROP_FIB);
	return rc;
}

#endif /* SLUICE_BPF_FWD_H */
