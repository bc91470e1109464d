// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The congestion-control policy (docs/design.md, "Congestion control"): a sockops program on a
 * cgroup v2. When a TCP connection is established (actively or passively), the first rule of
 * the active slot that matches it (lib/cc_policy.h) sets its algorithm, initial window, window
 * clamp and buffers; each setting is read back and counted as applied or failed per rule. A
 * matched connection is then followed by the RTT, RETRANS and STATE callbacks into `cc_conns`
 * (lib/cc_stats.h) until it closes. A connection no rule matches is left untouched: no
 * setting, no entry, no further callback.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "lib/cc_policy.h"
#include "lib/cc_stats.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Whether the IPv6 socket's peer is an IPv4-mapped address (::ffff:0:0/96). */
static __always_inline bool sl_cc_v4_mapped(struct bpf_sock_ops *skops)
{
	return skops->family == AF_INET6 && skops->remote_ip6[0] == 0 &&
	       skops->remote_ip6[1] == 0 && skops->remote_ip6[2] == bpf_htonl(0xffff);
}

/* The connection's remote address in the active slot's key, and its port and direction. */
static __always_inline bool sl_cc_describe(struct bpf_sock_ops *skops, __u8 dir,
					   const struct sl_cc_config *cfg, struct sl_cc_match *m,
					   struct sl_cc_conn *c)
{
	__builtin_memset(m, 0, sizeof(*m));
	m->key.slot = (__u8)(cfg->active_slot & 1);
	m->direction = dir;
	c->direction = dir;
	c->lport = (__u16)skops->local_port;
	c->rport = (__u16)bpf_ntohl(skops->remote_port);
	m->port = dir == SL_CC_DIR_ACTIVE ? c->rport : c->lport;
	if (skops->family == AF_INET || sl_cc_v4_mapped(skops)) {
		/* An IPv4 peer of an IPv6 socket (::ffff:a.b.c.d, a dual-stack listener or an
		 * IPv6 client socket) is an IPv4 connection to the rules. */
		__u32 r4, l4;

		/* Separate loads: the verifier refuses a context access whose offset was chosen
		 * by a select. */
		if (skops->family == AF_INET) {
			r4 = skops->remote_ip4;
			l4 = skops->local_ip4;
		} else {
			r4 = skops->remote_ip6[3];
			barrier_var(r4);
			l4 = skops->local_ip6[3];
			barrier_var(l4);
		}

		m->key.family = SL_AF_INET;
		m->key.prefixlen = SL_CC_LPM_FIXED_BITS + 32;
		__builtin_memcpy(m->key.addr, &r4, 4);
		__builtin_memcpy(c->raddr, &r4, 4);
		__builtin_memcpy(c->laddr, &l4, 4);
	} else if (skops->family == AF_INET6) {
		__u32 r[4] = { skops->remote_ip6[0], skops->remote_ip6[1], skops->remote_ip6[2],
			       skops->remote_ip6[3] };
		__u32 l[4] = { skops->local_ip6[0], skops->local_ip6[1], skops->local_ip6[2],
			       skops->local_ip6[3] };

		m->key.family = SL_AF_INET6;
		m->key.prefixlen = SL_CC_LPM_FIXED_BITS + 128;
		__builtin_memcpy(m->key.addr, r, 16);
		__builtin_memcpy(c->raddr, r, 16);
		__builtin_memcpy(c->laddr, l, 16);
	} else {
		return false;
	}
	c->family = m->key.family;
	return true;
}

/* Counts the outcome for the rule and starts following the connection. */
static __always_inline void sl_cc_record(struct bpf_sock_ops *skops, const struct sl_cc_rule *r,
					 struct sl_cc_conn *c, __u8 failed)
{
	struct sl_cc_rule_stats *st = sl_cc_rule_stats(r->rule_id);
	__u64 cookie = bpf_get_socket_cookie(skops);
	bool tracked;

	c->rule_id = r->rule_id;
	c->failed_set = failed;
	c->applied = !failed;
	c->established_ns = bpf_ktime_get_ns();
	sl_cc_refresh(skops, c);
	tracked = bpf_map_update_elem(&cc_conns, &cookie, c, BPF_NOEXIST) == 0;
	if (tracked)
		bpf_sock_ops_cb_flags_set(
			skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_RTT_CB_FLAG |
				       BPF_SOCK_OPS_RETRANS_CB_FLAG | BPF_SOCK_OPS_STATE_CB_FLAG);
	if (!st)
		return;
	/* Atomic: the program also runs in process context, where a softirq on the same CPU
	 * may run it for another socket in between a read and its write. */
	__sync_fetch_and_add(&st->matched, 1);
	__sync_fetch_and_add(failed ? &st->failed : &st->applied, 1);
	for (int i = 0; i < SL_CC_SET_MAX; i++)
		if (failed & (1 << i))
			__sync_fetch_and_add(&st->failed_by[i], 1);
	if (!tracked)
		__sync_fetch_and_add(&st->untracked, 1);
}

static __always_inline void sl_cc_established(struct bpf_sock_ops *skops, __u8 dir)
{
	const struct sl_cc_config *cfg;
	const struct sl_cc_rule *r;
	struct sl_cc_match m;
	struct sl_cc_conn c = {};
	__u32 zero = 0;

	cfg = bpf_map_lookup_elem(&cc_config, &zero);
	if (!cfg || !sl_cc_describe(skops, dir, cfg, &m, &c))
		return;
	r = sl_cc_lookup(skops, &m);
	if (!r)
		return;
	sl_cc_record(skops, r, &c, sl_cc_apply(skops, r, c.cc));
}

/* RTT, RETRANS and STATE callbacks of a followed connection. */
static __always_inline void sl_cc_update(struct bpf_sock_ops *skops, bool state_cb)
{
	__u64 cookie = bpf_get_socket_cookie(skops);
	struct sl_cc_conn *c = bpf_map_lookup_elem(&cc_conns, &cookie);

	if (!c)
		return;
	if (state_cb && skops->args[1] == TCP_CLOSE_STATE) {
		sl_cc_closed(skops, cookie, c);
		return;
	}
	sl_cc_refresh(skops, c);
	if (state_cb)
		c->state = (__u8)skops->args[1];
}

SEC("sockops")
int cc_sockops(struct bpf_sock_ops *skops)
{
	switch (skops->op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		sl_cc_established(skops, SL_CC_DIR_ACTIVE);
		break;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		sl_cc_established(skops, SL_CC_DIR_PASSIVE);
		break;
	case BPF_SOCK_OPS_RTT_CB:
	case BPF_SOCK_OPS_RETRANS_CB:
		sl_cc_update(skops, false);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		sl_cc_update(skops, true);
		break;
	}
	return 1;
}
