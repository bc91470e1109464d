/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The congestion-control policy (include/sluice/abi/cc.h): its maps, the first-match lookup
 * and the settings applied to a connection, each read back. Used by bpf/cc_sockops.bpf.c.
 */
#ifndef SLUICE_BPF_CC_POLICY_H
#define SLUICE_BPF_CC_POLICY_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <sluice/abi/abi.h>
#include <sluice/abi/cc.h>

/* uapi socket and TCP option numbers (#defines, absent from vmlinux.h). */
#define SOL_SOCKET 1
#define SO_SNDBUF 7
#define SO_RCVBUF 8
#define SOL_TCP 6
#define TCP_CONGESTION 13
#define AF_INET 2
#define AF_INET6 10

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sl_cc_config);
} cc_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, SL_CC_SLOTS *SL_CC_MAX_PREFIXES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sl_cc_lpm_key);
	__type(value, struct sl_cc_lpm_val);
} cc_lpm SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SL_CC_SLOTS *SL_CC_MAX_RULES);
	__type(key, __u32);
	__type(value, struct sl_cc_rule);
} cc_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SL_CC_MAX_RULE_IDS);
	__type(key, __u32);
	__type(value, struct sl_cc_rule_stats);
} cc_rule_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SL_CC_MAX_RULE_IDS);
	__type(key, __u32);
	__type(value, struct sl_cc_rule_info);
} cc_rule_info SEC(".maps");

/* Sized by the agent (congestion.max_connections). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SL_CC_DEFAULT_CONNS);
	__type(key, __u64);
	__type(value, struct sl_cc_conn);
} cc_conns SEC(".maps");

/* What a connection looks like to the rules. */
struct sl_cc_match {
	struct sl_cc_lpm_key key; /* the remote address, in the active slot */
	__u16 port;		  /* remote port (active) or local port (passive), host order */
	__u8 direction;
	__u64 cgroup_id; /* the socket's cgroup v2, for rules with one */
	__u32 cgroup_level;
};

/* The socket as the kernel's tcp_sock (BTF), for the fields sockops does not expose. The
 * context's `sk` is read once into a register: the verifier tracks its NULL check there. */
static __always_inline struct tcp_sock *sl_cc_tcp_sock(struct bpf_sock_ops *skops)
{
	struct bpf_sock *sk = skops->sk;

	return sk ? bpf_skc_to_tcp_sock(sk) : NULL;
}

/* True when the socket's cgroup v2 is `cgroup_id` (at `level`) or below it: its ancestor at
 * that level (cgroup->ancestors[], the root at 0) is the rule's cgroup. One read whatever
 * the depth, so no nesting escapes a rule. bpf_sk_ancestor_cgroup_id() is not offered to
 * sockops programs; the socket's cgroup is read through its BTF type. A global function:
 * verified once, not once per rule the lookup loop may try. */
__noinline bool sl_cc_cgroup_within(struct bpf_sock_ops *skops, __u64 cgroup_id, __u32 level)
{
	struct cgroup *cg, *anc = NULL;
	struct kernfs_node *kn = NULL;
	struct tcp_sock *tp;
	__u64 id = 0;

	if (!skops)
		return false;
	tp = sl_cc_tcp_sock(skops);
	if (!tp)
		return false;
	cg = tp->inet_conn.icsk_inet.sk.sk_cgrp_data.cgroup;
	if (!cg || cg->level < (int)level)
		return false;
	if (bpf_probe_read_kernel(&anc, sizeof(anc), &cg->ancestors[level]) || !anc)
		return false;
	if (bpf_probe_read_kernel(&kn, sizeof(kn), &anc->kn) || !kn)
		return false;
	if (bpf_probe_read_kernel(&id, sizeof(id), &kn->id))
		return false;
	return id == cgroup_id;
}

/* Whether rule `idx` of `cc_rules` matches a connection's port, direction and cgroup (its
 * destination already did). A global function: verified once, not once per loop iteration. */
__noinline bool sl_cc_rule_matches(struct bpf_sock_ops *skops, __u32 idx, __u32 port, __u32 dir)
{
	const struct sl_cc_rule *r = bpf_map_lookup_elem(&cc_rules, &idx);

	if (!r || !skops)
		return false;
	if (port < r->port_lo || port > r->port_hi)
		return false;
	if (r->direction != SL_CC_DIR_ANY && r->direction != dir)
		return false;
	return !r->cgroup_id || sl_cc_cgroup_within(skops, r->cgroup_id, r->cgroup_level);
}

/* The first rule of the active slot that matches, or NULL. The longest prefix holding the
 * remote address names every rule whose destinations hold it (sl_cc_lpm_val); they are tried
 * in order. */
