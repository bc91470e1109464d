// The metrics endpoint end to end: the real HttpServer on a real EventLoop (on its own thread),
// real TCP clients, and the real data path.
//
//  - MetricsEndpoint: the server alone (a small registry): routing, malformed and oversized
//    requests, silent and slow clients that must not stall anyone else, 300 parallel clients
//    against a cap of 256.
//  - MetricsDatapath: the XDP program loaded by Datapath::load/apply/attach in a private
//    namespace (as bench/xdp_pkt_bench.cc does), packets run through it with
//    BPF_PROG_TEST_RUN, then /metrics scraped and compared with the maps, and the exposition
//    checked by `promtool check metrics`.
//
// Every socket, the server's included, lives in a private network namespace: the ports are the
// kernel's choice and nothing touches the host's. Needs root; skips with the reason otherwise.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <sluice/bpf/datapath.h>
#include <sluice/bpf/maps.h>
#include <sluice/config/config.h>
#include <sluice/core/event_loop.h>
#include <sluice/core/net.h>
#include <sluice/metrics/metrics.h>
#include "fib_world.h"
#include "loaded_datapath.h"
#include "netns.h"
#include "packet.h"

namespace sluice::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------------
// The server on its own thread

// An EventLoop running on a thread, with a registry and a MetricsServer bound to 127.0.0.1:0
// inside `ns`. Everything touching the loop, the registry or the server after construction
// runs on the loop thread (call()).
class ServerThread {
 public:
  ServerThread(const NetNs& ns, const std::function<void(MetricsRegistry&)>& setup,
               HttpServerOptions opts = {}) {
    auto loop = EventLoop::create();
    if (!loop) throw std::runtime_error(loop.error().to_string());
    loop_ = std::move(*loop);
    setup(registry_);
    ListenAddress any{};
    any.family = SL_AF_INET;
    any.addr.w[0] = htonl(INADDR_LOOPBACK);
    auto server = ns.in([&] { return MetricsServer::start(*loop_, registry_, any, opts); });
    if (!server) throw std::runtime_error(server.error().to_string());
    server_ = std::move(*server);
    wake_.reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!wake_.valid()) throw std::runtime_error("eventfd failed");
    auto s = loop_->add(wake_.get(), EPOLLIN, [this](uint32_t) {
      uint64_t n;
      (void)!read(wake_.get(), &n, sizeof(n));
      std::vector<std::function<void()>> jobs;
      {
        std::lock_guard<std::mutex> lock(mu_);
        jobs.swap(jobs_);
      }
      for (auto& j : jobs) j();
    });
    if (!s) throw std::runtime_error(s.error().to_string());
    thread_ = std::thread([this] {
      if (auto r = loop_->run(); !r) ADD_FAILURE() << r.error().to_string();
    });
  }

  ~ServerThread() {
    post([this] { loop_->stop(); });
    thread_.join();
    server_.reset();  // closes every connection; before the loop goes
    loop_->remove(wake_.get());
  }

  uint16_t port() const { return server_->port(); }

  // Runs fn on the loop thread and returns its result.
  template <class F>
  auto call(F fn) -> decltype(fn()) {
    auto task = std::make_shared<std::packaged_task<decltype(fn())()>>(std::move(fn));
    auto fut = task->get_future();
    post([task] { (*task)(); });
    return fut.get();
  }
  HttpServerStats stats() {
    return call([this] { return server_->http().stats(); });
  }
  size_t connections() {
    return call([this] { return server_->http().connections(); });
  }

 private:
  void post(std::function<void()> job) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      jobs_.push_back(std::move(job));
    }
    uint64_t one = 1;
    (void)!write(wake_.get(), &one, sizeof(one));
  }

  std::unique_ptr<EventLoop> loop_;
  MetricsRegistry registry_;
  std::unique_ptr<MetricsServer> server_;
  UniqueFd wake_;
  std::mutex mu_;
  std::vector<std::function<void()>> jobs_;
  std::thread thread_;
};

