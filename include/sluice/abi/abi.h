/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * sluice ABI: every map key, map value and code shared by the BPF programs and userspace.
 *
 * Rules (they keep pinned maps readable across agent restarts and upgrades):
 *  - fixed-width types only, explicit padding, a size assert per struct;
 *  - enum values are stable: never renumber, only append before the _MAX entry;
 *  - wire values (addresses, ports) are stored in network byte order, named __be*.
 * Bump SL_ABI_VERSION on any incompatible change.
 */
#ifndef SLUICE_ABI_H
#define SLUICE_ABI_H

#ifdef __BPF__
/* BPF side: types come from vmlinux.h, included by the program before this header. */
#else
#include <linux/types.h>
#endif

#ifdef __cplusplus
#define SL_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define SL_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

/* 2: sl_ct_entry grew to 96 bytes (TCP state machine); conntrack maps and events added.
 * 3: sl_info carries the conntrack size and timeouts; backend flags for the agent's state
 *    (down, drained, retired) so a restarted agent can adopt the pinned maps.
 * 4: `maglev` is BPF_F_MMAPABLE (the agent writes rings through a mapping); a map's flags
 *    must match for a restarted agent to adopt it. `conntrack` is a preallocated hash (was an
 *    LRU); `rr_counters` added; ct stats and events for the full table and backend resets. */
/* 5: conntrack trusts no packet (docs/design.md, "Trust no packet"): sl_ct_entry carries
 *    per-direction sequence windows (128 -> 136 bytes); unconfirmed and finished flows live in
 *    the LRU `ct_pending`, confirmed live ones in `conntrack`; the data path keeps its own
 *    clock; drop and pass reasons, ct stats added. sl_frag_ports carries its record's
 *    creation time (4 -> 16 bytes); maps `vlan_members` and `frag_budget` added. */
/* 6: one-sided (dsr) flows hold at most sl_info.ct_one_sided_max entries of `conntrack`
 *    (sl_info 96 -> 104 bytes); map `ct_one_sided` (their count) and ct stat
 *    one_sided_budget added. */
#define SL_ABI_VERSION 6

/* Maglev lookup table size per VIP. Prime, so every backend's permutation covers all slots. */
#define SL_MAGLEV_SIZE 65537
/* Every VIP owns two rings (active + staging) so a new table is written off to the side and
 * switched in by one update of the VIP entry. */
#define SL_RINGS_PER_VIP 2
#define SL_DEFAULT_MAX_VIPS 64
#define SL_DEFAULT_MAX_BACKENDS 4096
#define SL_DEFAULT_CT_ENTRIES 262144
#define SL_FRAG_ENTRIES 8192
/* Idle timeout of an unconfirmed entry (no completed handshake, no reply seen): the default of
 * conntrack.timeouts.unconfirmed, in seconds. nf_conntrack's `unacknowledged` (300 s) is the
 * ceiling the config allows. */
#define SL_DEFAULT_CT_UNCONFIRMED_S 30
/* One-sided (dsr) window: how far from the client's highest sequence number a segment may
 * start or end and still be taken as the client's. The backend's receive window, which
 * bounds a real client's retransmissions, is never seen in dsr: this is its stand-in. */
#define SL_CT_ONE_SIDED_WIN (4u << 20)
#define SL_MAX_IFACES 64
/* Bound on the IPv6 extension-header chain walked by the parser. */
#define SL_IPV6_MAX_EXT_HDRS 4
/* Address pre-filter: 2^SL_ADDR_FILTER_BITS bits per kind, stored as u64 words. A clear bit
 * proves an address is not a VIP (or not a NAT backend) without a hash-map lookup. */
#define SL_ADDR_FILTER_BITS 16
#define SL_ADDR_FILTER_WORDS (1u << (SL_ADDR_FILTER_BITS - 6))
/* How long a cached next hop (egress ifindex + MACs) for a backend is used before
 * bpf_fib_lookup is asked again: neighbour or route changes take effect within this time. */
#define SL_NEXTHOP_TTL_NS 1000000000ull
/* Direct-mapped VIP index: 2^SL_VIP_INDEX_BITS slots keyed by sl_vip_index_slot(). A slot
 * holds vip_id + 1, 0 (no VIP) or SL_VIP_INDEX_COLLISION (several VIPs: ask the `vips`
 * hash). Every hit is verified against vip_table, so a slot never misroutes a packet. */
#define SL_VIP_INDEX_BITS 16
#define SL_VIP_INDEX_COLLISION 0xffffffffu
/* Entries of tc_flow's `host_flows` (the host's own TCP flows). */
#define SL_DEFAULT_HOST_FLOWS 65536
/* Backend id reserved for "no backend" (a ring slot never filled). */
#define SL_BACKEND_NONE 0xffffffffu

