/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Incremental Internet checksum updates (RFC 1624: HC' = ~(~HC + ~m + m')).
 * The one's-complement sum is byte-order independent, so wire words are summed as loaded;
 * no byte swapping is needed. Open-coded rather than bpf_csum_diff(): no helper call per
 * packet, and every update here touches at most 40 bytes.
 */
#ifndef SLUICE_BPF_CSUM_H
#define SLUICE_BPF_CSUM_H

#include "common.h"

/* Accumulates the change from `from` to `to` (len bytes, a multiple of 4, ≤ 16). */
static __always_inline __u32 sl_csum_delta(__u32 acc, const __be32 *from, const __be32 *to,
					   int words)
{
#pragma unroll
	for (int i = 0; i < 4; i++) {
		if (i >= words)
			break;
		acc += (~from[i] & 0xffff) + (~from[i] >> 16);
		acc += (to[i] & 0xffff) + (to[i] >> 16);
	}
	return acc;
}

static __always_inline __u32 sl_csum_delta16(__u32 acc, __be16 from, __be16 to)
{
	return acc + (__u16)~from + to;
}

static __always_inline __u16 sl_csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

/* Applies an accumulated delta to a checksum field in place. */
static __always_inline void sl_csum_apply(__sum16 *check, __u32 delta)
{
	*check = ~sl_csum_fold((__u16) ~*check + delta);
}

/* UDP: a zero checksum means "none" (IPv4 only); a computed zero is sent as 0xffff. */
static __always_inline void sl_csum_apply_udp(__sum16 *check, __u32 delta, __u8 family)
{
	if (family == SL_AF_INET && *check == 0)
		return;
	sl_csum_apply(check, delta);
	if (*check == 0)
		*check = 0xffff;
}

#endif /* SLUICE_BPF_CSUM_H */
