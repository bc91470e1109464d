/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The VIP conntrack tables of xdp_lb (keyed by the client -> VIP 5-tuple) around the shared
 * state machine of conntrack.h: the per-packet fast path, the slow path with its side effects
 * (live backend counts in `backend_conns`, records on `ct_events`, the `ct_transitions` and
 * `ct_stats` counters), entry creation and the NAT reply direction.
 * Two tables. A flow is born in `ct_pending` (an LRU: expendable, holds no live count) and
 * moves to `conntrack` (a preallocated hash: never evicts, holds the count) once it shows
 * evidence a blind sender cannot forge; it moves back when it finishes (TIME_WAIT, CLOSED).
 * An entry idle past its timeout is treated as absent by the packet that finds it, and
 * reclaimed there: the tables stay sound with no agent. The contract with the agent is in
 * abi.h, at struct sl_ct_entry; the policies in docs/design.md, "Trust no packet".
 */
#ifndef SLUICE_BPF_VIP_CONNTRACK_H
#define SLUICE_BPF_VIP_CONNTRACK_H

#include "common.h"
#include "reasons.h"
#include "maps.h"
#include "conntrack.h"
#include "clock.h"

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

/* The idle timeout of an entry in `state`, ns (sl_ct_timeout_s(), abi.h); 0: never expired
 * by the data path. The agent publishes the timeouts in `info`; an array lookup, inlined. */
static __always_inline __u64 sl_ct_timeout_ns(__u8 state, int pending)
{
	__u32 k = 0;
	struct sl_info *in = bpf_map_lookup_elem(&info, &k);

	if (!in)
		return 0;
	return sl_ct_timeout_s(in->ct_timeout_s[state & (SL_CT_STATE_SLOTS - 1)],
			       in->ct_timeout_s[SL_CT_TIMEOUT_UNCONFIRMED], state, pending) *
	       1000000000ull;
}

static __always_inline int sl_ct_expired(const struct sl_ct_entry *e, int pending, __u64 now)
{
	__u64 t = sl_ct_timeout_ns(e->state, pending);

	return t && now > e->last_seen_ns && now - e->last_seen_ns > t;
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
	/* A one-sided flow's place in its budget (sl_ct_confirm()) goes with its count. */
	id = 0;
	if ((e->flags & SL_CT_F_ONE_SIDED) && (c = bpf_map_lookup_elem(&ct_one_sided, &id)) &&
	    __sync_fetch_and_add(c, -1) == 0)
		__sync_fetch_and_add(c, 1);
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
 * The client fast path is the one exception: it pays that check inline (sl_ct_fast_track()),
 * in the room sl_l3_opaque() made, because a call costs more than the check.
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

/* Reads the sequence numbers of segment `s` from the packet, and a SYN's window scale. -1 if
 * there is no TCP header. */
static __always_inline int sl_tcp_seg_read(struct xdp_md *ctx, struct sl_tcp_seg *s)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct sl_tcp_opts *o;
	__u32 len, zero = 0;

	if (sl_tcp_seg_read_at(data, end, s))
		return -1;
	if (!(s->flags & TCP_FLAG_SYN))
		return 0;
	len = sl_tcp_opts_len(data, end, s);
	o = bpf_map_lookup_elem(&opt_scratch, &zero);
	if (o && len && len <= sizeof(*o) &&
	    !bpf_xdp_load_bytes(ctx, s->l4_off + sizeof(struct tcphdr), o, len))
		s->wscale = sl_tcp_opt_wscale(o, len);
	return 0;
}

static __always_inline void sl_ct_account(struct sl_ct_entry *e, __u32 dir, __u32 len, __u64 now)
{
	e->last_seen_ns = now;
	e->packets[dir & 1]++;
	e->bytes[dir & 1] += len;
}

/*
 * The part of the client fast path that reads the packet: the flow is not idle past its
 * timeout and the segment, an ACK, lies inside its windows. Then the windows and counters move,
 * and 1 is returned; 0 leaves everything to the slow path (which drops what is out of window,
 * counted). Inlined: on this path a call and its return cost ~8 ns where returns go through
 * a mitigation thunk (AMD SRSO "safe RET"), and the verifier can afford it since xdp_lb walks
 * one L2 layout, not three (sl_l3_opaque()). After the handshake every segment carries an
 * ACK (RFC 9293 3.10.7.4), so the flags the window check sees are a constant and the compiler
 * folds away its SYN and no-ACK branches; a segment without ACK takes the slow path.
 */
