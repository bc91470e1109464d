// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * XDP entry of the load balancer. Per packet:
 *   parse L2 and the IP addresses -> may the destination be a VIP (address pre-filter)?
 *     yes: validate fully, VIP lookup, pick a backend, NAT or DSR rewrite, next hop,
 *          XDP_TX / redirect (or, for a flow whose backend is down with on_backend_down:
 *          reset, a TCP RST back to the client by XDP_TX). Malformed packets are dropped
 *          (counted) only when the exact VIP-address map confirms they are addressed to a
 *          VIP;
 *     no:  a NAT reply from a backend (source pre-filter, then rev_nat)? restore the VIP as
 *          source and forward; otherwise XDP_PASS untouched: the host's own traffic is
 *          never dropped or changed.
 * A frame tagged with a VLAN its interface does not carry is passed before anything else.
 * See docs/design.md for the packet flow and the policies (fragments, ICMP, VLAN); the result
 * codes of the lib helpers, and the drop/pass reason each becomes, are in lib/reasons.h.
 */
#include "lib/common.h"
#include "lib/maps.h"
#include "lib/stats.h"
#include "lib/parse.h"
#include "lib/lb.h"
#include "lib/nat.h"
#include "lib/fwd.h"
#include "lib/tcp_reset.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/*
 * A tagged frame is ours only on a VLAN its interface carries (`interfaces:` in the config):
 * another VLAN is another network that happens to share the wire, and what arrives on it is
 * none of our business, even if it names a VIP. VID 0 is a priority tag (802.1Q: no VLAN),
 * carried like an untagged frame. `tci` in host order.
 * A global function, verified once on its own: inlined, its branches on the VLAN id split
 * every path behind it in two (a VLAN id of 0 or not), which the verifier then walks twice.
 */
__noinline int sl_vlan_not_ours(__u32 ifindex, __u32 tci)
{
	struct sl_vlan_key k = { .ifindex = ifindex, .vid = tci & VLAN_VID_MASK };

	if (!k.vid)
		return 0;
	return !bpf_map_lookup_elem(&vlan_members, &k);
}

/* A packet that failed validation, or matched nothing, after the pre-filter said "maybe a
 * VIP": drop it only if it really is addressed to a VIP address. */
static __always_inline int sl_drop_if_vip(const struct sl_pkt *p, __u32 reason)
{
	if (sl_is_vip_addr(&p->dst, p->family))
		return sl_drop(p, reason);
	return sl_pass(p, SL_PASS_NOT_VIP);
}

/* The fragment key of `p`, built in per-CPU scratch space: the global functions below take it
 * from there (they cannot take the parsed packet, whose spilled pointers a call would
 * clobber, and the program's stack has no 40 bytes to spare). NULL never happens. */
static __always_inline struct sl_frag_key *sl_frag_key_of(const struct sl_pkt *p)
{
	__u32 zero = 0;
	struct sl_frag_key *k = bpf_map_lookup_elem(&frag_scratch, &zero);

	if (!k)
		return NULL;
	k->src = p->src;
	k->dst = p->dst;
	k->id = p->frag_id;
	k->proto = p->proto;
	k->family = p->family;
	k->pad[0] = k->pad[1] = 0;
	return k;
}

/*
 * First fragment of a datagram to VIP `vip_id` (key `k`, its ports `ports`: sport << 16 |
 * dport, wire order): remember them, within the VIP's budget of sl_frag_vip_budget records
 * per SL_FRAG_TIMEOUT_NS window. -1: over budget, refused. The window restarts without a
 * lock: two CPUs crossing a boundary together may let a few more through, never a table's
 * worth. Fragments are off the fast path, so the helper call for the clock is affordable
 * here. A global function, like sl_frag_lookup(): fragment paths add nothing to the
 * verifier's walk of the main program.
 */