enum sl_family {
	SL_AF_INET = 4,
	SL_AF_INET6 = 6,
};

enum sl_mode {
	SL_MODE_NAT = 0, /* rewrite dst addr/port, reverse-NAT the replies */
	SL_MODE_DSR = 1, /* rewrite MACs only; the backend holds the VIP on loopback */
};

/*
 * Schedulers, and what each writes into a VIP's rings (`maglev`, SL_MAGLEV_SIZE u32 slots per
 * ring; the agent writes the staging ring and switches ring_id, so every change of the
 * usable set or of a weight reaches the data path in one step, whatever the scheduler).
 * "Usable": up and weight > 0. L = slot 0 of a round-robin or least-conn ring.
 *  - SOURCE_HASH: the Maglev table; slot h % SL_MAGLEV_SIZE for source hash h.
 *  - ROUND_ROBIN: slot 0 = L (1..SL_MAGLEV_SIZE-1; 0 = no usable backend), slots 1..L = one
 *    period of a smooth weighted round-robin sequence (nginx's) of backend ids, weights
 *    divided by their gcd (and scaled down, when they add up to more than SL_MAGLEV_SIZE-1;
 *    see agent/apply/sched.cc). A SYN takes slot 1 + rr_counters[vip_id]++ % L.
 *  - LEAST_CONN: slot 0 = L (0..SL_LC_MAX_BACKENDS), slots 1..L = the usable backend ids,
 *    slots L+1..2L = their weights (slot L+i is the weight of slot i). A SYN takes the
 *    backend with the least backend_conns[id] / weight, scanning from slot 1 + h % L (h: the
 *    flow hash) so that ties spread.
 *  On both, a TCP packet with no conntrack entry that is not a bare SYN (midstream, a later
 *  fragment) and an ICMP error about a flow with no entry take slot sl_sched_hash_slot(h, L)
 *  = 1 + h % L, h = sl_source_hash(src addr, src port): consistent for the flow while the
 *  set does not change. L == 0: no usable backend. UDP VIPs are source-hash only (the config
 *  enforces it): the UDP fast path reads Maglev rings only.
 */
enum sl_sched {
	SL_SCHED_SOURCE_HASH = 0, /* Maglev over source addr (+ source port) */
	SL_SCHED_ROUND_ROBIN = 1, /* weighted round-robin (smooth), new TCP connections */
	SL_SCHED_LEAST_CONN = 2,  /* weighted least-connections, new TCP connections */
};

/* Most usable backends of a least-conn VIP: every SYN scans them (bpf/lib/lb.h). */
#define SL_LC_MAX_BACKENDS 1024

enum sl_vip_flags {
	SL_VIP_F_HASH_SPORT = 1 << 0, /* include the source port in the Maglev hash */
};

enum sl_backend_flags {
	SL_BACKEND_F_ACTIVE = 1 << 0, /* slot in use (the array is preallocated): flows whose
				       * conntrack entry names this id are forwarded to it */
	/* Down, and its VIP resets established flows (on_backend_down: reset). A client packet
	 * of an open flow (SYN_SENT ... LAST_ACK) on this backend deletes the flow's entry and
	 * is answered with a TCP RST (docs/design.md, "Backend down: reset"). The agent sets it
	 * once the live ring no longer holds the backend, and clears it before a ring that holds
	 * it again goes live: new flows never land on a backend that resets them. */
	SL_BACKEND_F_RESET = 1 << 1,
	/* The agent's own state, kept here so that a restarted agent adopting the pinned maps
	 * knows it. The data path does not read these: selection goes through the rings. */
	SL_BACKEND_F_DOWN = 1 << 2,    /* failed its health check */
	SL_BACKEND_F_DRAINED = 1 << 3, /* drained by the operator: no new flows */
	SL_BACKEND_F_RETIRED = 1 << 4, /* removed from the config; kept (ACTIVE) so established
					* flows finish on it, until the id is needed again */
};

enum sl_addr_filter_kind {
	SL_FILTER_VIP_DST = 0,	       /* destination may be a VIP address */
	SL_FILTER_NAT_BACKEND_SRC = 1, /* source may be a NAT-mode backend */
	SL_FILTER_KINDS = 2,
};