static __always_inline int sl_ct_fast_track(struct sl_ct_entry *ct, struct xdp_md *ctx,
					    const struct sl_pkt *p)
{
	void *end = (void *)(long)ctx->data_end;
	struct tcphdr *th = p->l4;
	struct sl_tcp_seg s;
	__u64 now;

	if (!th || (void *)(th + 1) > end || !(p->tcp_flags & TCP_FLAG_ACK))
		return 0;
	now = sl_clock_ns();
	if (sl_ct_established_ns && now > ct->last_seen_ns &&
	    now - ct->last_seen_ns > sl_ct_established_ns)
		return 0; /* the slow path reclaims it */
	s.flags = TCP_FLAG_ACK;
	s.seq = bpf_ntohl(th->seq);
	s.ack_seq = bpf_ntohl(th->ack_seq);
	s.win = bpf_ntohs(th->window);
	s.end_seq = s.seq + (p->l4_len - th->doff * 4);
	if (sl_ct_track_window(ct, SL_DIR_CLIENT, &s))
		return 0;
	sl_ct_account(ct, SL_DIR_CLIENT, p->len, now);
	return 1;
}

/*
 * The client direction's fast path: a segment of a confirmed established flow without SYN,
 * FIN or RST, whose backend is in use and does not reset its flows, not idle past its
 * timeout and inside the windows (sl_ct_fast_track()). The backend entry is read here anyway
 * (its address is the NAT target, its id the next hop's key), so SL_BACKEND_F_RESET costs no
 * extra load: one mask-and-compare tests "in use" and "not resetting" together. Returns the
 * backend, with its id in *id, if it took the packet; NULL if sl_ct_client() must.
 */
static __always_inline struct sl_backend *sl_ct_fast(struct sl_ct_entry *ct, struct xdp_md *ctx,
						     const struct sl_pkt *p, __u32 *id)
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
	if (!sl_ct_fast_track(ct, ctx, p))
		return NULL;
	*id = bid;
	return be;
}

/* Handshake segments get the precise clock (RTTs); the rest the coarse one. */
static __always_inline __u64 sl_ct_clock(__u8 state, __u8 tcp_flags)
{
	if (state < SL_TCP_ESTABLISHED || (tcp_flags & TCP_FLAG_SYN))
		return bpf_ktime_get_ns();
	return sl_clock_ns();
}

/*
 * Moves a flow that has shown it is not a spoofer's from ct_pending to conntrack, where it
 * holds a backend_conns count and is never evicted. The pending value itself is inserted (a
 * map value is a valid source), with live set for the insert and cleared again if it fails:
 * no 136-byte copy on a stack that the call chain shares. When conntrack is full the flow
 * stays in ct_pending, uncounted and expendable (SL_CT_STAT_CONFIRM_FULL); -EEXIST means
 * another CPU moved it first. A one-sided flow stays there too once one-sided flows hold
 * their budget of conntrack (SL_CT_STAT_ONE_SIDED_BUDGET; their count is `ct_one_sided`).
 */
