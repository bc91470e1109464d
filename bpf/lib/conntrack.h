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
 * docs/design.md, "TCP state machine". Entries hold no TCP window state: like Katran and
 * Cilium (and unlike nf_conntrack) sluice does not police sequence windows; it uses sequence
 * numbers only to tell which ACK acknowledges a FIN.
 */
#ifndef SLUICE_BPF_CONNTRACK_H
#define SLUICE_BPF_CONNTRACK_H

#include "common.h"

/* Index of sl_ct_entry.packets[] / bytes[] and of SL_CT_SEEN_*(dir). */
#define SL_DIR_CLIENT 0  /* client -> VIP; for host flows: the side that opened */
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
	__u8 flags;   /* byte 13 of the TCP header */
	__u8 pad;
};

/* sl_ct_advance() result: an enum sl_ct_event_type (0 = none) in the low bits, plus what the
 * caller must do that a pure function cannot. */
/* mask: the event to report */
#define SL_CT_ACT_EVENT 0x0fu
/* the flow left the live set (-> TIME_WAIT or CLOSED): release its backend count */
#define SL_CT_ACT_RELEASE 0x10u
/* a new SYN on a TIME_WAIT/CLOSED tuple: the entry is left as it was; re-pick a backend and
 * create a new entry */
#define SL_CT_ACT_REUSE 0x20u
/* creation only: not worth an entry (a RST of no flow) */
#define SL_CT_ACT_NO_ENTRY 0x40u
/* a retransmitted SYN or SYN+ACK */
#define SL_CT_ACT_HS_RETRANS 0x80u

#define TCP_FLAG_SYN_ACK (TCP_FLAG_SYN | TCP_FLAG_ACK)

static __always_inline int sl_seq_after_eq(__u32 a, __u32 b)
{
	return (__s32)(a - b) >= 0; /* RFC 1982 serial arithmetic: sequence numbers wrap */
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
 * The state machine: advances entry `e` by one segment `s` sent in direction `dir`, at `now`
 * (ns, the precise clock for handshake segments: it stamps syn_ns / synack_ns and the RTTs).
 * Touches nothing but `e`; returns SL_CT_ACT_* bits. An entry in state NONE is one being
 * created for this (client) segment.
 * A global function: the verifier checks it once, for any entry and segment, instead of
 * once per call site and path (its branches times the callers' would exceed the
 * 1M-instruction budget). The established fast path never calls it.
 */
__noinline __u32 sl_ct_advance(struct sl_ct_entry *e, __u32 dir, const struct sl_tcp_seg *s,
			       __u64 now)
{
	__u8 f, st, next;
	__u32 act = 0;

	if (!e || !s) /* global functions get possibly-NULL pointers */
		return 0;
	f = s->flags;
	st = e->state;
	dir &= 1;
	/* RST from either side, in any state: closed at once. */
	if (f & TCP_FLAG_RST) {
		if (st == SL_TCP_NONE)
			return SL_CT_ACT_NO_ENTRY;
		if (st == SL_TCP_CLOSED)
			return 0;
		e->state = SL_TCP_CLOSED;
		/* From TIME_WAIT (RFC 1337 assassination) the flow was already released and
		 * reported closed by FIN. */
		if (st == SL_TCP_TIME_WAIT)
			return 0;
		return SL_CT_EV_CLOSED_RST | SL_CT_ACT_RELEASE;
	}

	if (st == SL_TCP_NONE) {
		if ((f & TCP_FLAG_SYN_ACK) == TCP_FLAG_SYN) {
			e->state = SL_TCP_SYN_SENT;
			e->seen = SL_CT_SEEN_SYN(0);
			e->syn_ns = now;
			return SL_CT_EV_NEW;
		}
		/* Any other first segment belongs to a flow that was established before we saw
		 * it (its entry expired while idle, or the table was full at its SYN, or another
		 * LB host had it): no handshake to time. */
		e->state = SL_TCP_ESTABLISHED;
		e->flags |= SL_CT_F_MIDSTREAM;
		if (f & TCP_FLAG_SYN)
			return SL_CT_EV_NEW;
		act = SL_CT_EV_NEW;
		goto closing;
	}

	if (f & TCP_FLAG_SYN) {
		if (!(f & TCP_FLAG_ACK)) {
			if (dir == SL_DIR_CLIENT) {
				/* A new connection on a finished tuple. */
				if (st == SL_TCP_TIME_WAIT || st == SL_TCP_CLOSED)
					return SL_CT_ACT_REUSE;
				/* The client's SYN again: it has not seen an answer yet. */
				if (st == SL_TCP_SYN_SENT || st == SL_TCP_SYN_RECV) {
					e->flags |= SL_CT_F_HS_RETRANS;
					if (st == SL_TCP_SYN_SENT)
						e->syn_ns = now;
					return SL_CT_ACT_HS_RETRANS;
				}
				/* A bare SYN on a live connection cannot reopen it: the endpoints
				 * sort it out (challenge ACK, RST, and a reuse from CLOSED). */
				return 0;
			}
			/* Bare SYN from the backend. */
			if (st == SL_TCP_SYN_SENT) {
				/* Simultaneous open: SYNs crossed. */
				e->state = SL_TCP_SYN_RECV;
				e->seen |= SL_CT_SEEN_SYN(1);
				e->flags |= SL_CT_F_SIMOPEN;
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
				sl_ct_backend_syn(e, now);
				return 0;
			}
			if (st != SL_TCP_SYN_RECV)
				return 0; /* late copy on an open or closing flow */
			if (e->seen & SL_CT_SEEN_SYNACK(1)) {
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
			return sl_ct_establish(e, now, 0);
		return 0;
	}

	/* No SYN, no RST: ACKs, data, FINs. First, the end of the handshake. */
	if (st == SL_TCP_SYN_SENT) {
		if (dir != SL_DIR_CLIENT || !(f & TCP_FLAG_ACK))
			return 0;
		/* The client ACKs a SYN+ACK we never saw. One-sided (dsr), that is the only way
		 * to learn it: the RTT is SYN -> ACK. With both sides visible the SYN+ACK took
		 * another path or is still in flight on another CPU: established, RTT unknown. */
		act = sl_ct_establish(e, now, (e->flags & SL_CT_F_ONE_SIDED) ? e->syn_ns : 0);
	} else if (st == SL_TCP_SYN_RECV) {
		/* The client's ACK of the SYN+ACK; after a simultaneous open, either side's. */
		if (!(f & TCP_FLAG_ACK) || (dir != SL_DIR_CLIENT && !(e->flags & SL_CT_F_SIMOPEN)))
			return 0;
		act = sl_ct_establish(e, now, (e->flags & SL_CT_F_SIMOPEN) ? 0 : e->synack_ns);
	} else if (st >= SL_TCP_TIME_WAIT) {
		return 0; /* leftovers (last ACK or FIN retransmits) of a finished connection */
	}

closing:
	if (e->flags & SL_CT_F_ONE_SIDED)
		next = sl_ct_close_one_sided(e, s);
	else
		next = sl_ct_close_two_sided(e, dir, s);
	if (next != SL_TCP_ESTABLISHED)
		e->state = next;
	if (next == SL_TCP_TIME_WAIT)
		act = SL_CT_EV_CLOSED_FIN | SL_CT_ACT_RELEASE;
	return act;
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
	hlen = th->doff * 4; /* doff <= l4_len: checked by sl_parse_l4() */
	s->end_seq = s->seq + (s->l4_len - hlen) + !!(s->flags & TCP_FLAG_SYN) +
		     !!(s->flags & TCP_FLAG_FIN);
	return 0;
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