__noinline int sl_frag_record(struct sl_frag_key *k, __u32 vip_id, __u32 ports)
{
	struct sl_frag_ports v = { .sport = ports >> 16, .dport = ports & 0xffff };
	struct sl_frag_budget *b = bpf_map_lookup_elem(&frag_budget, &vip_id);
	__u64 now = bpf_ktime_get_coarse_ns();
	__u64 window = now / SL_FRAG_TIMEOUT_NS;

	if (!k || !b)
		return -1;
	if (b->window != window) {
		b->window = window;
		b->used = 0;
	}
	if (__sync_fetch_and_add(&b->used, 1) >= sl_frag_vip_budget)
		return -1;
	v.created_ns = now;
	bpf_map_update_elem(&frags, k, &v, BPF_ANY);
	return 0;
}

/* Later fragment (key `k`; `last`: no more follow): the ports its first fragment recorded,
 * sport << 16 | dport (wire order); -1 if there is no record or it expired. The datagram's
 * last fragment deletes the record: nothing follows it, and a record left behind would only
 * wait for the LRU. (A last fragment that overtakes a middle one costs that datagram: the
 * middle one finds no record, as after a lost first.) */
__noinline long sl_frag_lookup(struct sl_frag_key *k, __u32 last)
{
	struct sl_frag_ports *fp;
	long ports;

	if (!k)
		return -1;
	fp = bpf_map_lookup_elem(&frags, k);
	if (!fp)
		return -1;
	if (bpf_ktime_get_coarse_ns() - fp->created_ns > SL_FRAG_TIMEOUT_NS) {
		bpf_map_delete_elem(&frags, k);
		return -1;
	}
	ports = (long)fp->sport << 16 | fp->dport;
	if (last)
		bpf_map_delete_elem(&frags, k);
	return ports;
}

/* Later fragment: recover the ports of its datagram into `p`; -1 if unknown. */
static __always_inline int sl_frag_ports(struct sl_pkt *p)
{
	long ports = sl_frag_lookup(sl_frag_key_of(p), !p->frag_more);

	if (ports < 0)
		return -1;
	p->sport = ports >> 16;
	p->dport = ports & 0xffff;
	return 0;
}

/*
 * ICMP "fragmentation needed" / ICMPv6 "packet too big" addressed to a VIP: it quotes a
 * reply of a VIP flow (source VIP:vport, destination client:cport), so it belongs to the
 * backend serving client:cport -> VIP:vport. Anything else goes to the kernel.
 */
static __always_inline int sl_icmp_to_vip(struct xdp_md *ctx, struct sl_pkt *p, void *end)
{
	struct sl_addr vaddr = {}, client = {};
	void *inner = p->l4 + sizeof(struct icmphdr);
	struct sl_backend *be;
	__u32 id, flow = SL_FLOW_NONE;
	struct sl_vip *vip;
	__be16 *ports;
	__u8 proto;

	if ((void *)((struct icmphdr *)p->l4 + 1) > end)
		return sl_drop_if_vip(p, SL_DROP_TRUNC_L4);
	if (p->family == SL_AF_INET) {
		struct icmphdr *ic = p->l4;
		struct iphdr *in = inner;
		__u32 ihl;

		if (ic->type != ICMP_DEST_UNREACH || ic->code != ICMP_FRAG_NEEDED)
			return sl_pass(p, SL_PASS_ICMP_NOT_VIP_FLOW);
		if ((void *)(in + 1) > end)
			return sl_drop_if_vip(p, SL_DROP_ICMP_TRUNC);
		ihl = in->ihl * 4;
		if (ihl < sizeof(*in))
			return sl_drop_if_vip(p, SL_DROP_ICMP_TRUNC);
		ports = inner + ihl;
		proto = in->protocol;
		vaddr.w[0] = in->saddr;
		client.w[0] = in->daddr;
	} else {
		struct icmp6hdr *ic = p->l4;
		struct ipv6hdr *in = inner;

		if (ic->icmp6_type != ICMPV6_PKT_TOOBIG)
			return sl_pass(p, SL_PASS_ICMP_NOT_VIP_FLOW);
		if ((void *)(in + 1) > end)
			return sl_drop_if_vip(p, SL_DROP_ICMP_TRUNC);
		/* The quoted header's extension chain is not walked: replies we send carry none. */
		ports = (void *)(in + 1);
		proto = in->nexthdr;
		__builtin_memcpy(&vaddr, &in->saddr, sizeof(vaddr));
		__builtin_memcpy(&client, &in->daddr, sizeof(client));
	}
	/* RFC 792 quotes at least 8 bytes of the datagram: both ports. */
	if ((void *)ports + 8 > end)
		return sl_drop_if_vip(p, SL_DROP_ICMP_TRUNC);
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return sl_pass(p, SL_PASS_ICMP_NOT_VIP_FLOW);
	vip = sl_vip_lookup(&vaddr, ports[0], proto, p->family);
	if (!vip)
		return sl_pass(p, SL_PASS_ICMP_NOT_VIP_FLOW);
	be = sl_select_backend(ctx, p, vip, proto, &client, ports[1], &vaddr, ports[0], 0, &id,
			       &flow);
	if (!be)
		return sl_drop(p, SL_DROP_NO_BACKEND);
	if (vip->mode == SL_MODE_NAT)
		sl_nat_icmp_to_backend(p, end, inner, &ports[0], be);
	return sl_forward_backend(ctx, p, be, id, vip->mode == SL_MODE_NAT);
}

