/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The VIP conntrack table of xdp_lb (`conntrack`, keyed by the client -> VIP 5-tuple) around
 * the shared state machine of conntrack.h: the per-packet fast path, the slow path with its
 * side effects (live backend counts in `backend_conns`, records on `ct_events`, the
 * `ct_transitions` and `ct_stats` counters), entry creation and the NAT reply direction.
 * The contract with the agent (who adds and subtracts live counts, expiry) is in abi.h, at
 * struct sl_ct_entry; the policies are in docs/design.md, "TCP state machine".
 */
#ifndef SLUICE_BPF_VIP_CONNTRACK_H
#define SLUICE_BPF_VIP_CONNTRACK_H

#include "common.h"
#include "maps.h"
#include "conntrack.h"

static __always_inline void sl_ct_stat(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&ct_stats, &idx);

	if (c)
		(*c)++;
}

static __always_inline void sl_ct_count_transition(__u8 old, __u8 next)
{
	__u32 idx = SL_CT_TRANSITION((__u32)old & (SL_CT_STATE_SLOTS - 1),
				     (__u32)next & (SL_CT_STATE_SLOTS - 1));
	__u64 *c = bpf_map_lookup_elem(&ct_transitions, &idx);

	if (c)
		(*c)++;
}

/* Gives back the flow's backend_conns count if it still holds one. The exchange makes it
 * happen once, whichever CPU or direction sees the close first. Returns 1 if this call took
 * `live` from 1 to 0. */
static __always_inline int sl_ct_release(struct sl_ct_entry *e)
{
	__u32 id = e->backend_id;
	__u64 *c;

	if (!__sync_lock_test_and_set(&e->live, 0))
		return 0;
	c = bpf_map_lookup_elem(&backend_conns, &id);
	if (c && __sync_fetch_and_add(c, -1) == 0) {
		/* Never let a count wrap: a double release elsewhere is counted, not spread. */
		__sync_fetch_and_add(c, 1);
		sl_ct_stat(SL_CT_STAT_CONNS_UNDERFLOW);
	}
	return 1;
}

static __always_inline void sl_ct_emit(const struct sl_flow_key *k, const struct sl_ct_entry *e,
				       __u32 type, __u8 old, __u64 ts)
{
	struct sl_ct_event *ev = bpf_ringbuf_reserve(&ct_events, sizeof(*ev), 0);

	if (!ev) {
		sl_ct_stat(SL_CT_STAT_EVENTS_LOST);
		return;
	}
	/* Reserved memory is not zeroed: every byte is written. */
	ev->key = *k;
	ev->ts_ns = ts;
	ev->backend_id = e->backend_id;
	ev->vip_id = e->vip_id;
	ev->type = type;
	ev->old_state = old;
	ev->new_state = e->state;
	ev->flags = e->flags;
	ev->rtt_synack_ns = e->rtt_synack_ns;
	ev->rtt_ack_ns = e->rtt_ack_ns;
	ev->pad = 0;
	ev->packets[0] = e->packets[0];
	ev->packets[1] = e->packets[1];
	ev->bytes[0] = e->bytes[0];
	ev->bytes[1] = e->bytes[1];
	bpf_ringbuf_submit(ev, 0);
}

/*
 * Gathers what the parser already knows about a TCP segment, without touching the packet:
 * a bounds check on the parser's spilled packet pointer would change the verifier's view of
 * it and stop it from pruning the rest of the program against other walks (the reply path
 * alone cost ~100k more instructions to verify that way). The slow paths read the header.
 */
static __always_inline void sl_tcp_seg_init(struct sl_tcp_seg *s, struct xdp_md *ctx,
					    const struct sl_pkt *p)
{
	void *data = (void *)(long)ctx->data;

	s->len = p->len;
	s->flags = p->tcp_flags;
	s->l4_len = p->l4_len;
	/* Packet pointer differences: scalars (the loader is privileged). */
	s->l3_off = p->l3 - data;
	s->l4_off = p->l4 ? p->l4 - data : 0;
}

