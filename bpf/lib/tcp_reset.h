/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Answering a client segment with a TCP RST, in place (on_backend_down: reset, see
 * docs/design.md, "Backend down: reset"). The frame that brought the segment becomes the
 * reset: the payload is cut off, MACs, addresses and ports are swapped, fresh IP and TCP
 * headers are written and checksummed in full, and the frame goes back out the interface it
 * came in on (XDP_TX). VLAN tags stay as they were. The reset comes from the VIP the client
 * addressed, in nat and dsr mode alike.
 */
#ifndef SLUICE_BPF_TCP_RESET_H
#define SLUICE_BPF_TCP_RESET_H

#include "common.h"
#include "csum.h"
#include "vip_conntrack.h"

/* Adds the 16-bit words of an address to a one's-complement sum (byte-order free: wire words
 * are summed as loaded, see csum.h). An IPv4 address's unused words are zero. */
static __always_inline __u32 sl_csum_addr(__u32 acc, const struct sl_addr *a)
{
#pragma unroll
	for (int i = 0; i < 4; i++)
		acc += (a->w[i] & 0xffff) + (a->w[i] >> 16);
	return acc;
}

/*
 * Turns the client -> VIP TCP segment whose IP header starts at l3_off and TCP header at
 * l4_off (l4_len bytes of TCP header and payload, as the IP header states them; TCP flags
 * `flags`) into its reset, by RFC 793 ("Reset Generation"): if the segment carries an ACK,
 * the RST takes its sequence number from that ACK and has no ACK itself; otherwise it has
 * sequence number 0, the ACK flag, and acknowledges everything the segment occupied (its
 * payload, plus one for a SYN or FIN). Returns XDP_TX, or XDP_ABORTED if the frame is not
 * what the parser validated (cannot happen; the verifier needs the checks).
 * IPv4 options and IPv6 extension headers are not copied: the reset has a plain 20- or
 * 40-byte IP header (TTL / hop limit 64, IPv4 id 0 with DF) and a 20-byte TCP header
 * (window 0).
 * A global function: bpf_xdp_adjust_tail() invalidates every packet pointer of the caller,
 * whose only use of the packet after this call must be none (it returns the verdict). It
 * takes scalars, not a struct sl_tcp_seg, to keep the caller's stack frame small (the
 * combined stack of the program's deepest call chain is bounded by 512 bytes).
 */
