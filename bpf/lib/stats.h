/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Counters: verdicts, pass and drop reasons, per-VIP and per-backend traffic (all per-CPU). */
#ifndef SLUICE_BPF_STATS_H
#define SLUICE_BPF_STATS_H

#include "common.h"
#include "maps.h"

static __always_inline void sl_count(void *map, __u32 idx, __u32 len)
{
	struct sl_counter *c = bpf_map_lookup_elem(map, &idx);

	if (c) {
		c->packets++;
		c->bytes += len;
	}
}

/* Hand the packet to the kernel stack untouched (or already NAT'd, for SL_PASS_FIB). */
static __always_inline int sl_pass(const struct sl_pkt *p, __u32 reason)
{
	sl_count(&passes, reason, p->len);
	return XDP_PASS;
}

static __always_inline int sl_drop(const struct sl_pkt *p, __u32 reason)
{
	sl_count(&drops, reason, p->len);
	return XDP_DROP;
}

static __always_inline void sl_count_traffic(void *map, __u32 idx, __u32 len, __u32 new_flow)
{
	struct sl_traffic *t = bpf_map_lookup_elem(map, &idx);

	if (t) {
		t->packets++;
		t->bytes += len;
		t->new_flows += new_flow;
	}
}

#endif /* SLUICE_BPF_STATS_H */