/* Reads the sequence numbers of segment `s` from the packet. -1 if there is no TCP header. */
static __always_inline int sl_tcp_seg_read(struct xdp_md *ctx, struct sl_tcp_seg *s)
{
	return sl_tcp_seg_read_at((void *)(long)ctx->data, (void *)(long)ctx->data_end, s);
}

static __always_inline void sl_ct_account(struct sl_ct_entry *e, __u32 dir, __u32 len)
{
	e->last_seen_ns = sl_now_ns; /* coarse clock kept by the agent: no helper call */
	e->packets[dir & 1]++;
	e->bytes[dir & 1] += len;
}

/*
 * The client direction's fast path: a segment of an established flow without SYN, FIN or
 * RST, whose backend is in use and does not reset its flows, changes nothing but the
 * counters. Three stores and a few compares: no helper call, no clock read, no atomics, no
 * function call. The backend entry is read here anyway (its address is the NAT target, its
 * id the next hop's key), so SL_BACKEND_F_RESET costs no extra load: one mask-and-compare
 * tests "in use" and "not resetting" together, as the ACTIVE test alone did. Returns the
 * backend, with its id in *id, if it took the packet; NULL if sl_ct_client() must.
 */
static __always_inline struct sl_backend *sl_ct_fast(struct sl_ct_entry *ct, const struct sl_pkt *p,
						     __u32 *id)
{
	struct sl_backend *be;
	__u32 bid;

	if (!ct || ct->state != SL_TCP_ESTABLISHED ||
	    (p->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_FIN | TCP_FLAG_RST)))
		return NULL;
	bid = ct->backend_id;
	be = bpf_map_lookup_elem(&backends, &bid);
	if (unlikely(!be || (be->flags & (SL_BACKEND_F_ACTIVE | SL_BACKEND_F_RESET)) !=
				    SL_BACKEND_F_ACTIVE))
		return NULL;
	sl_ct_account(ct, SL_DIR_CLIENT, p->len);
	*id = bid;
	return be;
}

/* Handshake segments get the precise clock (RTTs); the rest use the agent's coarse one. */
static __always_inline __u64 sl_ct_clock(__u8 state, __u8 tcp_flags)
{
	if (state < SL_TCP_ESTABLISHED || (tcp_flags & TCP_FLAG_SYN))
		return bpf_ktime_get_ns();
	return sl_now_ns;
}

/*
 * The slow path for a segment `s` of tracked flow `k` (entry `e`), direction `dir`: count
 * it, run the machine, then the side effects (transition counter, backend count, event).
 * Returns SL_CT_ACT_*; on SL_CT_ACT_REUSE the machine changed nothing and the caller starts a
 * new connection.
 * The slow paths are global functions for the same reason as sl_ct_advance(): the verifier
 * walks the XDP program once per header layout (VLAN tags, IP version, options), and
 * inlined, their branches would be walked that many times over. Global functions cannot
 * take the parsed packet (its spilled packet pointers would be clobbered): they take the
 * program's context and a struct sl_tcp_seg instead. `s` is read in full here.
 */
__noinline __u32 sl_ct_step(const struct sl_flow_key *k, struct sl_ct_entry *e, __u32 dir,
			    const struct sl_tcp_seg *s)
{
	__u8 old;
	__u64 now;
	__u32 act;

	if (!k || !e || !s)
		return 0;
	old = e->state;
	now = sl_ct_clock(old, s->flags);
	act = sl_ct_advance(e, dir, s, now);
	if (act & SL_CT_ACT_REUSE)
		return act; /* the entry is deleted: no need to count this packet on it */
	sl_ct_account(e, dir, s->len);
	if (act & SL_CT_ACT_HS_RETRANS)
		sl_ct_stat(SL_CT_STAT_HS_RETRANS);
	if (e->state != old)
		sl_ct_count_transition(old, e->state);
	if (act & SL_CT_ACT_RELEASE)
		sl_ct_release(e);
	if (act & SL_CT_ACT_EVENT)
		sl_ct_emit(k, e, act & SL_CT_ACT_EVENT, old, now);
	return act;
}

