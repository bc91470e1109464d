// HealthChecker against real sockets: TCP, HTTP and UDP servers on 127.0.0.1 ephemeral ports,
// run as non-blocking handlers on the same EventLoop as the checker (so the test is one
// thread and every timing is the loop's). No root needed, nothing taken from the host.
//
// Timing windows: a backend that dies is seen down within fall x interval + timeout (the
// next check starts within one interval, the fall-th failure ends by its timeout), and back
// up within rise x interval; each window gets 100 ms of slack for a loaded CI machine, and
// the lower bounds prove the counts (fall failures cannot happen in less than fall - 1
// intervals).
#include <arpa/inet.h>
#include <dirent.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sluice/core/event_loop.h>
#include <sluice/core/fd.h>
#include <sluice/health/health.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

using namespace std::chrono_literals;

namespace sluice {
namespace {

using Clock = std::chrono::steady_clock;
using Ms = std::chrono::duration<double, std::milli>;

int count_open_fds() {
  int n = 0;
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) return -1;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(d);
  return n - 1;  // the DIR's own fd
}

sockaddr_in loopback(uint16_t port) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return sa;
}

uint16_t local_port(int fd) {
  sockaddr_in sa{};
  socklen_t len = sizeof(sa);
  getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  return ntohs(sa.sin_port);
}

// A socket bound to 127.0.0.1:`port` (0 = ephemeral). Aborts the test on failure.
UniqueFd bound_socket(int type, uint16_t port) {
  UniqueFd fd(socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  EXPECT_TRUE(fd.valid()) << std::strerror(errno);
  const int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  const sockaddr_in sa = loopback(port);
  EXPECT_EQ(bind(fd.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof(sa)), 0)
      << "bind 127.0.0.1:" << port << ": " << std::strerror(errno);
  return fd;
}

HealthTarget target(uint32_t id, uint16_t port, HealthCheckConfig check) {
  HealthTarget t;
  t.backend_id = id;
  t.family = SL_AF_INET;
  t.addr.w[0] = htonl(INADDR_LOOPBACK);
  t.port = port;
  t.check = std::move(check);
  return t;
}

HealthCheckConfig check(HealthCheckType type, uint32_t interval_ms, uint32_t timeout_ms,
                        uint32_t rise, uint32_t fall) {
  HealthCheckConfig c;
  c.type = type;
  c.interval_ms = interval_ms;
  c.timeout_ms = timeout_ms;
  c.rise = rise;
  c.fall = fall;
  return c;
}

// ---------------------------------------------------------------------------------------------
// Servers, all on the test's loop.

// Accepts and closes at once; records when. close()/reopen() keep the port.
class TcpServer {
 public:
  explicit TcpServer(EventLoop& loop) : loop_(loop) { open(0); }
  ~TcpServer() { close(); }
  uint16_t port() const { return port_; }
  const std::vector<Clock::time_point>& accepts() const { return accepts_; }

  void close() {
    if (!fd_.valid()) return;
    loop_.remove(fd_.get());
    fd_.reset();
  }
  void reopen() { open(port_); }

 private:
  void open(uint16_t port) {
    fd_ = bound_socket(SOCK_STREAM, port);
    ASSERT_EQ(listen(fd_.get(), 128), 0);
    port_ = local_port(fd_.get());
    ASSERT_TRUE(loop_.add(fd_.get(), EPOLLIN, [this](uint32_t) {
      for (;;) {
        const int c = accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) return;
        accepts_.push_back(Clock::now());
        ::close(c);
      }
    }));
  }

  EventLoop& loop_;
  UniqueFd fd_;
  uint16_t port_ = 0;
  std::vector<Clock::time_point> accepts_;
};

