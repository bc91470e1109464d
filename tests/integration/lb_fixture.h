// The end-to-end test world, shared by the integration tests: the real sluiced attaches XDP
// to the veths of a load-balancer namespace, and real TCP/UDP clients in a client namespace
// reach sl-echo backends through the VIPs. A test derives from LbIntegration and calls
// StartAgent(config_yaml(...)).
//
// Each test builds its own world (the topology of scripts/topology.sh; keep them in step):
//
//   client ns                 lb ns (sluiced here)               backend ns N = 1..3
//   c0 198.18.0.2/24 ------- lc 198.18.0.1/24
//      fd00:18::2/64            fd00:18::1/64
//      + 198.18.0.100-131       lbN 198.18.N.1/24 -------------- eth0 198.18.N.2/24
//   VIP routes via the LB           fd00:18:N::1/64                   fd00:18:N::2/64
//                                                                lo 198.19.0.2/32 (DSR VIP)
//                                                                sl-echo backend-N
//
// Clients run in this process, on threads, with sockets created inside the client namespace
// (NetNs::in). Every client socket is bound to its source and connected to the VIP, so the
// kernel discards any reply that does not come from the VIP itself.
//
// The test binary must define SLUICED_PATH, SLUICECTL_PATH, SL_ECHO_PATH and SL_PROBE_PATH
// (tests/integration/CMakeLists.txt).
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "netns.h"

