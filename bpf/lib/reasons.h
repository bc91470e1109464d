/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Every result code a bpf/lib helper hands back to its caller, in one place and one style,
 * and which drop or pass reason each outcome becomes. The reasons themselves are ABI
 * (enum sl_drop_reason, enum sl_pass_reason in sluice/abi/abi.h: the agent exports them as
 * metrics); nothing defined here leaves the program.
 *
 * The style:
 *  - a yes/no question (sl_is_vip_addr(), sl_ct_expired(), sl_vlan_not_ours()) returns 1 or 0;
 *  - a step that can only fail returns 0, or -1 when it failed (sl_parse_l3_addrs(),
 *    sl_tcp_seg_read(), sl_frag_record()); one that finds a value returns it, or -1 for none
 *    (sl_frag_lookup()). No reason travels: the caller alone knows what the failure means
 *    for the packet (the same failed address parse is a pass on one path, a drop on none);
 *  - a helper with more outcomes than that returns one of the enums below, named after it;
 *    an outcome that decides the packet's fate names its drop or pass reason beside its
 *    value, and the entry program counts it (sl_drop()/sl_pass(), stats.h), so every
 *    reason is counted in exactly one place;
 *  - an outcome that carries a reason or a second value is packed by the macros beside its
 *    enum (the parser's SL_ERR()/SL_PARSE_PASS(), sl_ct_client()'s backend id).
 * Function signatures keep plain integer types: a global function's return type is part of
 * the BTF the verifier checks, and an integer is what it accepts everywhere.
 *
 * This header defines no map and includes only common.h, so tc_flow.bpf.c shares the state
 * machine's codes without creating any of the load balancer's maps. The values are part of
 * the code the verifier walks (xdp_lb is close to its 1M-instruction budget): a renumbering
 * changes the programs, and must be checked like any other change to them.
 */
#ifndef SLUICE_BPF_REASONS_H
#define SLUICE_BPF_REASONS_H

#include "common.h"

/*
 * sl_parse_l3(), sl_parse_l4() (parse.h): 0 is success; a malformed packet returns
 * SL_ERR(drop reason), and the caller drops it only if it is addressed to a VIP (the host's
 * own traffic is never dropped); a packet that is never ours whatever its destination (an
 * IPv6 routing header with segments left) returns SL_PARSE_PASS(pass reason). Reason 0 is
 * a real value of both enums, hence the + 1 that keeps 0 for success; pass reasons start
 * above every drop reason (SL_DROP_MAX), so one int tells the three apart.
 */
#define SL_OK 0
#define SL_ERR(reason) ((reason) + 1)
#define SL_ERR_REASON(err) ((err)-1)
#define SL_PARSE_PASS_BASE 0x100
#define SL_PARSE_PASS(reason) (SL_PARSE_PASS_BASE + (reason))
#define SL_PARSE_IS_PASS(err) ((err) >= SL_PARSE_PASS_BASE)
#define SL_PARSE_PASS_REASON(err) ((err)-SL_PARSE_PASS_BASE)

/* sl_fib_lookup() (fwd.h) returns the kernel's BPF_FIB_LKUP_RET_* codes, or this one of its
 * own, above the kernel's range. */
enum sl_fib_result {
	/* dsr asked for an on-link next hop and the route has a gateway (drop dsr_gateway) */
	SL_FIB_DSR_GATEWAY = 0x100,
};

/*
 * sl_ct_advance() (conntrack.h), the TCP state machine shared by VIP and host flows: a set
 * of bits. An enum sl_ct_event_type (0 = none) in the low bits, plus what the caller must do
 * that a pure function cannot.
 */
