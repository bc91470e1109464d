/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The source hash that indexes a VIP's Maglev ring. Compiled both into the XDP program and
 * into userspace (sluicectl explain, tests), so both always agree on which backend a flow
 * reaches. Bob Jenkins' lookup3 mixing (the kernel's jhash), over the five 32-bit words
 * (source address words, source port).
 */
#ifndef SLUICE_HASH_H
#define SLUICE_HASH_H

#include "abi.h"

#ifdef __BPF__
#define SL_HASH_INLINE static __always_inline
#else
#define SL_HASH_INLINE static inline
#endif

#define SL_HASH_SEED 0x5ca1ab1eu

#define sl_rol32(x, k) (((x) << (k)) | ((x) >> (32 - (k))))

/* The kernel jhash.h layout, three operations a line, kept as it is: */
/* clang-format off */
#define sl_jhash_mix(a, b, c)                   \
	do {                                    \
		a -= c; a ^= sl_rol32(c, 4); c += b;  \
		b -= a; b ^= sl_rol32(a, 6); a += c;  \
		c -= b; c ^= sl_rol32(b, 8); b += a;  \
		a -= c; a ^= sl_rol32(c, 16); c += b; \
		b -= a; b ^= sl_rol32(a, 19); a += c; \
		c -= b; c ^= sl_rol32(b, 4); b += a;  \
	} while (0)

#define sl_jhash_final(a, b, c)            \
	do {                               \
		c ^= b; c -= sl_rol32(b, 14); \
		a ^= c; a -= sl_rol32(c, 11); \
		b ^= a; b -= sl_rol32(a, 25); \
		c ^= b; c -= sl_rol32(b, 16); \
		a ^= c; a -= sl_rol32(c, 4);  \
		b ^= a; b -= sl_rol32(a, 14); \
		c ^= b; c -= sl_rol32(b, 24); \
	} while (0)
/* clang-format on */

/* addr: the source address words as stored in struct sl_addr (network order, hashed as raw
 * words); sport: network order, or 0 when the VIP hashes on the address only. */
SL_HASH_INLINE __u32 sl_source_hash(const struct sl_addr *addr, __be16 sport)
{
	__u32 a, b, c;

	a = b = c = 0xdeadbeefu + (5u << 2) + SL_HASH_SEED;
	a += addr->w[0];
	b += addr->w[1];
	c += addr->w[2];
	sl_jhash_mix(a, b, c);
	a += addr->w[3];
	b += (__u32)sport;
	sl_jhash_final(a, b, c);
	return c;
}

/* Bit of the address pre-filter for an address (Fibonacci hashing of the folded words). */
SL_HASH_INLINE __u32 sl_addr_filter_slot(const struct sl_addr *addr)
{
	__u32 x = addr->w[0] ^ addr->w[1] ^ addr->w[2] ^ addr->w[3];

	return (x * 0x9E3779B1u) >> (32 - SL_ADDR_FILTER_BITS);
}

/* Slot of the direct-mapped VIP index for (address, port, protocol); port in network order. */
SL_HASH_INLINE __u32 sl_vip_index_slot(const struct sl_addr *addr, __be16 port, __u8 proto)
{
	__u32 x = addr->w[0] ^ addr->w[1] ^ addr->w[2] ^ addr->w[3];

	x ^= ((__u32)port << 8) ^ proto;
	return (x * 0x9E3779B1u) >> (32 - SL_VIP_INDEX_BITS);
}

/* Slot of the Maglev ring for this hash. */
SL_HASH_INLINE __u32 sl_maglev_slot(__u32 hash)
{
	return hash % SL_MAGLEV_SIZE;
}

/* Round-robin and least-conn rings (see enum sl_sched): the slot a packet that is not
 * scheduled (midstream) takes among the ring's n > 0 entries, for hash
 * sl_source_hash(src addr, src port). */
SL_HASH_INLINE __u32 sl_sched_hash_slot(__u32 hash, __u32 n)
{
	return 1 + hash % n;
}

#endif /* SLUICE_HASH_H */
