// The state of one probe, shared by the checker's two halves: health.cc (targets, schedule,
// results) and check.cc (one check's socket). Private to agent/health: the public header only
// forward-declares HealthChecker::Probe, so that nothing outside depends on its layout.
#pragma once

#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "sluice/core/fd.h"
#include "sluice/health/health.h"

namespace sluice {

// One probe per distinct check (identity_key() in health.cc): backends that share an
// endpoint and a check share a probe, so one socket and one state serve them all.
struct HealthChecker::Probe {
  enum class Phase : uint8_t { kIdle, kConnecting, kSending, kReading };

  std::string key;
  HealthTarget target;        // the first target with this key; its backend_id is not used
  std::string name;           // "10.0.0.1:8080"
  std::vector<uint32_t> ids;  // every backend id it answers for: one on_change call each
  sockaddr_storage sa{};
  socklen_t sa_len = 0;
  std::string request;  // http only

  // Schedule. `next_start` is the cadence anchor: starts are next_start, next_start +
  // interval, ... regardless of how long each check takes.
  Clock::time_point next_start{};
  // This probe's one entry in starts_ (when idle) or timeouts_ (when a check is in flight).
  Clock::time_point deadline{};
  std::set<Deadline>* scheduled = nullptr;

  // The check in flight.
  Phase phase = Phase::kIdle;
  UniqueFd fd;
  uint32_t watched = 0;  // epoll events registered for fd; 0 = not on the loop
  Clock::time_point started{};
  std::size_t sent = 0;
  std::string buf;  // http: the response so far

  // State.
  bool up = true;
  uint32_t ok_run = 0;
  uint32_t fail_run = 0;
  uint64_t checks = 0;
  uint64_t failures = 0;
  uint64_t transitions = 0;
  uint64_t local_errors = 0;
  std::chrono::microseconds last_latency{0};
  std::string last_error;
  LatencyHistogram latency;

  std::chrono::milliseconds interval() const {
    return std::chrono::milliseconds(target.check.interval_ms);
  }
  std::chrono::milliseconds timeout() const {
    return std::chrono::milliseconds(target.check.timeout_ms);
  }
};

}  // namespace sluice
