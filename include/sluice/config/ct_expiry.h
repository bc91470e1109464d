// When a conntrack entry expires under a config's timeouts: the rule the agent's sweep
// applies and the one sluicectl shows as `expires`, in one place beside ConntrackTimeouts.
// The data path applies the same timeouts (bpf/lib/vip_conntrack.h, sl_ct_expired).
#pragma once

#include <cstdint>

#include "sluice/abi/abi.h"
#include "sluice/config/config.h"

namespace sluice {

// How long an entry has been idle at `now_ns`: since max(last_seen_ns, not_before_ns).
uint64_t ct_idle_ns(const sl_ct_entry& e, uint64_t now_ns, uint64_t not_before_ns = 0);

// Whether an entry has been idle for longer than the timeout of its state at `now_ns`.
// Idle time counts from max(last_seen_ns, not_before_ns) (see ConntrackOptions::clock).
// `pending`: the entry is in ct_pending, where an open flow's timeout is capped by the
// unconfirmed one (ConntrackTimeouts::for_entry), as the data path caps it.
bool ct_expired(const sl_ct_entry& e, const ConntrackTimeouts& t, uint64_t now_ns,
                uint64_t not_before_ns = 0, bool pending = false);

// Nanoseconds until the entry expires at `now_ns`; 0 when it already has.
uint64_t ct_expires_in_ns(const sl_ct_entry& e, const ConntrackTimeouts& t, uint64_t now_ns,
                          bool pending = false);

}  // namespace sluice
