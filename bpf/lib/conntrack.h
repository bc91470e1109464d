/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Conntrack for TCP flows to VIPs: an LRU hash keyed by the client -> VIP 5-tuple that pins
 * each flow to the backend chosen when it was first seen. The full handshake state machine
 * builds on this entry (state, per-direction counters and timestamps are already in it).
 */
#ifndef SLUICE_BPF_CONNTRACK_H
#define SLUICE_BPF_CONNTRACK_H

#include "common.h"
#include "maps.h"

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

/* Accounts a client -> VIP packet on an existing entry. */
static __always_inline void sl_ct_touch(struct sl_ct_entry *ct, const struct sl_pkt *p)
{
	ct->last_seen_ns = sl_now_ns; /* coarse clock kept by the agent: no helper call */
	ct->packets[0]++;
	ct->bytes[0] += p->len;
}

/* Creates the entry for a flow seen for the first time. Returns 1 if this call created it
 * (0 if another CPU won the race: it chose the same backend, the pick is consistent). */
static __always_inline int sl_ct_create(const struct sl_flow_key *k, const struct sl_pkt *p,
					__u32 backend_id, __u32 vip_id)
{
	__u64 now = sl_now_ns; /* coarse: a clock helper costs ~50 ns here */
	int syn = (p->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN;
	struct sl_ct_entry e = {
		.backend_id = backend_id,
		.vip_id = vip_id,
		/* A miss without SYN is a flow that outlived its entry (LRU eviction, another LB
		 * host): it was established before we saw it. */
		.state = syn ? SL_TCP_SYN_SENT : SL_TCP_ESTABLISHED,
		.first_seen_ns = now,
		.last_seen_ns = now,
		.packets = { 1, 0 },
		.bytes = { p->len, 0 },
	};

	return bpf_map_update_elem(&conntrack, k, &e, BPF_NOEXIST) == 0;
}

#endif /* SLUICE_BPF_CONNTRACK_H */