__noinline int sl_ct_confirm(const struct sl_flow_key *k, struct sl_ct_entry *e)
{
	__u64 *c, *os = NULL, max;
	struct sl_info *in;
	__u32 id = 0;
	long err;

	if (!k || !e)
		return 0;
	/* One-sided flows hold at most ct_one_sided_max entries: a blind sender confirms one
	 * with two packets (SYN, then ACK of its own ISN + 1) and must not fill the table every
	 * VIP's flows confirm into. Past the budget the flow waits in ct_pending as when the
	 * table is full. The place is taken before the insert, and given back if it fails. */
	if (e->flags & SL_CT_F_ONE_SIDED) {
		in = bpf_map_lookup_elem(&info, &id);
		max = in && in->ct_one_sided_max ? in->ct_one_sided_max : ~0ull;
		os = bpf_map_lookup_elem(&ct_one_sided, &id);
		if (os && __sync_fetch_and_add(os, 1) >= max) {
			__sync_fetch_and_add(os, -1);
			sl_ct_stat(SL_CT_STAT_ONE_SIDED_BUDGET);
			return 0;
		}
	}
	id = e->backend_id;
	c = bpf_map_lookup_elem(&backend_conns, &id);
	if (c) {
		e->live = 1;
		__sync_fetch_and_add(c, 1);
	} else if (os) { /* no live count: nothing would give the place back */
		__sync_fetch_and_add(os, -1);
		os = NULL;
	}
	err = bpf_map_update_elem(&conntrack, k, e, BPF_NOEXIST);
	if (err) {
		if (c)
			__sync_fetch_and_add(c, -1);
		if (os)
			__sync_fetch_and_add(os, -1);
		e->live = 0;
		if (err != -EEXIST)
			sl_ct_stat(SL_CT_STAT_CONFIRM_FULL);
		return 0;
	}
	bpf_map_delete_elem(&ct_pending, k);
	sl_ct_stat(SL_CT_STAT_CONFIRMED);
	return 1;
}

/* Moves a finished flow (TIME_WAIT, CLOSED; its count already released) from conntrack to
 * ct_pending, where late segments still find it and its backend, and where it is the first
 * to go when a new flow needs the room: honest churn never fills conntrack. */
__noinline int sl_ct_retire(const struct sl_flow_key *k, struct sl_ct_entry *e)
{
	if (!k || !e)
		return 0;
	bpf_map_update_elem(&ct_pending, k, e, BPF_ANY);
	bpf_map_delete_elem(&conntrack, k);
	return 1;
}

/* An entry found idle past its timeout: as if it were not there. Its count is given back
 * and it is deleted from its table. */
static __always_inline void sl_ct_reclaim(const struct sl_flow_key *k, struct sl_ct_entry *e,
					  int pending)
{
	sl_ct_stat(SL_CT_STAT_EXPIRED_ON_LOOKUP);
	if (pending) {
		bpf_map_delete_elem(&ct_pending, k);
		return;
	}
	sl_ct_release(e);
	bpf_map_delete_elem(&conntrack, k);
}

/*
 * The slow path for a segment `s` of tracked flow `k` (entry `e`, in ct_pending if `pending`),
 * direction `dir`: run the machine, then the side effects (counters, transition, backend
 * count, event) and the move between tables (sl_ct_confirm(), sl_ct_retire()): after it, `e`
 * may be gone, so callers read what they need of it first. Returns SL_CT_ACT_*: on
 * SL_CT_ACT_REUSE the machine changed nothing and the caller starts a new connection; on
 * SL_CT_ACT_DROP the segment is out of window, uncounted on the flow.
 * The slow paths are global functions for the same reason as sl_ct_advance(): the verifier
 * walks the XDP program once per header layout (VLAN tags, IP version, options), and
 * inlined, their branches would be walked that many times over. Global functions cannot
 * take the parsed packet (its spilled packet pointers would be clobbered): they take the
 * program's context and a struct sl_tcp_seg instead. `s` is read in full here.
 */