enum sl_ct_act {
	/* mask: the event to report */
	SL_CT_ACT_EVENT = 0x0f,
	/* the flow left the live set (-> TIME_WAIT or CLOSED): release its backend count */
	SL_CT_ACT_RELEASE = 0x10,
	/* a new SYN on a TIME_WAIT/CLOSED tuple: the entry is left as it was; re-pick a backend
	 * and create a new entry */
	SL_CT_ACT_REUSE = 0x20,
	/* creation only: not worth an entry (a RST of no flow) */
	SL_CT_ACT_NO_ENTRY = 0x40,
	/* a retransmitted SYN or SYN+ACK */
	SL_CT_ACT_HS_RETRANS = 0x80,
	/* outside the flow's windows: the entry is unchanged, the segment is dropped
	 * (drop ct_window) */
	SL_CT_ACT_DROP = 0x100,
	/* evidence a blind sender cannot forge (the handshake's ACK of the backend's ISN, a
	 * reply to a mid-stream pickup, a dsr handshake): the flow may move to the confirmed
	 * table */
	SL_CT_ACT_CONFIRM = 0x200,
	/* with SL_CT_ACT_REUSE: the new incarnation keeps the old one's backend (reuse of
	 * CLOSED) */
	SL_CT_ACT_SAME_BACKEND = 0x400,
	/* forwarded, but no evidence of the flow: the entry is not refreshed (syn_live,
	 * reuse_refused, rst_challenge) */
	SL_CT_ACT_IGNORED = 0x800,
};
/* bits 16..23: an enum sl_ct_stat to count, plus 1 (0: none) */
#define SL_CT_ACT_STAT(st) (((__u32)(st) + 1u) << 16)
#define SL_CT_ACT_STAT_OF(act) ((((act) >> 16) & 0xffu) - 1u)

/* sl_ct_create() (vip_conntrack.h). */
enum sl_ct_create_result {
	SL_CT_CREATE_NONE = 0, /* no entry made: a RST of no flow, or another CPU's insert won */
	SL_CT_CREATE_NEW = 1,  /* this call created the entry: a new connection */
	SL_CT_CREATE_FULL = 2, /* the insert failed: the flow is not tracked */
};

/* sl_ct_reply_track() (vip_conntrack.h): what to do with a NAT reply from a backend. */
enum sl_reply_verdict {
	SL_REPLY_OURS = 0,     /* a reply of a flow sluice translated: reverse-NAT and forward */
	SL_REPLY_NOT_OURS = 1, /* no tracked flow of that backend: pass not_our_reply */
	SL_REPLY_DROP = 2,     /* that flow's, but out of window: drop ct_window */
};

/*
 * sl_select_backend()'s flow outcome (*flow, lb.h): besides the backend, what became of the
 * flow. With a backend it is NONE or NEW, so it adds to the new_flows counters as is.
 */
enum sl_flow_outcome {
	SL_FLOW_NONE = 0,    /* nothing new: an existing flow, UDP, or untracked */
	SL_FLOW_NEW = 1,     /* this packet created a connection */
	SL_FLOW_REFUSED = 2, /* no backend: the SYN's pick cannot be remembered (drop ct_full) */
	SL_FLOW_RESET = 3,   /* no backend: the flow was reset, answer the client with a RST */
	SL_FLOW_OOW = 4,     /* no backend: outside the flow's windows (drop ct_window) */
};

/* sl_ct_client() (lb.h): the backend id in the low 32 bits, an sl_flow_outcome in the high
 * ones. One u64 rather than an out parameter: see sl_ct_client() for the verifier's reason. */
#define SL_CT_CLIENT_NEW ((__u64)SL_FLOW_NEW << 32)
#define SL_CT_CLIENT_REFUSED (((__u64)SL_FLOW_REFUSED << 32) | SL_BACKEND_NONE)
#define SL_CT_CLIENT_RESET (((__u64)SL_FLOW_RESET << 32) | SL_BACKEND_NONE)
#define SL_CT_CLIENT_OOW (((__u64)SL_FLOW_OOW << 32) | SL_BACKEND_NONE)

#endif /* SLUICE_BPF_REASONS_H */
