/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The data path's clock: CLOCK_MONOTONIC_COARSE in ns, kept by the kernel alone, so that
 * conntrack ages, expiry and the next-hop cache go on when no agent runs.
 * bpf_ktime_get_coarse_ns() is a helper call (~18 ns on the reference VM); bpf_jiffies64()
 * is inlined by the verifier into one load. So the coarse clock is read once per jiffy and
 * cached: a packet pays a load and a compare. The cache is shared by the CPUs; a racing
 * reader may see the previous tick's value, one jiffy stale at most, which no timeout here
 * can tell apart.
 */
#ifndef SLUICE_BPF_CLOCK_H
#define SLUICE_BPF_CLOCK_H

#include "common.h"

/* The cache, in .bss (plain scalars: the skeleton shows them to C++ as they are). */
__u64 sl_clock_jiffies;
__u64 sl_clock_coarse_ns;

static __always_inline __u64 sl_clock_ns(void)
{
	__u64 j = bpf_jiffies64();

	if (unlikely(j != sl_clock_jiffies)) {
		sl_clock_coarse_ns = bpf_ktime_get_coarse_ns();
		sl_clock_jiffies = j;
	}
	return sl_clock_coarse_ns;
}

#endif /* SLUICE_BPF_CLOCK_H */
