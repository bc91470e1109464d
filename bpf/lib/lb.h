/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* VIP lookup and backend selection (Maglev source hash, round-robin, least-conn; TCP flows
 * pinned by conntrack). */
#ifndef SLUICE_BPF_LB_H
#define SLUICE_BPF_LB_H

#include "common.h"
#include "reasons.h"
#include "maps.h"
#include "vip_conntrack.h"
#include <sluice/abi/hash.h>

static __always_inline struct sl_vip_entry *sl_vip_get(const struct sl_addr *addr, __be16 port,
						       __u8 proto, __u8 family)
{
	__u32 slot = sl_vip_index_slot(addr, port, proto);
	__u32 *idx = bpf_map_lookup_elem(&vip_index, &slot);
	struct sl_vip_entry *e;
	__u32 id;

	if (!idx || !*idx)
		return NULL;
	if (*idx == SL_VIP_INDEX_COLLISION) {
		struct sl_endpoint k = {
			.addr = *addr, .port = port, .proto = proto, .family = family
		};
		__u32 *pid = bpf_map_lookup_elem(&vips, &k);

		if (!pid)
			return NULL;
		id = *pid;
	} else {
		id = *idx - 1;
	}
	e = bpf_map_lookup_elem(&vip_table, &id);
	/* The index is direct-mapped: verify the whole key. */
	if (!e || e->ep.port != port || e->ep.proto != proto || e->ep.family != family ||
	    e->ep.addr.w[0] != addr->w[0] || e->ep.addr.w[1] != addr->w[1] ||
	    e->ep.addr.w[2] != addr->w[2] || e->ep.addr.w[3] != addr->w[3])
		return NULL;
	return e;
}

/* Exact (addr, port, proto) first, then the port-0 wildcard of that address. */
static __always_inline struct sl_vip *sl_vip_lookup(const struct sl_addr *addr, __be16 port,
						    __u8 proto, __u8 family)
{
	struct sl_vip_entry *e = sl_vip_get(addr, port, proto, family);

	if (!e && port)
		e = sl_vip_get(addr, 0, proto, family);
	return e ? &e->vip : NULL;
}

/* 0: certainly not in the set; 1: maybe (confirm with the exact map where it matters). */
static __always_inline int sl_filter_test(__u32 kind, const struct sl_addr *addr)
{
	__u32 slot = sl_addr_filter_slot(addr);
	__u32 key = kind * SL_ADDR_FILTER_WORDS + (slot >> 6);
	__u64 *w = bpf_map_lookup_elem(&addr_filter, &key);

	return w && (*w & (1ull << (slot & 63)));
}

static __always_inline int sl_is_vip_addr(const struct sl_addr *addr, __u8 family)
{
	struct sl_addr_key k = { .addr = *addr, .family = family };

	return bpf_map_lookup_elem(&vip_addrs, &k) != NULL;
}

/* Source hash: the key in `maglev` of the VIP's Maglev slot for this source. */
static __always_inline __u32 sl_maglev_key(const struct sl_vip *vip, const struct sl_addr *src,
					   __be16 sport)
{
	__u32 h = sl_source_hash(src, (vip->flags & SL_VIP_F_HASH_SPORT) ? sport : 0);

	return vip->ring_id * SL_MAGLEV_SIZE + sl_maglev_slot(h);
}

/*
 * `may_goto` (kernel 6.9+) as a loop condition, in bytes because clang 14 has no mnemonic for
 * it (this is libbpf's bpf_experimental.h can_loop for older compilers): true, until the
 * program has looped BPF_MAX_LOOPS (8M) times in all, then false. The verifier then needs no
 * bound on the loop: it checks the body until its state converges, instead of once per
 * iteration of a bounded loop. At run time it is a decrement of a stack slot.
 */
/* clang-format off */
#define sl_can_loop                                                              \
	({                                                                       \
		__label__ l_break, l_continue;                                   \
		int ret_ = 1;                                                    \
		asm volatile goto("1:.byte 0xe5; .byte 0;"                       \
				  ".long ((%l[l_break] - 1b - 8) / 8) & 0xffff;" \
				  ".short 0" :::: l_break);                      \
		goto l_continue;                                                 \
	l_break:                                                                 \
		ret_ = 0;                                                        \
	l_continue:;                                                             \
		ret_;                                                            \
	})
/* clang-format on */

