// Backend health checks (tcp connect, http status, udp send/expect), all on the agent's one
// EventLoop. See docs/configuration.md, "Health checks", for what each check does.
//
// Cost model: no thread per check and no blocking call. Each check is one non-blocking socket
// that lives from the check's start to its result (at most timeout_ms). Deadlines (the next
// start of every backend, the timeout of every check in flight) sit in ordered sets behind
// ONE timerfd that the checker owns and registers on the loop: an EventLoop timer per backend
// would cost 1-2 timerfds per backend and run a 1000-backend agent into the default limit of
// 1024 open files. Open fds are therefore 1 + the checks in flight (about
// backends x latency / interval, at most backends x timeout / interval).
//
// Not thread-safe: call everything from the loop's thread (on_change runs there too).
#pragma once

#include <sluice/config/config.h>
#include <sluice/core/event_loop.h>
#include <sluice/core/fd.h>
#include <sluice/core/result.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace sluice {

// One backend to check.
struct HealthTarget {
  uint32_t backend_id = 0;  // the data path's backend id (see health_targets)
  sl_addr addr{};           // network byte order
  uint8_t family = 0;       // SL_AF_INET / SL_AF_INET6
  uint16_t port = 0;        // host byte order, resolved: check.port, or else the backend's
  HealthCheckConfig check;
  // The state a new probe starts in; unset: HealthCheckerOptions::initially_up. The agent
  // sets it from the data path so a restarted agent keeps a down backend down.
  std::optional<bool> initially_up;
};

// A target for every backend of every VIP that has a health_check. Backend ids are the ones
// Datapath::apply assigns: backends counted over all VIPs in config order, from 0. Backends of
// VIPs without a health_check get no target: they are always up.
std::vector<HealthTarget> health_targets(const Config& cfg);
// The same with the ids a Datapath gave: ids[v][b] for cfg.vips[v].backends[b]
// (Datapath::backend_ids()).
std::vector<HealthTarget> health_targets(const Config& cfg,
                                         const std::vector<std::vector<uint32_t>>& ids);

// "tcp", "http", "udp" (the config words); "unknown" otherwise.
const char* health_check_type_name(HealthCheckType type);

// Latency of successful checks, shaped for a Prometheus histogram: `cumulative[i]` counts the
// observations <= kBoundsSeconds[i] (the `le` label); the +Inf bucket is `count`.
struct LatencyHistogram {
  static constexpr std::array<double, 14> kBoundsSeconds = {
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  std::array<uint64_t, kBoundsSeconds.size()> cumulative{};
  uint64_t count = 0;
  double sum_seconds = 0;

  void observe(double seconds);
};

// The health of one backend id. Backends with the same address, port and check (the same
// endpoint in two dsr VIPs, say) share one probe, so they show the same figures.
struct BackendHealth {
  uint32_t backend_id = 0;
  std::string target;  // "10.0.0.1:8080", "[fd00::1]:8080": the endpoint checked
  HealthCheckType type = HealthCheckType::kTcp;
  bool up = true;
  uint32_t consecutive_ok = 0;
  uint32_t consecutive_fail = 0;
  uint64_t checks = 0;        // completed checks, ok or failed
  uint64_t failures = 0;      // failed checks
  uint64_t transitions = 0;   // up/down flips
  uint64_t local_errors = 0;  // checks not run for an agent-side reason (e.g. out of fds)
  std::chrono::microseconds last_latency{0};  // of the last completed check, ok or not
  std::string last_error;    // why the last check failed; empty if it passed or none ran
  LatencyHistogram latency;  // successful checks only
};

struct HealthStats {
  std::vector<BackendHealth> backends;  // sorted by backend_id
  uint32_t in_flight = 0;               // checks running now (each holds one socket)
};

struct HealthCheckerOptions {
  // State of a backend before its first result. Up (the default): a freshly started or
  // restarted agent keeps serving through its backends instead of blackholing every VIP until
  // `rise` checks pass; a dead backend leaves after `fall` failed checks, as it would at any
  // other time. Down: a backend takes traffic only after `rise` passed checks.
  bool initially_up = true;
};

class HealthChecker {
 public:
  using ChangeCallback =
      std::function<void(uint32_t backend_id, bool up, const std::string& reason)>;

