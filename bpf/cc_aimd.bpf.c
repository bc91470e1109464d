// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * sluice_aimd (SL_CC_OURS): the classic congestion control rules as a BPF tcp_congestion_ops
 * (docs/design.md, "Congestion control: sluice_aimd"):
 *  - slow start: cwnd += acked segments, up to ssthresh (doubles per RTT);
 *  - congestion avoidance: +1 segment per cwnd of acked segments (+1 per RTT);
 *  - on loss: ssthresh = max(cwnd / 2, 2). The kernel then runs fast retransmit and fast
 *    recovery (PRR) down to it, and leaves cwnd at ssthresh when recovery ends;
 *  - on RTO: the kernel's tcp_enter_loss() takes the same ssthresh and sets cwnd to 1, and
 *    slow start begins again;
 *  - undo (a loss found spurious): back to the cwnd before the reduction.
 * init and release count the sockets using it in `cc_algo_users`, which sluiced pins so that
 * an old and a new instance share one count across a restart (agent/cc/cc_algo.cc).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <sluice/abi/cc.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Sockets whose init ran and whose release has not: the one u64 at index 0. A named map, not
 * .bss, so that it can be pinned and reused by the next instance (bpf_map__reuse_fd). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} cc_algo_users SEC(".maps");

/* Per-socket state in icsk_ca_priv, which the kernel zeroes whenever a socket gets a new
 * algorithm: `counted` says this socket's init added it to cc_algo_users, so release takes
 * back only what init gave (the kernel may release a socket whose init never ran, e.g. one
 * that selected sluice_aimd and closed before connecting). */
struct sl_aimd {
	__u32 counted;
};

static __always_inline struct sl_aimd *sl_aimd_ca(struct sock *sk)
{
	return (struct sl_aimd *)((struct inet_connection_sock *)sk)->icsk_ca_priv;
}

static __always_inline struct tcp_sock *sl_tcp_sk(struct sock *sk)
{
	return (struct tcp_sock *)sk;
}

static __always_inline void sl_users_add(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&cc_algo_users, &zero);

	if (n)
		__sync_fetch_and_add(n, 1);
}

/* Takes one back, never below 0: a compare-and-swap loop, bounded for the verifier (another
 * CPU changing the count eight times in a row between our read and swap is not a real case). */
static __always_inline void sl_users_sub(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&cc_algo_users, &zero);

	if (!n)
		return;
	for (int i = 0; i < 8; i++) {
		__u64 old = *n;

		if (old == 0)
			return;
		if (__sync_val_compare_and_swap(n, old, old - 1) == old)
			return;
	}
}

/* The kernel's tcp_is_cwnd_limited(): grow only when the sender was held back by cwnd, or,
 * in slow start, while cwnd is under twice what was in flight. Growing a cwnd the sender does
 * not use would only make the next burst larger. */
static __always_inline bool sl_cwnd_limited(const struct tcp_sock *tp)
{
	if (BPF_CORE_READ_BITFIELD(tp, is_cwnd_limited))
		return true;
	if (tp->snd_cwnd < tp->snd_ssthresh)
		return tp->snd_cwnd < 2 * tp->max_packets_out;
	return false;
}

SEC("struct_ops/sl_aimd_init")
void BPF_PROG(sl_aimd_init, struct sock *sk)
{
	struct sl_aimd *ca = sl_aimd_ca(sk);

	ca->counted = 1;
	sl_users_add();
}

SEC("struct_ops/sl_aimd_release")
void BPF_PROG(sl_aimd_release, struct sock *sk)
{
	struct sl_aimd *ca = sl_aimd_ca(sk);

	if (!ca->counted)
		return;
	ca->counted = 0;
	sl_users_sub();
}

/* On loss (fast retransmit, or RTO): multiplicative decrease. */
SEC("struct_ops/sl_aimd_ssthresh")
__u32 BPF_PROG(sl_aimd_ssthresh, struct sock *sk)
{
	const struct tcp_sock *tp = sl_tcp_sk(sk);
	__u32 half = tp->snd_cwnd >> 1;

	return half > 2 ? half : 2;
}

/* Per ACK outside recovery: slow start below ssthresh, additive increase above it. */
SEC("struct_ops/sl_aimd_cong_avoid")
void BPF_PROG(sl_aimd_cong_avoid, struct sock *sk, __u32 ack, __u32 acked)
{
	struct tcp_sock *tp = sl_tcp_sk(sk);
	__u32 cwnd = tp->snd_cwnd;

	if (!sl_cwnd_limited(tp))
		return;
	if (cwnd < tp->snd_ssthresh) {
		/* Slow start: one segment per acked segment, stopping at ssthresh; what is left
		 * of `acked` counts towards congestion avoidance. */
		__u32 room = tp->snd_ssthresh - cwnd;
		__u32 step = acked < room ? acked : room;

		cwnd += step;
		acked -= step;
		if (!acked) {
			tp->snd_cwnd = cwnd < tp->snd_cwnd_clamp ? cwnd : tp->snd_cwnd_clamp;
			return;
		}
	}
	/* Congestion avoidance: snd_cwnd_cnt counts acked segments; every cwnd of them (one
	 * RTT's worth) adds one segment. Credit left from a larger cwnd (before a reduction,
	 * which keeps the count) adds one segment and no more. cwnd >= 1 always, so the
	 * division is safe. */
	if (tp->snd_cwnd_cnt >= cwnd) {
		tp->snd_cwnd_cnt = 0;
		cwnd++;
	}
	tp->snd_cwnd_cnt += acked;
	if (tp->snd_cwnd_cnt >= cwnd) {
		__u32 inc = tp->snd_cwnd_cnt / cwnd;

		tp->snd_cwnd_cnt -= inc * cwnd;
		cwnd += inc;
	}
	tp->snd_cwnd = cwnd < tp->snd_cwnd_clamp ? cwnd : tp->snd_cwnd_clamp;
}

/* A reduction found spurious (DSACK, timestamps): the cwnd from before it. prior_cwnd is the
 * cwnd the kernel saved when it entered recovery or loss. */
SEC("struct_ops/sl_aimd_undo_cwnd")
__u32 BPF_PROG(sl_aimd_undo_cwnd, struct sock *sk)
{
	const struct tcp_sock *tp = sl_tcp_sk(sk);

	return tp->snd_cwnd > tp->prior_cwnd ? tp->snd_cwnd : tp->prior_cwnd;
}

SEC(".struct_ops")
struct tcp_congestion_ops sluice_aimd = {
	.init = (void *)sl_aimd_init,
	.release = (void *)sl_aimd_release,
	.ssthresh = (void *)sl_aimd_ssthresh,
	.cong_avoid = (void *)sl_aimd_cong_avoid,
	.undo_cwnd = (void *)sl_aimd_undo_cwnd,
	.name = SL_CC_OURS,
};
