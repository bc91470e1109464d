/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Types, protocol constants and the parsed-packet context shared by the bpf/lib headers. */
#ifndef SLUICE_BPF_COMMON_H
#define SLUICE_BPF_COMMON_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <sluice/abi/abi.h>

/* vmlinux.h carries types, not #defines: the few protocol numbers we need. */
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define ETH_ALEN 6
#define AF_INET 2
#define AF_INET6 10
#define IP_DF 0x4000
#define IP_MF 0x2000
#define IP_OFFSET 0x1FFF
#define IPV6_FRAG_OFFSET_MASK 0xFFF8 /* of frag_hdr.frag_off, host order */
#define ICMP_DEST_UNREACH 3
#define ICMP_FRAG_NEEDED 4
#define ICMPV6_PKT_TOOBIG 2
#define VLAN_VID_MASK 0x0fff
#define IPV6_SRCRT_TYPE_0 0 /* RFC 5095: deprecated, never processed */
/* IPv6 extension headers and ICMPv6 are #defines in uapi/linux/in6.h, absent from vmlinux.h. */
#define IPPROTO_HOPOPTS 0
#define IPPROTO_ROUTING 43
#define IPPROTO_FRAGMENT 44
#define IPPROTO_ICMPV6 58
#define IPPROTO_DSTOPTS 60
#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10
/* errno values (uapi/asm-generic/errno*.h, absent from vmlinux.h) that helpers return negated. */
#define EEXIST 17

#ifndef likely
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#endif

enum sl_frag_kind {
	SL_FRAG_NONE = 0,
	SL_FRAG_FIRST = 1, /* offset 0, more fragments follow: carries the L4 header */
	SL_FRAG_LATER = 2, /* offset > 0: no L4 header */
};

/* What the parser learned about one packet. Addresses are raw wire words (network order). */
struct sl_pkt {
	struct sl_addr src;
	struct sl_addr dst;
	void *l3;     /* IPv4/IPv6 header */
	void *l4;     /* L4 header; NULL for SL_FRAG_LATER */
	__u32 len;    /* whole frame, bytes */
	__u16 l4_len; /* L4 bytes as the IP header states them (after extension headers) */
	__be16 sport;
	__be16 dport;
	__u8 family;	/* enum sl_family */
	__u8 proto;	/* L4 protocol after the extension-header chain */
	__u8 tcp_flags; /* byte 13 of the TCP header */
	__u8 frag;	/* enum sl_frag_kind */
	__be32 frag_id; /* IPv4 id (zero-extended) or IPv6 identification */
	__u8 frag_more; /* more fragments follow (IPv4 MF, IPv6 M): 0 on a datagram's last */
};

/* A TCP header's options, copied out of the packet (at most 40 bytes). */
struct sl_tcp_opts {
	__u8 b[40];
};

#endif /* SLUICE_BPF_COMMON_H */
