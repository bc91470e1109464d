// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * TC entries that track the host's own TCP flows on an interface with the same state machine
 * as the load balancer's VIP flows (lib/conntrack.h): tc_flow_ingress and tc_flow_egress, one
 * per direction. The agent attaches them as tcx links, first in the chain
 * (agent/conntrack/host_track.cc).
 * They observe only: every packet leaves unchanged with TC_ACT_UNSPEC, which is TCX_NEXT, so
 * the programs and the classic tc filters behind them on the same hook still run and decide.
 * (TC_ACT_OK would be TCX_PASS: it ends the chain and skips the rest of the device's tc.)
 *
 * `host_flows` (lib/host_maps.h) is keyed local -> peer (source = this host's address and port,
 * whichever way the packet goes), so both directions find one entry without knowing who opened. The
 * side that sent the first segment seen is direction 0 (SL_CT_F_INBOUND when it was the peer); a
 * first SYN+ACK names its receiver instead. A flow first seen mid-stream is ESTABLISHED and
 * SL_CT_F_MIDSTREAM, as for VIP flows. A new SYN on a TIME_WAIT/CLOSED entry, from either
 * side, restarts it (SL_CT_F_REUSED). There is no live count, event or backend here.
 *
 * Clock: handshake segments take bpf_ktime_get_ns() (RTTs); the rest stamp last_seen_ns with
 * bpf_ktime_get_coarse_ns(), as no agent keeps a clock in this object.
 */
#include "lib/common.h"
#include "lib/parse.h"
#include "lib/conntrack.h"
#include "lib/host_maps.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* uapi/linux/pkt_cls.h: a #define, absent from vmlinux.h. -1 is also TCX_NEXT (enum
 * tcx_action_base), which a vmlinux.h from a kernel without tcx would lack. */
#define TC_ACT_UNSPEC (-1)

/* The shared state machine as a global function of this program: verified once, whatever
 * path reaches it (tc_flow's call chain has stack to spare for the frame). */
__noinline __u32 sl_tc_advance(struct sl_ct_entry *e, __u32 dir, const struct sl_tcp_seg *s,
			       __u64 now)
{
	if (!e || !s)
		return 0;
	return sl_ct_advance(e, dir, s, now);
}

/* A new entry for a flow whose first segment `s` was seen in `ingress` direction, in place
 * at `e` (zeroed by the caller). Returns -1 if the segment is not worth an entry. */
static __always_inline int sl_tc_flow_init(struct sl_ct_entry *e, __u32 ingress,
					   const struct sl_tcp_seg *s, __u64 now)
{
	/* The sender of the first segment opened the flow, unless it is a SYN+ACK: then its
	 * receiver did, and the segment is direction 1. */
	__u32 dir = (s->flags & TCP_FLAG_SYN_ACK) == TCP_FLAG_SYN_ACK;

	if (ingress != dir)
		e->flags |= SL_CT_F_INBOUND;
	if (sl_tc_advance(e, dir, s, now) & SL_CT_ACT_NO_ENTRY)
		return -1;
	/* An observer: its fast path keeps no windows, and it drops nothing anyway. */
	e->seq[0].flags |= SL_CT_SEQ_OBSERVE;
	e->first_seen_ns = e->last_seen_ns = bpf_ktime_get_coarse_ns();
	e->packets[dir] = 1;
	e->bytes[dir] = s->len;
	return 0;
}

static __always_inline __u64 sl_tc_clock(__u8 state, __u8 tcp_flags)
{
	if (state < SL_TCP_ESTABLISHED || (tcp_flags & TCP_FLAG_SYN))
		return bpf_ktime_get_ns();
	return bpf_ktime_get_coarse_ns();
}

/* The slow path: entry `e` (NULL: none yet, create one under `k`) moves by segment `s`. A
 * global function: verified once, whatever the header layout. */
__noinline int sl_tc_flow_step(struct __sk_buff *skb, const struct sl_flow_key *k,
			       struct sl_ct_entry *e, __u32 ingress, struct sl_tcp_seg *s)
{
	struct sl_ct_entry fresh = {};
	__u64 now;
	__u32 dir;

