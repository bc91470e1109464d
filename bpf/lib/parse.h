/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Packet parsing in three steps, so the common case pays only for what it needs:
 *  1. sl_parse_eth()       Ethernet + up to two VLAN tags;
 *  2. sl_parse_l3_addrs()  just enough of IPv4/IPv6 to read both addresses, which is all
 *                          it takes to tell a VIP packet from the host's own traffic;
 *  3. sl_parse_l3()/sl_parse_l4()  full validation, only for packets we may act on.
 * Step 2 failing means "too broken to tell where it is going" (pass to the kernel); steps 3
 * and 4 return SL_ERR(drop reason), and the caller decides: drop if addressed to a VIP; or
 * SL_PARSE_PASS(pass reason) for a packet that is never ours (an IPv6 routing header with
 * segments left).
 */
#ifndef SLUICE_BPF_PARSE_H
#define SLUICE_BPF_PARSE_H

#include "common.h"
#include "reasons.h"

/*
 * Returns the ethertype (network order) and the L3 header in *l3, or 0 if cut short. *outer
 * is the outer VLAN tag (the one a switch port or a QinQ S-tag assigns, and so the one that
 * says which network the frame came from), NULL for an untagged frame. A pointer rather than
 * the VLAN id: whether it is NULL is known on each of the verifier's paths (they differ in
 * the L3 offset anyway), so a membership check behind it forks no new ones.
 */
static __always_inline __be16 sl_parse_eth_tag(void *data, void *end, void **l3,
					       struct vlan_hdr **outer)
{
	struct ethhdr *eth = data;
	void *pos = eth + 1;
	__be16 proto;

	*outer = NULL;
	if (pos > end)
		return 0;
	proto = eth->h_proto;
#pragma unroll
	for (int i = 0; i < 2; i++) {
		struct vlan_hdr *vh = pos;

		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		if ((void *)(vh + 1) > end)
			return 0;
		if (i == 0)
			*outer = vh;
		proto = vh->h_vlan_encapsulated_proto;
		pos = vh + 1;
	}
	*l3 = pos;
	return proto;
}

static __always_inline __be16 sl_parse_eth(void *data, void *end, void **l3)
{
	struct vlan_hdr *outer;

	return sl_parse_eth_tag(data, end, l3, &outer);
}

/* The furthest into the frame an L3 header can start: Ethernet and two VLAN tags. */
#define SL_L3_MAX_OFF (sizeof(struct ethhdr) + 2 * sizeof(struct vlan_hdr))

/*
 * Hides which L2 layout the frame has (no tag, one or two) from the verifier: afterwards the
 * L3 offset is a value it only knows to lie in [0, SL_L3_MAX_OFF], instead of one constant per
 * layout. Everything after is then verified once for the three layouts instead of once for
 * each: xdp_lb's walk drops from ~890k to ~480k processed instructions (the limit is 1M), the
 * room that lets the established fast path be inlined. At run time it costs two xors: the
 * offset is xored with a value the verifier cannot know (the frame's length) and back, with a
 * compiler barrier between them so that the pair is not folded away. -1 if the offset is out
 * of bounds, which the parser never lets happen.
 */
static __always_inline int sl_l3_opaque(void *data, struct sl_pkt *p)
{
	__u64 off = p->l3 - data, t = off ^ p->len;

	asm volatile("" : "+r"(t));
	off = t ^ p->len;
	if (off > SL_L3_MAX_OFF)
		return -1;
	p->l3 = data + off;
	return 0;
}

/* Reads the addresses. Returns -1 if the fixed header is cut short or the version is wrong. */
static __always_inline int sl_parse_l3_addrs(struct sl_pkt *p, __be16 ethertype, void *end)
{
	if (ethertype == bpf_htons(ETH_P_IP)) {
		struct iphdr *iph = p->l3;

		if ((void *)(iph + 1) > end || iph->version != 4)
			return -1;
		p->family = SL_AF_INET;
		p->src.w[0] = iph->saddr;
		p->dst.w[0] = iph->daddr;
		p->proto = iph->protocol;
		return 0;
	}
	struct ipv6hdr *ip6 = p->l3;

	if ((void *)(ip6 + 1) > end || ip6->version != 6)
		return -1;
	p->family = SL_AF_INET6;
	__builtin_memcpy(&p->src, &ip6->saddr, sizeof(p->src));
	__builtin_memcpy(&p->dst, &ip6->daddr, sizeof(p->dst));
	p->proto = ip6->nexthdr;
	return 0;
}

static __always_inline int sl_parse_ipv4(struct sl_pkt *p, void *end)
{
	struct iphdr *iph = p->l3;
	__u32 hlen = iph->ihl * 4;
	__u32 tot = bpf_ntohs(iph->tot_len);
	__u16 fo = bpf_ntohs(iph->frag_off);

	/* ihl is validated before the byte-based bound: ihl < 5 would overlap the header. */
	if (hlen < sizeof(*iph) || p->l3 + hlen > end)
		return SL_ERR(SL_DROP_BAD_IHL);
	/* tot_len may be shorter than the frame (Ethernet padding), never longer. */
	if (tot < hlen || p->l3 + tot > end)
		return SL_ERR(SL_DROP_BAD_IP_LEN);
	p->l4 = p->l3 + hlen;
	p->l4_len = tot - hlen;
	if (fo & IP_OFFSET)
		p->frag = SL_FRAG_LATER;
	else if (fo & IP_MF)
		p->frag = SL_FRAG_FIRST;
	p->frag_more = !!(fo & IP_MF);
	p->frag_id = iph->id; /* wire bytes in the first half of the field: see sl_frag_key */
	return SL_OK;
}

