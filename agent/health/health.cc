// The health checker: which probes exist (set_targets), when each runs (one timerfd over
// ordered deadline sets, see health.h for the cost model), and what a result does to the
// backend's state (rise/fall, on_change). The socket work of one check is in check.cc; the
// probe they share is in probe.h.
//
// The checker only decides up or down; it never touches the data path. The daemon's
// on_change callback turns a flip into a map write, so the checker can be tested without
// root, against plain sockets.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "probe.h"
#include "sluice/core/clock.h"
#include "sluice/core/net.h"
#include "sluice/health/health.h"

namespace sluice {

namespace {

using namespace std::chrono_literals;

// How early a start may run to share a wakeup with another one (see on_timer).
constexpr auto kStartSlack = 5ms;
// At most one warning per this period about agent-side errors (out of fds, ports, memory),
// which otherwise repeat for every backend on every interval.
constexpr auto kLocalWarnPeriod = 10s;

void put_u32(std::string& out, uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); }

// Length-prefixed, so that two fields can never run into each other: send "ab" + expect "c"
// must not make the same key as send "a" + expect "bc".
void put_str(std::string& out, const std::string& s) {
  put_u32(out, static_cast<uint32_t>(s.size()));
  out += s;
}

// What a probe checks, as bytes: targets with equal keys share one probe and its state.
// Timing (interval, timeout, rise, fall) is deliberately left out; see set_targets.
std::string identity_key(const HealthTarget& t) {
  std::string k;
  k.push_back(static_cast<char>(t.family));
  k.append(reinterpret_cast<const char*>(t.addr.w), sizeof(t.addr.w));
  put_u32(k, t.port);
  k.push_back(static_cast<char>(t.check.type));
  switch (t.check.type) {
    case HealthCheckType::kTcp:
      break;
    case HealthCheckType::kHttp:
      put_str(k, t.check.path);
      put_u32(k, static_cast<uint32_t>(t.check.expect_status.size()));
      for (const StatusRange& r : t.check.expect_status) put_u32(k, (r.lo << 16) | r.hi);
      break;
    case HealthCheckType::kUdp:
      put_str(k, t.check.send);
      put_str(k, t.check.expect);
      break;
  }
  return k;
}

bool same_timing(const HealthCheckConfig& a, const HealthCheckConfig& b) {
  return a.interval_ms == b.interval_ms && a.timeout_ms == b.timeout_ms && a.rise == b.rise &&
         a.fall == b.fall;
}

socklen_t to_sockaddr(const HealthTarget& t, sockaddr_storage& ss) {
  std::memset(&ss, 0, sizeof(ss));
  if (t.family == SL_AF_INET) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(t.port);
    sin->sin_addr.s_addr = t.addr.w[0];
    return sizeof(*sin);
  }
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
  sin6->sin6_family = AF_INET6;
  sin6->sin6_port = htons(t.port);
  std::memcpy(&sin6->sin6_addr, t.addr.w, sizeof(sin6->sin6_addr));
  return sizeof(*sin6);
}

// Built once per probe, not per check. HTTP/1.1 needs a Host header (the port only when it is
// not the default 80); Connection: close, since every check opens its own connection and
// resets it once the status line is in.
std::string http_request(const HealthTarget& t) {
  std::string host = format_ip(t.addr, t.family);
  if (t.family == SL_AF_INET6) host = "[" + host + "]";
  if (t.port != 80) host += ":" + std::to_string(t.port);
  return "GET " + t.check.path + " HTTP/1.1\r\nHost: " + host +
         "\r\nConnection: close\r\nUser-Agent: sluice-health\r\n\r\n";
}

}  // namespace

void LatencyHistogram::observe(double seconds) {
  for (std::size_t i = 0; i < kBoundsSeconds.size(); ++i) {
    if (seconds <= kBoundsSeconds[i]) ++cumulative[i];
  }
  ++count;
  sum_seconds += seconds;
}

const char* health_check_type_name(HealthCheckType type) {
  switch (type) {
    case HealthCheckType::kTcp:
      return "tcp";
    case HealthCheckType::kHttp:
      return "http";
    case HealthCheckType::kUdp:
      return "udp";
  }
  return "unknown";
}