/* Pass reasons: packets handed to the kernel stack untouched. Index the `passes` map. */
enum sl_pass_reason {
	SL_PASS_NOT_IP = 0,	       /* not IPv4/IPv6 (ARP, LLDP, ...) */
	SL_PASS_NOT_VIP = 1,	       /* destination is not a VIP address */
	SL_PASS_VIP_NO_SERVICE = 2,    /* VIP address, but no VIP on that port/protocol */
	SL_PASS_UNPARSEABLE = 3,       /* too broken to tell the destination: the kernel decides */
	SL_PASS_FIB = 4,	       /* NAT'd packet the FIB could not resolve (no neighbour yet):
					* the kernel forwards it and resolves the neighbour */
	SL_PASS_ICMP_NOT_VIP_FLOW = 5, /* ICMP to a VIP address that is not an error about a
					* VIP flow */
	SL_PASS_VLAN_NOT_OURS = 6, /* tagged with a VLAN id the ingress interface does not carry */
	SL_PASS_IPV6_RH0 = 7,	   /* IPv6 type-0 routing header with segments left (RFC 5095):
				    * never processed; the kernel discards it */
	SL_PASS_NOT_OUR_REPLY = 8, /* from a NAT backend's endpoint, but no flow sluice translated
				    * (TCP: no conntrack entry naming that backend; UDP: not on a
				    * backend-facing interface): left alone, never rewritten */
	SL_PASS_MAX = 9,
};

/* Drop reasons: packets addressed to a VIP that sluice refuses. Index the `drops` map. */
enum sl_drop_reason {
	SL_DROP_TRUNC_L3 = 0,	    /* reserved, never counted: a cut-short IP header is passed
				     * (SL_PASS_UNPARSEABLE), as its destination is unknown */
	SL_DROP_BAD_IHL = 1,	    /* IPv4 ihl < 5 or header longer than the packet */
	SL_DROP_BAD_IP_LEN = 2,	    /* IP total/payload length disagrees with the frame */
	SL_DROP_TRUNC_L4 = 3,	    /* TCP/UDP header cut short */
	SL_DROP_BAD_DOFF = 4,	    /* TCP doff < 5 or options past the packet */
	SL_DROP_BAD_UDP_LEN = 5,    /* UDP length field disagrees with the IP payload */
	SL_DROP_IPV6_EXT_CHAIN = 6, /* extension header chain too long or truncated */
	SL_DROP_FRAG_NO_FIRST = 7,  /* non-first fragment whose first fragment was never seen */
	SL_DROP_NO_BACKEND = 8,	    /* VIP has no usable backend */
	SL_DROP_FIB = 9,	    /* next hop unreachable (no route, or DSR without neighbour) */
	SL_DROP_ICMP_TRUNC = 10,    /* ICMP error to a VIP whose quoted header is cut short */
	SL_DROP_CT_FULL = 11,	    /* SYN to a VIP with a stateful scheduler (not source-hash)
				     * while the conntrack table is full: its pick could not be
				     * remembered, so the client retransmits */
	SL_DROP_CT_WINDOW = 12,	    /* TCP segment of a tracked flow outside its sequence or ACK
				     * window (RST, FIN, SYN or data): a blind spoofer's guess */
	SL_DROP_DSR_GATEWAY = 13,   /* dsr backend reached through a router: the frame still names
				     * the VIP and could loop back; dsr backends must be on-link */
	SL_DROP_FRAG_BUDGET = 14,   /* first fragment refused: its VIP's share of the fragment
				     * table is used up (a first-fragment flood) */
	SL_DROP_MAX = 15,
};

/* Verdicts, indexed by the XDP action (XDP_ABORTED=0 ... XDP_REDIRECT=4). */
#define SL_VERDICT_MAX 5

/* An IPv4 address lives in w[0]; w[1..3] are zero. Network byte order. */
struct sl_addr {
	__be32 w[4];
};
SL_STATIC_ASSERT(sizeof(struct sl_addr) == 16, "sl_addr size");

/* An L4 endpoint: VIP key, backend address, reverse-NAT key. */
struct sl_endpoint {
	struct sl_addr addr;
	__be16 port; /* 0 in a VIP key = every port of that address and protocol */
	__u8 proto;  /* IPPROTO_TCP / IPPROTO_UDP */
	__u8 family; /* enum sl_family */
};
SL_STATIC_ASSERT(sizeof(struct sl_endpoint) == 20, "sl_endpoint size");

/* Key of `vip_addrs`: every address that carries at least one VIP. */
struct sl_addr_key {
	struct sl_addr addr;
	__u8 family;
	__u8 pad[3];
};
SL_STATIC_ASSERT(sizeof(struct sl_addr_key) == 20, "sl_addr_key size");