static __always_inline const struct sl_cc_rule *sl_cc_lookup(struct bpf_sock_ops *skops,
							     struct sl_cc_match *m)
{
	const struct sl_cc_lpm_val *v;
	__u32 base, idx;

	v = bpf_map_lookup_elem(&cc_lpm, &m->key);
	if (!v)
		return NULL;
	base = (__u32)m->key.slot * SL_CC_MAX_RULES;
	for (__u32 i = 0; i < SL_CC_MAX_RULES; i++) {
		if (!((v->rules >> i) & 1))
			continue;
		idx = base + i;
		if (sl_cc_rule_matches(skops, idx, m->port, m->direction))
			return bpf_map_lookup_elem(&cc_rules, &idx);
	}
	return NULL;
}

static __always_inline bool sl_cc_name_eq(const char *a, const char *b)
{
	for (int i = 0; i < SL_CC_NAME_MAX; i++) {
		if (a[i] != b[i])
			return false;
		if (!a[i])
			return true;
	}
	return true;
}

/* Sets the rule's algorithm and reads the socket's back into `in_use`. */
static __always_inline bool sl_cc_set_algo(struct bpf_sock_ops *skops, const struct sl_cc_rule *r,
					   char *in_use)
{
	char want[SL_CC_NAME_MAX];

	__builtin_memcpy(want, r->algo, SL_CC_NAME_MAX);
	want[SL_CC_NAME_MAX - 1] = 0;
	bpf_setsockopt(skops, SOL_TCP, TCP_CONGESTION, want, SL_CC_NAME_MAX);
	if (bpf_getsockopt(skops, SOL_TCP, TCP_CONGESTION, in_use, SL_CC_NAME_MAX))
		return false;
	return sl_cc_name_eq(want, in_use);
}

/* SO_SNDBUF / SO_RCVBUF: the kernel keeps twice the value asked for (its bookkeeping
 * overhead), capped by net.core.wmem_max / rmem_max. A capped buffer did not take. */
static __always_inline bool sl_cc_set_buf(struct bpf_sock_ops *skops, int opt, __u32 bytes)
{
	int val = (int)bytes, got = 0;

	bpf_setsockopt(skops, SOL_SOCKET, opt, &val, sizeof(val));
	if (bpf_getsockopt(skops, SOL_SOCKET, opt, &got, sizeof(got)))
		return false;
	return (__u32)got == bytes * 2;
}

/* Applies every setting of `r`, in an order where none undoes another: the algorithm first
 * (switching it re-initialises the algorithm's state), the initial window, then its clamp.
 * Returns the bits (1 << enum sl_cc_setting) of those that did not read back as asked. */
static __always_inline __u8 sl_cc_apply(struct bpf_sock_ops *skops, const struct sl_cc_rule *r,
					char *in_use)
{
	struct tcp_sock *tp;
	__u8 failed = 0;
	int val;

	if (r->set & (1 << SL_CC_SET_ALGO)) {
		if (!sl_cc_set_algo(skops, r, in_use))
			failed |= 1 << SL_CC_SET_ALGO;
	} else {
		bpf_getsockopt(skops, SOL_TCP, TCP_CONGESTION, in_use, SL_CC_NAME_MAX);
	}
	if (r->set & (1 << SL_CC_SET_IW)) {
		val = (int)r->iw;
		bpf_setsockopt(skops, SOL_TCP, TCP_BPF_IW, &val, sizeof(val));
		if (skops->snd_cwnd != r->iw)
			failed |= 1 << SL_CC_SET_IW;
	}
	if (r->set & (1 << SL_CC_SET_CLAMP)) {
		val = (int)r->cwnd_clamp;
		bpf_setsockopt(skops, SOL_TCP, TCP_BPF_SNDCWND_CLAMP, &val, sizeof(val));
		tp = sl_cc_tcp_sock(skops);
		if (!tp || tp->snd_cwnd_clamp != r->cwnd_clamp)
			failed |= 1 << SL_CC_SET_CLAMP;
	}
	if ((r->set & (1 << SL_CC_SET_SNDBUF)) && !sl_cc_set_buf(skops, SO_SNDBUF, r->sndbuf))
		failed |= 1 << SL_CC_SET_SNDBUF;
	if ((r->set & (1 << SL_CC_SET_RCVBUF)) && !sl_cc_set_buf(skops, SO_RCVBUF, r->rcvbuf))
		failed |= 1 << SL_CC_SET_RCVBUF;
	return failed;
}

#endif /* SLUICE_BPF_CC_POLICY_H */