__noinline __u32 sl_ct_step(const struct sl_flow_key *k, struct sl_ct_entry *e, __u32 dir,
			    const struct sl_tcp_seg *s, int pending)
{
	__u8 old;
	__u64 now;
	__u32 act;

	if (!k || !e || !s)
		return 0;
	old = e->state;
	now = sl_ct_clock(old, s->flags);
	act = sl_ct_advance(e, dir, s, now);
	if (act >> 16)
		sl_ct_stat(SL_CT_ACT_STAT_OF(act));
	/* Not this entry's to count (a reuse, an out-of-window segment), or nothing that proves
	 * the flow alive (a SYN sent to a live or finished flow, a RST left to the endpoint's
	 * challenge): none of them refresh the entry, so a blind sender cannot keep one alive. */
	if (act & (SL_CT_ACT_REUSE | SL_CT_ACT_DROP | SL_CT_ACT_IGNORED))
		return act;
	sl_ct_account(e, dir, s->len, sl_clock_ns());
	if (act & SL_CT_ACT_HS_RETRANS)
		sl_ct_stat(SL_CT_STAT_HS_RETRANS);
	if (e->state != old)
		sl_ct_count_transition(old, e->state);
	if (act & SL_CT_ACT_RELEASE)
		sl_ct_release(e);
	if (act & SL_CT_ACT_EVENT)
		sl_ct_emit(k, e, act & SL_CT_ACT_EVENT, old, now);
	if ((act & SL_CT_ACT_CONFIRM) && pending && e->state < SL_TCP_TIME_WAIT)
		sl_ct_confirm(k, e);
	else if ((act & SL_CT_ACT_RELEASE) && !pending)
		sl_ct_retire(k, e);
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
				   const struct sl_tcp_seg *s, int pending)
{
	__u64 now = sl_clock_ns();
	__u8 old;

	if (!k || !e || !s)
		return 0;
	old = e->state;

	sl_ct_account(e, SL_DIR_CLIENT, s->len, now);
	e->state = SL_TCP_CLOSED;
	/* A pending flow holds no count: its transition is reported all the same. */
	if (sl_ct_release(e) || pending) {
		sl_ct_count_transition(old, SL_TCP_CLOSED);
		sl_ct_emit(k, e, SL_CT_EV_BACKEND_RESET, old, now);
	}
	bpf_map_delete_elem(pending ? (void *)&ct_pending : (void *)&conntrack, k);
	return !(s->flags & TCP_FLAG_RST);
}

/*
 * Creates the entry for the first client -> VIP segment `s` of a connection, in ct_pending:
 * nothing a blind sender can do creates anything elsewhere. `e` comes with backend_id,
 * vip_id and flags (SL_CT_F_ONE_SIDED, SL_CT_F_REUSED) set, the rest zero; `old` is NONE, or
 * the state of the finished entry this one replaces. The LRU makes room by evicting the least
 * recently used pending entry (a flood's, a finished flow's): an honest SYN always gets a
 * place, and the entry holds no count, so nothing leaks when it is evicted in turn. Returns
 * an enum sl_ct_create_result (reasons.h); of the insert's errors:
 *  - -EEXIST: another CPU created the flow first (SL_CT_STAT_INSERT_RACE): NONE. With a
 *    consistent pick it chose the same backend; its entry is the flow's from the next packet;
 *  - anything else (-ENOMEM: the LRU found nothing to evict on this CPU's lists; -EBUSY):
 *    FULL, and the caller forwards the flow untracked, or refuses a stateful VIP's SYN (lb.h).
 */