/* A VIP's settings; part of struct sl_vip_entry. */
struct sl_vip {
	__u32 vip_id;  /* index into vip_table and vip_stats */
	__u32 ring_id; /* which ring is live: ring_id * SL_MAGLEV_SIZE is its base (enum sl_sched)
			*/
	__u8 mode;     /* enum sl_mode */
	__u8 sched;    /* enum sl_sched */
	__u16 flags;   /* enum sl_vip_flags */
	__u32 pad;
};
SL_STATIC_ASSERT(sizeof(struct sl_vip) == 16, "sl_vip size");

/* Value of `vip_table`, indexed by vip_id. The `vips` hash maps an endpoint to its vip_id. */
struct sl_vip_entry {
	struct sl_vip vip;
	struct sl_endpoint ep; /* the VIP's key; all zero for an unused id */
	__u32 nbackends;
};
SL_STATIC_ASSERT(sizeof(struct sl_vip_entry) == 40, "sl_vip_entry size");

/* Value of `backends`, indexed by backend id. */
struct sl_backend {
	struct sl_endpoint ep; /* ep.proto mirrors the VIP's protocol */
	__u32 vip_id;	       /* owning VIP: one backend id belongs to exactly one VIP */
	__u16 weight;
	__u8 flags; /* enum sl_backend_flags */
	__u8 pad;
};
SL_STATIC_ASSERT(sizeof(struct sl_backend) == 28, "sl_backend size");

/* Value of `rev_nat`, keyed by the backend's endpoint: what to put back as the source. */
struct sl_rev_nat {
	struct sl_endpoint vip;
	__u32 vip_id;
	__u32 backend_id; /* the backend this endpoint is: its next hop names the interface its
			   * replies must arrive on (UDP), its id the entry's (TCP) */
};
SL_STATIC_ASSERT(sizeof(struct sl_rev_nat) == 28, "sl_rev_nat size");

/* Conntrack key: the client -> VIP 5-tuple as the client sent it. */
struct sl_flow_key {
	struct sl_addr src;
	struct sl_addr dst;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 family;
	__u8 pad[2];
};
SL_STATIC_ASSERT(sizeof(struct sl_flow_key) == 40, "sl_flow_key size");

enum sl_tcp_state {
	SL_TCP_NONE = 0,
	SL_TCP_SYN_SENT = 1,
	SL_TCP_SYN_RECV = 2,
	SL_TCP_ESTABLISHED = 3,
	SL_TCP_FIN_WAIT = 4,
	SL_TCP_CLOSE_WAIT = 5,
	SL_TCP_LAST_ACK = 6,
	SL_TCP_TIME_WAIT = 7,
	SL_TCP_CLOSED = 8,
	SL_TCP_STATE_MAX = 9,
};

/* sl_ct_entry.flags: facts about a flow that its state alone does not tell. */
enum sl_ct_flags {
	SL_CT_F_ONE_SIDED = 1 << 0,  /* dsr: only client -> server is seen, the state is inferred
				      * from that direction alone (docs/design.md) */
	SL_CT_F_MIDSTREAM = 1 << 1,  /* created from a non-SYN packet (entry expired while idle,
				      * or not created while the table was full, another LB
				      * host): the handshake was never seen */
	SL_CT_F_HS_RETRANS = 1 << 2, /* a SYN or SYN+ACK was retransmitted: the handshake RTTs
				      * are measured from the last copy (Karn: may be ambiguous) */
	SL_CT_F_SIMOPEN = 1 << 3,    /* simultaneous open: a bare SYN came from both sides */
	SL_CT_F_SIMCLOSE = 1 << 4,   /* simultaneous close: the FINs crossed */
	SL_CT_F_CLOSER_BACKEND = 1 << 5, /* the backend sent the first FIN (else the client) */
	SL_CT_F_REUSED = 1 << 6,	 /* a new SYN took over a TIME_WAIT/CLOSED tuple */
	SL_CT_F_INBOUND = 1 << 7,	 /* host flows (tc_flow): the peer opened the connection, so
					  * direction 0 is ingress; the key is always local -> peer */
};
/* Not a flag bit: whether an entry is confirmed is where it lives. `conntrack` holds the
 * confirmed live flows (a handshake completed that a blind sender could not have completed,
 * or, picked up mid-stream, a reply seen); `ct_pending` everything else (docs/design.md). */

/* sl_ct_entry.seen: per-direction progress bits (dir 0 = client, 1 = backend). */
#define SL_CT_SEEN_SYN(dir) (1u << (0 + (dir)))	      /* sent a SYN (with or without ACK) */
#define SL_CT_SEEN_SYNACK(dir) (1u << (2 + (dir)))    /* sent a SYN+ACK */
#define SL_CT_SEEN_FIN(dir) (1u << (4 + (dir)))	      /* sent a FIN: fin_ack_seq[dir] is valid */
#define SL_CT_SEEN_FIN_ACKED(dir) (1u << (6 + (dir))) /* the peer acknowledged that FIN */

