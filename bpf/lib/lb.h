/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* VIP lookup and backend selection (Maglev source hash; TCP flows pinned by conntrack). */
#ifndef SLUICE_BPF_LB_H
#define SLUICE_BPF_LB_H

#include "common.h"
#include "maps.h"
#include "conntrack.h"
#include <sluice/hash.h>

static __always_inline struct sl_vip_entry *sl_vip_get(const struct sl_addr *addr, __be16 port,
						    __u8 proto, __u8 family)
{
	__u32 slot = sl_vip_index_slot(addr, port, proto);
	__u32 *idx = bpf_map_lookup_elem(&vip_index, &slot);
	struct sl_vip_entry *e;
	__u32 id;

	if (!idx || !*idx)
		return NULL;
	if (*idx == SL_VIP_INDEX_COLLISION) {
		struct sl_endpoint k = { .addr = *addr, .port = port, .proto = proto, .family = family };
		__u32 *pid = bpf_map_lookup_elem(&vips, &k);

		if (!pid)
			return NULL;
		id = *pid;
	} else {
		id = *idx - 1;
	}
	e = bpf_map_lookup_elem(&vip_table, &id);
	/* The index is direct-mapped: verify the whole key. */
	if (!e || e->ep.port != port || e->ep.proto != proto || e->ep.family != family ||
	    e->ep.addr.w[0] != addr->w[0] || e->ep.addr.w[1] != addr->w[1] ||
	    e->ep.addr.w[2] != addr->w[2] || e->ep.addr.w[3] != addr->w[3])
		return NULL;
	return e;
}

/* Exact (addr, port, proto) first, then the port-0 wildcard of that address. */
static __always_inline struct sl_vip *sl_vip_lookup(const struct sl_addr *addr, __be16 port,
						    __u8 proto, __u8 family)
{
	struct sl_vip_entry *e = sl_vip_get(addr, port, proto, family);

	if (!e && port)
		e = sl_vip_get(addr, 0, proto, family);
	return e ? &e->vip : NULL;
}

/* 0: certainly not in the set; 1: maybe (confirm with the exact map where it matters). */
static __always_inline int sl_filter_test(__u32 kind, const struct sl_addr *addr)
{
	__u32 slot = sl_addr_filter_slot(addr);
	__u32 key = kind * SL_ADDR_FILTER_WORDS + (slot >> 6);
	__u64 *w = bpf_map_lookup_elem(&addr_filter, &key);

	return w && (*w & (1ull << (slot & 63)));
}

static __always_inline int sl_is_vip_addr(const struct sl_addr *addr, __u8 family)
{
	struct sl_addr_key k = { .addr = *addr, .family = family };

	return bpf_map_lookup_elem(&vip_addrs, &k) != NULL;
}

static __always_inline __u32 sl_maglev_pick(const struct sl_vip *vip, const struct sl_addr *src,
					    __be16 sport)
{
	__u32 h = sl_source_hash(src, (vip->flags & SL_VIP_F_HASH_SPORT) ? sport : 0);
	__u32 key = vip->ring_id * SL_MAGLEV_SIZE + sl_maglev_slot(h);
	__u32 *id = bpf_map_lookup_elem(&maglev, &key);

	return id ? *id : SL_BACKEND_NONE;
}

static __always_inline struct sl_backend *sl_backend_get(__u32 id)
{
	struct sl_backend *be = bpf_map_lookup_elem(&backends, &id);

	if (!be || !(be->flags & SL_BACKEND_F_ACTIVE))
		return NULL;
	return be;
}

/*
 * The backend for a packet of flow (client, cport) -> (vip, vport).
 * UDP: stateless, the Maglev pick every time. TCP: the conntrack entry's backend; on a miss
 * the Maglev pick (the same backend a SYN would get), recorded when `create` is set.
 * `proto` is the flow's protocol: for an ICMP error it is the quoted packet's.
 */
static __always_inline struct sl_backend *
sl_select_backend(const struct sl_pkt *p, const struct sl_vip *vip, __u8 proto,
		  const struct sl_addr *client, __be16 cport, const struct sl_addr *vaddr, __be16 vport,
		  int create, __u32 *backend_id, __u32 *new_flow)
{
	struct sl_backend *be;
	__u32 id;

	if (proto == IPPROTO_TCP) {
		struct sl_flow_key k = {};
		struct sl_ct_entry *ct;

		sl_flow_key_init(&k, client, vaddr, cport, vport, IPPROTO_TCP, p->family);
		ct = bpf_map_lookup_elem(&conntrack, &k);
		if (ct) {
			if (create)
				sl_ct_touch(ct, p);
			*backend_id = ct->backend_id;
			return sl_backend_get(ct->backend_id);
		}
		id = sl_maglev_pick(vip, client, cport);
		be = sl_backend_get(id);
		if (be && create)
			*new_flow = sl_ct_create(&k, p, id, vip->vip_id);
	} else {
		id = sl_maglev_pick(vip, client, cport);
		be = sl_backend_get(id);
	}
	*backend_id = id;
	return be;
}

#endif /* SLUICE_BPF_LB_H */