// ---------------------------------------------------------------------------------------------
// A minimal HTTP client

UniqueFd connect_to(const NetNs& ns, uint16_t port, int rcvbuf = 0) {
  UniqueFd fd(ns.in([] { return socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0); }));
  if (!fd.valid()) throw std::runtime_error(std::string("socket: ") + strerror(errno));
  if (rcvbuf > 0) setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) != 0)
    throw std::runtime_error(std::string("connect: ") + strerror(errno));
  return fd;
}

void send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw std::runtime_error(std::string("send: ") + strerror(errno));
    data.remove_prefix(static_cast<size_t>(n));
  }
}

// Reads until EOF. Returns false on timeout; `error` is set on a socket error.
bool read_to_eof(int fd, std::string* out, std::chrono::milliseconds timeout,
                 int* error = nullptr) {
  const auto deadline = Clock::now() + timeout;
  char buf[65536];
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left)) <= 0) continue;
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n > 0) {
      out->append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && error) *error = errno;
    return true;
  }
}

struct Reply {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

// Splits a complete response; status 0 when it is not one.
Reply parse_reply(const std::string& raw) {
  Reply r;
  const size_t end = raw.find("\r\n\r\n");
  if (end == std::string::npos || raw.compare(0, 9, "HTTP/1.1 ") != 0) return r;
  r.status = std::atoi(raw.c_str() + 9);
  size_t pos = raw.find("\r\n") + 2;
  while (pos < end) {
    const size_t eol = raw.find("\r\n", pos);
    const std::string line = raw.substr(pos, eol - pos);
    const size_t colon = line.find(':');
    std::string name = line.substr(0, colon);
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    r.headers[name] = line.substr(line.find_first_not_of(' ', colon + 1));
    pos = eol + 2;
  }
  r.body = raw.substr(end + 4);
  return r;
}

Reply exchange(const NetNs& ns, uint16_t port, std::string_view request,
               std::chrono::milliseconds timeout = 5s) {
  UniqueFd fd = connect_to(ns, port);
  send_all(fd.get(), request);
  std::string raw;
  if (!read_to_eof(fd.get(), &raw, timeout)) ADD_FAILURE() << "no complete response in time";
  return parse_reply(raw);
}

Reply get(const NetNs& ns, uint16_t port, const std::string& path) {
  return exchange(ns, port, "GET " + path + " HTTP/1.1\r\nHost: sluice\r\nAccept: */*\r\n\r\n");
}

// Lets one process hold the 300 clients and the server's 256 connections.
void raise_fd_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

// ---------------------------------------------------------------------------------------------
// The endpoint alone

class MetricsEndpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = skip_reason()) GTEST_SKIP() << *why;
    ns_ = std::make_unique<NetNs>("mxe");
  }
  static void small(MetricsRegistry& r) {
    r.add("test", [](MetricsWriter& w) -> Status {
      w.family("sluice_test_value", "A fixed value.", MetricType::kGauge);
      w.sample({{"k", "v"}}, 42);
      return {};
    });
  }
  std::unique_ptr<NetNs> ns_;
};

