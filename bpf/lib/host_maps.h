/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Maps of the host flow tracker (tc_flow.bpf.c). Keys and values are defined in
 * sluice/abi/abi.h only. Apart from maps.h because a map declared in a header is created by
 * every object that includes it: the tracker must not get the load balancer's maps, nor the
 * load balancer this one. Sizes marked "set by the loader" are overridden between open() and
 * load() (agent/conntrack/host_track.cc).
 */
#ifndef SLUICE_BPF_HOST_MAPS_H
#define SLUICE_BPF_HOST_MAPS_H

#include "common.h"

/* The host's own TCP flows, keyed local -> peer (source = this host's address and port,
 * whichever way the packet goes), so both directions find one entry. An LRU: a full table
 * forgets its least recently seen flow rather than refusing to track a new one. Its free
 * lists are per CPU (BPF_F_NO_COMMON_LRU): an insert costs less (about 60 ns on the
 * conntrack table, docs/benchmarks.md), at the price that flows all handled by one CPU may
 * be evicted before the table is full. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SL_DEFAULT_HOST_FLOWS); /* set by the loader */
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__type(key, struct sl_flow_key);
	__type(value, struct sl_ct_entry);
} host_flows SEC(".maps");

#endif /* SLUICE_BPF_HOST_MAPS_H */
