// The expiry rule (ct_expiry.h), kept apart from the sweep and from sluicectl so both apply it
// alike and match the data path's sl_ct_expired.

#include "sluice/config/ct_expiry.h"

#include <algorithm>

#include "sluice/core/clock.h"

namespace sluice {

uint64_t ct_idle_ns(const sl_ct_entry& e, uint64_t now_ns, uint64_t not_before_ns) {
  const uint64_t seen = std::max<uint64_t>(e.last_seen_ns, not_before_ns);
  // The data path keeps stamping entries while the agent reads them: one stamped after `now_ns`
  // was read is not idle, rather than idle for 2^64 ns.
  return now_ns > seen ? now_ns - seen : 0;
}

bool ct_expired(const sl_ct_entry& e, const ConntrackTimeouts& t, uint64_t now_ns,
                uint64_t not_before_ns, bool pending) {
  return ct_idle_ns(e, now_ns, not_before_ns) > uint64_t{t.for_entry(e.state, pending)} * kNsPerSec;
}

uint64_t ct_expires_in_ns(const sl_ct_entry& e, const ConntrackTimeouts& t, uint64_t now_ns,
                          bool pending) {
  const uint64_t timeout = uint64_t{t.for_entry(e.state, pending)} * kNsPerSec;
  const uint64_t idle = ct_idle_ns(e, now_ns, 0);
  return idle >= timeout ? 0 : timeout - idle;
}

}  // namespace sluice