/* sl_ct_seq.flags */
#define SL_CT_SEQ_KNOWN 1u  /* this direction's window state is initialised */
#define SL_CT_SEQ_SCALE 2u  /* it announced window scaling in its SYN (RFC 7323) */
#define SL_CT_SEQ_MAXACK 4u /* maxack is valid */
#define SL_CT_SEQ_LIBERAL                                                                          \
	8u /* picked up mid-stream: the window scale is unknown, so windows                        \
	    * are tracked but not enforced (as nf_conntrack's BE_LIBERAL) */
#define SL_CT_SEQ_OBSERVE                                                                          \
	16u /* host flows (tc_flow): an observer that forwards everything and                      \
	     * keeps no windows on its fast path; every segment moves the                          \
	     * state, a RST closes at once */

/*
 * One direction's sequence space, as nf_conntrack's tcp_in_window() keeps it. Host order,
 * RFC 1982 serial arithmetic. "Sender" is this direction, "peer" the other.
 */
struct sl_ct_seq {
	__u32 end;    /* highest sequence number sent + its length (SYN and FIN count 1) */
	__u32 maxend; /* highest sequence number the peer allows this side: peer's ack + window */
	__u32 maxwin; /* largest window this side advertised, scaled; at least 1 */
	__u32 maxack; /* highest ACK number this side sent (valid with SL_CT_SEQ_MAXACK) */
	__u8 scale;   /* window scale this side announced; 0 if either side did not */
	__u8 flags;   /* SL_CT_SEQ_* */
	__u16 pad;
};
SL_STATIC_ASSERT(sizeof(struct sl_ct_seq) == 20, "sl_ct_seq size");

/*
 * Conntrack value, keyed by struct sl_flow_key. Direction index 0 = client -> backend,
 * 1 = backend -> client (seen in nat mode only). The data path creates and advances entries
 * (bpf/lib/conntrack.h, the state machine; bpf/lib/vip_conntrack.h, the table) and deletes
 * one only when a new SYN reuses a TIME_WAIT/CLOSED tuple (delete + create) and when it
 * resets a flow whose backend has SL_BACKEND_F_RESET. The table is a
 * preallocated hash that never evicts: the agent expires entries by the timeout of their
 * state, judged on last_seen_ns, and while it is full new flows are not tracked
 * (docs/design.md, "When the table is full").
 *
 * Live connection counts (`backend_conns`). An entry holds one count in
 * backend_conns[backend_id] exactly while `live` is 1:
 *  - the data path adds 1 before it inserts an entry (a SYN, a reuse of a TIME_WAIT/CLOSED
 *    tuple, or a midstream packet), and takes it back if the insert fails (another CPU
 *    created the flow first, or the table is full): a flow counts from SYN_SENT on, so
 *    least-conn sees handshakes in flight;
 *  - on the way into TIME_WAIT or CLOSED, and before it deletes the entry of a flow it resets
 *    (SL_BACKEND_F_RESET), the data path clears `live` with an atomic exchange and, if it was
 *    1, subtracts 1: whichever CPU or direction gets there first releases the count, once
 *    (RST after FIN, crossing RSTs, retransmits, two CPUs resetting the same flow never
 *    release twice);
 *  - the agent deletes expired entries with BPF_MAP_LOOKUP_AND_DELETE_ELEM. If the value it
 *    removed (and does not put back) has live == 1, it subtracts 1 with an atomic operation
 *    on the mmapped array (__atomic_fetch_sub on the BPF_F_MMAPABLE `backend_conns`; a
 *    lookup + update from userspace would lose concurrent data-path updates). An entry it
 *    puts back keeps its count;
 *  - nothing else removes entries: the table is a preallocated BPF_MAP_TYPE_HASH, which
 *    refuses an insert when full (-E2BIG) instead of evicting a live entry with its count.
 *    A flow whose entry could not be created holds no count (docs/design.md, "When the table
 *    is full").
 */
