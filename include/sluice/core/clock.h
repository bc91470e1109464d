// The agent's clock. One function so that every timestamp the agent compares with the data
// path's comes from the same clock.
#pragma once

#include <cstdint>

namespace sluice {

inline constexpr uint64_t kNsPerSec = 1000000000ull;

// CLOCK_MONOTONIC in ns: the clock of bpf_ktime_get_ns() and, to within a jiffy, of the data
// path's own coarse clock (bpf/lib/clock.h), which stamps last_seen_ns.
uint64_t monotonic_ns();

}  // namespace sluice