namespace sluice::test {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

inline constexpr char kSluiced[] = SLUICED_PATH;
inline constexpr char kSluicectl[] = SLUICECTL_PATH;
inline constexpr char kSlEcho[] = SL_ECHO_PATH;
inline constexpr char kSlProbe[] = SL_PROBE_PATH;

inline constexpr int kSources = 32;  // 198.18.0.100 .. 198.18.0.131

inline std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void write_file(const fs::path& p, const std::string& text) {
  std::ofstream out(p);
  out << text;
  if (!out) throw std::runtime_error("cannot write " + p.string());
}

// Polls `pred` until it holds or `timeout` passes.
inline bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (!pred()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

// A child process with stdout+stderr in a log file. The destructor kills and reaps it, so no
// path out of a test leaves it running; and should the test process itself die (a crash, a
// ctest timeout), the child gets SIGTERM from the kernel (PR_SET_PDEATHSIG), so sluiced still
// detaches and unpins.
class Child {
 public:
  Child(const std::vector<std::string>& argv, const fs::path& log) {
    // Everything the child needs is prepared before fork(): after it, only async-signal-safe
    // calls (this process is multi-threaded).
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    int out = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (out < 0) throw std::runtime_error("open " + log.string() + ": " + strerror(errno));
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    pid_t parent = getpid();
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (getppid() != parent) _exit(127);  // the parent died before prctl took effect
      dup2(devnull, 0);
      dup2(out, 1);
      dup2(out, 2);
      execvp(args[0], args.data());
      _exit(127);
    }
    int saved = errno;
    close(out);
    close(devnull);
    if (pid_ < 0) throw std::runtime_error("fork: " + std::string(strerror(saved)));
  }
  ~Child() {
    if (!status_) stop(SIGKILL, 5s);
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  void signal(int sig) const { kill(pid_, sig); }

  // The exit status (exit code, or 128 + signal) once it has exited; reaps it.
  std::optional<int> poll() {
    if (status_) return status_;
    int ws = 0;
    pid_t r = waitpid(pid_, &ws, WNOHANG);
    if (r == pid_) status_ = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
    return status_;
  }

  // Sends `sig` and waits up to `timeout`; then SIGKILLs. Returns the status, or nullopt when
  // it had to be killed.
  std::optional<int> stop(int sig, std::chrono::milliseconds timeout) {
    if (poll()) return status_;
    kill(pid_, sig);
    if (wait_until([&] { return poll().has_value(); }, timeout)) return status_;
    kill(pid_, SIGKILL);
    int ws = 0;
    waitpid(pid_, &ws, 0);
    status_ = 128 + SIGKILL;
    return std::nullopt;
  }

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
};

// sl-echo inside `ns`, ready (all sockets bound) when the constructor returns.
inline std::unique_ptr<Child> start_echo(const NetNs& ns, const std::string& name,
                                         const std::string& tcp, const std::string& udp,
                                         const fs::path& rundir) {
  fs::path ready = rundir / (name + ".ready");
  // `ip netns exec` execs the command in place, so the child's pid is sl-echo's own.
  auto child = std::make_unique<Child>(
      std::vector<std::string>{"ip", "netns", "exec", ns.name(), kSlEcho, "--name", name, "--tcp",
                               tcp, "--udp", udp, "--ready-file", ready},
      rundir / (name + ".log"));
  if (!wait_until([&] { return fs::exists(ready) || child->poll(); }, 5s) || !fs::exists(ready)) {
    throw std::runtime_error("sl-echo " + name +
                             " did not start: " + read_file(rundir / (name + ".log")));
  }
  return child;
}

// The demo topology (scripts/topology.sh). Members are destroyed in reverse order: the
// servers stop before their namespaces go.
class Topology {
 public:
  explicit Topology(const fs::path& rundir) {
    for (int n = 1; n <= 3; ++n) {
      backends[n - 1] = std::make_unique<NetNs>("it-b" + std::to_string(n));
    }
    // No IPv6 duplicate address detection, set before the veths exist so they inherit it:
    // while a link-local address is tentative the kernel cannot send neighbour solicitations,
    // and the first packet to each new IPv6 neighbour would wait a 1 s retransmit.
    for (const NetNs* ns :
         {&client, &lb, backends[0].get(), backends[1].get(), backends[2].get()}) {
      ns->must("sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0");
    }
    make_veth(client, "c0", lb, "lc");
    for (int n = 1; n <= 3; ++n) make_veth(lb, "lb" + std::to_string(n), *backends[n - 1], "eth0");

    // LB: a router. rp_filter off because DSR replies come from the VIP, which is not a
    // backend-side address; the effective value is max(all, iface), so set every level.
    lb.must(
        "sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 "
        "net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 "
        "net.ipv4.conf.lc.rp_filter=0 net.ipv4.conf.lb1.rp_filter=0 "
        "net.ipv4.conf.lb2.rp_filter=0 net.ipv4.conf.lb3.rp_filter=0");
    // nodad: IPv6 addresses usable at once, not after duplicate detection.
    lb.must("ip addr add 198.18.0.1/24 dev lc && ip addr add fd00:18::1/64 dev lc nodad");
    for (int n = 1; n <= 3; ++n) {
      std::string N = std::to_string(n);
      lb.must("ip addr add 198.18." + N + ".1/24 dev lb" + N + " && ip addr add fd00:18:" + N +
              "::1/64 dev lb" + N + " nodad");
    }

    // Client. XDP on the peer veth (lc) loses the partial-checksum state of what the client's
    // stack sends, so TCP would reach the backends with unfinished checksums: tx offload off
    // is a test-topology setting (real NICs finish checksums in hardware). GRO on: a veth
    // accepts XDP-redirected frames (the LB's NAT replies) only when its peer has XDP or GRO.
    std::string cmd = "ip addr add 198.18.0.2/24 dev c0 && ip addr add fd00:18::2/64 dev c0 nodad";
    for (int i = 0; i < kSources; ++i) cmd += " && ip addr add " + source(i) + "/24 dev c0";
    client.must(cmd);
    client.must("ethtool -K c0 tx off >/dev/null && ethtool -K c0 gro on >/dev/null");
    client.must(
        "ip route add 198.19.0.0/24 via 198.18.0.1 && "
        "ip -6 route add fd00:19::/64 via fd00:18::1");

    for (int n = 1; n <= 3; ++n) {
      const NetNs& b = *backends[n - 1];
      std::string N = std::to_string(n);
      b.must("ip addr add 198.18." + N + ".2/24 dev eth0 && ip addr add fd00:18:" + N +
             "::2/64 dev eth0 nodad");
      // Same two settings as on c0, for the LB's redirects into lbN (our peer).
      b.must("ethtool -K eth0 tx off >/dev/null && ethtool -K eth0 gro on >/dev/null");
      b.must("ip route add default via 198.18." + N +
             ".1 && ip -6 route add default via fd00:18:" + N + "::1");
      // DSR VIP on lo: the backend accepts the VIP's packets and answers from it.
      b.must("ip addr add 198.19.0.2/32 dev lo && ip addr add fd00:19::2/128 dev lo nodad");
      servers.push_back(start_echo(b, "backend-" + N, "80,8080", "53,5353", rundir));
    }
    // DSR rewrites only MACs: the LB needs each backend's neighbour entry before traffic.
    for (int n = 1; n <= 3; ++n) {
      std::string N = std::to_string(n);
      lb.must("ping -c1 -W2 -q 198.18." + N + ".2 >/dev/null && ping -6 -c1 -W2 -q fd00:18:" + N +
              "::2 >/dev/null");
    }
  }

  static std::string source(int i) { return "198.18.0." + std::to_string(100 + i); }

  NetNs client{"it-c"};
  NetNs lb{"it-lb"};
  std::array<std::unique_ptr<NetNs>, 3> backends;
  std::vector<std::unique_ptr<Child>> servers;
};

// ---- clients -------------------------------------------------------------------------------

struct Probe {
  std::string backend;  // the name the backend answered with
  std::string error;    // empty on success
  bool ok() const { return error.empty(); }
};

struct SockAddr {
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family = 0;
};

inline SockAddr sockaddr_of(const std::string& addr, uint16_t port) {
  SockAddr a;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&a.ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&a.ss);
  if (inet_pton(AF_INET, addr.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = a.family = AF_INET;
    v4->sin_port = htons(port);
    a.len = sizeof(*v4);
  } else if (inet_pton(AF_INET6, addr.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = a.family = AF_INET6;
    v6->sin6_port = htons(port);
    a.len = sizeof(*v6);
  } else {
    throw std::invalid_argument("bad address " + addr);
  }
  return a;
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

inline std::string errno_text(const std::string& what) { return what + ": " + strerror(errno); }

// A socket created inside `ns`, bound to `src`, connected to dst:port, with I/O timeouts.
// Returns -1 and sets `error` on failure.
inline int client_socket(const NetNs& ns, int type, const std::string& src, const std::string& dst,
                         uint16_t port, std::string& error) {
  SockAddr d = sockaddr_of(dst, port);
  SockAddr s = sockaddr_of(src, 0);
  int fd = ns.in([&] { return socket(d.family, type | SOCK_CLOEXEC, 0); });
  if (fd < 0) {
    error = errno_text("socket");
    return -1;
  }
  timeval tv{1, 500000};  // also bounds connect()
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (bind(fd, reinterpret_cast<sockaddr*>(&s.ss), s.len) != 0) {
    error = errno_text("bind " + src);
  } else if (connect(fd, reinterpret_cast<sockaddr*>(&d.ss), d.len) != 0) {
    error = errno_text("connect " + dst + ":" + std::to_string(port));
  } else {
    return fd;
  }
  close(fd);
  return -1;
}

// One datagram; the reply must come from dst:port (the socket is connected). One resend covers
// a datagram lost while the kernel resolves a neighbour on the first packet of a run.
inline Probe udp_probe(const NetNs& ns, const std::string& src, const std::string& dst,
                       uint16_t port) {
  Probe p;
  Fd fd(client_socket(ns, SOCK_DGRAM, src, dst, port, p.error));
  if (fd.get() < 0) return p;
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::string q = "query from " + src;
    if (send(fd.get(), q.data(), q.size(), 0) < 0) {
      p.error = errno_text("send");
      continue;
    }
    char buf[256];
    ssize_t n = recv(fd.get(), buf, sizeof(buf), 0);
    if (n > 0) {
      p.backend.assign(buf, static_cast<size_t>(n));
      p.error.clear();
      return p;
    }
    p.error = n < 0 ? errno_text("recv") : "empty reply";
  }
  p.error = src + " -> " + dst + ":" + std::to_string(port) + "/udp: " + p.error;
  return p;
}

// One connection: reads "NAME\n", sends `payload` and checks it comes back intact, half-closes
// and expects the server's FIN (so the close handshake crosses the LB too).
inline Probe tcp_probe(const NetNs& ns, const std::string& src, const std::string& dst,
                       uint16_t port, const std::string& payload) {
  Probe p;
  std::string where = src + " -> " + dst + ":" + std::to_string(port) + "/tcp: ";
  Fd fd(client_socket(ns, SOCK_STREAM, src, dst, port, p.error));
  if (fd.get() < 0) {
    p.error = where + p.error;
    return p;
  }
  auto fail = [&](const std::string& why) {
    p.backend.clear();
    p.error = where + why;
    return p;
  };
  // Reads until `want` bytes (or EOF when want == SIZE_MAX).
  auto read_some = [&](std::string& buf, size_t want) -> ssize_t {
    while (buf.size() < want) {
      char tmp[4096];
      ssize_t n = recv(fd.get(), tmp, sizeof(tmp), 0);
      if (n <= 0) return n;
      buf.append(tmp, static_cast<size_t>(n));
    }
    return 1;
  };
  std::string buf;
  while (buf.find('\n') == std::string::npos) {
    ssize_t r = read_some(buf, buf.size() + 1);
    if (r == 0) return fail("closed before the name line");
    if (r < 0) return fail(errno_text("reading the name line"));
  }
  p.backend = buf.substr(0, buf.find('\n'));
  if (buf.size() != p.backend.size() + 1) return fail("bytes after the name line");
  if (send(fd.get(), payload.data(), payload.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(payload.size())) {
    return fail(errno_text("send"));
  }
  std::string echo;
  ssize_t r = read_some(echo, payload.size());
  if (r <= 0) return fail(r == 0 ? "closed before the echo" : errno_text("reading the echo"));
  if (echo != payload) return fail("echo differs from what was sent");
  if (shutdown(fd.get(), SHUT_WR) != 0) return fail(errno_text("shutdown"));
  std::string rest;
  r = read_some(rest, SIZE_MAX);
  if (r < 0) return fail(errno_text("waiting for the server's FIN"));
  if (!rest.empty()) return fail("bytes after the echo");
  return p;
}

inline std::string payload_for(const std::string& src) {
  std::string s = "hello from " + src + " ";
  while (s.size() < 3000) s += s;  // spans several segments
  return s;
}

// Runs probe(src) for every source concurrently, one thread each.
inline std::vector<Probe> probe_all(const std::vector<std::string>& sources,
                                    const std::function<Probe(const std::string&)>& probe) {
  std::vector<std::future<Probe>> futures;
  for (const auto& src : sources) {
    futures.push_back(std::async(std::launch::async, [&probe, src] { return probe(src); }));
  }
  std::vector<Probe> out;
  for (auto& f : futures) out.push_back(f.get());
  return out;
}

inline std::vector<std::string> v4_sources() {
  std::vector<std::string> s;
  for (int i = 0; i < kSources; ++i) s.push_back(Topology::source(i));
  return s;
}

// One VIP block of the config, with the three backends of the topology.
inline std::string vip_yaml(const std::string& address, int port, const std::string& proto,
                            const std::string& mode, int backend_port) {
  bool v6 = address.find(':') != std::string::npos;
  std::string y = "  - address: " + address + "\n    port: " + std::to_string(port) +
                  "\n    protocol: " + proto + "\n    scheduler: source-hash\n    mode: " + mode +
                  "\n    backends:\n";
  for (int n = 1; n <= 3; ++n) {
    std::string N = std::to_string(n);
    y += "      - {address: " + (v6 ? "fd00:18:" + N + "::2" : "198.18." + N + ".2") +
         ", port: " + std::to_string(backend_port) + ", weight: 1}\n";
  }
  return y;
}

// A config with the topology's interfaces, `vips` (vip_yaml() blocks) and `extra`: more
// top-level YAML (for example a `conntrack:` section).
inline std::string config_yaml(const std::vector<std::string>& vips,
                               const std::string& extra = "") {
  std::string y = "interfaces: [lc, lb1, lb2, lb3]\nvips:\n";
  for (const auto& v : vips) y += v;
  return y + extra;
}

// Pin and run directories of test processes that died before their teardown (pid gone).
// Their namespaces are swept by NetNs; their sluiced unpinned itself on PR_SET_PDEATHSIG
// unless it was killed too.
inline void sweep_stale_dirs() {
  static const std::regex kOurs(R"(^s[a-z]+-it-([0-9]+)-[0-9]+$)");
  for (const char* parent : {"/sys/fs/bpf", "/tmp"}) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(parent, ec)) {
      std::smatch m;
      std::string name = e.path().filename();
      if (!std::regex_match(name, m, kOurs)) continue;
      if (name.rfind("sluice-it-", 0) != 0 && name.rfind("sl-it-", 0) != 0) continue;
      pid_t pid = static_cast<pid_t>(std::stol(m[1]));
      if (pid != getpid() && kill(pid, 0) != 0 && errno == ESRCH) fs::remove_all(e.path(), ec);
    }
  }
}

// ---- fixture -------------------------------------------------------------------------------

class LbIntegration : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = skip_reason()) GTEST_SKIP() << *why;
    for (const char* bin : {kSluiced, kSluicectl, kSlEcho, kSlProbe}) {
      ASSERT_TRUE(fs::exists(bin)) << bin << " is not built";
    }
    static std::once_flag swept;
    std::call_once(swept, sweep_stale_dirs);
    static std::atomic<int> counter{0};
    std::string id = std::to_string(getpid()) + "-" + std::to_string(counter.fetch_add(1));
    pin_dir_ = "/sys/fs/bpf/sluice-it-" + id;
    // Config, logs and ready files; named after our pid so a crashed run's is swept.
    fs::path rundir = "/tmp/sl-it-" + id;
    ASSERT_EQ(mkdir(rundir.c_str(), 0700), 0) << rundir << ": " << strerror(errno);
    rundir_ = rundir;
    topo_ = std::make_unique<Topology>(rundir_);
  }

  void TearDown() override {
    if (agent_) {
      std::optional<int> status = agent_->stop(SIGTERM, 10s);
      EXPECT_EQ(status, std::optional<int>(0)) << "sluiced did not exit 0 on SIGTERM (nullopt: "
                                                  "killed after 10 s); log:\n"
                                               << agent_log();
      agent_.reset();
      if (detach_on_exit_) {
        EXPECT_FALSE(fs::exists(pin_dir_)) << "sluiced left its pin dir " << pin_dir_;
        ExpectNoXdp();
      }
    }
    if (HasFailure() && !rundir_.empty() && fs::exists(rundir_ / "sluiced.log")) {
      std::cerr << "---- sluiced log ----\n" << agent_log() << "---------------------\n";
    }
    std::error_code ec;
    // Only does work after a failure, or after a test that left the data path running on
    // purpose (hitless restart): removing the pins, link pins included, detaches it.
    if (!pin_dir_.empty()) fs::remove_all(pin_dir_, ec);
    topo_.reset();
    if (!rundir_.empty()) fs::remove_all(rundir_, ec);
  }

  std::string agent_log() const { return read_file(rundir_ / "sluiced.log"); }

  // Starts sluiced in the LB namespace with `yaml` and waits until it is ready (<pin>/info).
  // With `detach_on_exit` (the default for tests) it removes the data path when it stops;
  // without, it leaves it for the next sluiced (hitless restart), and the log file is
  // appended to.
  void StartAgent(const std::string& yaml, bool detach_on_exit = true) {
    fs::path config = rundir_ / "config.yaml";
    write_file(config, yaml);
    detach_on_exit_ = detach_on_exit;
    std::vector<std::string> argv{kSluiced,    "--config",     config,
                                  "--netns",   topo_->lb.name(), "--pin-dir",
                                  pin_dir_,    "--log-level",  "debug",
                                  "--api-socket", api_socket()};
    if (detach_on_exit) argv.push_back("--detach-on-exit");
    // Ready: the agent logged it (a restarted agent finds the earlier one's pins in place, so
    // the pins alone do not say that this one is up).
    auto readies = [&] {
      const std::string log = agent_log();
      size_t n = 0;
      for (size_t at = log.find("sluiced ready"); at != std::string::npos;
           at = log.find("sluiced ready", at + 1))
        ++n;
      return n;
    };
    const size_t before = readies();
    agent_ = std::make_unique<Child>(argv, rundir_ / "sluiced.log");
    fs::path info = pin_dir_ / "info";
    bool ready = wait_until([&] { return readies() > before || agent_->poll(); }, 10s);
    ASSERT_TRUE(ready && fs::exists(info) && !agent_->poll())
        << "sluiced not ready within 10 s (exit status "
        << (agent_->poll() ? std::to_string(*agent_->poll()) : "none: still running") << "); log:\n"
        << agent_log();
    // Ready means attached: otherwise the "no XDP after teardown" check would prove nothing.
    for (const char* ifname : {"lc", "lb1", "lb2", "lb3"}) {
      CmdResult r = topo_->lb.exec(std::string("ip -d link show dev ") + ifname);
      ASSERT_NE(r.out.find("prog/xdp"), std::string::npos)
          << "no XDP program on " << ifname << " after sluiced is ready:\n"
          << r.out;
    }
  }

  // No interface of the LB namespace has an XDP program attached.
  void ExpectNoXdp() {
    CmdResult r = topo_->lb.exec("ip -d link show");
    EXPECT_EQ(r.status, 0) << r.out;
    static const std::regex kXdp(R"(\bxdp(generic|drv|offload)?\b)");
    EXPECT_FALSE(std::regex_search(r.out, kXdp)) << "XDP still attached:\n" << r.out;
  }

  fs::path api_socket() const { return rundir_ / "sluiced.sock"; }

  // `sluicectl --pin-dir D --api-socket S <args>`; fails the test when it exits non-zero.
  std::string Sluicectl(const std::string& args) {
    CmdResult r = run(std::string(kSluicectl) + " --pin-dir " + shell_quote(pin_dir_.string()) +
                      " --api-socket " + shell_quote(api_socket().string()) + " " + args +
                      " 2>&1");
    EXPECT_EQ(r.status, 0) << "sluicectl " << args << ":\n" << r.out;
    return r.out;
  }

  fs::path rundir_;
  fs::path pin_dir_;
  bool detach_on_exit_ = true;
  std::unique_ptr<Topology> topo_;
  std::unique_ptr<Child> agent_;  // declared last: stopped before the topology goes
};

}  // namespace sluice::test