  // Fails only if the timerfd cannot be created or registered. `loop` must outlive the
  // checker.
  static Result<std::unique_ptr<HealthChecker>> create(EventLoop& loop,
                                                       HealthCheckerOptions opts = {});
  ~HealthChecker();  // closes every socket and the timerfd, unregistering them from the loop
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  // Replaces the set of targets. A probe is identified by what it checks: address, family,
  // port, type and the type's fields (path, expect_status, send, expect). A probe whose
  // identity is unchanged keeps its state (up/down, counters, histogram, schedule) even when
  // its backend id changes (ids are positional, so adding a backend renumbers later ones).
  // If only its timing (interval_ms, timeout_ms, rise, fall) changed, it keeps its state and
  // counters, drops a check in flight without a result and restarts its cadence. New probes
  // start in HealthCheckerOptions::initially_up and their first checks are spread evenly over
  // one interval. Never calls on_change: read is_up() for the state after the call.
  void set_targets(std::vector<HealthTarget> targets);

  // Called once per up/down flip of a backend id, from the loop, with the reason: the failed
  // check's error for a down ("connect: Connection refused", "timeout after 500 ms while
  // connecting", "HTTP 503, expected 200") and "2 consecutive checks passed (HTTP 200)" for
  // an up ("check passed (...)" when rise is 1). Backends sharing a probe flip together, one
  // call per id. It may call set_targets (the flip's ids not yet reported are then skipped;
  // read is_up() for the new targets), but must not destroy the checker. Flips are also
  // logged (warn for down, info for up).
  void on_change(ChangeCallback cb) { on_change_ = std::move(cb); }

  // Unknown ids (no health check) are up.
  bool is_up(uint32_t backend_id) const;
  HealthStats snapshot() const;

 private:
  struct Probe;
  using Clock = std::chrono::steady_clock;
  using Deadline = std::pair<Clock::time_point, Probe*>;

  HealthChecker(EventLoop& loop, HealthCheckerOptions opts);

  void on_timer();
  void on_io(Probe& p);
  void start(Probe& p, Clock::time_point now);
  void advance(Probe& p);
  void watch(Probe& p, uint32_t events);
  void send_request(Probe& p);
  void read_status(Probe& p);
  void read_reply(Probe& p);
  // Ends the check in flight. Each of these may call on_change, which may destroy `p`: they
  // are the last thing their caller does with `p`.
  void succeed(Probe& p, std::string detail);
  void fail(Probe& p, std::string reason);
  void skip(Probe& p, const std::string& what, int err);  // agent-side error, not the backend's
  void finish(Probe& p, bool ok, std::string detail);
  void stop_check(Probe& p);  // closes the socket of the check in flight, if any
  void schedule(Probe& p, Clock::time_point at);
  void unschedule(Probe& p);
  void arm();

  EventLoop& loop_;
  HealthCheckerOptions opts_;
  UniqueFd timer_fd_;
  bool armed_ = false;
  Clock::time_point armed_at_{};
  std::unordered_map<std::string, std::unique_ptr<Probe>> probes_;  // by identity key
  std::unordered_map<uint32_t, Probe*> by_id_;
  // One entry per probe: its next start (idle) or its check's timeout (in flight).
  std::set<Deadline> starts_;
  std::set<Deadline> timeouts_;
  ChangeCallback on_change_;
  std::mt19937_64 rng_{std::random_device{}()};
  std::vector<char> scratch_;  // receive buffer (one UDP datagram)
  uint32_t in_flight_ = 0;
  uint64_t generation_ = 0;  // counts set_targets calls
  Clock::time_point last_local_warn_{};
};

}  // namespace sluice