/* Not addressed to a VIP: a NAT reply from a backend, or the host's own traffic. `parsed`:
 * sl_parse_l3/l4 already succeeded on this packet. */
static __always_inline int sl_not_vip(struct xdp_md *ctx, struct sl_pkt *p, void *end, int parsed)
{
	struct sl_nexthop nh = {};
	struct sl_endpoint k = {};
	struct sl_rev_nat *r;
	long rc;

	if (!sl_filter_test(SL_FILTER_NAT_BACKEND_SRC, &p->src))
		return sl_pass(p, SL_PASS_NOT_VIP);
	if (!parsed && (sl_parse_l3(p, end) || sl_parse_l4(p, end)))
		return sl_pass(p, SL_PASS_NOT_VIP);
	if (!p->l4 || (p->proto != IPPROTO_TCP && p->proto != IPPROTO_UDP))
		return sl_pass(p, SL_PASS_NOT_VIP);
	k.addr = p->src;
	k.port = p->sport;
	k.proto = p->proto;
	k.family = p->family;
	r = bpf_map_lookup_elem(&rev_nat, &k);
	if (!r && sl_rev_nat_wildcards) {
		k.port = 0;
		r = bpf_map_lookup_elem(&rev_nat, &k);
	}
	if (!r)
		return sl_pass(p, SL_PASS_NOT_VIP);
	/* Route first: a packet from a backend's endpoint addressed to this host (its own
	 * health checks, an operator's connection) is the host's, not a VIP reply. */
	rc = sl_fib(ctx, p, &p->dst, &nh, 0);
	if (rc == BPF_FIB_LKUP_RET_NOT_FWDED)
		return sl_pass(p, SL_PASS_NOT_VIP);
	/* Only what sluice translated is translated back: a reply arriving on the interface that
	 * leads to its backend (whoever forges a backend's source on the clients' side is not
	 * that backend), and for TCP, a segment of a flow tracked to this very backend: the
	 * other half of the TCP state machine, which nat mode sees both directions of. */
	if (!sl_from_backend_side(ctx, &k.addr, p->family, r->backend_id))
		return sl_pass(p, SL_PASS_NOT_OUR_REPLY);
	if (p->proto == IPPROTO_TCP) {
		__u32 v = sl_ct_reply(ctx, p, &k, r);

		if (v == SL_REPLY_NOT_OURS)
			return sl_pass(p, SL_PASS_NOT_OUR_REPLY);
		if (v == SL_REPLY_DROP)
			return sl_drop(p, SL_DROP_CT_WINDOW);
	}
	sl_nat_from_backend(p, end, r);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return sl_fib_failed(p, rc, 1);
	return sl_xmit(ctx, p, &nh);
}