// A port whose SYNs are dropped: a listener with a full accept queue (backlog 0 holds one
// connection, which `filler_` takes) that nobody accepts from. Connects to it time out.
class BlackholeServer {
 public:
  BlackholeServer() {
    listener_ = bound_socket(SOCK_STREAM, 0);
    EXPECT_EQ(listen(listener_.get(), 0), 0);
    filler_.reset(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    const sockaddr_in sa = loopback(port());
    EXPECT_EQ(connect(filler_.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof(sa)), 0);
  }
  uint16_t port() const { return local_port(listener_.get()); }

 private:
  UniqueFd listener_, filler_;
};

// HTTP: reads the request head, then plays `script` on each connection: a list of (delay,
// bytes) writes, then closes the connection unless `hang` (then it keeps it, silent).
class HttpServer {
 public:
  struct Step {
    std::chrono::milliseconds delay;
    std::string bytes;
  };
  HttpServer(EventLoop& loop, std::vector<Step> script, bool hang = false)
      : loop_(loop), script_(std::move(script)), hang_(hang) {
    fd_ = bound_socket(SOCK_STREAM, 0);
    EXPECT_EQ(listen(fd_.get(), 128), 0);
    EXPECT_TRUE(loop_.add(fd_.get(), EPOLLIN, [this](uint32_t) { accept_all(); }));
  }
  ~HttpServer() {
    for (auto& [fd, c] : conns_) {
      loop_.remove(fd);
      for (EventLoop::TimerId t : c->timers) loop_.cancel_timer(t);
    }
    loop_.remove(fd_.get());
  }
  uint16_t port() const { return local_port(fd_.get()); }
  const std::vector<std::string>& requests() const { return requests_; }
  std::size_t open_connections() const { return conns_.size(); }

 private:
  struct Conn {
    UniqueFd fd;
    std::string in;
    std::vector<EventLoop::TimerId> timers;
  };

  void accept_all() {
    for (;;) {
      const int c = accept4(fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (c < 0) return;
      auto conn = std::make_unique<Conn>();
      conn->fd.reset(c);
      conns_[c] = std::move(conn);
      EXPECT_TRUE(loop_.add(c, EPOLLIN, [this, c](uint32_t) { on_read(c); }));
    }
  }

  void drop(int fd) {
    auto it = conns_.find(fd);
    if (it == conns_.end()) return;
    for (EventLoop::TimerId t : it->second->timers) loop_.cancel_timer(t);
    loop_.remove(fd);
    conns_.erase(it);  // closes
  }

  void on_read(int fd) {
    Conn& c = *conns_.at(fd);
    char buf[2048];
    for (;;) {
      const ssize_t n = read(fd, buf, sizeof(buf));
      if (n == 0 || (n < 0 && errno != EAGAIN)) return drop(fd);  // the checker hung up
      if (n < 0) break;
      const bool had_head = c.in.find("\r\n\r\n") != std::string::npos;
      c.in.append(buf, static_cast<std::size_t>(n));
      if (had_head || c.in.find("\r\n\r\n") == std::string::npos) continue;
      requests_.push_back(c.in);
      auto at = std::chrono::milliseconds(0);
      for (std::size_t i = 0; i < script_.size(); ++i) {
        at += script_[i].delay;
        const bool last = i + 1 == script_.size();
        c.timers.push_back(loop_.add_timer(at, 0ns, [this, fd, i, last] {
          const std::string& b = script_[i].bytes;
          // Fails when the checker gave up (timeout) and reset the connection first.
          const bool sent =
              send(fd, b.data(), b.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(b.size());
          if (!sent || (last && !hang_)) drop(fd);
        }));
      }
    }
  }

  EventLoop& loop_;
  std::vector<Step> script_;
  bool hang_;
  UniqueFd fd_;
  std::map<int, std::unique_ptr<Conn>> conns_;
  std::vector<std::string> requests_;
};

// UDP: answers each datagram with `reply` (the datagram itself when `echo`), or never reads
// when `silent`.
class UdpServer {
 public:
  enum class Mode { kEcho, kReply, kSilent };
  UdpServer(EventLoop& loop, Mode mode, std::string reply = "")
      : loop_(loop), mode_(mode), reply_(std::move(reply)) {
    fd_ = bound_socket(SOCK_DGRAM, 0);
    if (mode_ == Mode::kSilent) return;
    EXPECT_TRUE(loop_.add(fd_.get(), EPOLLIN, [this](uint32_t) {
      char buf[2048];
      sockaddr_in from{};
      socklen_t len = sizeof(from);
      ssize_t n;
      while ((n = recvfrom(fd_.get(), buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&from),
                           &len)) >= 0) {
        received_.emplace_back(buf, static_cast<std::size_t>(n));
        const std::string out = mode_ == Mode::kEcho ? received_.back() : reply_;
        sendto(fd_.get(), out.data(), out.size(), 0, reinterpret_cast<sockaddr*>(&from), len);
        len = sizeof(from);
      }
    }));
  }
  ~UdpServer() {
    if (mode_ != Mode::kSilent) loop_.remove(fd_.get());
  }
  uint16_t port() const { return local_port(fd_.get()); }
  const std::vector<std::string>& received() const { return received_; }

 private:
  EventLoop& loop_;
  Mode mode_;
  std::string reply_;
  UniqueFd fd_;
  std::vector<std::string> received_;
};

// A port with nothing listening (TCP connects are refused, UDP gets ICMP port unreachable).
uint16_t closed_port(int type) {
  UniqueFd fd = bound_socket(type, 0);
  return local_port(fd.get());  // closed when fd goes
}

// ---------------------------------------------------------------------------------------------
// The fixture: a loop, a checker, and every on_change recorded with a snapshot of the
// backend's figures at that moment.

struct Change {
  uint32_t id;
  bool up;
  std::string reason;
  Clock::time_point at;
  BackendHealth health;
};

class HealthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loop = EventLoop::create();
    ASSERT_TRUE(loop) << loop.error().to_string();
    loop_ = std::move(*loop);
  }