TEST_F(MetricsEndpoint, RoutesAndRefusesBadRequests) {
  ServerThread srv(*ns_, small);
  const uint16_t port = srv.port();
  ASSERT_NE(port, 0);

  Reply r = get(*ns_, port, "/metrics");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(r.headers["connection"], "close");
  EXPECT_EQ(r.headers["content-length"], std::to_string(r.body.size()));
  EXPECT_NE(r.body.find("sluice_test_value{k=\"v\"} 42\n"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("sluice_metrics_provider_up{provider=\"test\"} 1\n"), std::string::npos);
  EXPECT_NE(r.body.find("sluice_metrics_http_connections_total "), std::string::npos);

  r = get(*ns_, port, "/healthz");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "ok");
  EXPECT_EQ(get(*ns_, port, "/nope").status, 404);
  EXPECT_EQ(get(*ns_, port, "/").status, 404);

  r = exchange(*ns_, port, "POST /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.headers["allow"], "GET, HEAD");
  r = exchange(*ns_, port, "HEAD /metrics HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "");
  EXPECT_NE(r.headers["content-length"], "0");
  EXPECT_EQ(exchange(*ns_, port, "GET /metrics HTTP/1.0\r\n\r\n").status, 200);  // no Host in 1.0
  EXPECT_EQ(exchange(*ns_, port, "GET /metrics HTTP/1.1\r\n\r\n").status, 400);  // 1.1 needs it
  EXPECT_EQ(exchange(*ns_, port, "GET /metrics\r\n\r\n").status, 400);
  EXPECT_EQ(exchange(*ns_, port, "GET /metrics HTTP/2.0\r\n\r\n").status, 505);
  EXPECT_EQ(exchange(*ns_, port, std::string("\x16\x03\x01\x00\xa5\x01", 6)).status, 400);
  std::string huge = "GET /metrics HTTP/1.1\r\nHost: a\r\n";
  while (huge.size() < 20000) huge += "X-Pad: " + std::string(100, 'p') + "\r\n";
  EXPECT_EQ(exchange(*ns_, port, huge + "\r\n").status, 431);

  // A request that arrives in pieces, with pauses between them.
  UniqueFd fd = connect_to(*ns_, port);
  for (std::string_view piece : {"GE", "T /hea", "lthz HTTP/1.1\r\nHo", "st: a\r\n", "\r\n"}) {
    send_all(fd.get(), piece);
    std::this_thread::sleep_for(30ms);
  }
  std::string raw;
  ASSERT_TRUE(read_to_eof(fd.get(), &raw, 5s));
  EXPECT_EQ(parse_reply(raw).status, 200);

  const HttpServerStats st = srv.stats();
  EXPECT_EQ(st.responses.at(400), 3u);
  EXPECT_EQ(st.responses.at(431), 1u);
  EXPECT_EQ(st.responses.at(505), 1u);
}

TEST_F(MetricsEndpoint, SilentClientsDoNotDelayAScrapeAndAreClosedAtTheDeadline) {
  HttpServerOptions opts;
  opts.request_timeout = 2s;
  ServerThread srv(*ns_, small, opts);
  UniqueFd silent = connect_to(*ns_, srv.port());
  UniqueFd partial = connect_to(*ns_, srv.port());
  send_all(partial.get(), "GET /metrics HTTP/1.1\r\nHost: a\r\n");  // never finished
  std::this_thread::sleep_for(50ms);                                // both are accepted and waiting
  EXPECT_EQ(srv.connections(), 2u);

  for (int i = 0; i < 5; ++i) {
    const auto t0 = Clock::now();
    Reply r = get(*ns_, srv.port(), "/metrics");
    const auto took = Clock::now() - t0;
    EXPECT_EQ(r.status, 200);
    EXPECT_LT(took, 500ms) << "a scrape waited for the silent clients";
  }

  // Both are closed within the deadline plus one sweep period (a quarter of it) and slack.
  const auto t0 = Clock::now();
  std::string silent_got, partial_got;
  ASSERT_TRUE(read_to_eof(silent.get(), &silent_got, 5s));
  ASSERT_TRUE(read_to_eof(partial.get(), &partial_got, 5s));
  EXPECT_LT(Clock::now() - t0, 3500ms);
  EXPECT_EQ(silent_got, "");  // nothing was asked, nothing is answered
  EXPECT_EQ(parse_reply(partial_got).status, 408);
  EXPECT_EQ(srv.stats().timed_out, 2u);
  EXPECT_EQ(srv.connections(), 0u);
}

TEST_F(MetricsEndpoint, SlowReaderDoesNotStallOthers) {
  // A body of several MB: far more than the socket buffers hold, so the server has to wait
  // for EPOLLOUT on the slow client while it serves the others.
  auto big = [](MetricsRegistry& r) {
    r.add("big", [](MetricsWriter& w) -> Status {
      w.family("sluice_test_big", "Many series.", MetricType::kGauge);
      for (int i = 0; i < 100000; ++i) w.sample({{"i", std::to_string(i)}}, i);
      return {};
    });
  };
  ServerThread srv(*ns_, big);
  UniqueFd slow = connect_to(*ns_, srv.port(), /*rcvbuf=*/4096);
  send_all(slow.get(), "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n");
  std::this_thread::sleep_for(100ms);  // the server fills the slow client's buffers

  const auto t0 = Clock::now();
  Reply h = get(*ns_, srv.port(), "/healthz");
  EXPECT_EQ(h.status, 200);
  Reply m = get(*ns_, srv.port(), "/metrics");
  EXPECT_EQ(m.status, 200);
  EXPECT_GT(m.body.size(), 2000000u);
  EXPECT_LT(Clock::now() - t0, 3s);

  std::string raw;
  ASSERT_TRUE(read_to_eof(slow.get(), &raw, 8s));
  Reply s = parse_reply(raw);
  EXPECT_EQ(s.status, 200);
  EXPECT_EQ(std::to_string(s.body.size()), s.headers["content-length"]);
  EXPECT_GT(s.body.size(), 2000000u);
}

TEST_F(MetricsEndpoint, ThreeHundredParallelClientsAgainstACapOf256) {
  raise_fd_limit();
  HttpServerOptions opts;
  opts.max_connections = 256;
  ServerThread srv(*ns_, small, opts);
  constexpr int kClients = 300;
  std::vector<UniqueFd> fds;
  // All connect first, sending nothing: the server fills its 256 slots with idle connections
  // and stops accepting; the other 44 wait in the listen backlog.
  for (int i = 0; i < kClients; ++i) fds.push_back(connect_to(*ns_, srv.port()));
  const auto settle = Clock::now() + 3s;
  while (srv.connections() < 256 && Clock::now() < settle) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(srv.connections(), 256u);
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(srv.connections(), 256u) << "the cap was exceeded";

  const auto t0 = Clock::now();
  for (auto& fd : fds) send_all(fd.get(), "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n");
  int ok = 0, refused = 0, other = 0;
  const auto deadline = Clock::now() + 10s;
  for (auto& fd : fds) {
    std::string raw;
    int err = 0;
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (!read_to_eof(fd.get(), &raw, std::max(left, 1ms), &err)) {
      ++other;
      continue;
    }
    const int status = parse_reply(raw).status;
    if (status == 200)
      ++ok;
    else if (status == 503)
      ++refused;
    else
      ++other;
  }
  EXPECT_EQ(ok + refused, kClients);
  EXPECT_EQ(other, 0);
  EXPECT_EQ(ok, kClients) << "the backlog should have been served once slots freed";
  // The 44 in the backlog get the slots of answered clients (which still hold their sockets
  // open: the server closes those rather than wait for their FIN).
  EXPECT_LT(Clock::now() - t0, 2s);
  fds.clear();

  const HttpServerStats st = srv.stats();
  EXPECT_GE(st.accept_pauses, 1u);
  EXPECT_EQ(st.accepted, static_cast<uint64_t>(kClients));
  const auto drained = Clock::now() + 3s;
  while (srv.connections() > 0 && Clock::now() < drained) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(srv.connections(), 0u);
  EXPECT_EQ(get(*ns_, srv.port(), "/healthz").status, 200);  // still serving
}

size_t open_fds() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

TEST_F(MetricsEndpoint, EveryFdIsClosedWhateverStateItsConnectionIsIn) {
  const size_t before = open_fds();
  {
    auto big = [](MetricsRegistry& r) {
      r.add("big", [](MetricsWriter& w) -> Status {
        w.family("sluice_test_big", "Many series.", MetricType::kGauge);
        for (int i = 0; i < 50000; ++i) w.sample({{"i", std::to_string(i)}}, i);
        return {};
      });
    };
    HttpServerOptions opts;
    opts.request_timeout = 300ms;
    ServerThread srv(*ns_, big, opts);
    std::vector<UniqueFd> clients;
    clients.push_back(connect_to(*ns_, srv.port()));  // silent: times out
    clients.push_back(connect_to(*ns_, srv.port()));  // half a request: 408
    send_all(clients.back().get(), "GET /metrics HTTP/1.1\r\n");
    clients.push_back(connect_to(*ns_, srv.port()));  // junk: 400
    send_all(clients.back().get(), std::string("\x16\x03", 2));
    clients.push_back(connect_to(*ns_, srv.port()));  // reset by the client mid-request
    send_all(clients.back().get(), "GET /met");
    linger lg{1, 0};
    setsockopt(clients.back().get(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    clients.pop_back();                                     // RST
    clients.push_back(connect_to(*ns_, srv.port(), 4096));  // never reads its response
    send_all(clients.back().get(), "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n");
    EXPECT_EQ(get(*ns_, srv.port(), "/healthz").status, 200);
    std::this_thread::sleep_for(600ms);  // past the deadline: the sweep closes them
    EXPECT_EQ(srv.connections(), 0u);
    EXPECT_GE(srv.stats().timed_out, 3u);
    // And connections still open when the server goes.
    clients.push_back(connect_to(*ns_, srv.port()));
    clients.push_back(connect_to(*ns_, srv.port(), 4096));
    send_all(clients.back().get(), "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n");
    std::this_thread::sleep_for(50ms);
    EXPECT_EQ(srv.connections(), 2u);
  }  // the server, its loop and the clients are gone
  EXPECT_EQ(open_fds(), before);
}

TEST_F(MetricsEndpoint, RunningOutOfFdsPausesButNeverKillsTheEndpoint) {
  ServerThread srv(*ns_, small);
  constexpr int kClients = 8;
  std::vector<UniqueFd> fds;
  for (int i = 0; i < kClients; ++i)
    fds.emplace_back(ns_->in([] { return socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0); }));
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  // No fd left for the process: the server's accept4() fails with EMFILE (and so does its
  // timerfd for the pause).
  // RLIMIT_NOFILE bounds fd numbers and a new fd takes the lowest free number: a limit at the
  // lowest free number leaves none.
  const int lowest_free = dup(0);
  ASSERT_GE(lowest_free, 0);
  close(lowest_free);
  rlimit tight = saved;
  tight.rlim_cur = static_cast<rlim_t>(lowest_free);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &tight), 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(srv.port());
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (auto& fd : fds) {
    ASSERT_EQ(connect(fd.get(), reinterpret_cast<sockaddr*>(&sin), sizeof(sin)), 0);
    send_all(fd.get(), "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n");
  }
  std::this_thread::sleep_for(300ms);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
  EXPECT_GE(srv.stats().accept_pauses, 1u);  // it paused instead of spinning
  for (auto& fd : fds) {
    std::string raw;
    ASSERT_TRUE(read_to_eof(fd.get(), &raw, 3s));
    EXPECT_EQ(parse_reply(raw).status, 200);
  }
  EXPECT_EQ(get(*ns_, srv.port(), "/metrics").status, 200);
}

// ---------------------------------------------------------------------------------------------
// With the data path

constexpr const char* kConfig = R"(
interfaces: [tin, tb1]
vips:
  - name: dns "nat"
    address: 198.19.0.1
    port: 53
    protocol: udp
    mode: nat
    backends: [{address: 198.18.1.2, port: 5353}, {address: 198.18.1.3, port: 5353, weight: 2}]
  - name: web
    address: 198.19.0.1
    port: 80
    protocol: tcp
    mode: nat
    backends: [{address: 198.18.1.2, port: 8080}, {address: 198.18.1.3, port: 8080}]
  - address: fd00:19::1
    port: 80
    protocol: tcp
    mode: dsr
    backends: [{address: "fd00:18:1::2"}, {address: "fd00:18:1::3", weight: 0}]
)";

class MetricsDatapath : public ::testing::Test {
 public:
  static void SetUpTestSuite() {
    if (auto why = skip_reason()) {
      skip_ = *why;
      return;
    }
    try {
      world_ = new World();
    } catch (const std::exception& e) {
      setup_error_ = e.what();
    }
  }
  static void TearDownTestSuite() {
    delete world_;
    world_ = nullptr;
  }

 protected:
  // The FIB world with the config loaded, applied and attached to tin and tb1.
  struct World {
    FibWorld fib{"mxd", 2};
    Config cfg;
    std::unique_ptr<Datapath> dp;

    World() {
      std::string error;
      auto c = parse_or_error(kConfig, &error);
      if (!c) throw std::runtime_error(error);
      cfg = *c;
      fib.lb().in([&] {
        dp = load_attached(Limits{cfg.max_vips, cfg.max_backends, cfg.conntrack_max_entries}, cfg,
                           &error);
      });
      if (!dp) throw std::runtime_error(error);
    }
    ~World() {
      fib.lb().in([&] { dp.reset(); });
    }
    const NetNs& ns() const { return fib.lb(); }

    uint32_t run(const Bytes& frame) {
      XdpRun r = fib.run(dp->prog_fd(), frame);
      if (r.err != 0)
        throw std::runtime_error(std::string("BPF_PROG_TEST_RUN: ") + strerror(-r.err));
      return r.retval;
    }
  };

  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    ASSERT_NE(world_, nullptr) << setup_error_;
  }

  static void datapath(MetricsRegistry& r) {
    r.add("datapath", datapath_provider(world_->dp->fds(), vip_names(world_->cfg)));
  }

  static inline World* world_ = nullptr;
  static inline std::string skip_;
  static inline std::string setup_error_;
};

