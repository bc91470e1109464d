/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Maps of the load-balancer data path (xdp_lb.bpf.c). Keys and values are defined in
 * sluice/abi/abi.h only. Sizes marked "set by the agent" are overridden between open() and
 * load(). The host flow tracker's map is in host_maps.h: every object that includes a map
 * header creates its maps.
 */
#ifndef SLUICE_BPF_MAPS_H
#define SLUICE_BPF_MAPS_H

#include "common.h"

/* Written by the agent through the skeleton's .bss. */
/* Number of port-0 (wildcard) NAT backends: their replies need a second rev_nat lookup. */
__u32 sl_rev_nat_wildcards;
/* The established timeout in ns (0: never), as in `info`: the fast path reads it with one
 * load instead of an `info` lookup and a multiply. Written with `info`. */
__u64 sl_ct_established_ns;

/* Set between open() and load(): first fragments one VIP may record per SL_FRAG_TIMEOUT_NS
 * window. A loader that resizes `frags` scales it with it (an eighth of the table). */
const volatile __u32 sl_frag_vip_budget = SL_FRAG_VIP_BUDGET;

/* Direct-mapped VIP index (see SL_VIP_INDEX_BITS): an inlined array lookup instead of
 * hashing a 20-byte key. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1 << SL_VIP_INDEX_BITS);
	__type(key, __u32);
	__type(value, __u32);
} vip_index SEC(".maps");

/* (VIP address, port, proto) -> vip_id: the authoritative VIP set, read by the data path
 * only for index slots shared by several VIPs. Port 0 is the per-address wildcard. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SL_DEFAULT_MAX_VIPS); /* set by the agent */
	__type(key, struct sl_endpoint);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} vips SEC(".maps");

/* Address pre-filter, SL_FILTER_KINDS bitmaps of SL_ADDR_FILTER_WORDS u64 each (see abi.h).
 * An array lookup is inlined by the verifier: no helper call, no hashing of a long key. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, (SL_FILTER_KINDS * SL_ADDR_FILTER_WORDS));
	__type(key, __u32);
	__type(value, __u64);
} addr_filter SEC(".maps");

/* Every address that carries a VIP. Consulted only off the fast path (malformed packets,
 * filter collisions), to tell "addressed to a VIP" from "the host's". Value unused. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SL_DEFAULT_MAX_VIPS); /* set by the agent */
	__type(key, struct sl_addr_key);
	__type(value, __u32);
} vip_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SL_DEFAULT_MAX_VIPS); /* set by the agent */
	__type(key, __u32);
	__type(value, struct sl_vip_entry);
} vip_table SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SL_DEFAULT_MAX_BACKENDS); /* set by the agent */
	__type(key, __u32);
	__type(value, struct sl_backend);
} backends SEC(".maps");

/* All rings back to back: ring r occupies [r * SL_MAGLEV_SIZE, (r+1) * SL_MAGLEV_SIZE). What a
 * ring holds depends on the VIP's scheduler (abi.h, enum sl_sched).
 * Mmapable: the agent writes a staging ring with plain stores through its mapping (a
 * bpf_map_update_batch of 65537 elements costs ~20 ms, docs/benchmarks.md), then switches
 * the VIP to it with one vip_table update. Lookups are inlined the same either way. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, (SL_DEFAULT_MAX_VIPS * SL_RINGS_PER_VIP * SL_MAGLEV_SIZE)); /* agent */
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u32);
} maglev SEC(".maps");

/* Round-robin position per vip_id: a SYN to a round-robin VIP takes the sequence slot
 * rr_counters[vip_id] % L and adds 1 with an atomic fetch-and-add, so the count is exact
 * across CPUs (a shared, not a per-CPU, counter: the weights hold over the whole host). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SL_DEFAULT_MAX_VIPS); /* set by the agent */
	__type(key, __u32);
	__type(value, __u64);
} rr_counters SEC(".maps");

/* NAT replies: backend endpoint -> VIP endpoint to restore as the source. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SL_DEFAULT_MAX_BACKENDS); /* set by the agent */
	__type(key, struct sl_endpoint);
	__type(value, struct sl_rev_nat);
} rev_nat SEC(".maps");

/* A preallocated hash, not an LRU: an LRU evicts live entries silently under pressure, and an
 * evicted entry's backend_conns count would never be given back. When this table is full an
 * insert fails (-E2BIG) and the data path applies the full-table policy (vip_conntrack.h,
 * docs/design.md); only the agent's expiry and the data path's own deletes remove entries.
 * Preallocated: no allocation on the SYN path, and the whole max_entries is usable from any
 * CPU (the free list is per CPU, but a CPU takes from the others' when its own is empty). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SL_DEFAULT_CT_ENTRIES); /* set by the agent */
	__type(key, struct sl_flow_key);
	__type(value, struct sl_ct_entry);
} conntrack SEC(".maps");