  void make_checker(bool initially_up = true) {
    auto hc = HealthChecker::create(*loop_, HealthCheckerOptions{initially_up});
    ASSERT_TRUE(hc) << hc.error().to_string();
    hc_ = std::move(*hc);
    hc_->on_change([this](uint32_t id, bool up, const std::string& reason) {
      changes_.push_back({id, up, reason, Clock::now(), health(id)});
    });
  }

  BackendHealth health(uint32_t id) const {
    for (const BackendHealth& h : hc_->snapshot().backends) {
      if (h.backend_id == id) return h;
    }
    ADD_FAILURE() << "no backend " << id << " in the snapshot";
    return {};
  }

  // Runs the loop until `done` holds (checked every millisecond) or `limit` passes.
  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds limit) {
    const Clock::time_point end = Clock::now() + limit;
    bool ok = false;
    const EventLoop::TimerId t = loop_->add_timer(1ms, 1ms, [&] {
      if (done()) ok = true;
      if (ok || Clock::now() >= end) loop_->stop();
    });
    EXPECT_NE(t, 0u);
    EXPECT_TRUE(loop_->run());
    loop_->cancel_timer(t);
    return ok;
  }
  void run_for(std::chrono::milliseconds d) {
    run_until([] { return false; }, d);
  }

  // One check with fall 1 against a backend that must fail it: the reason of the down flip.
  std::string down_reason(uint16_t port, HealthCheckConfig c) {
    make_checker(true);
    hc_->set_targets({target(1, port, std::move(c))});
    EXPECT_TRUE(run_until([&] { return !changes_.empty(); }, 2000ms)) << "never went down";
    if (changes_.empty()) return "";
    EXPECT_FALSE(changes_[0].up);
    EXPECT_FALSE(hc_->is_up(1));
    return changes_[0].reason;
  }

  // One check with rise 1 against a backend that must pass it: the reason of the up flip.
  std::string up_reason(uint16_t port, HealthCheckConfig c) {
    make_checker(false);
    hc_->set_targets({target(1, port, std::move(c))});
    EXPECT_FALSE(hc_->is_up(1));
    EXPECT_TRUE(run_until([&] { return !changes_.empty(); }, 2000ms)) << "never came up";
    if (changes_.empty()) return "";
    EXPECT_TRUE(changes_[0].up);
    EXPECT_TRUE(hc_->is_up(1));
    return changes_[0].reason;
  }

  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<HealthChecker> hc_;
  std::vector<Change> changes_;
};

// ---------------------------------------------------------------------------------------------
// TCP

