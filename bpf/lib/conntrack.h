/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * TCP state tracking. One state machine, sl_ct_advance(), a pure function of
 * (entry, direction, segment, clock) that touches nothing but the entry, so that the XDP load
 * balancer (VIP flows, bpf/xdp_lb.bpf.c, through vip_conntrack.h) and the TC programs (the
 * host's own flows, bpf/tc_flow.bpf.c) share it. This header defines no map: an object that
 * includes it gets none of the load balancer's.
 *
 * The states, the transitions and every policy choice (retransmits, simultaneous open and
 * close, reuse, one-sided inference for dsr, out-of-order FIN/ACK) are tabled in
 * docs/design.md, "TCP state machine". Every segment is first checked against the flow's
 * sequence windows, as nf_conntrack's tcp_in_window() does (docs/design.md, "Trust no
 * packet"): a sender that cannot see the flow's packets cannot guess them, so a RST, FIN,
 * SYN or data segment outside them changes nothing and is dropped.
 */
#ifndef SLUICE_BPF_CONNTRACK_H
#define SLUICE_BPF_CONNTRACK_H

#include "common.h"
#include "reasons.h"

/* Index of sl_ct_entry.packets[] / bytes[] and of SL_CT_SEEN_*(dir). */
#define SL_DIR_CLIENT 0	 /* client -> VIP; for host flows: the side that opened */
#define SL_DIR_BACKEND 1 /* backend -> client (NAT replies); for host flows: the other side */

/*
 * What the state machine needs from a TCP segment. Host byte order. The caller fills len,
 * flags and where the header is, from what the parser learned; the sequence numbers are read
 * by sl_tcp_seg_read_at() only when the machine runs (never on the established fast path).
 */
struct sl_tcp_seg {
	__u32 seq;
	__u32 ack_seq;
	__u32 end_seq; /* seq + payload + SYN + FIN: the ACK number that covers the whole segment */
	__u32 len;     /* the whole frame, bytes (for the entry's byte counters) */
	__u16 l4_off; /* TCP header offset from the start of the frame; 0 = none (later fragment) */
	__u16 l4_len; /* TCP header + payload, bytes */
	__u16 l3_off; /* IP header offset from the start of the frame */
	__u16 win;    /* the window field, unscaled */
	__u8 flags;   /* byte 13 of the TCP header */
	__u8 wscale;  /* a SYN's window-scale option (capped at 14); SL_TCP_NO_WSCALE if none */
};

#define SL_TCP_NO_WSCALE 0xffu
/* tcp_in_window()'s floor for how far back an ACK may lag (MAXACKWINDOW). */
#define SL_CT_MAXACKWIN_MIN 66000u

/* sl_ct_advance() returns a set of enum sl_ct_act bits (reasons.h). */

#define TCP_FLAG_SYN_ACK (TCP_FLAG_SYN | TCP_FLAG_ACK)

/* RFC 1982 serial arithmetic: sequence numbers wrap. */
static __always_inline int sl_seq_after_eq(__u32 a, __u32 b)
{
	return (__s32)(a - b) >= 0;
}

static __always_inline int sl_seq_after(__u32 a, __u32 b)
{
	return (__s32)(a - b) > 0;
}

/*
 * Windows. Direction d's struct sl_ct_seq says what d sent (end), how far the peer lets it
 * send (maxend), the largest window d advertised (maxwin) and the highest ACK d sent.
 */

/* Starts direction q's sequence space from its SYN (or SYN+ACK): a SYN's window is never
 * scaled. */
static __always_inline void sl_ct_seq_syn(struct sl_ct_seq *q, const struct sl_tcp_seg *s)
{
	q->end = s->end_seq;
	q->maxend = s->end_seq;
	q->maxwin = s->win ? s->win : 1;
	q->maxack = 0;
	q->scale = s->wscale == SL_TCP_NO_WSCALE ? 0 : s->wscale;
	q->flags = SL_CT_SEQ_KNOWN | (s->wscale == SL_TCP_NO_WSCALE ? 0 : SL_CT_SEQ_SCALE);
	q->pad = 0;
}

/* Starts direction q's sequence space from a segment seen mid-stream: its window scale is
 * unknown, so the windows are tracked but not enforced (nf_conntrack does the same). */
static __always_inline void sl_ct_seq_midstream(struct sl_ct_seq *q, const struct sl_tcp_seg *s)
{
	q->end = s->end_seq;
	q->maxwin = s->win ? s->win : 1;
	q->maxend = s->end_seq + q->maxwin;
	q->maxack = s->ack_seq;
	q->scale = 0;
	q->flags = SL_CT_SEQ_KNOWN | SL_CT_SEQ_LIBERAL |
		   ((s->flags & TCP_FLAG_ACK) ? SL_CT_SEQ_MAXACK : 0);
	q->pad = 0;
}

/* The ACK number a segment stands for: one without ACK (or a RST with a zero ACK, which
 * broken stacks send) is taken to acknowledge everything the peer sent, as nf_conntrack
 * does. */
static __always_inline __u32 sl_ct_seg_ack(const struct sl_ct_seq *peer, const struct sl_tcp_seg *s)
{
	if (!(s->flags & TCP_FLAG_ACK) || ((s->flags & TCP_FLAG_RST) && !s->ack_seq))
		return peer->end;
	return s->ack_seq;
}

/*
 * 1 if segment s, sent by `snd` to `peer`, lies inside the windows. With the peer known
 * (both directions seen: nat), tcp_in_window()'s four tests: the segment starts no further
 * than the peer allowed (I) and ends no further back than the peer's largest window (II); its
 * ACK acknowledges nothing the peer did not send (III) and lags by at most the sender's
 * largest window (IV). With the peer never seen (dsr, or a handshake's first segment), only
 * closeness to what the sender sent: SL_CT_ONE_SIDED_WIN either way. A sender picked up
 * mid-stream (window scale unknown) passes.
 */
static __always_inline int sl_ct_in_window(const struct sl_ct_seq *snd,
					   const struct sl_ct_seq *peer, const struct sl_tcp_seg *s,
					   __u32 ack)
{
	__u32 maxackwin;

	if ((snd->flags | peer->flags) & (SL_CT_SEQ_LIBERAL | SL_CT_SEQ_OBSERVE))
		return 1;
	if (!(peer->flags & SL_CT_SEQ_KNOWN))
		return sl_seq_after_eq(snd->end + SL_CT_ONE_SIDED_WIN, s->seq) &&
		       sl_seq_after_eq(s->end_seq, snd->end - SL_CT_ONE_SIDED_WIN);
	maxackwin = snd->maxwin > SL_CT_MAXACKWIN_MIN ? snd->maxwin : SL_CT_MAXACKWIN_MIN;
	return sl_seq_after_eq(snd->maxend, s->seq) &&
	       sl_seq_after(s->end_seq, snd->end - peer->maxwin - 1) &&
	       sl_seq_after_eq(peer->end, ack) && sl_seq_after(ack, peer->end - maxackwin - 1);
}

/* Moves the windows by an accepted segment (tcp_in_window()'s updates). */
static __always_inline void sl_ct_window_update(struct sl_ct_seq *snd, struct sl_ct_seq *peer,
						const struct sl_tcp_seg *s, __u32 ack)
{
	__u32 swin = s->flags & TCP_FLAG_SYN ? s->win : (__u32)s->win << (snd->scale & 15);

	if (snd->maxwin < swin)
		snd->maxwin = swin;
	if (sl_seq_after(s->end_seq, snd->end))
		snd->end = s->end_seq;
	if (!(s->flags & TCP_FLAG_ACK))
		return;
	if (!(snd->flags & SL_CT_SEQ_MAXACK) || sl_seq_after(ack, snd->maxack)) {
		snd->maxack = ack;
		snd->flags |= SL_CT_SEQ_MAXACK;
	}
	if (!(peer->flags & SL_CT_SEQ_KNOWN))
		return;
	if (sl_seq_after(s->end_seq, snd->maxend))
		peer->maxwin += s->end_seq - snd->maxend;
	if (sl_seq_after(ack + swin, peer->maxend - 1))
		peer->maxend = ack + swin + !swin;
}

/*
 * The window check of a segment that is neither SYN nor RST, in direction dir: 0 and the
 * windows moved if it is inside them, -1 (nothing changed) if not. The side that sends its
 * first segment without a SYN (a backend's reply to a mid-stream pickup) starts its space
 * here. The established fast paths call this too: one rule for every path.
 */
static __always_inline int sl_ct_track_window(struct sl_ct_entry *e, __u32 dir,
					      const struct sl_tcp_seg *s)
{
	struct sl_ct_seq *snd = &e->seq[dir & 1], *peer = &e->seq[(dir & 1) ^ 1];
	__u32 ack = sl_ct_seg_ack(peer, s);

	if (!(snd->flags & SL_CT_SEQ_KNOWN)) {
		sl_ct_seq_midstream(snd, s);
		return 0;
	}
	/* The peer never seen (dsr; nat before the SYN+ACK): data and ACKs are not judged here,
	 * the backend sees both sides and does. The sender's sequence moves only with a segment
	 * that continues it (starts at or before it, no further back than the one-sided window):
	 * a blind guess cannot walk it away from the client's, so the exact RST and FIN still
	 * find it. */
	if (!(peer->flags & SL_CT_SEQ_KNOWN) && !(s->flags & (TCP_FLAG_FIN | TCP_FLAG_RST))) {
		if (sl_seq_after_eq(snd->end, s->seq) &&
		    sl_seq_after_eq(s->seq, snd->end - SL_CT_ONE_SIDED_WIN) &&
		    sl_seq_after(s->end_seq, snd->end))
			snd->end = s->end_seq;
		return 0;
	}
	if (!sl_ct_in_window(snd, peer, s, ack))
		return -1;
	sl_ct_window_update(snd, peer, s, ack);
	return 0;
}

/* A handshake interval in ns for a __u32 field: saturated, and never 0 (0 means unknown). */
static __always_inline __u32 sl_ct_interval(__u64 now, __u64 from)
{
	__u64 d = now - from;

	if (!from || now < from)
		return 0;
	if (d > 0xffffffffull)
		return 0xffffffffu;
	return d ? (__u32)d : 1;
}

static __always_inline __u32 sl_ct_establish(struct sl_ct_entry *e, __u64 now, __u64 from)
{
	e->state = SL_TCP_ESTABLISHED;
	e->rtt_ack_ns = sl_ct_interval(now, from);
	return SL_CT_EV_ESTABLISHED;
}

/* Bare SYN or SYN+ACK from the backend while the client's SYN waits for an answer. The first
 * one measures SYN -> SYN+ACK; a retransmission only moves the start of the next interval. */
static __always_inline void sl_ct_backend_syn(struct sl_ct_entry *e, __u64 now)
{
	if (!e->rtt_synack_ns)
		e->rtt_synack_ns = sl_ct_interval(now, e->syn_ns);
	e->synack_ns = now;
}

/*
 * Closing, seen from both sides. Per direction: FIN sent (and the ACK number that covers it),
 * and FIN acknowledged by the peer. The state is a function of those four bits, which only
 * ever get set, so the state only moves forward whatever order the segments arrive in:
 *   no FIN                                  ESTABLISHED
 *   one FIN, not acknowledged               FIN_WAIT
 *   one FIN, acknowledged                   CLOSE_WAIT (the peer may still send)
 *   both FINs, not both acknowledged        LAST_ACK (also FINs that crossed)
 *   both FINs, both acknowledged            TIME_WAIT
 * An ACK acknowledges a FIN only if its ACK number covers the FIN's sequence number: an ACK
 * of earlier data (reordered, or in flight when the FIN was sent) does not.
 */
static __always_inline __u8 sl_ct_close_two_sided(struct sl_ct_entry *e, __u32 dir,
						  const struct sl_tcp_seg *s)
{
	__u32 odir = dir ^ 1;
	__u8 seen = e->seen;
	__u8 fins;

	if ((s->flags & TCP_FLAG_ACK) && (seen & SL_CT_SEEN_FIN(odir)) &&
	    sl_seq_after_eq(s->ack_seq, e->fin_ack_seq[odir & 1]))
		seen |= SL_CT_SEEN_FIN_ACKED(odir);
	/* A retransmitted FIN keeps the first one's sequence number. */
	if ((s->flags & TCP_FLAG_FIN) && !(seen & SL_CT_SEEN_FIN(dir))) {
		seen |= SL_CT_SEEN_FIN(dir);
		e->fin_ack_seq[dir & 1] = s->end_seq;
		if (!(seen & SL_CT_SEEN_FIN(odir))) {
			if (dir == SL_DIR_BACKEND)
				e->flags |= SL_CT_F_CLOSER_BACKEND;
		} else if (!(seen & SL_CT_SEEN_FIN_ACKED(odir))) {
			/* This side closes without having acknowledged the peer's FIN: crossed. */
			e->flags |= SL_CT_F_SIMCLOSE;
		}
	}
	e->seen = seen;
	fins = seen & (SL_CT_SEEN_FIN(0) | SL_CT_SEEN_FIN(1));
	if (!fins)
		return SL_TCP_ESTABLISHED;
	if (fins == (SL_CT_SEEN_FIN(0) | SL_CT_SEEN_FIN(1))) {
		__u8 acked = SL_CT_SEEN_FIN_ACKED(0) | SL_CT_SEEN_FIN_ACKED(1);

		return (seen & acked) == acked ? SL_TCP_TIME_WAIT : SL_TCP_LAST_ACK;
	}
	if (seen & (fins << 2)) /* SEEN_FIN_ACKED(d) == SEEN_FIN(d) << 2 */
		return SL_TCP_CLOSE_WAIT;
	return SL_TCP_FIN_WAIT;
}

/*
 * Closing, seen from the client only (dsr): the backend's FIN and ACKs go straight to the
 * client. Inferred: the client's FIN gives FIN_WAIT; a later client segment that carries an
 * ACK and starts past the FIN (not a retransmission of it) acknowledges something the backend
 * sent after the client closed, taken to be the backend's FIN: TIME_WAIT. A backend that
 * keeps sending after the client's FIN (half-close) is therefore seen as closed early.
 */
static __always_inline __u8 sl_ct_close_one_sided(struct sl_ct_entry *e, const struct sl_tcp_seg *s)
{
	if (s->flags & TCP_FLAG_FIN) {
		if (!(e->seen & SL_CT_SEEN_FIN(0))) {
			e->seen |= SL_CT_SEEN_FIN(0);
			e->fin_ack_seq[0] = s->end_seq;
		}
		return e->state > SL_TCP_FIN_WAIT ? e->state : SL_TCP_FIN_WAIT;
	}
	if (!(e->seen & SL_CT_SEEN_FIN(0)))
		return SL_TCP_ESTABLISHED;
	if ((s->flags & TCP_FLAG_ACK) && sl_seq_after_eq(s->seq, e->fin_ack_seq[0]))
		return SL_TCP_TIME_WAIT;
	return e->state;
}

/*
 * A RST in direction dir. It closes the flow only if its sequence number is exactly the one
 * the receiver expects (the sender's next, or the receiver's last ACK): RFC 5961, 3.2. One
 * inside the window is forwarded unchanged, so that the endpoint answers it with a challenge
 * ACK; one outside is dropped. A RST from a side never seen must be the answer to what the
 * other side sent: a backend refusing the SYN acknowledges it exactly, a backend that does not
 * know a flow picked up mid-stream answers its segment with that segment's ACK number as
 * sequence number (RFC 793).
 */
static __always_inline __u32 sl_ct_rst(struct sl_ct_entry *e, __u32 dir, const struct sl_tcp_seg *s)
{
	struct sl_ct_seq *snd = &e->seq[dir & 1], *peer = &e->seq[(dir & 1) ^ 1];
	__u8 st = e->state;
	int exact;

	if (st == SL_TCP_CLOSED)
		return SL_CT_ACT_IGNORED;
	if ((snd->flags | peer->flags) & SL_CT_SEQ_OBSERVE)
		exact = 1;
	else if (snd->flags & SL_CT_SEQ_KNOWN)
		exact = s->seq == snd->end ||
			((peer->flags & SL_CT_SEQ_MAXACK) && s->seq == peer->maxack);
	else
		exact = ((s->flags & TCP_FLAG_ACK) && (peer->flags & SL_CT_SEQ_KNOWN) &&
			 s->ack_seq == peer->end) ||
			((peer->flags & SL_CT_SEQ_MAXACK) && s->seq == peer->maxack);
	if (!exact) {
		/* A finished flow has nothing left to protect: a RST there (the backend refusing a
		 * SYN that was not a new incarnation here, say) is the endpoints' business. */
		if (st >= SL_TCP_TIME_WAIT)
			return SL_CT_ACT_IGNORED;
		if (!(snd->flags & SL_CT_SEQ_KNOWN) ||
		    !sl_ct_in_window(snd, peer, s, sl_ct_seg_ack(peer, s)))
			return SL_CT_ACT_DROP | SL_CT_ACT_STAT(SL_CT_STAT_OOW_RST);
		return SL_CT_ACT_IGNORED | SL_CT_ACT_STAT(SL_CT_STAT_RST_CHALLENGE);
	}
	e->state = SL_TCP_CLOSED;
	/* From TIME_WAIT (RFC 1337 assassination) the flow was already released and reported
	 * closed by FIN. */
	if (st == SL_TCP_TIME_WAIT)
		return 0;
	return SL_CT_EV_CLOSED_RST | SL_CT_ACT_RELEASE;
}

/* The first segment of a flow, client -> VIP, on an entry in state NONE. */
static __always_inline __u32 sl_ct_first(struct sl_ct_entry *e, const struct sl_tcp_seg *s,
					 __u64 now)
{
	if (s->flags & TCP_FLAG_RST)
		return SL_CT_ACT_NO_ENTRY;
	if ((s->flags & TCP_FLAG_SYN_ACK) == TCP_FLAG_SYN) {
		e->state = SL_TCP_SYN_SENT;
		e->seen = SL_CT_SEEN_SYN(0);
		e->syn_ns = now;
		sl_ct_seq_syn(&e->seq[0], s);
		return SL_CT_EV_NEW;
	}
	/* Any other first segment belongs to a flow that was established before we saw it (its
	 * entry expired while idle, or another LB host had it): no handshake to time, no window
	 * scale known. */
	e->state = SL_TCP_ESTABLISHED;
	e->flags |= SL_CT_F_MIDSTREAM;
	sl_ct_seq_midstream(&e->seq[0], s);
	return SL_CT_EV_NEW;
}

/*
 * A bare SYN from the client on an existing entry. A live flow is never reopened or moved: the
 * SYN goes to its backend, which answers it (a challenge ACK), and nothing changes. A finished
 * one (TIME_WAIT, CLOSED) starts a new incarnation only if the SYN's sequence number is past
 * everything the old connection sent, as Linux's TIME_WAIT does (RFC 6191 without
 * timestamps); a CLOSED flow keeps its backend for it.
 */
static __always_inline __u32 sl_ct_client_syn(struct sl_ct_entry *e, const struct sl_tcp_seg *s,
					      __u64 now)
{
	struct sl_ct_seq *q = &e->seq[0];
	__u8 st = e->state;

	if (st == SL_TCP_TIME_WAIT || st == SL_TCP_CLOSED) {
		if ((q->flags & SL_CT_SEQ_KNOWN) && !sl_seq_after(s->seq, q->end))
			return SL_CT_ACT_IGNORED | SL_CT_ACT_STAT(SL_CT_STAT_REUSE_REFUSED);
		/* One-sided, a TIME_WAIT is only inferred: keep the backend there too. */
		return SL_CT_ACT_REUSE | ((st == SL_TCP_CLOSED || (e->flags & SL_CT_F_ONE_SIDED))
						  ? SL_CT_ACT_SAME_BACKEND
						  : 0);
	}
	/* The same SYN again: the client has not seen an answer yet. */
	if ((st == SL_TCP_SYN_SENT || st == SL_TCP_SYN_RECV) && s->end_seq == q->end &&
	    !(e->seen & SL_CT_SEEN_SYNACK(0))) {
		e->flags |= SL_CT_F_HS_RETRANS;
		if (st == SL_TCP_SYN_SENT)
			e->syn_ns = now;
		return SL_CT_ACT_HS_RETRANS;
	}
	return SL_CT_ACT_IGNORED | SL_CT_ACT_STAT(SL_CT_STAT_SYN_LIVE);
}

/*
 * The backend's SYN+ACK (or bare SYN: simultaneous open) in SYN_SENT starts its sequence
 * space. It is also the authority on the client's: it acknowledges the SYN the backend took,
 * so a SYN that a spoofer slipped in before the client's own (same tuple, another ISN) cannot
 * make the real handshake look out of window. Window scaling holds only if both sides
 * announced it (RFC 7323).
 */
static __always_inline void sl_ct_backend_syn_seq(struct sl_ct_entry *e, const struct sl_tcp_seg *s)
{
	struct sl_ct_seq *c = &e->seq[0], *b = &e->seq[1];

	sl_ct_seq_syn(b, s);
	/* The client's SYN announced how much it takes: the backend may send that far. */
	if (c->flags & SL_CT_SEQ_KNOWN)
		b->maxend = b->end + c->maxwin;
	if (s->flags & TCP_FLAG_ACK) {
		if (s->ack_seq != c->end) {
			c->end = s->ack_seq;
			c->maxend = s->ack_seq;
		}
		c->maxend = s->ack_seq + (s->win ? s->win : 1);
		b->maxack = s->ack_seq;
		b->flags |= SL_CT_SEQ_MAXACK;
	}
	if (!((c->flags & b->flags) & SL_CT_SEQ_SCALE)) {
		c->scale = 0;
		b->scale = 0;
	}
}

/*
 * The backend's SYN+ACK on a finished tuple: it took a SYN that was not a new incarnation
 * here (its sequence number was not past the old connection's: a client behind a NAT that
 * reuses ports, say), so a new connection is open on the stored backend. Only the backend
 * can send this (a blind sender cannot forge the reply side): the entry starts over in place,
 * in SYN_RECV, the client's ISN being what the SYN+ACK acknowledges. The client's SYN was not
 * recorded, so its window scale is unknown: windows are tracked but not enforced.
 */
static __always_inline __u32 sl_ct_reopen(struct sl_ct_entry *e, const struct sl_tcp_seg *s,
					  __u64 now)
{
	struct sl_ct_seq *c = &e->seq[0];

	e->state = SL_TCP_SYN_RECV;
	e->seen = SL_CT_SEEN_SYN(0) | SL_CT_SEEN_SYN(1) | SL_CT_SEEN_SYNACK(1);
	e->flags = (e->flags & SL_CT_F_ONE_SIDED) | SL_CT_F_REUSED;
	e->syn_ns = now;
	e->synack_ns = now;
	e->rtt_synack_ns = 0;
	e->rtt_ack_ns = 0;
	c->end = s->ack_seq;
	c->maxend = s->ack_seq;
	c->maxwin = 65535;
	c->maxack = 0;
	c->scale = 0;
	c->flags = SL_CT_SEQ_KNOWN | SL_CT_SEQ_LIBERAL;
	sl_ct_backend_syn_seq(e, s);
	return SL_CT_EV_NEW | SL_CT_ACT_STAT(SL_CT_STAT_REUSED);
}

/*
 * The state machine: advances entry `e` by one segment `s` sent in direction `dir`, at `now`
 * (ns, the precise clock for handshake segments: it stamps syn_ns / synack_ns and the RTTs).
 * Touches nothing but `e`; returns SL_CT_ACT_* bits. An entry in state NONE is one being
 * created for this (client) segment.
 * Inlined into its callers, which are global functions themselves (sl_ct_step(),
 * sl_ct_create(), tc_flow's sl_tc_flow_step()): the verifier checks it once per caller, and
 * the call chain keeps one frame fewer under the 512-byte stack bound. The established fast
 * paths never run it.
 */
static __always_inline __u32 sl_ct_advance(struct sl_ct_entry *e, __u32 dir,
					   const struct sl_tcp_seg *s, __u64 now)
{
	__u8 f, st, next;
	__u32 act = 0;

	if (!e || !s) /* global functions get possibly-NULL pointers */
		return 0;
	f = s->flags;
	st = e->state;
	dir &= 1;
	if (st == SL_TCP_NONE) {
		act = sl_ct_first(e, s, now);
		if (act & SL_CT_ACT_NO_ENTRY || e->state != SL_TCP_ESTABLISHED)
			return act;
		goto closing; /* a mid-stream first segment may carry a FIN */
	}
	if (f & TCP_FLAG_RST)
		return sl_ct_rst(e, dir, s);

	if (f & TCP_FLAG_SYN) {
		if (!(f & TCP_FLAG_ACK)) {
			if (dir == SL_DIR_CLIENT)
				return sl_ct_client_syn(e, s, now);
			/* Bare SYN from the backend. */
			if (st == SL_TCP_SYN_SENT) {
				/* Simultaneous open: SYNs crossed. */
				e->state = SL_TCP_SYN_RECV;
				e->seen |= SL_CT_SEEN_SYN(1);
				e->flags |= SL_CT_F_SIMOPEN;
				sl_ct_backend_syn_seq(e, s);
				sl_ct_backend_syn(e, now);
				return 0;
			}
			if (st == SL_TCP_SYN_RECV && (e->seen & SL_CT_SEEN_SYN(1))) {
				e->flags |= SL_CT_F_HS_RETRANS;
				return SL_CT_ACT_HS_RETRANS;
			}
			return 0;
		}
		/* SYN+ACK. */
		if (dir == SL_DIR_BACKEND) {
			if (st == SL_TCP_SYN_SENT) {
				e->state = SL_TCP_SYN_RECV;
				e->seen |= SL_CT_SEEN_SYN(1) | SL_CT_SEEN_SYNACK(1);
				sl_ct_backend_syn_seq(e, s);
				sl_ct_backend_syn(e, now);
				return 0;
			}
			if (st >= SL_TCP_TIME_WAIT)
				return sl_ct_reopen(e, s, now);
			if (st != SL_TCP_SYN_RECV)
				return 0; /* late copy on an open or closing flow */
			if (e->seen & SL_CT_SEEN_SYNACK(1)) {
				if (s->end_seq != e->seq[1].end)
					return 0; /* not a copy of the one we saw */
				e->flags |= SL_CT_F_HS_RETRANS;
				e->synack_ns = now;
				return SL_CT_ACT_HS_RETRANS;
			}
			/* Simultaneous open: the backend answers the client's SYN. */
			e->seen |= SL_CT_SEEN_SYNACK(1);
			sl_ct_backend_syn(e, now);
		} else {
			/* From the client only in a simultaneous open. */
			if (st != SL_TCP_SYN_RECV || !(e->flags & SL_CT_F_SIMOPEN))
				return 0;
			if (e->seen & SL_CT_SEEN_SYNACK(0)) {
				e->flags |= SL_CT_F_HS_RETRANS;
				return SL_CT_ACT_HS_RETRANS;
			}
			e->seen |= SL_CT_SEEN_SYNACK(0);
		}
		/* Simultaneous open completes once both SYNs are acknowledged. Its intervals
		 * are no round trips: no RTT. */
		if ((e->seen & (SL_CT_SEEN_SYNACK(0) | SL_CT_SEEN_SYNACK(1))) ==
		    (SL_CT_SEEN_SYNACK(0) | SL_CT_SEEN_SYNACK(1)))
			return sl_ct_establish(e, now, 0) | SL_CT_ACT_CONFIRM;
		return 0;
	}

	/* No SYN, no RST: ACKs, data, FINs. First the windows, then the handshake's end. */
	if (st == SL_TCP_SYN_SENT && dir == SL_DIR_CLIENT && (f & TCP_FLAG_ACK) &&
	    (e->flags & SL_CT_F_ONE_SIDED) && s->seq != e->seq[0].end) {
		/* dsr: the client ACKs a SYN+ACK we never see, for a SYN other than the one that
		 * made the entry (a spoofed SYN took the tuple first): its ACK is the only word
		 * on the client's sequence space there is. */
		e->seq[0].end = s->seq;
	}
	/* One-sided, a FIN changes the state only at the client's exact next sequence number: the
	 * window dsr can check (SL_CT_ONE_SIDED_WIN) is far wider than the backend's, which
	 * judges any other FIN; forwarded to it, it changes nothing here. */
	if ((f & TCP_FLAG_FIN) && (e->flags & SL_CT_F_ONE_SIDED) &&
	    !(e->seen & SL_CT_SEEN_FIN(0)) && s->seq != e->seq[0].end &&
	    (e->seq[0].flags & SL_CT_SEQ_KNOWN) && !(e->seq[0].flags & SL_CT_SEQ_LIBERAL)) {
		if (!sl_ct_in_window(&e->seq[0], &e->seq[1], s, s->ack_seq))
			return SL_CT_ACT_DROP | SL_CT_ACT_STAT(SL_CT_STAT_OOW_FIN);
		return 0;
	}
	if (sl_ct_track_window(e, dir, s))
		return SL_CT_ACT_DROP | SL_CT_ACT_STAT((f & TCP_FLAG_FIN) ? SL_CT_STAT_OOW_FIN
									  : SL_CT_STAT_OOW_DATA);
	if (st == SL_TCP_SYN_SENT) {
		if (dir != SL_DIR_CLIENT || !(f & TCP_FLAG_ACK))
			return 0;
		/* The client ACKs a SYN+ACK we never saw. One-sided (dsr), that is the only way
		 * to learn it, and all the proof there will be: the RTT is SYN -> ACK. With both
		 * sides visible the SYN+ACK took another path: established, RTT unknown, and not
		 * confirmed until the backend is heard. */
		if (e->flags & SL_CT_F_ONE_SIDED)
			act = sl_ct_establish(e, now, e->syn_ns) | SL_CT_ACT_CONFIRM;
		else
			act = sl_ct_establish(e, now, 0);
	} else if (st == SL_TCP_SYN_RECV) {
		/* The client's ACK of the SYN+ACK; after a simultaneous open, either side's. Only
		 * the ACK of the backend's ISN itself completes the handshake: a blind sender
		 * cannot know it. */
		if (!(f & TCP_FLAG_ACK) || (dir != SL_DIR_CLIENT && !(e->flags & SL_CT_F_SIMOPEN)))
			return 0;
		if (!(e->flags & SL_CT_F_SIMOPEN) && s->ack_seq != e->seq[1].end)
			return 0;
		act = sl_ct_establish(e, now, (e->flags & SL_CT_F_SIMOPEN) ? 0 : e->synack_ns) |
		      SL_CT_ACT_CONFIRM;
	} else if (st >= SL_TCP_TIME_WAIT) {
		return 0; /* leftovers (last ACK or FIN retransmits) of a finished connection */
	} else if (dir == SL_DIR_BACKEND) {
		act = SL_CT_ACT_CONFIRM; /* the backend speaks on this flow: not a spoofer's */
	}

closing:
	if (e->flags & SL_CT_F_ONE_SIDED)
		next = sl_ct_close_one_sided(e, s);
	else
		next = sl_ct_close_two_sided(e, dir, s);
	if (next != SL_TCP_ESTABLISHED)
		e->state = next;
	if (next == SL_TCP_TIME_WAIT)
		act = (act & ~SL_CT_ACT_EVENT) | SL_CT_EV_CLOSED_FIN | SL_CT_ACT_RELEASE;
	return act;
}

/*
 * The window-scale option (RFC 7323) among the first `len` bytes of `o`, capped at 14;
 * SL_TCP_NO_WSCALE if there is none. A global function over a stack copy: the loop (at most
 * 40 one-byte NOPs) is verified once, not once per path that reads a SYN.
 */
__noinline __u32 sl_tcp_opt_wscale(const struct sl_tcp_opts *o, __u32 len)
{
	__u32 i = 0;

	if (!o)
		return SL_TCP_NO_WSCALE;
	for (int n = 0; n < 40; n++) {
		__u8 kind, olen;

		if (i >= len || i >= 38)
			break;
		kind = o->b[i];
		if (kind == 0) /* end of options */
			break;
		if (kind == 1) { /* NOP */
			i++;
			continue;
		}
		olen = o->b[i + 1];
		if (olen < 2)
			break;
		if (kind == 3 && olen == 3)
			return o->b[i + 2] > 14 ? 14 : o->b[i + 2];
		i += olen;
	}
	return SL_TCP_NO_WSCALE;
}

/*
 * Reads the sequence numbers of segment `s` from the TCP header at s->l4_off in the packet
 * [data, end). -1 if there is none (a later fragment). Context-free: XDP and TC callers pass
 * their own data pointers.
 */
static __always_inline int sl_tcp_seg_read_at(void *data, void *end, struct sl_tcp_seg *s)
{
	struct tcphdr *th;
	__u32 off = s->l4_off, hlen;

	if (!off || off > 0x3ff) /* the bound lets the verifier add it to a packet pointer */
		return -1;
	th = data + off;
	if ((void *)(th + 1) > end)
		return -1;
	s->seq = bpf_ntohl(th->seq);
	s->ack_seq = bpf_ntohl(th->ack_seq);
	s->win = bpf_ntohs(th->window);
	hlen = th->doff * 4; /* doff <= l4_len: checked by sl_parse_l4() */
	s->end_seq = s->seq + (s->l4_len - hlen) + !!(s->flags & TCP_FLAG_SYN) +
		     !!(s->flags & TCP_FLAG_FIN);
	s->wscale = SL_TCP_NO_WSCALE; /* a SYN's: the caller reads it (sl_tcp_seg_wscale()) */
	return 0;
}

/* The length of the options of the TCP header at s->l4_off, for the caller's load_bytes. */
static __always_inline __u32 sl_tcp_opts_len(void *data, void *end, const struct sl_tcp_seg *s)
{
	struct tcphdr *th = data + (s->l4_off & 0x3ff);

	if ((void *)(th + 1) > end)
		return 0;
	return th->doff * 4 - sizeof(*th);
}

static __always_inline void sl_flow_key_init(struct sl_flow_key *k, const struct sl_addr *src,
					     const struct sl_addr *dst, __be16 sport, __be16 dport,
					     __u8 proto, __u8 family)
{
	k->src = *src;
	k->dst = *dst;
	k->sport = sport;
	k->dport = dport;
	k->proto = proto;
	k->family = family;
}

#endif /* SLUICE_BPF_CONNTRACK_H */