/*
 * Least-conn over the n usable backends of the ring at `base` (abi.h, enum sl_sched): the key
 * of the one with the least backend_conns[id] / weight, compared by cross-multiplication in
 * u64 (conns_a * w_b < conns_b * w_a); SL_BACKEND_NONE if none. The scan starts at candidate
 * `start` and moves only to a strictly better one, so among equals the start wins: derived
 * from the flow hash, it spreads ties. Nothing beats a backend without connections: the scan
 * stops there. A plain loop under sl_can_loop: a bounded loop of SL_LC_MAX_BACKENDS took more
 * than the verifier budget left to the program, and bpf_loop() paid a function call (and its
 * return thunk) per candidate, ~11 ns each here.
 */
__noinline __u32 sl_lc_pick(__u32 base, __u32 n, __u32 start)
{
	__u32 best = SL_BACKEND_NONE, j = start, i;
	__u64 best_conns = 0, best_w = 0;

	if (n > SL_LC_MAX_BACKENDS)
		return SL_BACKEND_NONE;
	for (i = 0; i < n && sl_can_loop; i++) {
		__u32 kid = base + 1 + j, kw = kid + n, *id, *w;
		__u64 *c, conns;

		if (++j >= n)
			j = 0;
		id = bpf_map_lookup_elem(&maglev, &kid);
		w = bpf_map_lookup_elem(&maglev, &kw);
		if (!id || !w || !*w)
			continue;
		c = bpf_map_lookup_elem(&backend_conns, id);
		if (!c)
			continue;
		conns = *c;
		if (best_w && conns * best_w >= best_conns * *w)
			continue;
		best = kid;
		best_conns = conns;
		best_w = *w;
		if (!conns)
			break;
	}
	return best;
}

/*
 * Round-robin and least-conn (abi.h, enum sl_sched): the key in `maglev` of the backend for a
 * flow with no conntrack entry, or an out-of-range key when there is none. `syn` (a bare SYN:
 * a new connection): the scheduler's pick, the next slot of the round-robin sequence or the
 * least-loaded backend. Anything else (midstream, a later fragment, an ICMP error): slot
 * 1 + hash % L, the same for every packet of the flow while the set does not change. A
 * global function: source-hash VIPs carry none of it, and the verifier walks it once. UDP
 * never comes here: UDP VIPs are source-hash only (the config enforces it), so the UDP fast
 * path reads Maglev rings only and pays nothing for the other schedulers.
 */
__noinline __u32 sl_sched_key(const struct sl_vip *vip, const struct sl_addr *src, __be16 sport,
			      __u32 syn)
{
	__u32 base, n, h, vid, *len;
	__u64 *ctr;

	if (!vip || !src)
		return SL_BACKEND_NONE;
	base = vip->ring_id * SL_MAGLEV_SIZE;
	len = bpf_map_lookup_elem(&maglev, &base);
	if (!len)
		return SL_BACKEND_NONE;
	n = *len;
	if (!n || n >= SL_MAGLEV_SIZE) /* no usable backend */
		return SL_BACKEND_NONE;
	if (vip->sched != SL_SCHED_ROUND_ROBIN && vip->sched != SL_SCHED_LEAST_CONN)
		return SL_BACKEND_NONE;
	h = sl_source_hash(src, sport);
	if (syn && vip->sched == SL_SCHED_ROUND_ROBIN) {
		vid = vip->vip_id;
		ctr = bpf_map_lookup_elem(&rr_counters, &vid);
		if (!ctr)
			return SL_BACKEND_NONE;
		/* Exact across CPUs: every SYN takes its own position in the sequence. */
		return base + 1 + (__u32)(__sync_fetch_and_add(ctr, 1) % n);
	}
	if (syn)
		return sl_lc_pick(base, n, h % n);
	return base + sl_sched_hash_slot(h, n);
}

/* The backend at `key` of the rings; SL_BACKEND_NONE outside the map. */
static __always_inline __u32 sl_ring_get(__u32 key)
{
	__u32 *id = bpf_map_lookup_elem(&maglev, &key);

	return id ? *id : SL_BACKEND_NONE;
}

/* The backend of a TCP packet with no conntrack entry that cannot start a connection (an
 * ICMP error, a later fragment): Maglev for source-hash VIPs, the hash slot for the others. */
static __always_inline __u32 sl_hash_pick(const struct sl_vip *vip, const struct sl_addr *src,
					  __be16 sport)
{
	__u32 key;

	if (likely(vip->sched == SL_SCHED_SOURCE_HASH))
		key = sl_maglev_key(vip, src, sport);
	else
		key = sl_sched_key(vip, src, sport, 0);
	return sl_ring_get(key);
}