TEST_F(HealthTest, TcpDownAndUpWithExactCountsAndInTime) {
  constexpr uint32_t kInterval = 50, kTimeout = 25, kRise = 2, kFall = 3;
  TcpServer server(*loop_);
  make_checker();
  hc_->set_targets(
      {target(7, server.port(), check(HealthCheckType::kTcp, kInterval, kTimeout, kRise, kFall))});
  EXPECT_TRUE(hc_->is_up(7)) << "initially up";
  ASSERT_TRUE(run_until([&] { return health(7).checks >= 3; }, 1000ms));
  EXPECT_TRUE(changes_.empty()) << changes_[0].reason;
  EXPECT_EQ(health(7).failures, 0u);
  EXPECT_EQ(health(7).target, "127.0.0.1:" + std::to_string(server.port()));

  // Down: exactly `fall` refused connects, one flip.
  server.close();
  const Clock::time_point died = Clock::now();
  ASSERT_TRUE(run_until([&] { return !changes_.empty(); }, 2000ms));
  const Change down = changes_[0];
  EXPECT_EQ(down.id, 7u);
  EXPECT_FALSE(down.up);
  EXPECT_EQ(down.reason, "connect: Connection refused");
  EXPECT_EQ(down.health.consecutive_fail, kFall);
  EXPECT_EQ(down.health.failures, kFall);
  EXPECT_EQ(down.health.consecutive_ok, 0u);
  EXPECT_EQ(down.health.transitions, 1u);
  EXPECT_EQ(down.health.last_error, "connect: Connection refused");
  const double down_ms = Ms(down.at - died).count();
  EXPECT_GE(down_ms, (kFall - 1) * kInterval - 5);
  EXPECT_LE(down_ms, kFall * kInterval + kTimeout + 100);
  EXPECT_FALSE(hc_->is_up(7));

  run_for(200ms);  // more failures, no second flip
  EXPECT_EQ(changes_.size(), 1u);
  EXPECT_GT(health(7).consecutive_fail, kFall);

  // Up: exactly `rise` successful connects, one flip.
  server.reopen();
  const Clock::time_point revived = Clock::now();
  ASSERT_TRUE(run_until([&] { return changes_.size() == 2; }, 2000ms));
  const Change up = changes_[1];
  EXPECT_TRUE(up.up);
  EXPECT_EQ(up.reason, "2 consecutive checks passed (connected)");
  EXPECT_EQ(up.health.consecutive_ok, kRise);
  EXPECT_EQ(up.health.consecutive_fail, 0u);
  EXPECT_EQ(up.health.last_error, "");
  EXPECT_EQ(up.health.transitions, 2u);
  const double up_ms = Ms(up.at - revived).count();
  EXPECT_GE(up_ms, (kRise - 1) * kInterval - 5);
  EXPECT_LE(up_ms, kRise * kInterval + 100);
  EXPECT_TRUE(hc_->is_up(7));
  const BackendHealth h = health(7);
  EXPECT_EQ(h.latency.count, h.checks - h.failures) << "successful checks only";
  EXPECT_GT(h.latency.sum_seconds, 0);
}

TEST_F(HealthTest, TcpTimeoutAgainstAFullAcceptQueue) {
  BlackholeServer hole;
  const Clock::time_point t0 = Clock::now();
  EXPECT_EQ(down_reason(hole.port(), check(HealthCheckType::kTcp, 100, 40, 1, 1)),
            "timeout after 40 ms while connecting");
  EXPECT_GE(health(1).last_latency, 40ms);
  EXPECT_LE(Ms(changes_[0].at - t0).count(), 100 + 40 + 100);
}

TEST_F(HealthTest, InitiallyDownNeedsRiseChecks) {
  TcpServer server(*loop_);
  make_checker(/*initially_up=*/false);
  hc_->set_targets({target(1, server.port(), check(HealthCheckType::kTcp, 30, 20, 3, 1))});
  EXPECT_FALSE(hc_->is_up(1));
  ASSERT_TRUE(run_until([&] { return !changes_.empty(); }, 2000ms));
  EXPECT_TRUE(changes_[0].up);
  EXPECT_EQ(changes_[0].health.checks, 3u);
  EXPECT_EQ(changes_[0].reason, "3 consecutive checks passed (connected)");
}

