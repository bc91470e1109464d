// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Traffic generator for the forwarding benchmark. Run by BPF_PROG_TEST_RUN with
 * BPF_F_TEST_XDP_LIVE_FRAMES and ctx.ingress_ifindex = the client's veth: every XDP_TX
 * becomes a redirect out of that veth, i.e. a frame arriving at the load balancer.
 *
 * Live frames recycle their pages without resetting them, and the LB under test rewrites
 * headers in place, so every run writes the whole frame again from the template (set by
 * userspace before load) and then patches the per-packet fields:
 *   source address  = saddr_base + (seq & src_mask)
 *   source port     = sport_base + ((seq >> src_shift) & port_mask)
 * i.e. a fixed set of (src_mask + 1) * (port_mask + 1) flows, visited round-robin.
 * The IPv4 and L4 checksums are completed from sums userspace computed over the template
 * with those two fields zeroed (one's-complement sums do not depend on byte order).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "fwd_abi.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile __u64 tmpl[8];	  /* the frame, FB_FRAME_LEN bytes used */
const volatile __u32 saddr_base;  /* host order */
const volatile __u32 src_mask;	  /* number of sources - 1 (a power of two - 1) */
const volatile __u32 src_shift;	  /* log2(number of sources) */
const volatile __u32 port_mask;	  /* number of source ports - 1 (a power of two - 1) */
const volatile __u16 sport_base;  /* host order */
const volatile __u16 l4_csum_off; /* FB_OFF_UDP_CSUM or FB_OFF_TCP_CSUM */
const volatile __u32 ip_sum_base; /* 16-bit word sum of the IPv4 header, saddr and csum 0 */
const volatile __u32 l4_sum_base; /* same for pseudo header + L4 header + payload,
				   * saddr, sport and csum 0 */
const volatile __u8 is_udp;

__u64 seq; /* packets generated; one generator thread, so no atomics */

static __always_inline __u16 csum_finish(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

SEC("xdp")
int gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u64 n = seq++;
	__u32 saddr;
	__u16 sport, c;
	__u32 *w;
	int i;

	if (data + FB_FRAME_LEN > end)
		return XDP_ABORTED;
	/* 60 bytes: seven 8-byte words and one 4-byte word. */
	for (i = 0; i < 7; i++)
		((__u64 *)data)[i] = tmpl[i];
	*(__u32 *)(data + 56) = (__u32)tmpl[7];

	saddr = bpf_htonl(saddr_base + (__u32)(n & src_mask));
	sport = bpf_htons(sport_base + (__u16)((n >> src_shift) & port_mask));
	*(__u32 *)(data + FB_OFF_SADDR) = saddr;
	*(__u16 *)(data + FB_OFF_L4) = sport;

	w = &saddr;
	*(__u16 *)(data + FB_OFF_IP_CSUM) = csum_finish(ip_sum_base + (*w & 0xffff) + (*w >> 16));
	c = csum_finish(l4_sum_base + (*w & 0xffff) + (*w >> 16) + sport);
	/* UDP: a computed 0 is sent as 0xffff (0 means "no checksum"). */
	if (is_udp && c == 0)
		c = 0xffff;
	if (l4_csum_off == FB_OFF_UDP_CSUM)
		*(__u16 *)(data + FB_OFF_UDP_CSUM) = c;
	else
		*(__u16 *)(data + FB_OFF_TCP_CSUM) = c;
	return XDP_TX;
}