/* Flows that are not confirmed (a handshake in progress, a mid-stream pickup with no reply
 * yet) and flows that are finished (TIME_WAIT, CLOSED): everything a blind sender can create
 * and everything that is only kept for late segments. Entries here never hold a
 * backend_conns count (live == 0), so the LRU may evict any of them when the table is full:
 * that is the early drop that keeps SYN floods, bare-ACK floods and honest churn from locking
 * out new connections (docs/design.md, "Trust no packet"). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SL_DEFAULT_CT_ENTRIES); /* set by the agent */
	__type(key, struct sl_flow_key);
	__type(value, struct sl_ct_entry);
} ct_pending SEC(".maps");

/* Scratch space for the entry a new flow is built in (sl_ct_client()) and for a SYN's TCP
 * options: bytes that the program's call chain cannot spare on its 512-byte stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sl_ct_entry);
} ct_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sl_tcp_opts);
} opt_scratch SEC(".maps");

/* ... and for a fragment's key (xdp_lb.bpf.c, sl_frag_key_of()). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sl_frag_key);
} frag_scratch SEC(".maps");

/* Ports of fragmented datagrams, recorded by their first fragment. An LRU: records are
 * deleted by their datagram's last fragment and expire after SL_FRAG_TIMEOUT_NS, and no VIP
 * may hold more than 2 * SL_FRAG_VIP_BUDGET unexpired ones (`frag_budget`), so what the LRU
 * evicts when the table is full are expired records, older than any live one (the kernel's
 * LRU is approximate: nearly always; docs/design.md, "Fragments"). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SL_FRAG_ENTRIES);
	__type(key, struct sl_frag_key);
	__type(value, struct sl_frag_ports);
} frags SEC(".maps");

/* Egress interfaces for XDP_REDIRECT, keyed by ifindex. Must be filled from inside the
 * network namespace that owns the interfaces. */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, SL_MAX_IFACES);
	__type(key, __u32);
	__type(value, __u32);
} tx_ports SEC(".maps");

/* Next hop per backend, per CPU: bpf_fib_lookup costs more than the rest of the fast path. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SL_DEFAULT_MAX_BACKENDS); /* set by the agent */
	__type(key, __u32);
	__type(value, struct sl_nexthop);
} nh_cache SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SL_DEFAULT_MAX_VIPS); /* set by the agent */
	__type(key, __u32);
	__type(value, struct sl_traffic);
} vip_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SL_DEFAULT_MAX_BACKENDS); /* set by the agent */
	__type(key, __u32);
	__type(value, struct sl_traffic);
} backend_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SL_VERDICT_MAX);
	__type(key, __u32);
	__type(value, struct sl_counter);
} verdicts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SL_DROP_MAX);
	__type(key, __u32);
	__type(value, struct sl_counter);
} drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SL_PASS_MAX);
	__type(key, __u32);
	__type(value, struct sl_counter);
} passes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sl_info);
} info SEC(".maps");

/* Live TCP connections per backend id (see struct sl_ct_entry for who adds and subtracts).
 * Updated only with atomic adds. Mmapable, so that the agent's expiry can subtract atomically
 * too (__atomic_fetch_sub on the mapping), and least-conn readers can read without syscalls. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SL_DEFAULT_MAX_BACKENDS); /* set by the agent, like backend_stats */
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u64);
} backend_conns SEC(".maps");

/* How many entries of `conntrack` one-sided flows hold (abi.h, after struct sl_info): the
 * budget sl_info.ct_one_sided_max is checked against it.
 * Updated only with atomic adds; mmapable, so that the agent's expiry subtracts atomically. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u64);
} ct_one_sided SEC(".maps");

/* Conntrack transitions worth telling userspace about (struct sl_ct_event): new,
 * established, closed by FIN, closed by RST. Never one record per packet. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, SL_CT_EVENTS_BYTES);
} ct_events SEC(".maps");

/* Every state change, indexed by SL_CT_TRANSITION(old, new). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SL_CT_TRANSITIONS);
	__type(key, __u32);
	__type(value, __u64);
} ct_transitions SEC(".maps");

/* Conntrack counters, indexed by enum sl_ct_stat. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SL_CT_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} ct_stats SEC(".maps");

/* {ifindex, outer VLAN id} an interface carries (struct sl_vlan_key). Read only for tagged
 * frames; untagged traffic never looks here. Written by the agent. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SL_VLAN_MEMBER_ENTRIES);
	__type(key, struct sl_vlan_key);
	__type(value, __u32);
} vlan_members SEC(".maps");

/* First-fragment budget per vip_id (struct sl_frag_budget): one VIP's flood of first
 * fragments cannot fill `frags` and push out the records of other VIPs' datagrams. A shared
 * array with atomic adds: the budget holds over the whole host, not per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SL_DEFAULT_MAX_VIPS); /* set by the agent */
	__type(key, __u32);
	__type(value, struct sl_frag_budget);
} frag_budget SEC(".maps");

#endif /* SLUICE_BPF_MAPS_H */