TEST_F(HealthTest, TcpOverIpv6) {
  // A listener on [::1] that nobody accepts from: the kernel completes the handshakes.
  UniqueFd l(socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(l.valid());
  sockaddr_in6 sa{};
  sa.sin6_family = AF_INET6;
  sa.sin6_addr = in6addr_loopback;
  if (bind(l.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    GTEST_SKIP() << "no IPv6 loopback: " << std::strerror(errno);
  }
  ASSERT_EQ(listen(l.get(), 64), 0);
  socklen_t len = sizeof(sa);
  getsockname(l.get(), reinterpret_cast<sockaddr*>(&sa), &len);
  HealthTarget t = target(1, ntohs(sa.sin6_port), check(HealthCheckType::kTcp, 50, 25, 1, 1));
  t.family = SL_AF_INET6;
  std::memcpy(t.addr.w, &in6addr_loopback, sizeof(t.addr.w));
  make_checker(false);
  hc_->set_targets({t});
  ASSERT_TRUE(run_until([&] { return !changes_.empty(); }, 2000ms));
  EXPECT_EQ(changes_[0].reason, "check passed (connected)");
  EXPECT_EQ(changes_[0].health.target, "[::1]:" + std::to_string(ntohs(sa.sin6_port)));
}

// ---------------------------------------------------------------------------------------------
// HTTP

HealthCheckConfig http(uint32_t timeout_ms = 60) {
  return check(HealthCheckType::kHttp, 100, timeout_ms, 1, 1);
}

TEST_F(HealthTest, Http200IsUpAndTheRequestIsWellFormed) {
  HttpServer server(*loop_, {{0ms, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"}});
  EXPECT_EQ(up_reason(server.port(), http()), "check passed (HTTP 200)");
  ASSERT_FALSE(server.requests().empty());
  EXPECT_EQ(server.requests()[0],
            "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(server.port()) +
                "\r\nConnection: close\r\nUser-Agent: sluice-health\r\n\r\n");
}

TEST_F(HealthTest, HttpStatusLineInPiecesIsReassembled) {
  HttpServer server(*loop_,
                    {{0ms, "HT"}, {5ms, "TP/1.0 2"}, {5ms, "04 No Content\r"}, {5ms, "\n"}});
  HealthCheckConfig c = http();
  c.path = "/ready";
  c.expect_status = {{200, 299}};
  EXPECT_EQ(up_reason(server.port(), c), "check passed (HTTP 204)");
  ASSERT_FALSE(server.requests().empty());
  EXPECT_EQ(server.requests()[0].rfind("GET /ready HTTP/1.1\r\n", 0), 0u);
}

TEST_F(HealthTest, Http503IsDown) {
  HttpServer server(*loop_, {{0ms, "HTTP/1.1 503 Service Unavailable\r\n\r\n"}});
  EXPECT_EQ(down_reason(server.port(), http()), "HTTP 503, expected 200");
}

TEST_F(HealthTest, HttpStatusOutsideAListIsDown) {
  HttpServer server(*loop_, {{0ms, "HTTP/1.1 404 Not Found\r\n\r\n"}});
  HealthCheckConfig c = http();
  c.expect_status = {{200, 200}, {204, 204}, {300, 399}};
  EXPECT_EQ(down_reason(server.port(), c), "HTTP 404, expected 200, 204 or 300-399");
}

TEST_F(HealthTest, HttpGarbageIsDown) {
  HttpServer server(*loop_, {{0ms, "SSH-2.0-OpenSSH_9.2\r\n"}});
  EXPECT_EQ(down_reason(server.port(), http()), "bad status line 'SSH-2.0-OpenSSH_9.2'");
}

TEST_F(HealthTest, HttpEndlessStatusLineIsDown) {
  HttpServer server(*loop_, {{0ms, std::string(3000, 'x')}}, /*hang=*/true);
  const std::string reason = down_reason(server.port(), http());
  EXPECT_EQ(reason.rfind("no status line in the first 1024 bytes ('xxxx", 0), 0u) << reason;
}

TEST_F(HealthTest, HttpSlowServerTimesOut) {
  HttpServer server(*loop_, {}, /*hang=*/true);
  EXPECT_EQ(down_reason(server.port(), http(40)),
            "timeout after 40 ms waiting for the status line");
  EXPECT_GE(health(1).last_latency, 40ms);
  EXPECT_LT(health(1).last_latency, 40ms + 50ms);
}

TEST_F(HealthTest, HttpServerClosingMidResponseIsDown) {
  HttpServer server(*loop_, {{0ms, "HTTP/1.1 2"}});
  EXPECT_EQ(down_reason(server.port(), http()),
            "connection closed in the status line after 10 bytes ('HTTP/1.1 2')");
}

TEST_F(HealthTest, HttpServerClosingWithoutAResponseIsDown) {
  HttpServer server(*loop_, {{0ms, ""}});
  EXPECT_EQ(down_reason(server.port(), http()), "connection closed before any response");
}

TEST_F(HealthTest, HttpRefusedIsDown) {
  EXPECT_EQ(down_reason(closed_port(SOCK_STREAM), http()), "connect: Connection refused");
}

// ---------------------------------------------------------------------------------------------
// UDP

HealthCheckConfig udp(std::string send = "ping", std::string expect = "") {
  HealthCheckConfig c = check(HealthCheckType::kUdp, 100, 50, 1, 1);
  c.send = std::move(send);
  c.expect = std::move(expect);
  return c;
}

TEST_F(HealthTest, UdpEchoIsUp) {
  UdpServer server(*loop_, UdpServer::Mode::kEcho);
  EXPECT_EQ(up_reason(server.port(), udp()), "check passed (reply of 4 bytes)");
  ASSERT_FALSE(server.received().empty());
  EXPECT_EQ(server.received()[0], "ping");
}

TEST_F(HealthTest, UdpExpectedSubstring) {
  UdpServer server(*loop_, UdpServer::Mode::kReply, std::string("ok \0 pong!", 10));
  EXPECT_EQ(up_reason(server.port(), udp(std::string("\0\x01", 2), "pong")),
            "check passed (reply of 10 bytes)");
  ASSERT_FALSE(server.received().empty());
  EXPECT_EQ(server.received()[0], std::string("\0\x01", 2));
}

TEST_F(HealthTest, UdpWrongReplyIsDown) {
  UdpServer server(*loop_, UdpServer::Mode::kReply, "nope");
  EXPECT_EQ(down_reason(server.port(), udp("ping", "pong")),
            "the reply ('nope', 4 bytes) does not contain 'pong'");
}

TEST_F(HealthTest, UdpEmptyPayloadAndEmptyReply) {
  UdpServer server(*loop_, UdpServer::Mode::kEcho);
  EXPECT_EQ(up_reason(server.port(), udp("")), "check passed (reply of 0 bytes)");
}

TEST_F(HealthTest, UdpNoListenerFailsFastOnPortUnreachable) {
  EXPECT_EQ(down_reason(closed_port(SOCK_DGRAM), udp()), "recv: Connection refused");
  EXPECT_LT(health(1).last_latency, 25ms) << "ICMP port unreachable, not the 50 ms timeout";
}

TEST_F(HealthTest, UdpSilentServerTimesOut) {
  UdpServer server(*loop_, UdpServer::Mode::kSilent);
  EXPECT_EQ(down_reason(server.port(), udp()), "timeout after 50 ms waiting for a reply");
}

// ---------------------------------------------------------------------------------------------
// Many backends

TEST_F(HealthTest, StuckBackendsDoNotDelayTheOthers) {
  constexpr uint32_t kInterval = 40;
  std::vector<std::unique_ptr<TcpServer>> healthy;
  for (int i = 0; i < 5; ++i) healthy.push_back(std::make_unique<TcpServer>(*loop_));
  BlackholeServer hole;
  HttpServer slow(*loop_, {}, /*hang=*/true);
  UdpServer silent(*loop_, UdpServer::Mode::kSilent);
  make_checker();
  std::vector<HealthTarget> targets;
  for (int i = 0; i < 5; ++i) {
    targets.push_back(
        target(i, healthy[i]->port(), check(HealthCheckType::kTcp, kInterval, 35, 2, 3)));
  }
  targets.push_back(target(10, hole.port(), check(HealthCheckType::kTcp, kInterval, 35, 2, 3)));
  targets.push_back(target(11, slow.port(), check(HealthCheckType::kHttp, kInterval, 35, 2, 3)));
  HealthCheckConfig u = check(HealthCheckType::kUdp, kInterval, 35, 2, 3);
  targets.push_back(target(12, silent.port(), u));
  hc_->set_targets(targets);

  const Clock::time_point t0 = Clock::now();
  run_for(1000ms);
  const double ran_ms = Ms(Clock::now() - t0).count();
  for (int i = 0; i < 5; ++i) {
    SCOPED_TRACE("healthy backend " + std::to_string(i));
    const auto& acc = healthy[i]->accepts();
    ASSERT_GE(acc.size(), static_cast<std::size_t>(ran_ms / kInterval) - 2);
    EXPECT_LE(acc.size(), static_cast<std::size_t>(ran_ms / kInterval) + 1);
    double worst = 0;
    for (std::size_t k = 1; k < acc.size(); ++k)
      worst = std::max(worst, Ms(acc[k] - acc[k - 1]).count());
    EXPECT_LE(worst, kInterval + 20) << "a check came late";
    EXPECT_TRUE(hc_->is_up(i));
    EXPECT_EQ(health(i).failures, 0u);
  }
  for (uint32_t id : {10u, 11u, 12u}) {
    SCOPED_TRACE("stuck backend " + std::to_string(id));
    EXPECT_FALSE(hc_->is_up(id));
    EXPECT_GE(health(id).failures, static_cast<uint64_t>(ran_ms / kInterval) - 3);
    EXPECT_EQ(health(id).last_error.rfind("timeout after 35 ms", 0), 0u) << health(id).last_error;
  }
}

TEST_F(HealthTest, FirstChecksAreSpreadOverTheInterval) {
  constexpr int kN = 100;
  constexpr uint32_t kInterval = 200;
  std::vector<std::unique_ptr<TcpServer>> servers;
  std::vector<HealthTarget> targets;
  for (int i = 0; i < kN; ++i) {
    servers.push_back(std::make_unique<TcpServer>(*loop_));
    targets.push_back(
        target(i, servers.back()->port(), check(HealthCheckType::kTcp, kInterval, 100, 2, 3)));
  }
  make_checker();
  const Clock::time_point t0 = Clock::now();
  hc_->set_targets(targets);
  ASSERT_TRUE(run_until(
      [&] {
        return std::all_of(servers.begin(), servers.end(),
                           [](const auto& s) { return !s->accepts().empty(); });
      },
      2000ms));
  int quarter[4] = {};
  for (const auto& s : servers) {
    const double at = Ms(s->accepts()[0] - t0).count();
    EXPECT_LT(at, kInterval + 20);
    ++quarter[std::min(3, static_cast<int>(at / (kInterval / 4)))];
  }
  for (int q = 0; q < 4; ++q) {
    EXPECT_GE(quarter[q], kN / 4 - 5) << "quarter " << q;
    EXPECT_LE(quarter[q], kN / 4 + 5) << "quarter " << q;
  }
}

// ---------------------------------------------------------------------------------------------
// set_targets

TEST_F(HealthTest, SetTargetsKeepsTheStateOfUnchangedProbes) {
  TcpServer alive(*loop_);
  const uint16_t dead = closed_port(SOCK_STREAM);
  const HealthCheckConfig c = check(HealthCheckType::kTcp, 30, 20, 2, 2);
  make_checker();
  hc_->set_targets({target(1, alive.port(), c), target(2, dead, c)});
  ASSERT_TRUE(run_until([&] { return !hc_->is_up(2); }, 2000ms));
  run_for(100ms);
  const uint64_t alive_checks = health(1).checks;
  const uint64_t dead_checks = health(2).checks;
  ASSERT_EQ(changes_.size(), 1u);

  // Same probes, one renumbered (ids are positional in the data path), one new backend.
  TcpServer added(*loop_);
  hc_->set_targets({target(5, alive.port(), c), target(1, dead, c), target(9, added.port(), c)});
  EXPECT_EQ(changes_.size(), 1u) << "set_targets never calls on_change";
  EXPECT_TRUE(hc_->is_up(5));
  EXPECT_FALSE(hc_->is_up(1)) << "id 1 is now the dead backend";
  EXPECT_TRUE(hc_->is_up(9)) << "new targets start up";
  EXPECT_TRUE(hc_->is_up(2)) << "unknown ids are up";
  EXPECT_EQ(health(5).checks, alive_checks);
  EXPECT_EQ(health(1).checks, dead_checks);
  EXPECT_EQ(health(1).transitions, 1u);
  EXPECT_GE(health(1).consecutive_fail, 2u);
  EXPECT_EQ(health(9).checks, 0u);

  // Only the timing changed: the state stays (still down, counters kept).
  HealthCheckConfig slower = c;
  slower.interval_ms = 60;
  slower.fall = 5;
  hc_->set_targets({target(1, dead, slower)});
  EXPECT_FALSE(hc_->is_up(1));
  EXPECT_EQ(health(1).checks, dead_checks);

  // What is checked changed (tcp -> http): a new probe, from the initial state.
  HealthCheckConfig as_http = slower;
  as_http.type = HealthCheckType::kHttp;
  hc_->set_targets({target(1, dead, as_http)});
  EXPECT_TRUE(hc_->is_up(1));
  EXPECT_EQ(health(1).checks, 0u);

  // The same endpoint under two backend ids (two dsr VIPs) is one probe; both ids flip.
  changes_.clear();
  hc_->set_targets({target(3, dead, c), target(4, dead, c)});
  ASSERT_TRUE(run_until([&] { return changes_.size() == 2; }, 2000ms));
  EXPECT_EQ(changes_[0].id + changes_[1].id, 7u);
  EXPECT_EQ(changes_[0].health.checks, changes_[1].health.checks) << "one probe";
  EXPECT_EQ(changes_[0].health.target, changes_[1].health.target);
  EXPECT_EQ(hc_->snapshot().backends.size(), 2u);

  hc_->set_targets({});
  EXPECT_TRUE(hc_->snapshot().backends.empty());
  EXPECT_EQ(hc_->snapshot().in_flight, 0u);
}

TEST_F(HealthTest, OnChangeMayReplaceTheTargets) {
  const uint16_t dead = closed_port(SOCK_STREAM);
  TcpServer alive(*loop_);
  make_checker();
  const HealthCheckConfig c = check(HealthCheckType::kTcp, 20, 10, 1, 1);
  int calls = 0;
  hc_->on_change([&](uint32_t, bool, const std::string&) {
    ++calls;
    hc_->set_targets({target(2, alive.port(), c)});  // destroys the probe that called
  });
  hc_->set_targets({target(1, dead, c), target(3, dead, c)});
  run_for(150ms);
  EXPECT_EQ(calls, 1) << "after set_targets, the flip's other id is not reported";
  EXPECT_TRUE(hc_->is_up(2));
  EXPECT_GT(health(2).checks, 0u);
}

// ---------------------------------------------------------------------------------------------
// Resources

TEST_F(HealthTest, NoFdLeakOverManyChecks) {
  const int before = count_open_fds();
  ASSERT_GT(before, 0);
  {
    TcpServer tcp(*loop_);
    BlackholeServer hole;
    HttpServer ok(*loop_, {{0ms, "HTTP/1.1 200 OK\r\n\r\n"}});
    HttpServer bad(*loop_, {{0ms, "HTTP/1.1 500 Oops\r\n\r\n"}});
    HttpServer cut(*loop_, {{0ms, "HTTP/1.1"}});
    HttpServer slow(*loop_, {}, /*hang=*/true);
    UdpServer echo(*loop_, UdpServer::Mode::kEcho);
    UdpServer silent(*loop_, UdpServer::Mode::kSilent);
    const uint16_t refused_tcp = closed_port(SOCK_STREAM);
    const uint16_t refused_udp = closed_port(SOCK_DGRAM);
    make_checker();
    const auto tcp_c = check(HealthCheckType::kTcp, 20, 15, 1, 1);
    const auto http_c = check(HealthCheckType::kHttp, 20, 15, 1, 1);
    const auto udp_c = check(HealthCheckType::kUdp, 20, 15, 1, 1);
    std::vector<HealthTarget> targets;
    uint32_t id = 0;
    targets.push_back(target(id++, tcp.port(), tcp_c));
    targets.push_back(target(id++, hole.port(), tcp_c));
    targets.push_back(target(id++, refused_tcp, tcp_c));
    // Four copies of each http and udp case; the path or payload makes each its own probe.
    for (int copy = 0; copy < 4; ++copy) {
      HealthCheckConfig h = http_c;
      h.path = "/p" + std::to_string(copy);
      HealthCheckConfig u = udp_c;
      u.send = "ping" + std::to_string(copy);
      for (uint16_t port : {ok.port(), bad.port(), cut.port(), slow.port(), refused_tcp}) {
        targets.push_back(target(id++, port, h));
      }
      for (uint16_t port : {echo.port(), silent.port(), refused_udp}) {
        targets.push_back(target(id++, port, u));
      }
    }
    hc_->set_targets(targets);
    uint32_t max_in_flight = 0;
    const EventLoop::TimerId watch = loop_->add_timer(
        1ms, 1ms, [&] { max_in_flight = std::max(max_in_flight, hc_->snapshot().in_flight); });
    run_for(700ms);
    uint64_t checks = 0;
    for (const BackendHealth& h : hc_->snapshot().backends) checks += h.checks;
    // 38 probes x 35 intervals, less the first (spread) one: about 1300; a loaded machine
    // delays some.
    EXPECT_GE(checks, 600u);
    // Replace half the targets while checks are in flight, then run on.
    targets.resize(targets.size() / 2);
    hc_->set_targets(targets);
    run_for(300ms);
    loop_->cancel_timer(watch);
    EXPECT_GT(max_in_flight, 0u);
    EXPECT_LE(max_in_flight, targets.size() * 2) << "one socket per probe at most";
    // Destroyed with checks in flight.
    hc_.reset();
  }
  // Let the servers' loop registrations go with them; nothing else may remain.
  EXPECT_EQ(count_open_fds(), before);
}

}  // namespace
}  // namespace sluice
