#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <sluice/health/health.h>
#include <sluice/core/net.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace sluice {

namespace {

using namespace std::chrono_literals;

// The status line of an HTTP response is read up to this size; a longer one fails the check.
constexpr std::size_t kMaxStatusLine = 1024;
// How early a start may run to share a wakeup with another one (see on_timer).
constexpr auto kStartSlack = 5ms;
// At most one warning per this period about agent-side errors (out of fds, ports, memory),
// which otherwise repeat for every backend on every interval.
constexpr auto kLocalWarnPeriod = 10s;

void put_u32(std::string& out, uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); }

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

std::string http_request(const HealthTarget& t) {
  std::string host = format_ip(t.addr, t.family);
  if (t.family == SL_AF_INET6) host = "[" + host + "]";
  if (t.port != 80) host += ":" + std::to_string(t.port);
  return "GET " + t.check.path + " HTTP/1.1\r\nHost: " + host +
         "\r\nConnection: close\r\nUser-Agent: sluice-health\r\n\r\n";
}

std::string status_list(const std::vector<StatusRange>& ranges) {
  std::string out;
  for (std::size_t i = 0; i < ranges.size(); ++i) {
    if (i > 0) out += i + 1 == ranges.size() ? " or " : ", ";
    out += std::to_string(ranges[i].lo);
    if (ranges[i].hi != ranges[i].lo) out += "-" + std::to_string(ranges[i].hi);
  }
  return out;
}

// Bytes from the network, made safe to log: printable ASCII kept, the rest as \xNN.
std::string printable(std::string_view s, std::size_t max = 64) {
  std::string out;
  for (std::size_t i = 0; i < s.size() && i < max; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      char buf[5];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    }
  }
  if (s.size() > max) out += "...";
  return out;
}

// Parses "HTTP/<version> <3 digits>[ <reason>]" (the line without its CR LF).
std::optional<int> parse_status_line(std::string_view line) {
  if (line.substr(0, 5) != "HTTP/") return std::nullopt;
  const std::size_t sp = line.find(' ');
  if (sp == std::string_view::npos || sp == 5) return std::nullopt;
  std::string_view rest = line.substr(sp + 1);
  if (rest.size() < 3 || (rest.size() > 3 && rest[3] != ' ')) return std::nullopt;
  int code = 0;
  for (int i = 0; i < 3; ++i) {
    if (rest[i] < '0' || rest[i] > '9') return std::nullopt;
    code = code * 10 + (rest[i] - '0');
  }
  return code;
}

// Errors of the agent's own resources: the backend is not to blame for them.
bool local_errno(int err) {
  return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM ||
         err == EADDRNOTAVAIL || err == EAFNOSUPPORT;
}

timespec to_timespec(std::chrono::steady_clock::time_point t) {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch());
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(ns.count() / 1000000000);
  ts.tv_nsec = static_cast<long>(ns.count() % 1000000000);
  return ts;
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

struct HealthChecker::Probe {
  enum class Phase : uint8_t { kIdle, kConnecting, kSending, kReading };

