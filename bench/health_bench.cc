// Health-check cost (issue #4): N TCP backends checked every interval on one EventLoop; prints
// the agent's CPU as a percentage of one core. Goal: <= 5% for 1000 backends at 1 s.
//
// The backends are N listeners on 127.0.0.1 (ephemeral ports) in a forked child, so the
// figure is the checker's process alone (getrusage(RUSAGE_SELF) over the measured window).
// On loopback the kernel runs both ends of each handshake in the connecting process's
// context, so the figure includes the listener side's SYN/ACK work: it overstates, slightly,
// what checking remote backends costs.
//
//   health_bench [--backends 1000] [--interval-ms 1000] [--seconds 10] [--type tcp|http]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sluice/core/event_loop.h>
#include <sluice/health/health.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  int backends = 1000;
  int interval_ms = 1000;
  int seconds = 10;
  bool http = false;
};

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "health_bench: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

double cpu_seconds(int who) {
  rusage ru{};
  getrusage(who, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

void raise_fd_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

// The backends: `n` listeners that accept and close (tcp), or answer "HTTP/1.1 200 OK" to
// whatever arrives (http). Writes the ports to `out_fd`, then serves until killed.
[[noreturn]] void serve(int n, bool http, int out_fd) {
  raise_fd_limit();
  const int ep = epoll_create1(EPOLL_CLOEXEC);
  std::vector<uint16_t> ports;
  std::vector<bool> listener(1 << 20, false);
  for (int i = 0; i < n; ++i) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) die("bind");
    if (listen(fd, 128) != 0) die("listen");
    socklen_t len = sizeof(sa);
    getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
    ports.push_back(ntohs(sa.sin_port));
    listener[fd] = true;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  }
  if (write(out_fd, ports.data(), ports.size() * 2) != static_cast<ssize_t>(ports.size() * 2))
    die("write ports");
  close(out_fd);
  static const char kReply[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
  epoll_event events[256];
  for (;;) {
    const int k = epoll_wait(ep, events, 256, -1);
    for (int i = 0; i < k; ++i) {
      const int fd = events[i].data.fd;
      if (listener[fd]) {
        int c;
        while ((c = accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
          if (!http) {
            close(c);
            continue;
          }
          epoll_event ev{};
          ev.events = EPOLLIN;
          ev.data.fd = c;
          epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
        }
        continue;
      }
      // An HTTP connection: answer once the request has arrived, then close.
      char buf[1024];
      const ssize_t r = read(fd, buf, sizeof(buf));
      if (r > 0) {
        (void)!write(fd, kReply, sizeof(kReply) - 1);
      }
      if (r > 0 || r == 0 || errno != EAGAIN) close(fd);  // close also unregisters
    }
  }
}

Options parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "health_bench: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--backends") {
      o.backends = std::atoi(next());
    } else if (a == "--interval-ms") {
      o.interval_ms = std::atoi(next());
    } else if (a == "--seconds") {
      o.seconds = std::atoi(next());
    } else if (a == "--type") {
      o.http = std::string(next()) == "http";
    } else {
      std::fprintf(stderr,
                   "usage: health_bench [--backends N] [--interval-ms MS] [--seconds S] "
                   "[--type tcp|http]\n");
      std::exit(2);
    }
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse_args(argc, argv);
  spdlog::set_level(spdlog::level::warn);
  raise_fd_limit();

  int pipefd[2];
  if (pipe(pipefd) != 0) die("pipe");
  const pid_t child = fork();
  if (child < 0) die("fork");
  if (child == 0) {
    close(pipefd[0]);
    serve(o.backends, o.http, pipefd[1]);
  }
  close(pipefd[1]);
  std::vector<uint16_t> ports(o.backends);
  std::size_t got = 0;
  while (got < ports.size() * 2) {
    const ssize_t r =
        read(pipefd[0], reinterpret_cast<char*>(ports.data()) + got, ports.size() * 2 - got);
    if (r <= 0) die("read ports from the child");
    got += static_cast<std::size_t>(r);
  }
  close(pipefd[0]);

  auto loop = sluice::EventLoop::create();
  if (!loop) die("EventLoop::create");
  auto hc = sluice::HealthChecker::create(**loop);
  if (!hc) die("HealthChecker::create");
  int flips = 0;
  (*hc)->on_change([&](uint32_t, bool, const std::string&) { ++flips; });

  sluice::HealthCheckConfig check;
  check.type = o.http ? sluice::HealthCheckType::kHttp : sluice::HealthCheckType::kTcp;
  check.interval_ms = static_cast<uint32_t>(o.interval_ms);
  check.timeout_ms = static_cast<uint32_t>(o.interval_ms / 2);
  std::vector<sluice::HealthTarget> targets;
  for (int i = 0; i < o.backends; ++i) {
    sluice::HealthTarget t;
    t.backend_id = static_cast<uint32_t>(i);
    t.family = SL_AF_INET;
    t.addr.w[0] = htonl(INADDR_LOOPBACK);
    t.port = ports[i];
    t.check = check;
    targets.push_back(t);
  }
  (*hc)->set_targets(targets);

  // One interval of warm-up (the first checks are spread over it), sampling the checks in
  // flight every millisecond; then the measured window, without the sampler.
  uint32_t max_in_flight = 0;
  const auto sampler = (*loop)->add_timer(
      1ms, 1ms, [&] { max_in_flight = std::max(max_in_flight, (*hc)->snapshot().in_flight); });
  (*loop)->add_timer(std::chrono::milliseconds(o.interval_ms), 0ns, [&] { (*loop)->stop(); });
  if (!(*loop)->run()) die("loop");
  (*loop)->cancel_timer(sampler);

  auto count = [&] {
    uint64_t checks = 0, failures = 0;
    for (const auto& b : (*hc)->snapshot().backends) {
      checks += b.checks;
      failures += b.failures;
    }
    return std::make_pair(checks, failures);
  };
  const auto [checks0, failures0] = count();
  const double cpu0 = cpu_seconds(RUSAGE_SELF);
  const Clock::time_point t0 = Clock::now();
  (*loop)->add_timer(std::chrono::seconds(o.seconds), 0ns, [&] { (*loop)->stop(); });
  if (!(*loop)->run()) die("loop");
  const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
  const double cpu = cpu_seconds(RUSAGE_SELF) - cpu0;
  const auto [checks1, failures1] = count();

  // Latency over all successful checks.
  sluice::LatencyHistogram all;
  for (const auto& b : (*hc)->snapshot().backends) {
    for (std::size_t i = 0; i < all.cumulative.size(); ++i) {
      all.cumulative[i] += b.latency.cumulative[i];
    }
    all.count += b.latency.count;
    all.sum_seconds += b.latency.sum_seconds;
  }
  auto quantile = [&](double q) {
    const double want = q * static_cast<double>(all.count);
    for (std::size_t i = 0; i < all.cumulative.size(); ++i) {
      if (static_cast<double>(all.cumulative[i]) >= want) {
        return sluice::LatencyHistogram::kBoundsSeconds[i];
      }
    }
    return 1e9;
  };

  hc->reset();
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);

  const double checks_per_s = static_cast<double>(checks1 - checks0) / wall;
  std::printf("health_bench: %d %s backends, interval %d ms, %.1f s measured\n", o.backends,
              o.http ? "http" : "tcp", o.interval_ms, wall);
  std::printf("  checks: %.0f/s (expected %.0f/s), failed: %llu, flips: %d, in flight max: %u\n",
              checks_per_s, o.backends * 1000.0 / o.interval_ms,
              static_cast<unsigned long long>(failures1 - failures0), flips, max_in_flight);
  std::printf("  latency: mean %.0f us, p50 <= %.4f s, p99 <= %.4f s\n",
              all.count ? all.sum_seconds / static_cast<double>(all.count) * 1e6 : 0.0,
              quantile(0.5), quantile(0.99));
  std::printf("  agent CPU: %.2f%% of one core (%.3f s in %.1f s; %.1f us per check)\n",
              100.0 * cpu / wall, cpu, wall, cpu / static_cast<double>(checks1 - checks0) * 1e6);
  return 0;
}