__noinline int sl_ct_create(const struct sl_flow_key *k, struct sl_ct_entry *e,
			    const struct sl_tcp_seg *s, __u32 old)
{
	__u64 now;
	__u32 act;
	long err;

	if (!k || !e || !s)
		return SL_CT_CREATE_NONE;
	now = (s->flags & TCP_FLAG_SYN) ? bpf_ktime_get_ns() : sl_clock_ns();
	act = sl_ct_advance(e, SL_DIR_CLIENT, s, now);
	if (act & SL_CT_ACT_NO_ENTRY)
		return SL_CT_CREATE_NONE;
	e->first_seen_ns = sl_clock_ns();
	sl_ct_account(e, SL_DIR_CLIENT, s->len, e->first_seen_ns);
	err = bpf_map_update_elem(&ct_pending, k, e, BPF_NOEXIST);
	if (err) {
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

/* Looks flow `k` up: conntrack first (confirmed flows: the fast path's), then ct_pending.
 * *pending says where it was found. */
static __always_inline struct sl_ct_entry *sl_ct_lookup_any(const struct sl_flow_key *k,
							    int *pending)
{
	struct sl_ct_entry *e = bpf_map_lookup_elem(&conntrack, k);

	*pending = 0;
	if (e)
		return e;
	*pending = 1;
	return bpf_map_lookup_elem(&ct_pending, k);
}

/*
 * A NAT TCP reply, backend -> client, sent by `from` (the rev_nat key that matched: port 0 for
 * a port-0 backend), which rev_nat entry `r` says is backend r->backend_id. Its entry is found
 * by the key the client used: {client = the reply's destination, VIP address, client port,
 * VIP port (a wildcard VIP: the reply's source port)}. Only a flow whose entry names this
 * very backend is ours to rewrite: anything else from a backend's endpoint (its own outbound
 * connections, a late segment of an earlier connection on a reused tuple now served by
 * another backend, a packet forged with a backend's source) is left to the kernel untouched,
 * so nothing leaves carrying the VIP's address that sluice did not translate. Replies never
 * create entries. Returns an enum sl_reply_verdict (reasons.h).
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
	__u32 off, act, id;
	int pending;
	__u64 now;

	if (!from || !r || !s)
		return SL_REPLY_NOT_OURS;
	/* The bounds let the verifier add the offsets to a packet pointer. */
	off = s->l4_off;
	if (!off || off > 0x3ff)
		return SL_REPLY_NOT_OURS;
	th = data + off;
	if ((void *)(th + 1) > end)
		return SL_REPLY_NOT_OURS;
	off = s->l3_off;
	if (off > 0x3ff)
		return SL_REPLY_NOT_OURS;
	if (from->family == SL_AF_INET) {
		struct iphdr *iph = data + off;

		if ((void *)(iph + 1) > end)
			return SL_REPLY_NOT_OURS;
		k.src.w[0] = iph->daddr;
	} else {
		struct ipv6hdr *ip6 = data + off;

		if ((void *)(ip6 + 1) > end)
			return SL_REPLY_NOT_OURS;
		__builtin_memcpy(&k.src, &ip6->daddr, sizeof(k.src));
	}
	k.dst = r->vip.addr;
	k.sport = th->dest;
	k.dport = r->vip.port ? r->vip.port : th->source;
	k.proto = IPPROTO_TCP;
	k.family = from->family;

	e = sl_ct_lookup_any(&k, &pending);
	if (!e) {
		sl_ct_stat(SL_CT_STAT_REPLY_NO_ENTRY);
		return SL_REPLY_NOT_OURS;
	}
	/* By endpoint, not by id: a rebuilt VIP, or a backend removed and added back while its
	 * flows drain, gives the same endpoint a new id, and the flows on the old id are still
	 * this backend's. */
	id = e->backend_id;
	be = bpf_map_lookup_elem(&backends, &id);
	if (!be || be->ep.port != from->port || be->ep.addr.w[0] != from->addr.w[0] ||
	    be->ep.addr.w[1] != from->addr.w[1] || be->ep.addr.w[2] != from->addr.w[2] ||
	    be->ep.addr.w[3] != from->addr.w[3]) {
		sl_ct_stat(SL_CT_STAT_REPLY_OTHER_BACKEND);
		return SL_REPLY_NOT_OURS;
	}
	now = sl_clock_ns();
	if (sl_ct_expired(e, pending, now)) {
		sl_ct_reclaim(&k, e, pending);
		return SL_REPLY_NOT_OURS;
	}
	if (sl_tcp_seg_read(ctx, s))
		return SL_REPLY_NOT_OURS;
	if (likely(!pending && e->state == SL_TCP_ESTABLISHED &&
		   !(s->flags & (TCP_FLAG_SYN | TCP_FLAG_FIN | TCP_FLAG_RST)))) {
		if (sl_ct_track_window(e, SL_DIR_BACKEND, s))
			goto slow; /* counted and dropped there */
		sl_ct_account(e, SL_DIR_BACKEND, s->len, now);
		return SL_REPLY_OURS;
	}
slow:
	act = sl_ct_step(&k, e, SL_DIR_BACKEND, s, pending);
	return (act & SL_CT_ACT_DROP) ? SL_REPLY_DROP : SL_REPLY_OURS;
}

/* A NAT TCP reply, backend -> client: see sl_ct_reply_track(). An enum sl_reply_verdict. */
static __always_inline __u32 sl_ct_reply(struct xdp_md *ctx, const struct sl_pkt *p,
					 const struct sl_endpoint *from, const struct sl_rev_nat *r)
{
	struct sl_tcp_seg s = {};

	sl_tcp_seg_init(&s, ctx, p);
	return sl_ct_reply_track(ctx, from, r, &s);
}

#endif /* SLUICE_BPF_VIP_CONNTRACK_H */