static __always_inline struct sl_backend *sl_backend_get(__u32 id)
{
	struct sl_backend *be = bpf_map_lookup_elem(&backends, &id);

	if (!be || !(be->flags & SL_BACKEND_F_ACTIVE))
		return NULL;
	return be;
}

/* Backend `id` may take a new connection outside its ring's pick (a reuse that keeps the
 * backend): in use, and not down, drained, retired or resetting. */
static __always_inline int sl_backend_takes_new(__u32 id)
{
	struct sl_backend *be = bpf_map_lookup_elem(&backends, &id);

	return be &&
	       (be->flags & (SL_BACKEND_F_ACTIVE | SL_BACKEND_F_RESET | SL_BACKEND_F_DOWN |
			     SL_BACKEND_F_DRAINED | SL_BACKEND_F_RETIRED)) == SL_BACKEND_F_ACTIVE;
}

/* Backend `id` is down and its VIP resets its established flows (on_backend_down: reset). */
static __always_inline int sl_backend_resets(__u32 id)
{
	struct sl_backend *be = bpf_map_lookup_elem(&backends, &id);

	return be && (be->flags & SL_BACKEND_F_RESET);
}

/*
 * The slow path of a client -> VIP TCP segment `s` of flow `k`: everything but a confirmed
 * established flow's plain in-window segment. `ct` is the flow's conntrack entry, NULL if it
 * has none there (then ct_pending is asked). Returns the backend id, with SL_CT_CLIENT_NEW if
 * this call created a connection: on a miss, and for a plausible new SYN on a TIME_WAIT entry
 * (reuse), the VIP's scheduler picks (round-robin and least-conn schedule only a bare SYN;
 * see sl_sched_key()); a reuse of a CLOSED entry keeps its backend. Out of window:
 * SL_CT_CLIENT_OOW (drop, counted by kind). An entry found idle past its timeout is reclaimed
 * and the segment treated as a miss.
 * New entries go to ct_pending, which makes room by evicting (lru): an insert fails only
 * when the LRU cannot (rare); then the flow goes untracked by the same pick that a non-SYN
 * miss takes (SL_CT_STAT_FULL_UNTRACKED), except a SYN on a VIP with a stateful scheduler,
 * which is refused (SL_CT_CLIENT_REFUSED: drop ct_full): its pick depends on the moment and
 * could not be found again. An insert that loses the race to another CPU follows the
 * winner's pick (round-robin and least-conn picks are not consistent).
 * A hit on an open flow (SYN_SENT ... LAST_ACK) whose backend has SL_BACKEND_F_RESET breaks
 * the flow off before the state machine sees the segment (sl_ct_backend_reset()): the
 * result is SL_CT_CLIENT_RESET, and the caller answers with a RST; a RST from the client
 * goes on to the backend, which may still hold the connection.
 * A global function (see sl_ct_step()); the outcome travels in the return value because a
 * callee's write through a pointer leaves the caller's stack slot unknown to the verifier,
 * which then cannot prune the rest of the program against the fast path's walk.
 */
__noinline __u64 sl_ct_client(struct xdp_md *ctx, const struct sl_flow_key *k,
			      struct sl_ct_entry *ct, const struct sl_vip *vip,
			      struct sl_tcp_seg *s)
{
	__u8 old = SL_TCP_NONE;
	struct sl_ct_entry *e;
	__u32 id, act, zero = 0;
	int pending = 0;