// "name{labels}" -> value text, for every sample line.
std::map<std::string, std::string> samples(const std::string& body) {
  std::map<std::string, std::string> out;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t eol = body.find('\n', pos);
    if (eol == std::string::npos) eol = body.size();
    const std::string line = body.substr(pos, eol - pos);
    pos = eol + 1;
    if (line.empty() || line[0] == '#') continue;
    const size_t sp = line.rfind(' ');
    out[line.substr(0, sp)] = line.substr(sp + 1);
  }
  return out;
}

TEST_F(MetricsDatapath, ScrapeEqualsTheMapCounters) {
  World& w = *world_;
  // 5 UDP datagrams and 3 TCP SYNs to the VIPs, 2 broken packets to a VIP, 2 for the host.
  for (int i = 0; i < 5; ++i) {
    w.run(Packet()
              .eth(kClientMac, kTinMac)
              .ipv4("198.18.0." + std::to_string(10 + i), "198.19.0.1")
              .udp(static_cast<uint16_t>(40000 + i), 53)
              .payload(20)
              .build());
  }
  for (int i = 0; i < 3; ++i) {
    w.run(Packet()
              .eth(kClientMac, kTinMac)
              .ipv4("198.18.0." + std::to_string(20 + i), "198.19.0.1")
              .tcp(static_cast<uint16_t>(41000 + i), 80, tcpf::kSyn)
              .build());
  }
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(w.run(Packet()
                        .eth(kClientMac, kTinMac)
                        .ipv4("198.18.0.30", "198.19.0.1")
                        .ihl(4)
                        .udp(1, 53)
                        .build()),
              XDP_DROP);
  }
  EXPECT_EQ(w.run(Packet()
                      .eth(kClientMac, kTinMac)
                      .ipv4("198.18.0.2", "198.18.0.1")
                      .tcp(40000, 22, tcpf::kAck)
                      .build()),
            XDP_PASS);
  EXPECT_EQ(w.run(Packet()
                      .eth(kClientMac, "ff:ff:ff:ff:ff:ff")
                      .arp_request("198.18.0.2", "198.18.0.1")
                      .build()),
            XDP_PASS);

  ServerThread srv(w.ns(), datapath);
  Reply r = get(w.ns(), srv.port(), "/metrics");
  ASSERT_EQ(r.status, 200);
  const auto got = samples(r.body);
  ASSERT_EQ(got.at("sluice_metrics_provider_up{provider=\"datapath\"}"), "1") << r.body;

  // The maps, read directly; every series must carry exactly their value.
  const MapFds& f = w.dp->fds();
  auto info = read_info(f.info);
  ASSERT_TRUE(info);
  auto vips = read_vips(f, info->max_backends);
  auto vs = read_traffic(f.vip_stats, info->max_vips);
  auto bs = read_traffic(f.backend_stats, info->max_backends);
  auto drops = read_counters(f.drops, SL_DROP_MAX);
  auto passes = read_counters(f.passes, SL_PASS_MAX);
  auto verdicts = read_counters(f.verdicts, SL_VERDICT_MAX);
  auto ct_stats = read_u64_counters(f.ct_stats, SL_CT_STAT_MAX);
  ASSERT_TRUE(vips && vs && bs && drops && passes && verdicts && ct_stats);
  auto expect = [&](const std::string& series, uint64_t want) {
    auto it = got.find(series);
    if (it == got.end()) {
      ADD_FAILURE() << "missing " << series;
      return;
    }
    EXPECT_EQ(it->second, std::to_string(want)) << series;
  };
  expect("sluice_config_generation", info->generation);
  ASSERT_EQ(vips->size(), 3u);
  size_t nbackends = 0;
  for (const VipView& v : *vips) {
    const std::string vip = "vip=\"" + format_endpoint(v.key) + "\"";
    const sl_traffic& t = (*vs)[v.vip.vip_id];
    expect("sluice_vip_packets_total{" + vip + "}", t.packets);
    expect("sluice_vip_bytes_total{" + vip + "}", t.bytes);
    expect("sluice_vip_new_flows_total{" + vip + "}", t.new_flows);
    for (const BackendView& b : v.backends) {
      ++nbackends;
      const std::string labels =
          vip + ",backend=\"" +
          format_host_port(b.be.ep.addr, b.be.ep.family, ntohs(b.be.ep.port)) + "\"";
      const sl_traffic& bt = (*bs)[b.id];
      expect("sluice_backend_packets_total{" + labels + "}", bt.packets);
      expect("sluice_backend_bytes_total{" + labels + "}", bt.bytes);
      expect("sluice_backend_new_flows_total{" + labels + "}", bt.new_flows);
      expect("sluice_backend_weight{" + labels + "}", b.be.weight);
    }
  }
  EXPECT_EQ(nbackends, 6u);
  for (uint32_t i = 0; i < SL_DROP_MAX; ++i) {
    expect("sluice_drops_total{reason=\"" + std::string(drop_reason_name(i)) + "\"}",
           (*drops)[i].packets);
    expect("sluice_drop_bytes_total{reason=\"" + std::string(drop_reason_name(i)) + "\"}",
           (*drops)[i].bytes);
  }
  for (uint32_t i = 0; i < SL_PASS_MAX; ++i)
    expect("sluice_passes_total{reason=\"" + std::string(pass_reason_name(i)) + "\"}",
           (*passes)[i].packets);
  for (uint32_t i = 0; i < SL_VERDICT_MAX; ++i)
    expect("sluice_verdicts_total{verdict=\"" + std::string(verdict_name(i)) + "\"}",
           (*verdicts)[i].packets);
  for (uint32_t i = 0; i < SL_CT_STAT_MAX; ++i)
    expect("sluice_conntrack_datapath_total{counter=\"" + std::string(ct_stat_name(i)) + "\"}",
           (*ct_stats)[i]);
  {
    uint64_t one_sided = 0;
    const uint32_t zero = 0;
    ASSERT_EQ(bpf_map_lookup_elem(f.ct_one_sided, &zero, &one_sided), 0);
    expect("sluice_conntrack_one_sided_entries", one_sided);
    expect("sluice_conntrack_one_sided_max", info->ct_one_sided_max);
    EXPECT_GT(info->ct_one_sided_max, 0u) << "the agent publishes the budget";
  }

  // And the counts the packets above must have produced.
  expect("sluice_vip_packets_total{vip=\"198.19.0.1:53/udp\"}", 5);
  expect("sluice_vip_packets_total{vip=\"198.19.0.1:80/tcp\"}", 3);
  expect("sluice_vip_new_flows_total{vip=\"198.19.0.1:80/tcp\"}", 3);
  expect("sluice_vip_packets_total{vip=\"[fd00:19::1]:80/tcp\"}", 0);
  expect("sluice_drops_total{reason=\"bad_ihl\"}", 2);
  expect("sluice_passes_total{reason=\"not_vip\"}", 1);
  expect("sluice_passes_total{reason=\"not_ip\"}", 1);
  expect("sluice_verdicts_total{verdict=\"drop\"}", 2);
  expect("sluice_verdicts_total{verdict=\"pass\"}", 2);
  expect("sluice_backend_weight{vip=\"198.19.0.1:53/udp\",backend=\"198.18.1.3:5353\"}", 2);
  expect("sluice_backend_weight{vip=\"[fd00:19::1]:80/tcp\",backend=\"[fd00:18:1::3]:80\"}", 0);
  // The config's names, escaped.
  expect(
      "sluice_vip_info{vip=\"198.19.0.1:53/udp\",name=\"dns \\\"nat\\\"\",mode=\"nat\","
      "scheduler=\"source-hash\"}",
      1);
  expect(
      "sluice_vip_info{vip=\"[fd00:19::1]:80/tcp\",name=\"\",mode=\"dsr\","
      "scheduler=\"source-hash\"}",
      1);
}

