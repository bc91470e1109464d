// The cost of the sockops congestion-control policy per connection (issue #12): TCP connections
// per second over loopback with cc_sockops attached and without it, in the same run.
//
// The process runs inside a cgroup v2 of its own (/sys/fs/cgroup/unified/sl-ccbench-<pid>,
// tests/common/cgroup.h), to which the policy attaches, so that it sees only this bench's
// sockets. One connection: connect to a listener on 127.0.0.1, accept, a request and a response
// of --bytes each (0: none), then close with SO_LINGER 0 (a RST: no TIME_WAIT, the port is free
// at once), client first. Configurations, interleaved in rounds (the order rotating each round)
// so that the noise of a shared 2-core VM hits all alike:
//   baseline     no sockops program attached;
//   base-reno    no sockops program, the application selects reno itself (the reference for
//                reno-all: reno and the host's default, bbr here, cost differently per
//                connection, and that is the algorithm's cost, not the policy's);
//   no-match     attached, the only rule is for 198.51.100.0/24: looked up, left alone;
//   same-algo    attached, a rule sets only the algorithm to the host's default (no switch): the
//                set and read-back path, the connection tracked in cc_conns and followed by the
//                RTT/RETRANS/STATE callbacks until it closes;
//   reno-all     attached, a rule sets reno, initial_cwnd 10, sndbuf and rcvbuf: every setting
//                applied and read back, tracked likewise.
// Prints the median connections/s of each configuration and its ratio to the baseline, and the
// rule counters as a check that the rules did what they say. Needs root.
//
//   build/bench/cc_sockops_cps [--conns N] [--rounds R] [--bytes B] [--realtime 0|1]
//                             [--prog-stats 0|1]
//
// --conns: connections per configuration and round (default: sized from a short baseline run
// to take about 2.5 s). --rounds: default 5. --bytes: request and response size, default 64.
// --prog-stats 1 turns on the kernel's BPF run-time statistics (BPF_ENABLE_STATS, off again
// when the bench exits) and adds cc_sockops's runs per connection and ns per run; it costs two
// clock reads per run, so the cps of such a run are not the figures.
// --realtime 1 (default) runs the loop as SCHED_FIFO, so that other processes of a shared
// machine do not decide the figures (loopback's softirq work runs in the same task).
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <sluice/cc/cc_policy.h>
#include <sluice/core/fd.h>
#include <sluice/core/net.h>
#include "cgroup.h"

