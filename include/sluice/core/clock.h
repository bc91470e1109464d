// The agent's clock. One function so that every timestamp the agent compares with the data
// path's comes from the same clock.
#pragma once

#include <chrono>
#include <cstdint>
#include <ctime>

namespace sluice {

inline constexpr uint64_t kNsPerSec = 1000000000ull;

// CLOCK_MONOTONIC in ns: the clock of bpf_ktime_get_ns() and, to within a jiffy, of the data
// path's own coarse clock (bpf/lib/clock.h), which stamps last_seen_ns.
uint64_t monotonic_ns();

// `d` as the timespec that timerfd_settime() takes, for every timerfd of the agent (the event
// loop's timers, health checks, the HTTP server). For an absolute deadline (TFD_TIMER_ABSTIME
// on CLOCK_MONOTONIC) pass a steady_clock time_point's time_since_epoch(): libstdc++'s
// steady_clock reads CLOCK_MONOTONIC.
timespec to_timespec(std::chrono::nanoseconds d);

}  // namespace sluice