TEST_F(MetricsDatapath, PromtoolAcceptsTheExposition) {
  if (run("command -v promtool").status != 0) {
    GTEST_SKIP() << "promtool is not installed (Debian package 'prometheus'; "
                    "scripts/install-deps.sh installs it)";
  }
  ServerThread srv(world_->ns(), [](MetricsRegistry& r) {
    datapath(r);
    // The families other components export, so their shape is checked too.
    r.add("shapes", [](MetricsWriter& w) -> Status {
      w.family("sluice_backend_up", "1 if the backend passes its health check.",
               MetricType::kGauge);
      w.sample({{"vip", "198.19.0.1:80/tcp"}, {"backend", "198.18.1.2:8080"}}, 1);
      w.family("sluice_health_check_duration_seconds", "Health-check time.",
               MetricType::kHistogram);
      Histogram h(Histogram::latency_buckets());
      for (double v : {0.0004, 0.003, 0.2, 20.0}) h.observe(v);
      w.histogram({{"type", "http"}}, h);
      w.family("sluice_conntrack_entries", "Flows by state.", MetricType::kGauge);
      w.sample({{"state", "established"}}, 7);
      return {};
    });
  });
  Reply r = get(world_->ns(), srv.port(), "/metrics");
  ASSERT_EQ(r.status, 200);
  char path[] = "/tmp/sluice-metrics-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, r.body.data(), r.body.size()), static_cast<ssize_t>(r.body.size()));
  close(fd);
  CmdResult check = run(std::string("promtool check metrics < ") + path);
  unlink(path);
  EXPECT_EQ(check.status, 0) << check.out << "\n--- exposition ---\n" << r.body;
  EXPECT_EQ(check.out, "") << "promtool lint findings";
}

}  // namespace
}  // namespace sluice::test