namespace {

using sluice::UniqueFd;
using Clock = std::chrono::steady_clock;

volatile sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

// Thrown by the connection loop when a signal asked to stop: unwinds through the destructors
// (policy detached, process moved out, cgroup removed).
struct Interrupted {};

std::runtime_error sys_fail(const std::string& what) {
  return std::runtime_error(what + ": " + std::strerror(errno));
}

std::string host_default_cc() {
  std::ifstream f("/proc/sys/net/ipv4/tcp_congestion_control");
  std::string name;
  f >> name;
  return name.empty() ? "cubic" : name;
}

sluice::Cidr cidr(const std::string& addr, uint8_t len) {
  auto ip = sluice::parse_ip(addr);
  if (!ip) throw std::runtime_error("bad address " + addr);
  sluice::Cidr c;
  c.addr = ip->first;
  c.family = ip->second;
  c.len = len;
  return c;
}

// A listener on 127.0.0.1 and the connection loop against it.
class Loopback {
 public:
  // `cc` not empty: the listener and every client select it (TCP_CONGESTION) themselves, and
  // the accepted sockets inherit it from the listener.
  Loopback(size_t bytes, std::string cc)
      : buf_(std::max<size_t>(bytes, 1)), bytes_(bytes), cc_(std::move(cc)) {
    lfd_ = UniqueFd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!lfd_.valid()) throw sys_fail("socket");
    select_cc(lfd_.get());
    addr_.sin_family = AF_INET;
    addr_.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd_.get(), reinterpret_cast<sockaddr*>(&addr_), sizeof(addr_)) != 0)
      throw sys_fail("bind 127.0.0.1");
    if (listen(lfd_.get(), 128) != 0) throw sys_fail("listen");
    socklen_t len = sizeof(addr_);
    getsockname(lfd_.get(), reinterpret_cast<sockaddr*>(&addr_), &len);
  }
  uint16_t port() const { return ntohs(addr_.sin_port); }

  // One connection, opened and closed. Throws Interrupted when a signal asked to stop.
  void one() {
    if (g_stop) throw Interrupted{};
    UniqueFd c(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!c.valid()) fail("socket");
    const linger lg{1, 0};
    setsockopt(c.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    select_cc(c.get());
    if (connect(c.get(), reinterpret_cast<const sockaddr*>(&addr_), sizeof(addr_)) != 0)
      fail("connect");
    UniqueFd s(accept4(lfd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!s.valid()) fail("accept");
    if (check_cc_ && !cc_.empty()) {
      check_cc_ = false;
      for (int fd : {c.get(), s.get()}) {
        char name[16] = {};
        socklen_t len = sizeof(name);
        getsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, name, &len);
        if (cc_ != name)
          throw std::runtime_error("a socket runs " + std::string(name) + ", not " + cc_);
      }
    }
    if (bytes_ > 0) {
      transfer(c.get(), s.get());  // request
      transfer(s.get(), c.get());  // response
    }
    c.reset();  // RST: the accepted side goes to CLOSE, no TIME_WAIT on either
  }

  // Connections per second over `n` connections.
  double run(uint64_t n) {
    const auto t0 = Clock::now();
    for (uint64_t i = 0; i < n; i++) one();
    return static_cast<double>(n) / std::chrono::duration<double>(Clock::now() - t0).count();
  }

 private:
  void select_cc(int fd) {
    if (!cc_.empty() && setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, cc_.data(),
                                   static_cast<socklen_t>(cc_.size())) != 0)
      throw sys_fail("TCP_CONGESTION " + cc_);
  }
  [[noreturn]] void fail(const char* what) {
    if (g_stop) throw Interrupted{};
    throw sys_fail(what);
  }
  void transfer(int from, int to) {
    if (send(from, buf_.data(), bytes_, 0) != static_cast<ssize_t>(bytes_)) fail("send");
    for (size_t got = 0; got < bytes_;) {
      const ssize_t r = recv(to, buf_.data(), bytes_ - got, 0);
      if (r <= 0) fail("recv");
      got += static_cast<size_t>(r);
    }
  }

  UniqueFd lfd_;
  sockaddr_in addr_{};
  std::vector<char> buf_;
  size_t bytes_;
  std::string cc_;
  bool check_cc_ = true;  // the first connection checks both sides run cc_
};

// SCHED_FIFO for the calling thread while it lives (when `on`), the previous policy after.
class RealtimeScope {
 public:
  explicit RealtimeScope(bool on) {
    if (!on) return;
    pthread_getschedparam(pthread_self(), &policy_, &param_);
    const sched_param p{.sched_priority = 5};
    set_ = pthread_setschedparam(pthread_self(), SCHED_FIFO, &p) == 0;
  }
  ~RealtimeScope() {
    if (set_) pthread_setschedparam(pthread_self(), policy_, &param_);
  }
  RealtimeScope(const RealtimeScope&) = delete;
  RealtimeScope& operator=(const RealtimeScope&) = delete;
  bool set() const { return set_; }

 private:
  bool set_ = false;
  int policy_ = SCHED_OTHER;
  sched_param param_{};
};

struct Mode {
  std::string name;
  std::string what;
  std::optional<sluice::CongestionConfig> cfg;  // nullopt: detached
  std::string rule;                             // the rule whose counters are checked
  Loopback* lo = nullptr;
  int ref = -1;  // >= 0: also compared with that mode (the same algorithm without the program)
  std::vector<double> cps;
  sl_cc_rule_stats stats{};       // of `rule`, summed over the rounds (read while it is live)
  uint64_t runs = 0, run_ns = 0;  // cc_sockops's, with --prog-stats
};

