/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * sluice ABI, congestion control: the maps shared by the sockops policy program
 * (bpf/cc_sockops.bpf.c), our congestion control (bpf/cc_aimd.bpf.c), sluiced and sluicectl.
 * Same rules as abi.h. These maps are pinned under <pin dir>/cc/ (kCcPinSubdir), apart from the
 * data path's, and carry their own version (SL_CC_ABI_VERSION in `cc_config`).
 *
 * Policy (docs/design.md, "Congestion control"): ordered rules, first match wins. A rule
 * matches the remote address (CIDR), a port range (the remote port of an active connection,
 * the local port of a passive one: the service's port either way), a direction and optionally
 * a cgroup. The rules of one config live in one of two slots; `cc_config.active_slot` says
 * which is live, so a reload writes the other slot and flips it with one update.
 */
#ifndef SLUICE_ABI_CC_H
#define SLUICE_ABI_CC_H

/* Types and SL_STATIC_ASSERT, as for every map of the ABI. */
#include "abi.h"

#define SL_CC_ABI_VERSION 1

/* TCP_CA_NAME_MAX: an algorithm's name with its NUL. */
#define SL_CC_NAME_MAX 16
/* Our congestion control's registered name. */
#define SL_CC_OURS "sluice_aimd"
/* Rules per slot, the default included: a rule is one bit of sl_cc_lpm_val.rules. */
#define SL_CC_MAX_RULES 64
#define SL_CC_SLOTS 2
/* Stable rule ids (`cc_rule_stats`, `cc_rule_info` index): a rule keeps its id across reloads
 * while its name stays, so its counters are monotonic. */
#define SL_CC_MAX_RULE_IDS 256
/* Distinct destination prefixes one slot may hold (config validation); `cc_lpm` holds both
 * slots' (SL_CC_SLOTS * SL_CC_MAX_PREFIXES entries), so a reload always has room. */
#define SL_CC_MAX_PREFIXES 2048
/* Default size of `cc_conns` (congestion.max_connections). */
#define SL_CC_DEFAULT_CONNS 65536

/* `cc_lpm` (LPM trie) key. prefixlen counts the 32 bits of slot, family and pad (always
 * matched) plus the CIDR's length, so one trie holds both slots and both families. */
struct sl_cc_lpm_key {
	__u32 prefixlen;
	__u8 slot;
	__u8 family; /* SL_AF_INET / SL_AF_INET6 */
	__u8 pad[2];
	__u8 addr[16]; /* network order; IPv4 in the first 4 bytes */
};
SL_STATIC_ASSERT(sizeof(struct sl_cc_lpm_key) == 24, "sl_cc_lpm_key size");
#define SL_CC_LPM_FIXED_BITS 32

/* `cc_lpm` value: bit i set when rule i of the slot covers the whole prefix. The longest
 * prefix holding an address therefore names every rule whose CIDR holds it (a rule whose CIDR
 * is longer and holds the address would itself be a longer prefix). The first set bit whose
 * rule also matches port, direction and cgroup wins. */
struct sl_cc_lpm_val {
	__u64 rules;
};
SL_STATIC_ASSERT(sizeof(struct sl_cc_lpm_val) == 8, "sl_cc_lpm_val size");

enum sl_cc_direction {
	SL_CC_DIR_ANY = 0,
	SL_CC_DIR_ACTIVE = 1,  /* this host connected (BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB) */
	SL_CC_DIR_PASSIVE = 2, /* this host accepted (BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB) */
};

/* What a rule sets (sl_cc_rule.set), and which of them failed (per setting counters). */
enum sl_cc_setting {
	SL_CC_SET_ALGO = 0,   /* TCP_CONGESTION; read back by name */
	SL_CC_SET_IW = 1,     /* TCP_BPF_IW; read back as snd_cwnd */
	SL_CC_SET_SNDBUF = 2, /* SO_SNDBUF; read back as the kernel's doubled value */
	SL_CC_SET_RCVBUF = 3, /* SO_RCVBUF; likewise */
	SL_CC_SET_CLAMP = 4,  /* TCP_BPF_SNDCWND_CLAMP; read back as snd_cwnd_clamp */
	SL_CC_SET_MAX = 5,
};

/* `cc_rules` (array, SL_CC_SLOTS * SL_CC_MAX_RULES): rule i of slot s at s * SL_CC_MAX_RULES
 * + i, in match order. */
struct sl_cc_rule {
	__u16 port_lo; /* host order, inclusive; 0..65535 is any port */
	__u16 port_hi;
	__u8 direction; /* enum sl_cc_direction */
	__u8 set;	/* bit (1 << enum sl_cc_setting) for each value the rule sets */
	__u16 rule_id;	/* < SL_CC_MAX_RULE_IDS: its counters and name */
	__u32 iw;	/* segments */
	__u32 sndbuf;	/* bytes, as given to SO_SNDBUF */
	__u32 rcvbuf;
	__u32 cwnd_clamp;   /* segments */
	__u64 cgroup_id;    /* 0: any cgroup; else the socket's cgroup must be this one or below */
	__u32 cgroup_level; /* the level of cgroup_id (root = 0) */
	__u32 pad;
	char algo[SL_CC_NAME_MAX]; /* empty: the algorithm is left as it is */
};
SL_STATIC_ASSERT(sizeof(struct sl_cc_rule) == 56, "sl_cc_rule size");

/* `cc_config` (array of one). */
struct sl_cc_config {
	__u32 abi_version; /* SL_CC_ABI_VERSION */
	__u32 active_slot; /* 0 or 1; the slot whose rules apply */
	__u32 nrules[SL_CC_SLOTS];
	__u64 generation; /* bumped on every applied policy */
};
SL_STATIC_ASSERT(sizeof(struct sl_cc_config) == 24, "sl_cc_config size");

/* Histograms of the connections a rule matched, counted when they close. srtt bucket i
 * (i < SL_CC_SRTT_BUCKETS - 1) holds srtt < 2^(i + SL_CC_SRTT_SHIFT) microseconds, the last
 * every longer one; retransmits bucket 0 holds 0, bucket i (1 <= i < last) holds
 * [2^(i-1), 2^i - 1], the last 2^(SL_CC_RETRANS_BUCKETS - 2) and more. */
#define SL_CC_SRTT_SHIFT 6 /* 64 us */
#define SL_CC_SRTT_BUCKETS 20
#define SL_CC_RETRANS_BUCKETS 8

/* `cc_rule_stats` (per-CPU array, SL_CC_MAX_RULE_IDS), indexed by rule id. */
struct sl_cc_rule_stats {
	__u64 matched;			/* connections this rule was the first match for */
	__u64 applied;			/* ... whose every setting read back as asked */
	__u64 failed;			/* ... with at least one setting that did not */
	__u64 failed_by[SL_CC_SET_MAX]; /* per enum sl_cc_setting */
	__u64 untracked;		/* matched, but `cc_conns` was full: no live stats */
	__u64 closed; /* tracked connections that closed (counted in the histograms) */
	__u64 srtt_us_sum;
	__u64 srtt_hist[SL_CC_SRTT_BUCKETS];
	__u64 retrans_sum;
	__u64 retrans_hist[SL_CC_RETRANS_BUCKETS];
};
SL_STATIC_ASSERT(sizeof(struct sl_cc_rule_stats) == 320, "sl_cc_rule_stats size");

/* `cc_rule_info` (array, SL_CC_MAX_RULE_IDS), written by the agent: what a rule id names, for
 * readers (sluicectl, metrics). */
#define SL_CC_RULE_NAME_MAX 48
struct sl_cc_rule_info {
	char name[SL_CC_RULE_NAME_MAX]; /* empty: the id is free */
	__u32 in_use;			/* 1 while a slot's rule carries this id */
	__u32 pad;
};
SL_STATIC_ASSERT(sizeof(struct sl_cc_rule_info) == 56, "sl_cc_rule_info size");

/* `cc_conns` (hash, socket cookie -> entry): every live connection a rule matched, added on
 * establishment, refreshed by the RTT, RETRANS and STATE callbacks, deleted when the socket
 * reaches TCP_CLOSE. */
struct sl_cc_conn {
	__u8 family;	/* SL_AF_INET / SL_AF_INET6 */
	__u8 direction; /* SL_CC_DIR_ACTIVE or SL_CC_DIR_PASSIVE */
	__u16 rule_id;
	__u8 state;	 /* the kernel's TCP state (TCP_ESTABLISHED = 1, ...) */
	__u8 applied;	 /* 1: every setting read back as asked */
	__u8 failed_set; /* bit (1 << enum sl_cc_setting) per failed setting */
	__u8 pad0;
	__u8 laddr[16]; /* network order; IPv4 in the first 4 bytes */
	__u8 raddr[16];
	__u16 lport; /* host order */
	__u16 rport;
	__u32 srtt_us;
	__u32 rttvar_us;
	__u32 cwnd;	/* segments */
	__u32 ssthresh; /* segments; 0x7fffffff: still unset (slow start) */
	__u32 total_retrans;
	__u32 mss;
	__u32 pad1;
	__u64 bytes_acked;
	__u64 established_ns; /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) */
	__u64 updated_ns;
	char cc[SL_CC_NAME_MAX]; /* the algorithm in use, read back from the socket */
};
SL_STATIC_ASSERT(sizeof(struct sl_cc_conn) == 112, "sl_cc_conn size");

/* cc_aimd's `cc_algo_users` (array of one __u64, pinned as kCcAlgoUsersPin): sockets that
 * use sluice_aimd now (init adds one, release takes back what init added, never below 0). A
 * map, not .bss, so an old and a new instance share it across a restart. sluiced unregisters
 * sluice_aimd on --detach-on-exit only at 0. */

#endif /* SLUICE_ABI_CC_H */