struct sl_ct_entry {
	__u32 backend_id;
	__u32 vip_id;
	__u8 state; /* enum sl_tcp_state */
	__u8 flags; /* enum sl_ct_flags */
	__u8 seen;  /* SL_CT_SEEN_*(dir) */
	__u8 pad;
	__u32 live; /* 1 while counted in backend_conns (see above); only atomics touch it */
	__u64 first_seen_ns; /* the data path's coarse CLOCK_MONOTONIC (bpf/lib/clock.h), at
				creation */
	__u64 last_seen_ns;  /* the same clock, at the last packet, either direction */
	__u64 packets[2];
	__u64 bytes[2];
	/* The handshake, on the precise clock (bpf_ktime_get_ns, CLOCK_MONOTONIC): 0 = not seen. */
	__u64 syn_ns;		 /* the client's last SYN */
	__u64 synack_ns;	 /* the backend's last SYN+ACK (or bare SYN, simultaneous open) */
	__u32 rtt_synack_ns;	 /* SYN -> first SYN+ACK; saturates at 0xffffffff; 0 = unknown */
	__u32 rtt_ack_ns;	 /* SYN+ACK -> the ACK that established the flow. One-sided (dsr):
				  * SYN -> that ACK, the whole handshake round trip */
	__u32 fin_ack_seq[2];	 /* host order: the ACK number that acknowledges the FIN sent in
				  * direction d (its sequence number + 1); valid with SEEN_FIN(d) */
	struct sl_ct_seq seq[2]; /* what each direction sent and was allowed (windows) */
};
SL_STATIC_ASSERT(sizeof(struct sl_ct_entry) == 136, "sl_ct_entry size");

/* Fragment tracking: the first fragment records the datagram's ports so later fragments
 * (which carry no L4 header) take the same VIP, backend and rewrite. */
struct sl_frag_key {
	struct sl_addr src;
	struct sl_addr dst;
	__be32 id; /* IPv6: the fragment identification. IPv4: the 16-bit id as on the wire
		    * in the first two bytes, the last two zero */
	__u8 proto;
	__u8 family;
	__u8 pad[2];
};
SL_STATIC_ASSERT(sizeof(struct sl_frag_key) == 40, "sl_frag_key size");

/* Value of `frags`. A record lives until the datagram's last fragment (offset > 0, MF = 0)
 * has passed, or SL_FRAG_TIMEOUT_NS after its first fragment, whichever comes first. */
struct sl_frag_ports {
	__be16 sport;
	__be16 dport;
	__u32 pad;
	__u64 created_ns; /* bpf_ktime_get_coarse_ns() when the first fragment was recorded */
};
SL_STATIC_ASSERT(sizeof(struct sl_frag_ports) == 16, "sl_frag_ports size");

/* Conntrack events, one record per notable transition on the `ct_events` ring buffer
 * (never one per packet). */
enum sl_ct_event_type {
	SL_CT_EV_NEW = 1,	    /* entry created (old_state NONE), or a TIME_WAIT/CLOSED tuple
				     * reused by a new SYN (old_state TIME_WAIT/CLOSED, SL_CT_F_REUSED) */
	SL_CT_EV_ESTABLISHED = 2,   /* handshake completed; carries the handshake RTTs */
	SL_CT_EV_CLOSED_FIN = 3,    /* both FINs acknowledged: -> TIME_WAIT */
	SL_CT_EV_CLOSED_RST = 4,    /* RST from either side: -> CLOSED */
	SL_CT_EV_BACKEND_RESET = 5, /* the data path broke the flow off: its backend is down and
				     * its VIP resets (SL_BACKEND_F_RESET). new_state CLOSED; the
				     * entry is deleted, and the client was sent a RST unless the
				     * packet was itself one */
	SL_CT_EV_MAX = 6,
};

struct sl_ct_event {
	struct sl_flow_key key;
	__u64 ts_ns; /* when: bpf_ktime_get_ns() for handshake events, coarse else */
	__u32 backend_id;
	__u32 vip_id;
	__u8 type;	/* enum sl_ct_event_type */
	__u8 old_state; /* enum sl_tcp_state */
	__u8 new_state;
	__u8 flags;	     /* enum sl_ct_flags, after the transition */
	__u32 rtt_synack_ns; /* as in sl_ct_entry */
	__u32 rtt_ack_ns;
	__u32 pad;
	__u64 packets[2]; /* the flow's totals so far, per direction */
	__u64 bytes[2];
};
SL_STATIC_ASSERT(sizeof(struct sl_ct_event) == 104, "sl_ct_event size");

/* Size of the `ct_events` ring buffer (a power of two, a multiple of the page size). */
#define SL_CT_EVENTS_BYTES (256u * 1024)

/* `ct_transitions` (per-CPU u64) is indexed by SL_CT_TRANSITION(old, new): every state change,
 * creation (old = NONE) and reuse (old = TIME_WAIT/CLOSED) included. The dimension leaves room
 * for new states without a new layout. */
#define SL_CT_STATE_SLOTS 16
#define SL_CT_TRANSITION(old, new) ((old)*SL_CT_STATE_SLOTS + (new))
#define SL_CT_TRANSITIONS (SL_CT_STATE_SLOTS * SL_CT_STATE_SLOTS)
/* Slot of sl_info.ct_timeout_s that holds the unconfirmed timeout (no state uses it). */
#define SL_CT_TIMEOUT_UNCONFIRMED (SL_CT_STATE_SLOTS - 1)

