#include "sluice/core/clock.h"

#include <ctime>

namespace sluice {

uint64_t monotonic_ns() {
  timespec ts{};
  // Cannot fail with a valid clock id and buffer, so no error path.
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * kNsPerSec + static_cast<uint64_t>(ts.tv_nsec);
}

timespec to_timespec(std::chrono::nanoseconds d) {
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(d.count() / static_cast<int64_t>(kNsPerSec));
  ts.tv_nsec = static_cast<long>(d.count() % static_cast<int64_t>(kNsPerSec));
  return ts;
}

}  // namespace sluice