/*
 * Breaks off the open flow `k` (entry `e`, SYN_SENT ... LAST_ACK) of a backend that is down
 * with SL_BACKEND_F_RESET, on the client segment `s`: the segment is counted on the flow, the
 * flow goes to CLOSED, its live count is released, the SL_CT_EV_BACKEND_RESET event carries
 * its totals, and the entry is deleted, so that the tuple's next packet is a miss. Returns
 * 1 if the client is to be answered with a RST, 0 if the segment is itself a RST.
 * Two CPUs may reset the same flow at once: both answer their packet, but only the one whose
 * exchange releases the count reports the transition. Everything is done before the delete:
 * a deleted element of a preallocated hash goes back to the free list at once, and another
 * CPU's new flow may take it over.
 * A global function, like the other slow paths; inlined into sl_ct_client() it would grow
 * that frame past the program's 512-byte combined stack bound.
 */
__noinline int sl_ct_backend_reset(const struct sl_flow_key *k, struct sl_ct_entry *e,
				   const struct sl_tcp_seg *s)
{
	__u8 old;

	if (!k || !e || !s)
		return 0;
	old = e->state;

	sl_ct_account(e, SL_DIR_CLIENT, s->len);
	e->state = SL_TCP_CLOSED;
	if (sl_ct_release(e)) {
		sl_ct_count_transition(old, SL_TCP_CLOSED);
		sl_ct_emit(k, e, SL_CT_EV_BACKEND_RESET, old, sl_now_ns);
	}
	bpf_map_delete_elem(&conntrack, k);
	return !(s->flags & TCP_FLAG_RST);
}

/* sl_ct_create() results. */
#define SL_CT_CREATE_NONE 0 /* no entry made: a RST of no flow, or another CPU's insert won */
#define SL_CT_CREATE_NEW 1  /* this call created the entry: a new connection */
#define SL_CT_CREATE_FULL 2 /* the table refused the insert: the flow is not tracked */

/*
 * Creates the entry for the first client -> VIP segment `s` of a connection. `e` comes with
 * backend_id, vip_id and flags (SL_CT_F_ONE_SIDED, SL_CT_F_REUSED) set, the rest zero; `old`
 * is NONE, or the state of the finished entry this one replaces. The backend count is taken
 * before the insert, so that a concurrent release can never see it at 0, and given back if
 * the insert fails. Returns SL_CT_CREATE_*. The insert's errors are told apart:
 *  - -EEXIST: another CPU created the flow first (SL_CT_STAT_INSERT_RACE). With a consistent
 *    pick it chose the same backend; its entry is the flow's from the next packet on;
 *  - anything else: the table refused it. -E2BIG is a full preallocated hash (no free
 *    element), -ENOMEM the same without preallocation; -EBUSY (the bucket lock is held by
 *    this CPU, an NMI-context program) cannot be retried here either. The caller applies
 *    the full-table policy (lb.h, sl_ct_client()).
 */
__noinline int sl_ct_create(const struct sl_flow_key *k, struct sl_ct_entry *e,
			    const struct sl_tcp_seg *s, __u32 old)
{
	__u64 now, *c;
	__u32 act, id;
	long err;

	if (!k || !e || !s)
		return SL_CT_CREATE_NONE;
	now = (s->flags & TCP_FLAG_SYN) ? bpf_ktime_get_ns() : sl_now_ns;
	act = sl_ct_advance(e, SL_DIR_CLIENT, s, now);
	if (act & SL_CT_ACT_NO_ENTRY)
		return SL_CT_CREATE_NONE;
	e->first_seen_ns = sl_now_ns; /* coarse: the agent ages entries on this clock */
	sl_ct_account(e, SL_DIR_CLIENT, s->len);
	id = e->backend_id;
	c = bpf_map_lookup_elem(&backend_conns, &id);
	if (c) {
		e->live = 1;
		__sync_fetch_and_add(c, 1);
	}
	err = bpf_map_update_elem(&conntrack, k, e, BPF_NOEXIST);
	if (err) {
		if (c)
			__sync_fetch_and_add(c, -1);
		if (err == -EEXIST) {
			sl_ct_stat(SL_CT_STAT_INSERT_RACE);
			return SL_CT_CREATE_NONE;
		}
		return SL_CT_CREATE_FULL;
	}
	if (old != SL_TCP_NONE)
		sl_ct_stat(SL_CT_STAT_REUSED);
	sl_ct_count_transition(old, e->state);
	sl_ct_emit(k, e, SL_CT_EV_NEW, old, now);
	return SL_CT_CREATE_NEW;
}