/*
 * The idle timeout, seconds, of an entry in `state` (in ct_pending if `pending`), given that
 * state's timeout `t` and the unconfirmed one `u` (sl_info.ct_timeout_s[state] and
 * [SL_CT_TIMEOUT_UNCONFIRMED]); 0: never expired. In ct_pending an open flow's timeout is
 * capped by the unconfirmed one (a flow nothing has vouched for is expendable). The one home
 * of this rule: the data path expires by it, the agent's sweep and sluicectl's "expires in" by
 * the same function. Scalars, not the table: the sweep calls it once per entry.
 */
static inline __u32 sl_ct_timeout_s(__u32 t, __u32 u, __u8 state, int pending)
{
	if (pending && state < SL_TCP_TIME_WAIT && u && (!t || u < t))
		return u;
	return t;
}

/* Conntrack counters, per-CPU u64, indexed by these stable codes (`ct_stats`). */
enum sl_ct_stat {
	SL_CT_STAT_EVENTS_LOST = 0,	/* ct_events was full: the record was dropped */
	SL_CT_STAT_REUSED = 1,		/* a new SYN on a TIME_WAIT/CLOSED tuple */
	SL_CT_STAT_HS_RETRANS = 2,	/* retransmitted SYN or SYN+ACK (no state change) */
	SL_CT_STAT_REPLY_NO_ENTRY = 3,	/* NAT reply of a flow with no entry (expired, untracked
					 * while the table was full, reset, another LB host) */
	SL_CT_STAT_CONNS_UNDERFLOW = 4, /* a release found backend_conns at 0 and kept it there:
					 * a double release somewhere (should stay 0) */
	SL_CT_STAT_INSERT_RACE = 5,	/* an insert failed with -EEXIST: another CPU created the
					 * same flow first */
	SL_CT_STAT_REPLY_OTHER_BACKEND = 6, /* NAT reply from a backend that is not the entry's
					     * (a late segment of a reused tuple's old connection):
					     * forwarded, the entry left alone */
	SL_CT_STAT_FULL_UNTRACKED = 7,	  /* an insert was refused (table full: -E2BIG, -ENOMEM, or
					   * any error but -EEXIST) and the packet was forwarded
					   * untracked by its Maglev pick (source-hash VIPs; a non-SYN
					   * on others). A stateful VIP's SYN is dropped instead:
					   * drops[SL_DROP_CT_FULL] */
	SL_CT_STAT_RESET_SENT = 8,	  /* a client packet of a flow whose backend has
					   * SL_BACKEND_F_RESET was answered with a TCP RST */
	SL_CT_STAT_EXPIRED_ON_LOOKUP = 9, /* an entry idle past its timeout was found by a packet:
					   * treated as absent and reclaimed by the data path */
	SL_CT_STAT_CONFIRM_FULL = 10,  /* a flow completed its handshake but `conntrack` was full:
					* it stays in ct_pending, expendable and uncounted */
	SL_CT_STAT_RST_CHALLENGE = 11, /* an in-window RST that is not the exact next sequence
					* number: forwarded (the endpoint answers with a challenge
					* ACK, RFC 5961), state unchanged */
	SL_CT_STAT_OOW_RST = 12,       /* RST outside the window: dropped (drops[CT_WINDOW]) */
	SL_CT_STAT_OOW_FIN = 13,       /* FIN outside the window: dropped */
	SL_CT_STAT_OOW_DATA = 14,      /* data or ACK outside the window: dropped */
	SL_CT_STAT_SYN_LIVE = 15,      /* a SYN on a live flow: sent to its backend, nothing
					* re-picked, state unchanged */
	SL_CT_STAT_REUSE_REFUSED = 16, /* a SYN on a TIME_WAIT/CLOSED tuple whose sequence number
					* is not past the old connection's: sent to the stored
					* backend, no new incarnation */
	SL_CT_STAT_CONFIRMED = 17,     /* flows moved from ct_pending to conntrack */
	SL_CT_STAT_ONE_SIDED_BUDGET = 18, /* a one-sided (dsr) flow would have confirmed, but
					   * one-sided flows hold sl_info.ct_one_sided_max entries
					   * of `conntrack` already: it stays in ct_pending,
					   * expendable and uncounted (as CONFIRM_FULL) */
	SL_CT_STAT_MAX = 19,
};

/* Per-CPU counter for verdicts, drop and pass reasons. */
struct sl_counter {
	__u64 packets;
	__u64 bytes;
};
SL_STATIC_ASSERT(sizeof(struct sl_counter) == 16, "sl_counter size");