/* Walks at most SL_IPV6_MAX_EXT_HDRS extension headers: the bound keeps the verifier's
 * unrolled loop small, and real traffic to a service carries one or two at most.
 * A routing header with segments left means the destination address is a waypoint, not the
 * packet's destination (RFC 8200 4.4): it is not ours to balance. Type 0 is never processed
 * at all (RFC 5095: it turns hosts into traffic amplifiers) and is counted apart; other types
 * (SRv6, type 4 of RFC 8754, ...) go to the kernel, which processes them if configured to.
 * With segments left 0 the routing header is done with and ignored, type 0 included. */
static __always_inline int sl_parse_ipv6(struct sl_pkt *p, void *end)
{
	struct ipv6hdr *ip6 = p->l3;
	__u32 plen = bpf_ntohs(ip6->payload_len);
	void *pos = ip6 + 1;
	__u32 extlen = 0;
	__u8 nh = ip6->nexthdr;

	if (pos + plen > end)
		return SL_ERR(SL_DROP_BAD_IP_LEN);
#pragma unroll
	for (int i = 0; i < SL_IPV6_MAX_EXT_HDRS; i++) {
		if (nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING || nh == IPPROTO_DSTOPTS) {
			struct ipv6_rt_hdr *oh =
				pos; /* the first 2 bytes are every option header's */
			__u32 l;

			if (nh == IPPROTO_ROUTING) {
				if ((void *)(oh + 1) > end)
					return SL_ERR(SL_DROP_IPV6_EXT_CHAIN);
				if (oh->segments_left)
					return SL_PARSE_PASS(oh->type == IPV6_SRCRT_TYPE_0
								     ? SL_PASS_IPV6_RH0
								     : SL_PASS_NOT_VIP);
			} else if ((void *)((struct ipv6_opt_hdr *)oh + 1) > end) {
				return SL_ERR(SL_DROP_IPV6_EXT_CHAIN);
			}
			nh = oh->nexthdr;
			l = (oh->hdrlen + 1) *
			    8; /* hdrlen: 8-octet units, not counting the first */
			pos += l;
			extlen += l;
		} else if (nh == IPPROTO_FRAGMENT) {
			struct frag_hdr *fh = pos;
			__u16 fo;

			if ((void *)(fh + 1) > end)
				return SL_ERR(SL_DROP_IPV6_EXT_CHAIN);
			nh = fh->nexthdr;
			fo = bpf_ntohs(fh->frag_off); /* offset in bits 15..3, M flag in bit 0 */
			if (fo & IPV6_FRAG_OFFSET_MASK)
				p->frag = SL_FRAG_LATER;
			else if (fo & 1)
				p->frag = SL_FRAG_FIRST;
			p->frag_more = fo & 1;
			p->frag_id = fh->identification;
			pos = fh + 1;
			extlen += sizeof(*fh);
		} else {
			break;
		}
	}
	if (nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING || nh == IPPROTO_DSTOPTS ||
	    nh == IPPROTO_FRAGMENT || extlen > plen)
		return SL_ERR(SL_DROP_IPV6_EXT_CHAIN);
	p->proto = nh;
	p->l4 = pos;
	p->l4_len = plen - extlen;
	return SL_OK;
}

static __always_inline int sl_parse_l3(struct sl_pkt *p, void *end)
{
	return p->family == SL_AF_INET ? sl_parse_ipv4(p, end) : sl_parse_ipv6(p, end);
}

/* Validates the L4 header and reads the ports. A later fragment has no L4 header. */
static __always_inline int sl_parse_l4(struct sl_pkt *p, void *end)
{
	if (p->frag == SL_FRAG_LATER) {
		p->l4 = NULL;
		return SL_OK;
	}
	if (p->proto == IPPROTO_TCP) {
		struct tcphdr *th = p->l4;
		__u32 doff;

		if ((void *)(th + 1) > end || p->l4_len < sizeof(*th))
			return SL_ERR(SL_DROP_TRUNC_L4);
		doff = th->doff * 4;
		if (doff < sizeof(*th) || doff > p->l4_len)
			return SL_ERR(SL_DROP_BAD_DOFF);
		p->sport = th->source;
		p->dport = th->dest;
		p->tcp_flags = ((__u8 *)th)[13];
	} else if (p->proto == IPPROTO_UDP) {
		struct udphdr *uh = p->l4;

		if ((void *)(uh + 1) > end || p->l4_len < sizeof(*uh))
			return SL_ERR(SL_DROP_TRUNC_L4);
		/* A first fragment's UDP length covers the whole datagram, not this fragment. */
		if (p->frag == SL_FRAG_NONE && bpf_ntohs(uh->len) != p->l4_len)
			return SL_ERR(SL_DROP_BAD_UDP_LEN);
		p->sport = uh->source;
		p->dport = uh->dest;
	} else if (p->proto == IPPROTO_ICMP || p->proto == IPPROTO_ICMPV6) {
		struct icmphdr *ic = p->l4; /* same 8-byte layout as struct icmp6hdr */

		if ((void *)(ic + 1) > end || p->l4_len < sizeof(*ic))
			return SL_ERR(SL_DROP_TRUNC_L4);
	}
	return SL_OK;
}

#endif /* SLUICE_BPF_PARSE_H */
