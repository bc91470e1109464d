// The end-to-end world and the agent process fixture: see agent.h.
#include "agent.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <mutex>
#include <regex>
#include <sstream>
#include <thread>

namespace sluice::test {

const char kSluiced[] = SLUICED_PATH;
const char kSluicectl[] = SLUICECTL_PATH;
const char kSlEcho[] = SL_ECHO_PATH;
const char kSlProbe[] = SL_PROBE_PATH;
const char kSlSpoof[] = SL_SPOOF_PATH;

std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const fs::path& p, const std::string& text) {
  std::ofstream out(p);
  out << text;
  if (!out) throw std::runtime_error("cannot write " + p.string());
}

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (!pred()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

// ---- Child ---------------------------------------------------------------------------------

Child::Child(const std::vector<std::string>& argv, const fs::path& log) {
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

Child::~Child() {
  if (!status_) stop(SIGKILL, 5s);
}

void Child::signal(int sig) const { kill(pid_, sig); }

std::optional<int> Child::poll() {
  if (status_) return status_;
  int ws = 0;
  pid_t r = waitpid(pid_, &ws, WNOHANG);
  if (r == pid_) status_ = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
  return status_;
}

std::optional<int> Child::stop(int sig, std::chrono::milliseconds timeout) {
  if (poll()) return status_;
  kill(pid_, sig);
  if (wait_until([&] { return poll().has_value(); }, timeout)) return status_;
  kill(pid_, SIGKILL);
  int ws = 0;
  waitpid(pid_, &ws, 0);
  status_ = 128 + SIGKILL;
  return std::nullopt;
}

std::unique_ptr<Child> start_echo(const NetNs& ns, const std::string& name, const std::string& tcp,
                                  const std::string& udp, const fs::path& rundir) {
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

// ---- Topology ------------------------------------------------------------------------------
//
// The steps and their reasons are scripts/topology.sh's; the names and addresses come from
// topology.h.

namespace {

std::string lb_backend_if(int n) { return kTopoLbBackendIfPrefix + std::to_string(n); }

// The LB's interfaces: toward the client, then toward each backend.
std::vector<std::string> lb_ifaces() {
  std::vector<std::string> out{kTopoLbClientIf};
  for (int n = 1; n <= kTopoBackends; ++n) out.push_back(lb_backend_if(n));
  return out;
}

}  // namespace

std::string Topology::source(int i) {
  return kTopoSource4Prefix + std::to_string(kTopoSourceFirst + i);
}
std::string Topology::backend4(int n) { return kTopoBackend4Prefix + std::to_string(n) + ".2"; }
std::string Topology::backend6(int n) { return kTopoBackend6Prefix + std::to_string(n) + "::2"; }

Topology::Topology(const fs::path& rundir) {
  for (int n = 1; n <= kTopoBackends; ++n) {
    backends[n - 1] = std::make_unique<NetNs>("it-b" + std::to_string(n));
  }
  build_links();
  build_lb();
  build_client();
  for (int n = 1; n <= kTopoBackends; ++n) build_backend(n, rundir);
  // DSR rewrites only MACs: the LB needs each backend's neighbour entry before traffic.
  for (int n = 1; n <= kTopoBackends; ++n) {
    lb.must("ping -c1 -W2 -q " + backend4(n) + " >/dev/null && ping -6 -c1 -W2 -q " + backend6(n) +
            " >/dev/null");
  }
}

void Topology::build_links() {
  // No IPv6 duplicate address detection, set before the veths exist so they inherit it.
  std::vector<const NetNs*> all{&client, &lb};
  for (const auto& b : backends) all.push_back(b.get());
  for (const NetNs* ns : all) {
    ns->must("sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0");
  }
  make_veth(client, kTopoClientIf, lb, kTopoLbClientIf);
  for (int n = 1; n <= kTopoBackends; ++n) {
    make_veth(lb, lb_backend_if(n), *backends[n - 1], kTopoBackendIf);
  }
}

void Topology::build_lb() {
  std::string cmd =
      "sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 "
      "net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0";
  for (const std::string& ifc : lb_ifaces()) cmd += " net.ipv4.conf." + ifc + ".rp_filter=0";
  lb.must(cmd);
  lb.must(std::string("ip addr add ") + kTopoLbClient4 + "/24 dev " + kTopoLbClientIf +
          " && ip addr add " + kTopoLbClient6 + "/64 dev " + kTopoLbClientIf + " nodad");
  for (int n = 1; n <= kTopoBackends; ++n) {
    const std::string N = std::to_string(n), dev = lb_backend_if(n);
    lb.must(std::string("ip addr add ") + kTopoBackend4Prefix + N + ".1/24 dev " + dev +
            " && ip addr add " + kTopoBackend6Prefix + N + "::1/64 dev " + dev + " nodad");
  }
}

namespace {

// An XDP program that passes everything, on `dev` in `ns`. A veth hands the frames that its
// peer's XDP program sends back with XDP_TX (the LB's RSTs under on_backend_down: reset) to
// this side, but kicks this side's receive queue for them only when an XDP program runs here:
// with GRO alone they wait until a redirected frame comes along (docs/design.md, "Test
// topology notes"). The attachment goes with the namespace.
void attach_xdp_pass(const NetNs& ns, const std::string& dev) {
  ns.in([&] {
    const bpf_insn pass[] = {
        {BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, XDP_PASS},
        {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},
    };
    const int fd = bpf_prog_load(BPF_PROG_TYPE_XDP, "sl_test_pass", "GPL", pass, 2, nullptr);
    if (fd < 0)
      throw std::runtime_error("load an XDP pass program: " + std::string(strerror(errno)));
    const int err = bpf_xdp_attach(static_cast<int>(if_nametoindex(dev.c_str())), fd,
                                   XDP_FLAGS_DRV_MODE, nullptr);
    close(fd);
    if (err)
      throw std::runtime_error("attach XDP to " + dev + " in " + ns.name() + ": " + strerror(-err));
  });
}

}  // namespace

void Topology::build_client() {
  const std::string dev = kTopoClientIf;
  std::string cmd = std::string("ip addr add ") + kTopoClient4 + "/24 dev " + dev +
                    " && ip addr add " + kTopoClient6 + "/64 dev " + dev + " nodad";
  for (int i = 0; i < kSources; ++i) cmd += " && ip addr add " + source(i) + "/24 dev " + dev;
  client.must(cmd);
  client.must("ethtool -K " + dev + " tx off >/dev/null && ethtool -K " + dev +
              " gro on >/dev/null");
  attach_xdp_pass(client, dev);
  client.must(std::string("ip route add ") + kTopoVipNet4 + " via " + kTopoLbClient4 +
              " && ip -6 route add " + kTopoVipNet6 + " via " + kTopoLbClient6);
}

void Topology::build_backend(int n, const fs::path& rundir) {
  const NetNs& b = *backends[n - 1];
  const std::string N = std::to_string(n), dev = kTopoBackendIf;
  b.must("ip addr add " + backend4(n) + "/24 dev " + dev + " && ip addr add " + backend6(n) +
         "/64 dev " + dev + " nodad");
  b.must("ethtool -K " + dev + " tx off >/dev/null && ethtool -K " + dev + " gro on >/dev/null");
  b.must(std::string("ip route add default via ") + kTopoBackend4Prefix + N +
         ".1 && ip -6 route add default via " + kTopoBackend6Prefix + N + "::1");
  b.must(std::string("ip addr add ") + kTopoDsrVip4 + "/32 dev lo && ip addr add " + kTopoDsrVip6 +
         "/128 dev lo nodad");
  servers.push_back(start_echo(b, kTopoEchoNamePrefix + N, kTopoEchoTcp, kTopoEchoUdp, rundir));
}

std::vector<std::string> v4_sources() {
  std::vector<std::string> s;
  for (int i = 0; i < kSources; ++i) s.push_back(Topology::source(i));
  return s;
}

std::string vip_yaml(const std::string& address, int port, const std::string& proto,
                     const std::string& mode, int backend_port) {
  bool v6 = address.find(':') != std::string::npos;
  std::string y = "  - address: " + address + "\n    port: " + std::to_string(port) +
                  "\n    protocol: " + proto + "\n    scheduler: source-hash\n    mode: " + mode +
                  "\n    backends:\n";
  for (int n = 1; n <= kTopoBackends; ++n) {
    y += "      - {address: " + (v6 ? Topology::backend6(n) : Topology::backend4(n)) +
         ", port: " + std::to_string(backend_port) + ", weight: 1}\n";
  }
  return y;
}

std::string config_yaml(const std::vector<std::string>& vips, const std::string& extra) {
  std::string y = "interfaces: [";
  for (const std::string& ifc : lb_ifaces()) y += (y.back() == '[' ? "" : ", ") + ifc;
  y += "]\nvips:\n";
  for (const auto& v : vips) y += v;
  return y + extra;
}

// Their namespaces are swept by NetNs; their sluiced unpinned itself on PR_SET_PDEATHSIG
// unless it was killed too.
void sweep_stale_dirs() {
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

// ---- LbIntegration -------------------------------------------------------------------------

void LbIntegration::SetUp() {
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

void LbIntegration::TearDown() {
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

void LbIntegration::StartAgent(const std::string& yaml, bool detach_on_exit) {
  fs::path config = rundir_ / "config.yaml";
  write_file(config, yaml);
  detach_on_exit_ = detach_on_exit;
  std::vector<std::string> argv{kSluiced,         "--config",     config,      "--netns",
                                topo_->lb.name(), "--pin-dir",    pin_dir_,    "--log-level",
                                "debug",          "--api-socket", api_socket()};
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
  for (const std::string& ifname : lb_ifaces()) {
    CmdResult r = topo_->lb.exec("ip -d link show dev " + ifname);
    ASSERT_NE(r.out.find("prog/xdp"), std::string::npos)
        << "no XDP program on " << ifname << " after sluiced is ready:\n"
        << r.out;
  }
}

void LbIntegration::ExpectNoXdp() {
  CmdResult r = topo_->lb.exec("ip -d link show");
  EXPECT_EQ(r.status, 0) << r.out;
  static const std::regex kXdp(R"(\bxdp(generic|drv|offload)?\b)");
  EXPECT_FALSE(std::regex_search(r.out, kXdp)) << "XDP still attached:\n" << r.out;
}

std::string LbIntegration::Sluicectl(const std::string& args) {
  CmdResult r = run(std::string(kSluicectl) + " --pin-dir " + shell_quote(pin_dir_.string()) +
                    " --api-socket " + shell_quote(api_socket().string()) + " " + args + " 2>&1");
  EXPECT_EQ(r.status, 0) << "sluicectl " << args << ":\n" << r.out;
  return r.out;
}

}  // namespace sluice::test