/* Per-CPU traffic counters per VIP and per backend. */
struct sl_traffic {
	__u64 packets;
	__u64 bytes;
	__u64 new_flows;
	__u64 pad;
};
SL_STATIC_ASSERT(sizeof(struct sl_traffic) == 32, "sl_traffic size");

/* Per-CPU next-hop cache, indexed by backend id. */
struct sl_nexthop {
	__u64 expires_ns; /* bpf_ktime_get_coarse_ns() deadline; 0 = empty */
	__u32 ifindex;
	__u8 smac[6];
	__u8 dmac[6];
	__u8 pad[6];
};
SL_STATIC_ASSERT(sizeof(struct sl_nexthop) == 32, "sl_nexthop size");

/* Single-entry array `info`: lets a reader check the ABI of pinned maps before using them,
 * and tells it what the running agent was configured with. */
struct sl_info {
	__u32 abi_version;
	__u32 maglev_size;
	__u32 max_vips;
	__u32 max_backends;
	__u64 generation;		       /* bumped by the agent on every applied config */
	__u32 ct_max_entries;		       /* size of `conntrack` */
	__u32 ct_pending_entries;	       /* size of `ct_pending` */
	__u32 ct_timeout_s[SL_CT_STATE_SLOTS]; /* idle timeout of each enum sl_tcp_state, seconds
						* (0: never expired by the data path); slot
						* SL_CT_TIMEOUT_UNCONFIRMED: the unconfirmed
						* timeout, which caps the state's in ct_pending */
	/* Most entries of `conntrack` that one-sided (dsr, SL_CT_F_ONE_SIDED) flows may hold:
	 * a blind sender confirms a one-sided flow with two packets, and must not fill the table
	 * that every VIP's flows confirm into (docs/design.md, "Trust no packet"). 0: no budget
	 * (an `info` no agent wrote). Published on every apply. */
	__u32 ct_one_sided_max;
	__u32 pad;
};
SL_STATIC_ASSERT(sizeof(struct sl_info) == 104, "sl_info size");

/* `ct_one_sided` (a single-entry array of u64, mmapable): how many entries of `conntrack`
 * hold a live count for a one-sided flow. The data path adds 1 before it confirms one (and
 * takes it back if the insert fails or the budget is spent); whoever gives back the entry's
 * live count (struct sl_ct_entry: the data path's exchange on `live`, the agent's expiry)
 * subtracts 1, atomically, never below 0. */

/*
 * VLAN membership (`vlan_members`, written by the agent from `interfaces:`). A frame whose
 * outer tag (802.1Q, or the 802.1ad S-tag of a QinQ pair) names VLAN id `vid` is sluice's on
 * interface `ifindex` only if the key {ifindex, vid} is present; otherwise it is passed
 * untouched (SL_PASS_VLAN_NOT_OURS). Untagged and priority-tagged (VID 0) frames are always
 * carried, so they cost no lookup. The value is unused (1).
 */
struct sl_vlan_key {
	__u32 ifindex;
	__u16 vid; /* host order, 1..4094 */
	__u16 pad;
};
SL_STATIC_ASSERT(sizeof(struct sl_vlan_key) == 8, "sl_vlan_key size");
/* Entries of `vlan_members`: every interface may carry every VLAN id, up to this many pairs. */
#define SL_VLAN_MEMBER_ENTRIES 4096

/* A fragment record expires this long after its first fragment: fragments of one datagram
 * arrive back to back, so 2 s is generous, and it bounds how long a flood's records stay. */
#define SL_FRAG_TIMEOUT_NS 2000000000ull
/* First fragments one VIP may record per SL_FRAG_TIMEOUT_NS window (the default of the
 * data path's sl_frag_vip_budget, an eighth of `frags`). A record outlives its window by at
 * most one more, so a VIP holds at most twice its budget in live records: a quarter of
 * `frags`. A flood to up to three VIPs at once leaves room for every other
 * VIP's datagrams (docs/design.md, "Fragments"). */
#define SL_FRAG_VIP_BUDGET (SL_FRAG_ENTRIES / 8)

/* Value of `frag_budget`, indexed by vip_id: first fragments recorded in the current window. */
struct sl_frag_budget {
	__u64 window; /* bpf_ktime_get_coarse_ns() / SL_FRAG_TIMEOUT_NS */
	__u64 used;   /* first fragments recorded (or refused) in `window`; atomic adds */
};
SL_STATIC_ASSERT(sizeof(struct sl_frag_budget) == 16, "sl_frag_budget size");

#endif /* SLUICE_ABI_H */