/*
 * A NAT reply, backend -> client, sent by `from` (the rev_nat key that matched: port 0 for a
 * port-0 backend) and reverse-NATed with `r`. Its entry is found by the key the client used:
 * {client = the reply's destination, VIP address, client port, VIP port (a wildcard VIP: the
 * reply's source port)}. Only the entry's own backend may move its state: a late segment of
 * an earlier connection on a reused tuple, now served by another backend, must not. Replies
 * never create entries.
 * All of it is a global function, key and fast path included: the reply path is reached by
 * many verifier states (header layouts times FIB outcomes), and every instruction inlined
 * there is walked once per state. It reads what it needs from the packet itself (a call costs
 * ~2 ns; the FIB lookup of every reply, ~150).
 */
__noinline __u32 sl_ct_reply_track(struct xdp_md *ctx, const struct sl_endpoint *from,
				   const struct sl_rev_nat *r, struct sl_tcp_seg *s)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct sl_flow_key k = {};
	struct sl_backend *be;
	struct sl_ct_entry *e;
	struct tcphdr *th;
	__u32 id, off;

	if (!from || !r || !s)
		return 0;
	/* The bounds let the verifier add the offsets to a packet pointer. */
	off = s->l4_off;
	if (!off || off > 0x3ff)
		return 0;
	th = data + off;
	if ((void *)(th + 1) > end)
		return 0;
	off = s->l3_off;
	if (off > 0x3ff)
		return 0;
	if (from->family == SL_AF_INET) {
		struct iphdr *iph = data + off;

		if ((void *)(iph + 1) > end)
			return 0;
		k.src.w[0] = iph->daddr;
	} else {
		struct ipv6hdr *ip6 = data + off;

		if ((void *)(ip6 + 1) > end)
			return 0;
		__builtin_memcpy(&k.src, &ip6->daddr, sizeof(k.src));
	}
	k.dst = r->vip.addr;
	k.sport = th->dest;
	k.dport = r->vip.port ? r->vip.port : th->source;
	k.proto = IPPROTO_TCP;
	k.family = from->family;

	e = bpf_map_lookup_elem(&conntrack, &k);
	if (!e) {
		sl_ct_stat(SL_CT_STAT_REPLY_NO_ENTRY);
		return 0;
	}
	if (likely(e->state == SL_TCP_ESTABLISHED &&
		   !(s->flags & (TCP_FLAG_SYN | TCP_FLAG_FIN | TCP_FLAG_RST)))) {
		sl_ct_account(e, SL_DIR_BACKEND, s->len);
		return 0;
	}
	id = e->backend_id;
	be = bpf_map_lookup_elem(&backends, &id);
	if (!be || be->ep.port != from->port || be->ep.addr.w[0] != from->addr.w[0] ||
	    be->ep.addr.w[1] != from->addr.w[1] || be->ep.addr.w[2] != from->addr.w[2] ||
	    be->ep.addr.w[3] != from->addr.w[3]) {
		sl_ct_stat(SL_CT_STAT_REPLY_OTHER_BACKEND);
		return 0;
	}
	if (sl_tcp_seg_read(ctx, s))
		return 0;
	return sl_ct_step(&k, e, SL_DIR_BACKEND, s);
}

/* A NAT TCP reply, backend -> client: see sl_ct_reply_track(). */
static __always_inline void sl_ct_reply(struct xdp_md *ctx, const struct sl_pkt *p,
					const struct sl_endpoint *from, const struct sl_rev_nat *r)
{
	struct sl_tcp_seg s = {};

	sl_tcp_seg_init(&s, ctx, p);
	sl_ct_reply_track(ctx, from, r, &s);
}

#endif /* SLUICE_BPF_VIP_CONNTRACK_H */
