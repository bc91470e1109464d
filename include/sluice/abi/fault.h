/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The fault injector's maps (bpf/tc_fault.bpf.c, tests/common/fault.h): a TC program that
 * drops packets on purpose, for tests and benchmarks of congestion control (this kernel has
 * no netem). sluiced never loads it. Same rules as abi.h.
 */
#ifndef SLUICE_ABI_FAULT_H
#define SLUICE_ABI_FAULT_H

/* Types and SL_STATIC_ASSERT, as for every map of the ABI. */
#include "abi.h"

enum sl_fault_mode {
	SL_FAULT_OFF = 0,    /* every packet passes (still counted as seen) */
	SL_FAULT_RANDOM = 1, /* drop with probability ppm / 1e6 */
	SL_FAULT_NTH = 2,    /* drop every nth eligible packet (the nth, 2nth, ...) */
};

/* `fault_config` (array of one). */
struct sl_fault_config {
	__u32 mode; /* enum sl_fault_mode */
	__u32 ppm;  /* SL_FAULT_RANDOM: parts per million */
	__u32 nth;  /* SL_FAULT_NTH: n >= 1 */
	/* 1: only TCP segments with payload are eligible (handshakes, pure ACKs and FINs without
	 * data always pass); 0: every packet is. */
	__u32 tcp_payload_only;
};
SL_STATIC_ASSERT(sizeof(struct sl_fault_config) == 16, "sl_fault_config size");

/* `fault_stats` (array of one, updated atomically). */
struct sl_fault_stats {
	__u64 seen;	/* every packet the program ran on */
	__u64 eligible; /* ... that the mode could drop (see tcp_payload_only) */
	__u64 dropped;
};
SL_STATIC_ASSERT(sizeof(struct sl_fault_stats) == 24, "sl_fault_stats size");

#endif /* SLUICE_ABI_FAULT_H */