  std::string key;
  HealthTarget target;  // the first target with this key; its backend_id is not used
  std::string name;     // "10.0.0.1:8080"
  std::vector<uint32_t> ids;
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

// An idle probe waits for its next start, a busy one for its check's timeout.
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
    its.it_value = to_timespec(first);
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
// One check

void HealthChecker::start(Probe& p, Clock::time_point now) {
  const HealthCheckType type = p.target.check.type;
  p.started = now;
  p.sent = 0;
  p.buf.clear();
  const int domain = p.target.family == SL_AF_INET ? AF_INET : AF_INET6;
  const int socktype = type == HealthCheckType::kUdp ? SOCK_DGRAM : SOCK_STREAM;
  p.fd.reset(socket(domain, socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!p.fd.valid()) return skip(p, "socket", errno);
  ++in_flight_;
  if (type != HealthCheckType::kUdp) {
    // Close with a reset, not a FIN: a checker that closes first would otherwise hold a
    // TIME_WAIT socket for 60 s per check (60000 of them at 1000 checks a second).
    const linger lg{1, 0};
    setsockopt(p.fd.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  }
  // The timeout covers the whole check: connect, request and answer.
  p.phase = Probe::Phase::kConnecting;
  schedule(p, now + p.timeout());
  if (connect(p.fd.get(), reinterpret_cast<const sockaddr*>(&p.sa), p.sa_len) != 0) {
    const int err = errno;
    if (err == EINPROGRESS) return watch(p, EPOLLOUT);  // writable when the handshake ends
    if (local_errno(err)) return skip(p, "connect", err);
    return fail(p, std::string("connect: ") + std::strerror(err));
  }
  // UDP always gets here; TCP when the handshake completed at once.
  if (type == HealthCheckType::kTcp) return succeed(p, "connected");
  p.phase = Probe::Phase::kSending;
  send_request(p);
}

// Registers the check's socket on the loop, or changes its events.
void HealthChecker::watch(Probe& p, uint32_t events) {
  if (p.watched == events) return;
  Status s = p.watched != 0
                 ? loop_.modify(p.fd.get(), events)
                 : loop_.add(p.fd.get(), events, [this, self = &p](uint32_t) { on_io(*self); });
  if (!s) return skip(p, "epoll_ctl", s.error().code);
  p.watched = events;
}

// Every handler tries its syscall and treats EAGAIN as "not yet", instead of trusting the
// event bits: an event queued for a socket that was closed can be delivered, within the same
// epoll batch, to a new socket that got the same fd number.
void HealthChecker::on_io(Probe& p) {
  const HealthCheckType type = p.target.check.type;
  switch (p.phase) {
    case Probe::Phase::kIdle:
      return;
    case Probe::Phase::kConnecting: {  // TCP only: UDP connects at once
      // One syscall tells "still connecting" (a stale event), "connected" and "failed".
      tcp_info ti{};
      socklen_t len = sizeof(ti);
      if (getsockopt(p.fd.get(), IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) {
        return fail(p, std::string("connect: ") + std::strerror(errno));
      }
      if (ti.tcpi_state == TCP_SYN_SENT) return;
      if (ti.tcpi_state == TCP_CLOSE) {
        int err = 0;
        socklen_t elen = sizeof(err);
        getsockopt(p.fd.get(), SOL_SOCKET, SO_ERROR, &err, &elen);
        return fail(
            p, std::string("connect: ") + (err != 0 ? std::strerror(err) : "connection closed"));
      }
      // Established, or already closed by the server (CLOSE_WAIT): the handshake completed.
      if (type == HealthCheckType::kTcp) return succeed(p, "connected");
      p.phase = Probe::Phase::kSending;
      return send_request(p);
    }
    case Probe::Phase::kSending:
      return send_request(p);
    case Probe::Phase::kReading:
      return type == HealthCheckType::kHttp ? read_status(p) : read_reply(p);
  }
}

void HealthChecker::send_request(Probe& p) {
  const bool udp = p.target.check.type == HealthCheckType::kUdp;
  const std::string& data = udp ? p.target.check.send : p.request;
  // A UDP payload goes out whole in one send, even an empty one.
  while (p.sent < data.size() || (udp && p.sent == 0 && data.empty())) {
    const ssize_t n = send(p.fd.get(), data.data() + p.sent, data.size() - p.sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return watch(p, EPOLLOUT);
      if (local_errno(errno)) return skip(p, "send", errno);
      return fail(p, std::string("send: ") + std::strerror(errno));
    }
    p.sent += static_cast<std::size_t>(n);
    if (udp) break;
  }
  p.phase = Probe::Phase::kReading;
  watch(p, EPOLLIN);
}

void HealthChecker::read_status(Probe& p) {
  char chunk[512];
  for (;;) {
    const ssize_t n = recv(p.fd.get(), chunk, sizeof(chunk), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return;
      return fail(p, std::string("recv: ") + std::strerror(errno));
    }
    if (n == 0) {
      return fail(p, p.buf.empty() ? "connection closed before any response"
                                   : "connection closed in the status line after " +
                                         std::to_string(p.buf.size()) + " bytes ('" +
                                         printable(p.buf) + "')");
    }
    p.buf.append(chunk, static_cast<std::size_t>(n));
    const std::size_t eol = p.buf.find('\n');
    if (eol == std::string::npos) {
      if (p.buf.size() > kMaxStatusLine) {
        return fail(p, "no status line in the first " + std::to_string(kMaxStatusLine) +
                           " bytes ('" + printable(p.buf) + "')");
      }
      continue;
    }
    std::string_view line(p.buf.data(), eol);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const std::optional<int> code = parse_status_line(line);
    if (!code) return fail(p, "bad status line '" + printable(line) + "'");
    const auto& want = p.target.check.expect_status;
    const bool match = std::any_of(want.begin(), want.end(), [&](const StatusRange& r) {
      return *code >= r.lo && *code <= r.hi;
    });
    if (!match) {
      return fail(p, "HTTP " + std::to_string(*code) + ", expected " + status_list(want));
    }
    return succeed(p, "HTTP " + std::to_string(*code));
  }
}

void HealthChecker::read_reply(Probe& p) {
  if (scratch_.empty()) scratch_.resize(65536);
  ssize_t n;
  do {
    n = recv(p.fd.get(), scratch_.data(), scratch_.size(), MSG_TRUNC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN) return;
    // ECONNREFUSED: an ICMP port unreachable came back for the payload.
    return fail(p, std::string("recv: ") + std::strerror(errno));
  }
  const std::size_t got = std::min(static_cast<std::size_t>(n), scratch_.size());
  const std::string_view reply(scratch_.data(), got);
  const std::string& expect = p.target.check.expect;
  if (!expect.empty() && reply.find(expect) == std::string_view::npos) {
    return fail(p, "the reply ('" + printable(reply) + "', " + std::to_string(n) +
                       " bytes) does not contain '" + printable(expect) + "'");
  }
  succeed(p, "reply of " + std::to_string(n) + " bytes");
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
  // What is left was removed from the config.
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
