/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Address/port rewrites with incremental checksum updates. The parser has validated every
 * header touched here, but the verifier does not keep packet ranges of pointers that were
 * spilled to the stack in struct sl_pkt, so each access re-checks its bound (one compare).
 */
#ifndef SLUICE_BPF_NAT_H
#define SLUICE_BPF_NAT_H

#include "common.h"
#include "csum.h"

/* Rewrites the L3 destination (dst=1) or source (dst=0) address; returns the checksum delta
 * the pseudo-header of the L4 checksum sees. */
static __always_inline __u32 sl_rewrite_addr(struct sl_pkt *p, void *end, const struct sl_addr *to,
					     int dst)
{
	__u32 delta;

	if (p->family == SL_AF_INET) {
		struct iphdr *iph = p->l3;
		__be32 *a = dst ? &iph->daddr : &iph->saddr;

		if ((void *)(iph + 1) > end)
			return 0;

		delta = sl_csum_delta(0, a, &to->w[0], 1);
		*a = to->w[0];
		sl_csum_apply(&iph->check, delta);
	} else {
		struct ipv6hdr *ip6 = p->l3;
		__be32 *a = dst ? (__be32 *)&ip6->daddr : (__be32 *)&ip6->saddr;

		if ((void *)(ip6 + 1) > end)
			return 0;

		delta = sl_csum_delta(0, a, to->w, 4);
		__builtin_memcpy(a, to->w, sizeof(*to));
	}
	return delta;
}

/* Rewrites the destination (dst=1) or source port and fixes the L4 checksum for both the
 * port and the pseudo-header change. Later fragments have no L4 header: nothing to do. */
static __always_inline void sl_rewrite_l4(struct sl_pkt *p, void *end, __u32 delta, __be16 port,
					  int dst)
{
	if (!p->l4)
		return;
	if (p->proto == IPPROTO_TCP) {
		struct tcphdr *th = p->l4;
		__be16 *pp = dst ? &th->dest : &th->source;

		if ((void *)(th + 1) > end)
			return;

		delta = sl_csum_delta16(delta, *pp, port);
		*pp = port;
		sl_csum_apply(&th->check, delta);
	} else if (p->proto == IPPROTO_UDP) {
		struct udphdr *uh = p->l4;
		__be16 *pp = dst ? &uh->dest : &uh->source;

		if ((void *)(uh + 1) > end)
			return;

		delta = sl_csum_delta16(delta, *pp, port);
		*pp = port;
		sl_csum_apply_udp(&uh->check, delta, p->family);
	}
}

/* Client -> backend: DNAT to the backend (a port-0 backend keeps the client's port). */
static __always_inline void sl_nat_to_backend(struct sl_pkt *p, void *end,
					      const struct sl_backend *be)
{
	__be16 port = be->ep.port ? be->ep.port : p->dport;

	sl_rewrite_l4(p, end, sl_rewrite_addr(p, end, &be->ep.addr, 1), port, 1);
}

/* Backend -> client: the source becomes the VIP again. */
static __always_inline void sl_nat_from_backend(struct sl_pkt *p, void *end,
						const struct sl_rev_nat *r)
{
	__be16 port = r->vip.port ? r->vip.port : p->sport;

	sl_rewrite_l4(p, end, sl_rewrite_addr(p, end, &r->vip.addr, 0), port, 0);
}

/*
 * ICMP error about a NAT'd reply: the quoted packet is backend -> client as we rewrote it
 * (source = VIP). Give the backend what it sent: outer destination, quoted source address
 * and port all become the backend's. The ICMP checksum covers the quoted bytes (and, for
 * ICMPv6, the pseudo-header); the quoted L4 checksum is left alone, as kernels ignore it.
 */
static __always_inline void sl_nat_icmp_to_backend(struct sl_pkt *p, void *end, void *inner_l3,
						   __be16 *inner_sport, const struct sl_backend *be)
{
	struct icmphdr *ic = p->l4; /* same layout as struct icmp6hdr for the checksum */
	__be16 port, *sp = inner_sport;
	__u32 delta;

	if ((void *)(ic + 1) > end || (void *)(sp + 1) > end)
		return;
	port = be->ep.port ? be->ep.port : *sp;
	delta = sl_rewrite_addr(p, end, &be->ep.addr, 1);
	if (p->family == SL_AF_INET) {
		struct iphdr *in = inner_l3;
		__sum16 old;
		__u32 d;

		if ((void *)(in + 1) > end)
			return;
		old = in->check;
		d = sl_csum_delta(0, &in->saddr, &be->ep.addr.w[0], 1);

		in->saddr = be->ep.addr.w[0];
		sl_csum_apply(&in->check, d);
		/* ICMPv4 has no pseudo-header: only the quoted bytes count. */
		delta = sl_csum_delta16(d, old, in->check);
	} else {
		struct ipv6hdr *in = inner_l3;

		if ((void *)(in + 1) > end)
			return;
		delta = sl_csum_delta(delta, (__be32 *)&in->saddr, be->ep.addr.w, 4);
		__builtin_memcpy(&in->saddr, be->ep.addr.w, sizeof(be->ep.addr));
	}
	delta = sl_csum_delta16(delta, *sp, port);
	*sp = port;
	sl_csum_apply(&ic->checksum, delta);
}

#endif /* SLUICE_BPF_NAT_H */