std::vector<HealthTarget> health_targets(const Config& cfg) {
  // As a fresh Datapath::apply numbers backends: all VIPs in config order, from 0.
  std::vector<std::vector<uint32_t>> ids;
  uint32_t id = 0;
  for (const VipConfig& vip : cfg.vips) {
    ids.emplace_back();
    for (std::size_t i = 0; i < vip.backends.size(); ++i) ids.back().push_back(id++);
  }
  return health_targets(cfg, ids);
}

std::vector<HealthTarget> health_targets(const Config& cfg,
                                         const std::vector<std::vector<uint32_t>>& ids) {
  std::vector<HealthTarget> out;
  for (std::size_t v = 0; v < cfg.vips.size() && v < ids.size(); ++v) {
    const VipConfig& vip = cfg.vips[v];
    for (std::size_t i = 0; i < vip.backends.size() && i < ids[v].size(); ++i) {
      const BackendConfig& b = vip.backends[i];
      const uint32_t backend_id = ids[v][i];
      if (!vip.health_check) continue;
      HealthTarget t;
      t.backend_id = backend_id;
      t.addr = b.addr;
      t.family = b.family;
      t.port = vip.health_check->port != 0 ? vip.health_check->port : b.port;
      t.check = *vip.health_check;
      out.push_back(std::move(t));
    }
  }
  return out;
}

HealthChecker::HealthChecker(EventLoop& loop, HealthCheckerOptions opts)
    : loop_(loop), opts_(opts) {}

