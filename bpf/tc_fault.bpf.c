// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Fault injector for tests and benchmarks (tests/common/fault.h): drops a configured share of
 * the packets on the hook it is attached to (tcx ingress or egress), at random or every nth,
 * optionally only TCP segments that carry payload, so that handshakes and pure ACKs pass and
 * a transfer sees data loss only. This kernel has no netem; sluiced never loads this program.
 *
 * Every packet not dropped leaves with TCX_NEXT, so programs behind it on the hook still run.
 * Counts one packet per skb: with GSO/GRO on, one skb may be many segments, so tests turn
 * the offloads off (ethtool -K <if> tso off gso off gro off).
 */
#include "lib/common.h"
#include <sluice/abi/fault.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* uapi/linux/pkt_cls.h #defines, absent from vmlinux.h; they equal TCX_NEXT and TCX_DROP. */
#define TC_ACT_UNSPEC (-1)
#define TC_ACT_SHOT 2

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sl_fault_config);
} fault_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sl_fault_stats);
} fault_stats SEC(".maps");

/* Whether the frame is an IPv4 or IPv6 TCP segment with payload. IPv6 extension headers are
 * not walked: such a packet counts as not TCP. */
static __always_inline bool sl_tcp_payload(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct tcphdr *th;
	__u32 l4_len;

	if ((void *)(eth + 1) > end)
		return false;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *iph = (void *)(eth + 1);
		__u32 hlen;

		if ((void *)(iph + 1) > end || iph->protocol != IPPROTO_TCP)
			return false;
		/* ihl before the byte-based bound (STYLE.md). */
		hlen = iph->ihl * 4;
		if (hlen < sizeof(*iph))
			return false;
		l4_len = bpf_ntohs(iph->tot_len);
		if (l4_len < hlen)
			return false;
		l4_len -= hlen;
		th = (void *)iph + hlen;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > end || ip6->nexthdr != IPPROTO_TCP)
			return false;
		l4_len = bpf_ntohs(ip6->payload_len);
		th = (void *)(ip6 + 1);
	} else {
		return false;
	}
	if ((void *)(th + 1) > end)
		return false;
	/* doff is in 32-bit words; payload = L4 length (from the IP header, host order) minus
	 * the TCP header with its options. */
	return l4_len > (__u32)th->doff * 4;
}

static __always_inline int sl_fault(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct sl_fault_config *cfg = bpf_map_lookup_elem(&fault_config, &zero);
	struct sl_fault_stats *st = bpf_map_lookup_elem(&fault_stats, &zero);
	bool drop = false;
	__u64 n;

	if (!cfg || !st)
		return TC_ACT_UNSPEC;
	__sync_fetch_and_add(&st->seen, 1);
	if (cfg->mode == SL_FAULT_OFF)
		return TC_ACT_UNSPEC;
	if (cfg->tcp_payload_only && !sl_tcp_payload(skb))
		return TC_ACT_UNSPEC;
	n = __sync_fetch_and_add(&st->eligible, 1) + 1;
	if (cfg->mode == SL_FAULT_RANDOM)
		drop = bpf_get_prandom_u32() % 1000000 < cfg->ppm;
	else if (cfg->mode == SL_FAULT_NTH)
		drop = cfg->nth && n % cfg->nth == 0;
	if (!drop)
		return TC_ACT_UNSPEC;
	__sync_fetch_and_add(&st->dropped, 1);
	return TC_ACT_SHOT;
}

SEC("tc")
int tc_fault(struct __sk_buff *skb)
{
	return sl_fault(skb);
}