/* The pre-filter says the destination may be a VIP address. */
static __always_inline int sl_to_vip(struct xdp_md *ctx, struct sl_pkt *p, void *end)
{
	struct sl_backend *be;
	__u32 id, flow = SL_FLOW_NONE;
	struct sl_vip *vip;
	int err;

	err = sl_parse_l3(p, end);
	if (!err)
		err = sl_parse_l4(p, end);
	if (err && SL_PARSE_IS_PASS(err))
		return sl_pass(p, SL_PARSE_PASS_REASON(err));
	if (err)
		return sl_drop_if_vip(p, SL_ERR_REASON(err));
	if (p->proto != IPPROTO_TCP && p->proto != IPPROTO_UDP) {
		/* Only the exact map may say "ours" here: an ICMP error to an address that merely
		 * shares the pre-filter bit of a VIP must reach the host untouched. */
		if (!sl_is_vip_addr(&p->dst, p->family))
			return sl_pass(p, SL_PASS_NOT_VIP);
		if ((p->proto == IPPROTO_ICMP || p->proto == IPPROTO_ICMPV6) && p->l4)
			return sl_icmp_to_vip(ctx, p, end);
		return sl_pass(p, SL_PASS_VIP_NO_SERVICE);
	}
	if (p->frag == SL_FRAG_LATER && sl_frag_ports(p))
		return sl_drop_if_vip(p, SL_DROP_FRAG_NO_FIRST);
	vip = sl_vip_lookup(&p->dst, p->dport, p->proto, p->family);
	if (!vip) {
		/* Not a VIP service: a port of a VIP address we don't balance, or an address that
		 * only shares the pre-filter bit with a VIP (maybe a NAT reply to a client). */
		if (sl_is_vip_addr(&p->dst, p->family))
			return sl_pass(p, SL_PASS_VIP_NO_SERVICE);
		return sl_not_vip(ctx, p, end, 1);
	}
	if (p->frag == SL_FRAG_FIRST &&
	    sl_frag_record(sl_frag_key_of(p), vip->vip_id, (__u32)p->sport << 16 | p->dport))
		return sl_drop(p, SL_DROP_FRAG_BUDGET);
	be = sl_select_backend(ctx, p, vip, p->proto, &p->src, p->sport, &p->dst, p->dport, 1, &id,
			       &flow);
	if (!be) {
		/* The flow's backend is down and its VIP resets: the entry is gone, the client
		 * gets a RST instead of this packet. */
		if (flow == SL_FLOW_RESET)
			return sl_tcp_reset(ctx, p);
		if (flow == SL_FLOW_OOW)
			return sl_drop(p, SL_DROP_CT_WINDOW);
		return sl_drop(p, flow == SL_FLOW_REFUSED ? SL_DROP_CT_FULL : SL_DROP_NO_BACKEND);
	}
	/* With a backend, flow is SL_FLOW_NONE (0) or SL_FLOW_NEW (1): a new-flow count. */
	sl_count_traffic(&vip_stats, vip->vip_id, p->len, flow);
	sl_count_traffic(&backend_stats, id, p->len, flow);
	if (vip->mode == SL_MODE_NAT)
		sl_nat_to_backend(p, end, be);
	return sl_forward_backend(ctx, p, be, id, vip->mode == SL_MODE_NAT);
}

SEC("xdp")
int xdp_lb(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct sl_pkt p = {};
	struct vlan_hdr *tag;
	__be16 ethertype;
	int act;

	p.len = end - data;
	ethertype = sl_parse_eth_tag(data, end, &p.l3, &tag);
	if (!ethertype)
		act = sl_pass(&p, SL_PASS_UNPARSEABLE);
	else if (tag && sl_vlan_not_ours(ctx->ingress_ifindex, bpf_ntohs(tag->h_vlan_TCI)))
		act = sl_pass(&p, SL_PASS_VLAN_NOT_OURS);
	else if (ethertype != bpf_htons(ETH_P_IP) && ethertype != bpf_htons(ETH_P_IPV6))
		act = sl_pass(&p, SL_PASS_NOT_IP);
	else if (sl_l3_opaque(data, &p))
		act = sl_pass(&p, SL_PASS_UNPARSEABLE);
	else if (sl_parse_l3_addrs(&p, ethertype, end))
		act = sl_pass(&p, SL_PASS_UNPARSEABLE);
	else if (sl_filter_test(SL_FILTER_VIP_DST, &p.dst))
		act = sl_to_vip(ctx, &p, end);
	else
		act = sl_not_vip(ctx, &p, end, 0);
	sl_count(&verdicts, act, p.len);
	return act;
}