Result<std::unique_ptr<HealthChecker>> HealthChecker::create(EventLoop& loop,
                                                             HealthCheckerOptions opts) {
  std::unique_ptr<HealthChecker> hc(new HealthChecker(loop, opts));
  hc->timer_fd_.reset(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  if (!hc->timer_fd_.valid()) return sys_error("health checks: timerfd_create");
  HealthChecker* self = hc.get();
  if (auto s = loop.add(hc->timer_fd_.get(), EPOLLIN, [self](uint32_t) { self->on_timer(); }); !s) {
    return Error{s.error().code, "health checks: " + s.error().message};
  }
  return hc;
}

HealthChecker::~HealthChecker() {
  for (auto& [key, p] : probes_) stop_check(*p);
  if (timer_fd_.valid()) loop_.remove(timer_fd_.get());
}

// ---------------------------------------------------------------------------------------------
// Deadlines

// An idle probe waits for its next start, a busy one for its check's timeout. Two sets, not
// one, because on_timer treats them differently: a timeout is never taken early, a start may
// be (kStartSlack).
void HealthChecker::schedule(Probe& p, Clock::time_point at) {
  unschedule(p);
  p.deadline = at;
  p.scheduled = p.phase == Probe::Phase::kIdle ? &starts_ : &timeouts_;
  p.scheduled->insert({at, &p});
}

void HealthChecker::unschedule(Probe& p) {
  if (p.scheduled == nullptr) return;
  p.scheduled->erase({p.deadline, &p});
  p.scheduled = nullptr;
}

// Points the timerfd at the earliest deadline. One settime per change of the earliest
// deadline, not per check.
void HealthChecker::arm() {
  itimerspec its{};
  if (starts_.empty() && timeouts_.empty()) {
    if (!armed_) return;
    armed_ = false;  // a zero it_value disarms
  } else {
    Clock::time_point first = Clock::time_point::max();
    if (!starts_.empty()) first = starts_.begin()->first;
    if (!timeouts_.empty()) first = std::min(first, timeouts_.begin()->first);
    if (armed_ && first == armed_at_) return;
    armed_ = true;
    armed_at_ = first;
    its.it_value = to_timespec(first.time_since_epoch());
  }
  if (timerfd_settime(timer_fd_.get(), TFD_TIMER_ABSTIME, &its, nullptr) != 0) {
    // Cannot happen with a valid fd and a normalised timespec; without the timer no check
    // would ever run again, so say so loudly.
    spdlog::error("health checks: {}", sys_error("timerfd_settime").to_string());
    armed_ = false;
  }
}

void HealthChecker::on_timer() {
  uint64_t expirations = 0;
  // EAGAIN: re-armed after this expiry was queued; the deadlines decide what is due anyway.
  (void)!read(timer_fd_.get(), &expirations, sizeof(expirations));
  armed_ = false;
  const Clock::time_point now = Clock::now();
  // Re-read begin() every time: a callback below may add or remove probes. Timeouts first,
  // and never early.
  while (!timeouts_.empty() && timeouts_.begin()->first <= now) {
    Probe& p = *timeouts_.begin()->second;
    unschedule(p);
    const char* during = p.phase == Probe::Phase::kConnecting ? "while connecting"
                         : p.phase == Probe::Phase::kSending  ? "while sending the request"
                         : p.target.check.type == HealthCheckType::kHttp
                             ? "waiting for the status line"
                             : "waiting for a reply";
    fail(p, "timeout after " + std::to_string(p.target.check.timeout_ms) + " ms " + during);
  }
  // Starts due soon run now too, up to a tenth of their interval (at most kStartSlack) early:
  // 1000 backends spread over 1 s then cost about 200 wakeups a second, not 1000. The cadence
  // does not drift, since the next start is counted from the planned one.
  while (!starts_.empty()) {
    auto [at, probe] = *starts_.begin();
    const auto slack = std::min<Clock::duration>(kStartSlack, probe->interval() / 10);
    if (at > now + slack) break;
    unschedule(*probe);
    start(*probe, now);
  }
  arm();
}

// Moves the cadence anchor to the first start after `now`: a loop that was held up (or a
// check that could not start) skips the starts it missed instead of bunching them up.
void HealthChecker::advance(Probe& p) {
  const Clock::time_point now = Clock::now();
  p.next_start += p.interval();
  if (p.next_start <= now) {
    const auto behind = now - p.next_start;
    p.next_start += (behind / p.interval() + 1) * p.interval();
  }
}

// ---------------------------------------------------------------------------------------------
// Results

void HealthChecker::stop_check(Probe& p) {
  p.phase = Probe::Phase::kIdle;
  if (!p.fd.valid()) return;
  if (p.watched != 0) loop_.remove(p.fd.get());
  p.watched = 0;
  p.fd.reset();
  p.buf.clear();
  --in_flight_;
}

void HealthChecker::succeed(Probe& p, std::string detail) { finish(p, true, std::move(detail)); }

void HealthChecker::fail(Probe& p, std::string reason) { finish(p, false, std::move(reason)); }

// A check that could not run says nothing about the backend: its state and counters of checks
// stay as they are, only local_errors counts it, and the probe tries again at its next start.
void HealthChecker::skip(Probe& p, const std::string& what, int err) {
  stop_check(p);
  ++p.local_errors;
  advance(p);
  schedule(p, p.next_start);
  arm();
  const Clock::time_point now = Clock::now();
  if (now - last_local_warn_ >= kLocalWarnPeriod || last_local_warn_ == Clock::time_point{}) {
    last_local_warn_ = now;
    spdlog::warn(
        "health check of {} not run: {}: {} (an agent-side error, the backend keeps its state; "
        "such warnings are shown at most every {} s)",
        p.name, what, std::strerror(err), kLocalWarnPeriod.count());
  }
}

// The next start is scheduled before anything else, and before on_change runs: the callback
// may destroy `p`, and a probe must never be left without a deadline.
void HealthChecker::finish(Probe& p, bool ok, std::string detail) {
  const Clock::time_point now = Clock::now();
  stop_check(p);
  advance(p);
  schedule(p, p.next_start);
  arm();

  const auto took = std::chrono::duration_cast<std::chrono::microseconds>(now - p.started);
  p.last_latency = took;
  ++p.checks;
  bool flipped = false;
  if (ok) {
    // Successful checks only: a timed-out check would record the configured timeout, not
    // anything the backend did.
    p.latency.observe(std::chrono::duration<double>(took).count());
    p.last_error.clear();
    p.fail_run = 0;
    ++p.ok_run;
    if (!p.up && p.ok_run >= p.target.check.rise) flipped = true;
  } else {
    ++p.failures;
    p.last_error = detail;
    p.ok_run = 0;
    ++p.fail_run;
    if (p.up && p.fail_run >= p.target.check.fall) flipped = true;
  }
  if (!flipped) return;

  p.up = ok;
  ++p.transitions;
  std::string reason = detail;
  if (ok) {
    reason = (p.ok_run == 1 ? "check passed ("
                            : std::to_string(p.ok_run) + " consecutive checks passed (") +
             detail + ")";
  }
  if (ok) {
    spdlog::info("health: backend {} ({} check) is up: {}", p.name,
                 health_check_type_name(p.target.check.type), reason);
  } else {
    spdlog::warn("health: backend {} ({} check) is down after {} failed checks: {}", p.name,
                 health_check_type_name(p.target.check.type), p.fail_run, reason);
  }
  if (!on_change_) return;
  // The callback may replace the targets and destroy `p`: work from copies from here on.
  // If it does, the world changed: the flip's remaining ids are not reported.
  const std::vector<uint32_t> ids = p.ids;
  const ChangeCallback cb = on_change_;
  const uint64_t generation = generation_;
  for (uint32_t id : ids) {
    if (generation_ != generation) break;
    cb(id, ok, reason);
  }
}

// ---------------------------------------------------------------------------------------------
// Targets and state

void HealthChecker::set_targets(std::vector<HealthTarget> targets) {
  ++generation_;
  std::unordered_map<std::string, std::unique_ptr<Probe>> next;
  std::vector<Probe*> fresh;  // to be staggered
  for (HealthTarget& t : targets) {
    std::string key = identity_key(t);
    auto it = next.find(key);
    if (it == next.end()) {
      std::unique_ptr<Probe> p;
      if (auto old = probes_.find(key); old != probes_.end()) {
        p = std::move(old->second);
        probes_.erase(old);
        p->ids.clear();
        if (!same_timing(p->target.check, t.check)) {
          stop_check(*p);  // dropped without a result
          unschedule(*p);
          fresh.push_back(p.get());
        }
        p->target.check = t.check;
      } else {
        p = std::make_unique<Probe>();
        p->key = key;
        p->name = format_host_port(t.addr, t.family, t.port);
        p->sa_len = to_sockaddr(t, p->sa);
        if (t.check.type == HealthCheckType::kHttp) p->request = http_request(t);
        p->up = t.initially_up.value_or(opts_.initially_up);
        p->target = t;
        fresh.push_back(p.get());
      }
      it = next.emplace(std::move(key), std::move(p)).first;
    }
    Probe& p = *it->second;
    if (std::find(p.ids.begin(), p.ids.end(), t.backend_id) == p.ids.end()) {
      p.ids.push_back(t.backend_id);
    }
  }
  // What is left was removed from the config. Its probes are destroyed with the old map, after
  // their sockets left the loop: no callback can reach a freed probe.
  for (auto& [key, p] : probes_) {
    stop_check(*p);
    unschedule(*p);
  }
  probes_ = std::move(next);
  by_id_.clear();
  for (auto& [key, p] : probes_) {
    for (uint32_t id : p->ids) by_id_[id] = p.get();
  }

  // Spread the first checks of the new probes evenly over their interval, from a random
  // phase: 1000 backends added at once are checked one at a time, not in a burst.
  if (!fresh.empty()) {
    const Clock::time_point now = Clock::now();
    const double phase = std::uniform_real_distribution<double>(0, 1)(rng_);
    const double k = static_cast<double>(fresh.size());
    for (std::size_t i = 0; i < fresh.size(); ++i) {
      Probe& p = *fresh[i];
      const double frac = (static_cast<double>(i) + phase) / k;
      const auto offset = std::chrono::duration_cast<Clock::duration>(
          std::chrono::duration<double, std::milli>(frac * p.target.check.interval_ms));
      p.next_start = now + offset;
      schedule(p, p.next_start);
    }
  }
  arm();
}

bool HealthChecker::is_up(uint32_t backend_id) const {
  auto it = by_id_.find(backend_id);
  return it == by_id_.end() || it->second->up;
}

HealthStats HealthChecker::snapshot() const {
  HealthStats stats;
  stats.in_flight = in_flight_;
  stats.backends.reserve(by_id_.size());
  for (const auto& [id, p] : by_id_) {
    BackendHealth h;
    h.backend_id = id;
    h.target = p->name;
    h.type = p->target.check.type;
    h.up = p->up;
    h.consecutive_ok = p->ok_run;
    h.consecutive_fail = p->fail_run;
    h.checks = p->checks;
    h.failures = p->failures;
    h.transitions = p->transitions;
    h.local_errors = p->local_errors;
    h.last_latency = p->last_latency;
    h.last_error = p->last_error;
    h.latency = p->latency;
    stats.backends.push_back(std::move(h));
  }
  std::sort(
      stats.backends.begin(), stats.backends.end(),
      [](const BackendHealth& a, const BackendHealth& b) { return a.backend_id < b.backend_id; });
  return stats;
}

}  // namespace sluice
