/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Per-connection TCP stats of the congestion-control policy: `cc_conns` entries, refreshed by
 * the sockops RTT, RETRANS and STATE callbacks, and the per-rule histograms counted when a
 * connection closes. Used by bpf/cc_sockops.bpf.c.
 */
#ifndef SLUICE_BPF_CC_STATS_H
#define SLUICE_BPF_CC_STATS_H

#include "lib/cc_policy.h"

#define TCP_CLOSE_STATE 7 /* enum TCP_CLOSE: the socket is gone or about to be */

/* Bucket of an srtt (µs): i holds srtt < 2^(i + SL_CC_SRTT_SHIFT), the last the rest. */
static __always_inline __u32 sl_cc_srtt_bucket(__u32 srtt_us)
{
	__u32 v = srtt_us >> SL_CC_SRTT_SHIFT, i = 0;

	for (int n = 0; n < SL_CC_SRTT_BUCKETS - 1 && v; n++) {
		v >>= 1;
		i++;
	}
	return i;
}

/* Bucket of a retransmit count: 0 holds 0, i holds [2^(i-1), 2^i - 1], the last the rest. */
static __always_inline __u32 sl_cc_retrans_bucket(__u32 retrans)
{
	__u32 i = 0;

	for (int n = 0; n < SL_CC_RETRANS_BUCKETS - 1 && retrans; n++) {
		retrans >>= 1;
		i++;
	}
	return i;
}

static __always_inline struct sl_cc_rule_stats *sl_cc_rule_stats(__u16 rule_id)
{
	__u32 id = rule_id;

	return bpf_map_lookup_elem(&cc_rule_stats, &id);
}

/* The socket's live numbers into `c`. srtt_us and mdev_us are kept scaled by 8 and 4 (as ss
 * -ti unscales them). */
static __always_inline void sl_cc_refresh(struct bpf_sock_ops *skops, struct sl_cc_conn *c)
{
	struct tcp_sock *tp = sl_cc_tcp_sock(skops);

	c->srtt_us = skops->srtt_us >> 3;
	c->rttvar_us = tp ? tp->mdev_us >> 2 : 0;
	c->cwnd = skops->snd_cwnd;
	c->ssthresh = skops->snd_ssthresh;
	c->total_retrans = skops->total_retrans;
	c->mss = skops->mss_cache;
	c->bytes_acked = skops->bytes_acked;
	c->state = (__u8)skops->state;
	c->updated_ns = bpf_ktime_get_ns();
	/* The algorithm in use now: the socket's owner may have switched it since. */
	if (tp) {
		const struct tcp_congestion_ops *ops = tp->inet_conn.icsk_ca_ops;

		if (ops)
			bpf_probe_read_kernel_str(c->cc, sizeof(c->cc), ops->name);
	}
}

/* A tracked connection closed: its srtt and retransmits go into its rule's histograms and its
 * entry is deleted. */
static __always_inline void sl_cc_closed(struct bpf_sock_ops *skops, __u64 cookie,
					 struct sl_cc_conn *c)
{
	struct sl_cc_rule_stats *st;
	__u32 b;

	sl_cc_refresh(skops, c);
	st = sl_cc_rule_stats(c->rule_id);
	if (st) {
		/* Atomic, as in sl_cc_record(): process context and softirq share the CPU. */
		__sync_fetch_and_add(&st->closed, 1);
		__sync_fetch_and_add(&st->srtt_us_sum, c->srtt_us);
		b = sl_cc_srtt_bucket(c->srtt_us);
		if (b < SL_CC_SRTT_BUCKETS)
			__sync_fetch_and_add(&st->srtt_hist[b], 1);
		__sync_fetch_and_add(&st->retrans_sum, c->total_retrans);
		b = sl_cc_retrans_bucket(c->total_retrans);
		if (b < SL_CC_RETRANS_BUCKETS)
			__sync_fetch_and_add(&st->retrans_hist[b], 1);
	}
	bpf_map_delete_elem(&cc_conns, &cookie);
}

#endif /* SLUICE_BPF_CC_STATS_H */