__noinline int sl_tcp_rst_reply(struct xdp_md *ctx, __u32 l3_off, __u32 l4_off, __u32 l4_len,
				__u32 flags)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct sl_addr saddr = {}, daddr = {};
	__u32 hlen, len, sum;
	long cur;
	__be32 seq, ack_seq;
	__be16 sport, dport;
	__u8 rflags, mac[ETH_ALEN];
	struct ethhdr *eth;
	struct tcphdr *th;
	void *l3;
	int v6;

	/* Masks, not compares, bound the offsets for the verifier (clang merges a pair of
	 * compares into one that the verifier cannot map back): L3 comes after the Ethernet
	 * header and at most two VLAN tags, well within 127 bytes. */
	if (l3_off > 0x7f || l4_off > 0x3ff)
		return XDP_ABORTED;
	l3_off &= 0x7f;
	l4_off &= 0x3ff;
	if (l3_off < sizeof(*eth) || !l4_off)
		return XDP_ABORTED;
	th = data + l4_off;
	if ((void *)(th + 1) > end)
		return XDP_ABORTED;
	sport = th->source;
	dport = th->dest;
	if (flags & TCP_FLAG_ACK) {
		seq = th->ack_seq;
		ack_seq = 0;
		rflags = TCP_FLAG_RST;
	} else {
		/* doff <= l4_len: checked by sl_parse_l4(). The segment length counts the
		 * payload as the IP header states it (not Ethernet padding). */
		len = l4_len - th->doff * 4 + !!(flags & TCP_FLAG_SYN) + !!(flags & TCP_FLAG_FIN);
		seq = 0;
		ack_seq = bpf_htonl(bpf_ntohl(th->seq) + len);
		rflags = TCP_FLAG_RST | TCP_FLAG_ACK;
	}
	l3 = data + l3_off;
	if (l3 + 1 > end)
		return XDP_ABORTED;
	v6 = (*(__u8 *)l3 >> 4) == 6;
	if (v6) {
		struct ipv6hdr *ip6 = l3;

		if ((void *)(ip6 + 1) > end)
			return XDP_ABORTED;
		__builtin_memcpy(&saddr, &ip6->saddr, sizeof(saddr));
		__builtin_memcpy(&daddr, &ip6->daddr, sizeof(daddr));
		hlen = sizeof(*ip6);
	} else {
		struct iphdr *iph = l3;

		if ((void *)(iph + 1) > end)
			return XDP_ABORTED;
		saddr.w[0] = iph->saddr;
		daddr.w[0] = iph->daddr;
		hlen = sizeof(*iph);
	}

	/* Never grows: the segment had at least these headers. The frame length is made opaque
	 * to clang, which would otherwise fold it into 32-bit pointer arithmetic that the
	 * verifier refuses. */
	len = l3_off + hlen + sizeof(*th);
	cur = end - data;
	asm volatile("" : "+r"(cur));
	if (bpf_xdp_adjust_tail(ctx, (int)len - (int)cur))
		return XDP_ABORTED;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > end)
		return XDP_ABORTED;
	__builtin_memcpy(mac, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, mac, ETH_ALEN);

	/* The pseudo-header: the reset's addresses (the segment's, swapped), protocol, length. */
	sum = sl_csum_addr(sl_csum_addr(0, &saddr), &daddr);
	sum += bpf_htons(IPPROTO_TCP) + bpf_htons(sizeof(*th));
	l3 = data + l3_off;
	if (v6) {
		struct ipv6hdr *ip6 = l3;

		th = (void *)(ip6 + 1);
		if ((void *)(th + 1) > end)
			return XDP_ABORTED;
		/* Version 6, traffic class 0, no flow label. */
		*(__be32 *)ip6 = bpf_htonl(0x60000000);
		ip6->payload_len = bpf_htons(sizeof(*th));
		ip6->nexthdr = IPPROTO_TCP;
		ip6->hop_limit = 64;
		__builtin_memcpy(&ip6->saddr, &daddr, sizeof(daddr));
		__builtin_memcpy(&ip6->daddr, &saddr, sizeof(saddr));
	} else {
		struct iphdr *iph = l3;
		__u32 ipsum;

		th = (void *)(iph + 1);
		if ((void *)(th + 1) > end)
			return XDP_ABORTED;
		*(__u8 *)iph = 0x45; /* version 4, ihl 5 */
		iph->tos = 0;
		iph->tot_len = bpf_htons(sizeof(*iph) + sizeof(*th));
		iph->id = 0;
		iph->frag_off = bpf_htons(IP_DF);
		iph->ttl = 64;
		iph->protocol = IPPROTO_TCP;
		iph->saddr = daddr.w[0];
		iph->daddr = saddr.w[0];
		/* Every word but the checksum's: version/ihl/tos, tot_len, id, frag_off,
		 * ttl/protocol, the addresses. */
		ipsum = bpf_htons(0x4500) + iph->tot_len + iph->frag_off +
			bpf_htons((64 << 8) | IPPROTO_TCP);
		ipsum = sl_csum_addr(sl_csum_addr(ipsum, &saddr), &daddr);
		iph->check = ~sl_csum_fold(ipsum);
	}
	th->source = dport;
	th->dest = sport;
	th->seq = seq;
	th->ack_seq = ack_seq;
	((__u8 *)th)[12] = 5 << 4; /* doff 5, no options */
	((__u8 *)th)[13] = rflags;
	th->window = 0;
	th->urg_ptr = 0;
	sum += dport + sport + (seq & 0xffff) + (seq >> 16) + (ack_seq & 0xffff) + (ack_seq >> 16) +
	       bpf_htons((5 << 12) | rflags);
	th->check = ~sl_csum_fold(sum);
	sl_ct_stat(SL_CT_STAT_RESET_SENT);
	return XDP_TX;
}

/* Answers client segment `p` with its RST (sl_tcp_rst_reply()). Returns the verdict. */
static __always_inline int sl_tcp_reset(struct xdp_md *ctx, const struct sl_pkt *p)
{
	void *data = (void *)(long)ctx->data;

	/* Packet pointer differences: scalars (the loader is privileged). */
	return sl_tcp_rst_reply(ctx, p->l3 - data, p->l4 ? p->l4 - data : 0, p->l4_len,
				p->tcp_flags);
}

#endif /* SLUICE_BPF_TCP_RESET_H */