// cc_sockops's run count and total run time (0 unless BPF stats are enabled).
std::pair<uint64_t, uint64_t> prog_runs(const sluice::CcPolicy& p) {
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(p.prog_fd(), &info, &len) != 0) return {0, 0};
  return {info.run_cnt, info.run_time_ns};
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

sl_cc_rule_stats rule_stats(const sluice::CcPolicy& p, const std::string& rule) {
  sl_cc_rule_stats sum{};
  if (rule.empty()) return sum;
  const uint16_t id = p.rule_ids().ids().at(rule);
  const int n = libbpf_num_possible_cpus();
  std::vector<sl_cc_rule_stats> per(static_cast<size_t>(std::max(n, 1)));
  const uint32_t key = id;
  if (bpf_map_lookup_elem(p.fds().rule_stats, &key, per.data()) != 0) return sum;
  for (const auto& s : per) {
    sum.matched += s.matched;
    sum.applied += s.applied;
    sum.failed += s.failed;
    sum.untracked += s.untracked;
    sum.closed += s.closed;
  }
  return sum;
}

size_t live_conns(const sluice::CcPolicy& p) {
  size_t n = 0;
  uint64_t key = 0, next = 0;
  const void* prev = nullptr;
  while (bpf_map_get_next_key(p.fds().conns, prev, &next) == 0) {
    ++n;
    key = next;
    prev = &key;
  }
  return n;
}

void check(const sluice::Status& s) {
  if (!s) throw std::runtime_error(s.error().to_string());
}