	if (!k || !vip || !s)
		return SL_BACKEND_NONE;
	if (!ct) {
		ct = bpf_map_lookup_elem(&ct_pending, k);
		pending = 1;
	}
	if (sl_tcp_seg_read(ctx, s)) {
		/* A later fragment: no TCP header, nothing to learn or create. */
		return ct ? ct->backend_id : sl_hash_pick(vip, &k->src, k->sport);
	}
	if (ct && sl_ct_expired(ct, pending, sl_clock_ns())) {
		sl_ct_reclaim(k, ct, pending);
		ct = NULL;
	}
	id = SL_BACKEND_NONE;
	if (ct) {
		id = ct->backend_id;
		if (ct->state < SL_TCP_TIME_WAIT && sl_backend_resets(id))
			return sl_ct_backend_reset(k, ct, s, pending) ? SL_CT_CLIENT_RESET : id;
		old = ct->state;
		act = sl_ct_step(k, ct, SL_DIR_CLIENT, s, pending);
		if (act & SL_CT_ACT_DROP)
			return SL_CT_CLIENT_OOW;
		if (!(act & SL_CT_ACT_REUSE))
			return id;
		/* Reuse. The finished entry holds no backend count (released on its way into
		 * TIME_WAIT/CLOSED): delete it, and create the new connection's with NOEXIST, so
		 * that a concurrent agent expiry or a second CPU can never leave two. */
		bpf_map_delete_elem(pending ? (void *)&ct_pending : (void *)&conntrack, k);
		if (!(act & SL_CT_ACT_SAME_BACKEND) || !sl_backend_takes_new(id))
			id = SL_BACKEND_NONE;
	}
	if (id == SL_BACKEND_NONE) {
		if (likely(vip->sched == SL_SCHED_SOURCE_HASH))
			id = sl_ring_get(sl_maglev_key(vip, &k->src, k->sport));
		else
			id = sl_ring_get(sl_sched_key(vip, &k->src, k->sport,
						      (s->flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) ==
							      TCP_FLAG_SYN));
	}
	if (!sl_backend_get(id))
		return id;
	e = bpf_map_lookup_elem(&ct_scratch, &zero);
	if (!e)
		return id;
	__builtin_memset(e, 0, sizeof(*e));
	e->backend_id = id;
	e->vip_id = vip->vip_id;
	e->flags = (vip->mode == SL_MODE_DSR ? SL_CT_F_ONE_SIDED : 0) |
		   (old != SL_TCP_NONE ? SL_CT_F_REUSED : 0);
	switch (sl_ct_create(k, e, s, old)) {
	case SL_CT_CREATE_NEW:
		return id | SL_CT_CLIENT_NEW;
	case SL_CT_CREATE_FULL:
		if (vip->sched != SL_SCHED_SOURCE_HASH &&
		    (s->flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN)
			return SL_CT_CLIENT_REFUSED;
		sl_ct_stat(SL_CT_STAT_FULL_UNTRACKED);
		return id;
	default:
		break;
	}
	if (vip->sched != SL_SCHED_SOURCE_HASH) {
		/* Round-robin and least-conn picks are not consistent: if another CPU created the
		 * flow first, follow its choice. */
		ct = sl_ct_lookup_any(k, &pending);
		if (ct)
			return ct->backend_id;
	}
	return id;
}

/*
 * The backend for a packet of flow (client, cport) -> (vip, vport).
 * UDP: stateless, the hash pick every time (sl_hash_pick()). TCP: the conntrack entry's
 * backend; on a miss the scheduler's pick (source-hash: the same backend a SYN would get;
 * round-robin and least-conn: see sl_sched_key()). With `create` the packet is one of the
 * flow's own (client -> VIP): it is counted, advances the state machine, and on a miss
 * creates the entry; a new SYN on a TIME_WAIT/CLOSED entry starts a new connection with a
 * fresh pick. Without it (an ICMP error about the flow) conntrack is only read.
 * `proto` is the flow's protocol: for an ICMP error it is the quoted packet's. *flow gets the
 * enum sl_flow_outcome (reasons.h), left alone when nothing new happened: the caller
 * initialises it. NULL with SL_FLOW_RESET: the flow was reset, and the caller answers the packet
 * with a RST.
 */
static __always_inline struct sl_backend *
sl_select_backend(struct xdp_md *ctx, const struct sl_pkt *p, const struct sl_vip *vip, __u8 proto,
		  const struct sl_addr *client, __be16 cport, const struct sl_addr *vaddr,
		  __be16 vport, int create, __u32 *backend_id, __u32 *flow)
{
	__u32 id;

	if (proto == IPPROTO_TCP) {
		struct sl_flow_key k = {};
		struct sl_ct_entry *ct;
		struct sl_backend *be;

		sl_flow_key_init(&k, client, vaddr, cport, vport, IPPROTO_TCP, p->family);
		ct = bpf_map_lookup_elem(&conntrack, &k);
		if (!create) { /* an ICMP error about the flow: read only */
			int pending;

			ct = sl_ct_lookup_any(&k, &pending);
			id = ct ? ct->backend_id : sl_hash_pick(vip, client, cport);
		} else if ((be = sl_ct_fast(ct, ctx, p, &id))) {
			*backend_id = id;
			return be;
		} else {
			struct sl_tcp_seg s = {};
			__u64 r;

			sl_tcp_seg_init(&s, ctx, p);
			r = sl_ct_client(ctx, &k, ct, vip, &s);
			id = (__u32)r;
			*flow = r >> 32;
		}
	} else {
		/* UDP VIPs are source-hash only (the config allows nothing else): stateless. */
		id = sl_ring_get(sl_maglev_key(vip, client, cport));
	}
	*backend_id = id;
	return sl_backend_get(id);
}

#endif /* SLUICE_BPF_LB_H */