	if (!skb || !k || !s)
		return 0;
	if (sl_tcp_seg_read_at((void *)(long)skb->data, (void *)(long)skb->data_end, s))
		return 0;
	if (s->flags & TCP_FLAG_SYN) {
		struct sl_tcp_opts o;
		__u32 len =
			sl_tcp_opts_len((void *)(long)skb->data, (void *)(long)skb->data_end, s);

		if (len && len <= sizeof(o) &&
		    !bpf_skb_load_bytes(skb, s->l4_off + sizeof(struct tcphdr), &o, len))
			s->wscale = sl_tcp_opt_wscale(&o, len);
	}
	if (!e) {
		if (!sl_tc_flow_init(&fresh, ingress, s, sl_tc_clock(SL_TCP_NONE, s->flags)))
			bpf_map_update_elem(&host_flows, k, &fresh, BPF_NOEXIST);
		return 0;
	}
	/* A new SYN on a finished tuple, from either side: a new connection, opened by its
	 * sender, in the same entry. */
	if (e->state >= SL_TCP_TIME_WAIT && (s->flags & TCP_FLAG_SYN_ACK) == TCP_FLAG_SYN) {
		__builtin_memset(e, 0, sizeof(*e));
		e->flags = SL_CT_F_REUSED;
		sl_tc_flow_init(e, ingress, s, bpf_ktime_get_ns());
		return 0;
	}
	dir = !!(e->flags & SL_CT_F_INBOUND) != ingress;
	now = sl_tc_clock(e->state, s->flags);
	e->last_seen_ns = bpf_ktime_get_coarse_ns();
	e->packets[dir]++;
	e->bytes[dir] += s->len;
	sl_tc_advance(e, dir, s, now);
	return 0;
}

static __always_inline int sl_tc_flow(struct __sk_buff *skb, __u32 ingress)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct sl_tcp_seg s = {};
	struct sl_flow_key k = {};
	struct sl_ct_entry *e;
	struct sl_pkt p = {};
	__be16 ethertype;
	__u32 dir;

	p.len = skb->len;
	ethertype = sl_parse_eth(data, end, &p.l3);
	if (ethertype != bpf_htons(ETH_P_IP) && ethertype != bpf_htons(ETH_P_IPV6))
		return TC_ACT_UNSPEC;
	if (sl_parse_l3_addrs(&p, ethertype, end) || p.proto != IPPROTO_TCP)
		return TC_ACT_UNSPEC;
	if (sl_parse_l3(&p, end) || sl_parse_l4(&p, end) || !p.l4)
		return TC_ACT_UNSPEC;
	/* Local -> peer, whichever way this segment goes. */
	if (ingress)
		sl_flow_key_init(&k, &p.dst, &p.src, p.dport, p.sport, IPPROTO_TCP, p.family);
	else
		sl_flow_key_init(&k, &p.src, &p.dst, p.sport, p.dport, IPPROTO_TCP, p.family);
	s.len = p.len;
	s.flags = p.tcp_flags;
	s.l4_len = p.l4_len;
	s.l4_off = p.l4 - data; /* packet pointer difference: a scalar (privileged loader) */

	e = bpf_map_lookup_elem(&host_flows, &k);
	if (likely(e && e->state == SL_TCP_ESTABLISHED &&
		   !(p.tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_FIN | TCP_FLAG_RST)))) {
		/* Direction 0 is the opener's: ingress if the peer opened. */
		dir = !!(e->flags & SL_CT_F_INBOUND) != ingress;
		e->last_seen_ns = bpf_ktime_get_coarse_ns();
		e->packets[dir]++;
		e->bytes[dir] += p.len;
		return TC_ACT_UNSPEC;
	}
	sl_tc_flow_step(skb, &k, e, ingress, &s);
	return TC_ACT_UNSPEC;
}

SEC("tc")
int tc_flow_ingress(struct __sk_buff *skb)
{
	return sl_tc_flow(skb, 1);
}

SEC("tc")
int tc_flow_egress(struct __sk_buff *skb)
{
	return sl_tc_flow(skb, 0);
}