int bench(uint64_t conns, int rounds, size_t bytes, bool realtime, bool prog_stats) {
  // Before any socket: a passive connection belongs to its listener's cgroup.
  sluice::test::TestCgroup cg("ccbench");
  cg.enter();
  auto loaded = sluice::CcPolicy::load(65536);
  if (!loaded) throw std::runtime_error(loaded.error().to_string());
  std::unique_ptr<sluice::CcPolicy> policy = std::move(*loaded);
  Loopback lo(bytes, "");

  const std::string same = host_default_cc();
  Loopback lo_reno(bytes, "reno");
  sluice::CcRuleConfig r;
  r.destinations = {cidr("127.0.0.0", 8)};
  r.port_lo = r.port_hi = lo.port();  // both sides: the remote port of the client, the local
                                      // one of the accepted socket
  std::vector<Mode> modes;
  modes.push_back({"baseline", "no sockops program, " + same, std::nullopt, "", &lo});
  // reno-all's algorithm without the program: the difference between bbr and reno connections
  // is the algorithm's own, not the policy's.
  modes.push_back({"base-reno",
                   "no sockops program, reno set by the application (one more "
                   "setsockopt per client)",
                   std::nullopt, "", &lo_reno});
  {
    sluice::CongestionConfig cfg;
    sluice::CcRuleConfig none = r;
    none.name = "elsewhere";
    none.destinations = {cidr("198.51.100.0", 24)};
    none.algorithm = "reno";
    cfg.rules = {none};
    modes.push_back({"no-match", "attached, no rule matches", cfg, "elsewhere", &lo});
  }
  {
    sluice::CongestionConfig cfg;
    sluice::CcRuleConfig s = r;
    s.name = "same-algo";
    s.algorithm = same;
    cfg.rules = {s};
    modes.push_back(
        {"same-algo", "algorithm " + same + " (the host default), tracked", cfg, "same-algo", &lo});
  }
  {
    sluice::CongestionConfig cfg;
    sluice::CcRuleConfig all = r;
    all.name = "reno-all";
    all.algorithm = "reno";
    all.initial_cwnd = 10;
    all.sndbuf = 262144;
    all.rcvbuf = 262144;
    cfg.rules = {all};
    modes.push_back({"reno-all", "reno + initial_cwnd 10 + sndbuf/rcvbuf 256 KiB, tracked", cfg,
                     "reno-all", &lo, 1});
  }
  // A rule's id is freed when another config replaces it: its counters are read around each
  // run, while it is live, and the differences summed.
  auto set_mode = [&](const Mode& m) {
    if (!m.cfg) {
      policy->detach();
      return;
    }
    check(policy->apply(*m.cfg));
    if (policy->cgroup().empty()) check(policy->attach(cg.path()));
  };

  UniqueFd stats_fd;
  if (prog_stats) {
    stats_fd = UniqueFd(bpf_enable_stats(BPF_STATS_RUN_TIME));
    if (!stats_fd.valid()) throw sys_fail("BPF_ENABLE_STATS");
  }
  const RealtimeScope rt(realtime);
  // Warm up every configuration (first use of the program, the maps, the socket caches).
  for (const Mode& m : modes) {
    set_mode(m);
    m.lo->run(2000);
  }
  if (conns == 0) {
    // Size a round to about 2.5 s from the baseline's rate.
    set_mode(modes[0]);
    uint64_t n = 0;
    const auto t0 = Clock::now();
    while (Clock::now() - t0 < std::chrono::milliseconds(500)) {
      lo.one();
      n++;
    }
    const double rate =
        static_cast<double>(n) / std::chrono::duration<double>(Clock::now() - t0).count();
    conns = std::max<uint64_t>(1000, static_cast<uint64_t>(rate * 2.5) / 1000 * 1000);
  }

  std::printf(
      "cc_sockops_cps: %llu connections per configuration and round, %d rounds, %zu-byte "
      "request and response, loopback, %s, cgroup %s\n",
      static_cast<unsigned long long>(conns), rounds, bytes,
      rt.set() ? "SCHED_FIFO" : "SCHED_OTHER", cg.path().c_str());
  std::fflush(stdout);
  size_t leaked = 0;
  for (int round = 0; round < rounds; round++) {
    for (size_t k = 0; k < modes.size(); k++) {
      Mode& m = modes[(k + static_cast<size_t>(round)) % modes.size()];
      set_mode(m);
      const sl_cc_rule_stats before = rule_stats(*policy, m.rule);
      const size_t live0 = m.cfg ? live_conns(*policy) : 0;
      const auto runs0 = prog_runs(*policy);
      m.cps.push_back(m.lo->run(conns));
      const auto runs1 = prog_runs(*policy);
      if (m.cfg) {
        // A close can still be in a deferred softirq (ksoftirqd): let it reach the program
        // before the next mode detaches it, then count what stayed.
        size_t live = live_conns(*policy);
        for (int i = 0; i < 200 && live > live0; i++) {
          usleep(1000);
          live = live_conns(*policy);
        }
        leaked += live > live0 ? live - live0 : 0;
      }
      const sl_cc_rule_stats after = rule_stats(*policy, m.rule);
      if (m.cfg) {
        m.runs += runs1.first - runs0.first;
        m.run_ns += runs1.second - runs0.second;
      }
      m.stats.matched += after.matched - before.matched;
      m.stats.applied += after.applied - before.applied;
      m.stats.failed += after.failed - before.failed;
      m.stats.untracked += after.untracked - before.untracked;
      m.stats.closed += after.closed - before.closed;
    }
    std::printf("  round %d:", round + 1);
    for (const Mode& m : modes) std::printf(" %s %.0f", m.name.c_str(), m.cps.back());
    std::printf("\n");
    std::fflush(stdout);
  }
  policy->detach();

  const double base = median(modes[0].cps);
  std::printf(
      "connections/s: median (range) of %d rounds, ratio to baseline, extra us per connection; "
      "the rule's counters over the rounds\n",
      rounds);
  for (const Mode& m : modes) {
    const double med = median(m.cps);
    const auto [lo_it, hi_it] = std::minmax_element(m.cps.begin(), m.cps.end());
    std::printf("  %-10s %9.0f  (%.0f-%.0f)  x%.3f  %+.2f us/conn", m.name.c_str(), med, *lo_it,
                *hi_it, base > 0 ? med / base : 0.0,
                med > 0 && base > 0 ? 1e6 / med - 1e6 / base : 0.0);
    if (!m.rule.empty()) {
      const sl_cc_rule_stats& st = m.stats;
      std::printf(
          "  matched %llu applied %llu failed %llu untracked %llu closed %llu",
          static_cast<unsigned long long>(st.matched), static_cast<unsigned long long>(st.applied),
          static_cast<unsigned long long>(st.failed), static_cast<unsigned long long>(st.untracked),
          static_cast<unsigned long long>(st.closed));
    }
    if (m.ref >= 0) {
      const double ref = median(modes[static_cast<size_t>(m.ref)].cps);
      std::printf("  x%.3f %+.2f us/conn vs %s", ref > 0 ? med / ref : 0.0,
                  med > 0 && ref > 0 ? 1e6 / med - 1e6 / ref : 0.0,
                  modes[static_cast<size_t>(m.ref)].name.c_str());
    }
    if (prog_stats && m.runs)
      std::printf("  %.1f runs/conn %.0f ns/run",
                  static_cast<double>(m.runs) / static_cast<double>(conns * m.cps.size()),
                  static_cast<double>(m.run_ns) / static_cast<double>(m.runs));
    std::printf("  -- %s\n", m.what.c_str());
  }
  if (leaked) {
    std::printf("note: %zu connections stayed in cc_conns after their round (expected 0):\n",
                leaked);
    // What the program last saw of them: the close never reached it.
    uint64_t key = 0, next = 0;
    const void* prev = nullptr;
    while (bpf_map_get_next_key(policy->fds().conns, prev, &next) == 0) {
      sl_cc_conn c{};
      if (bpf_map_lookup_elem(policy->fds().conns, &next, &c) == 0)
        std::printf("  %s lport %u rport %u state %u cc %s bytes_acked %llu srtt %u us\n",
                    c.direction == SL_CC_DIR_ACTIVE ? "active" : "passive", c.lport, c.rport,
                    c.state, c.cc, static_cast<unsigned long long>(c.bytes_acked), c.srtt_us);
      key = next;
      prev = &key;
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t conns = 0;
  int rounds = 5;
  size_t bytes = 64;
  bool realtime = true;
  bool prog_stats = false;
  for (int i = 1; i < argc; i++) {
    const std::string opt = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(
          stderr,
          "usage: %s [--conns N] [--rounds R] [--bytes B] [--realtime 0|1] [--prog-stats 0|1]\n",
          argv[0]);
      return 2;
    }
    const std::string val = argv[++i];
    if (opt == "--conns") {
      conns = std::strtoull(val.c_str(), nullptr, 10);
    } else if (opt == "--rounds") {
      rounds = std::max(1, std::atoi(val.c_str()));
    } else if (opt == "--prog-stats") {
      prog_stats = val != "0";
    } else if (opt == "--realtime") {
      realtime = val != "0";
    } else if (opt == "--bytes") {
      bytes = std::strtoull(val.c_str(), nullptr, 10);
    } else {
      std::fprintf(stderr, "unknown option %s\n", opt.c_str());
      return 2;
    }
  }
  if (geteuid() != 0) {
    std::fprintf(stderr, "cc_sockops_cps: needs root (loads BPF, attaches to a cgroup)\n");
    return 1;
  }
  // No SA_RESTART: a blocked connect/accept/recv returns EINTR, and the loop unwinds.
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &sa, nullptr);
  spdlog::set_level(spdlog::level::warn);  // attach/detach every round would log
  try {
    return bench(conns, rounds, bytes, realtime, prog_stats);
  } catch (const Interrupted&) {
    std::fprintf(stderr, "cc_sockops_cps: interrupted; policy detached, cgroup removed\n");
    return 130;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cc_sockops_cps: %s\n", e.what());
    return 1;
  }
}
