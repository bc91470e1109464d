// Congestion control per connection end to end (issue #12): the real sluiced with a
// `congestion:` section whose cgroup is one of the test's own; real TCP connections from the
// load balancer's namespace to the backends show the rule's algorithm, initial window and
// buffers in the kernel (TCP_INFO, `ss -ti`) and in `sluicectl cc`; a reload changes new
// connections only; kill -9 and a restart keep the policy applying with one attachment;
// --detach-on-exit leaves no sockops program, no sluice_aimd and no pins.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "agent.h"
#include "cc_util.h"
#include "cgroup.h"

namespace sluice::test {
namespace {

using nlohmann::json;

constexpr uint16_t kIperfPort = 5201;

int sndbuf_of(int fd) {
  int v = 0;
  socklen_t len = sizeof(v);
  getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, &len);
  return v;
}

std::string host_default_cc() {
  std::string s = read_file("/proc/sys/net/ipv4/tcp_congestion_control");
  return s.substr(0, s.find_first_of("\n "));
}

class CcE2e : public LbIntegration {
 protected:
  void SetUp() override {
    LbIntegration::SetUp();
    if (IsSkipped() || HasFailure()) return;
    // A server on port 5201 of backend 2 (sl-echo serves 80 and 8080), outside the policy's
    // cgroup like the backends' servers: only the client side of a connection is matched.
    listener_ = topo_->backends[1]->in([] {
      int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      int one = 1;
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(kIperfPort);
      bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
      listen(fd, 64);
      return fd;
    });
    ASSERT_GE(listener_, 0);
    cg_ = std::make_unique<TestCgroup>("cce2e");
    cg_->enter();  // every socket made from here on is the policy's
  }
  void TearDown() override {
    for (int fd : conns_) close(fd);
    conns_.clear();
    if (listener_ >= 0) close(listener_);
    LbIntegration::TearDown();
    cg_.reset();
  }

  // A config with one nat VIP and `congestion` (YAML, indented under the key).
  std::string config(const std::string& rules) {
    return config_yaml({vip_yaml("198.19.0.1", 80, "tcp", "nat", 80)},
                       "congestion:\n  cgroup: " + cg_->path() + "\n" + rules);
  }

  // A connection from the LB's namespace to backend n's address, held open.
  int connect_to(int n, uint16_t port) {
    std::string err;
    const std::string src = std::string(kTopoBackend4Prefix) + std::to_string(n) + ".1";
    int fd = client_socket(topo_->lb, SOCK_STREAM, src, Topology::backend4(n), port, err);
    EXPECT_GE(fd, 0) << err;
    if (fd >= 0) conns_.push_back(fd);
    return fd;
  }

  json cc_json(const std::string& args = "") {
    return json::parse(Sluicectl("cc -o json " + args));
  }

  // The `sluicectl cc` entry of the connection from local port `lport`, or null.
  json entry_of(int fd) {
    sockaddr_in a{};
    socklen_t len = sizeof(a);
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    const std::string local = "198.18." + std::to_string(a.sin_addr.s_addr >> 16 & 0xff) +
                              ".1:" + std::to_string(ntohs(a.sin_port));
    for (const json& c : cc_json())
      if (c["local"] == local) return c;
    return nullptr;
  }

  std::unique_ptr<TestCgroup> cg_;
  int listener_ = -1;
  std::vector<int> conns_;
};

const char kRules[] = R"(  rules:
    - name: net-a
      destination: 198.18.1.0/24
      algorithm: bbr
    - name: net-b-iperf
      destination: 198.18.2.0/24
      port: 5201
      algorithm: sluice_aimd
      initial_cwnd: 32
      sndbuf: 131072
  default:
    algorithm: cubic
)";

TEST_F(CcE2e, EachDestinationGetsItsRuleInTheKernelAndInSluicectl) {
  if (!cc_available("bbr")) GTEST_SKIP() << "the kernel offers no bbr";
  StartAgent(config(kRules));
  const int a = connect_to(1, 80);
  const int b = connect_to(2, kIperfPort);
  const int b_other_port = connect_to(2, 80);
  const int c = connect_to(3, 80);
  ASSERT_TRUE(a >= 0 && b >= 0 && b_other_port >= 0 && c >= 0);
  EXPECT_EQ(cc_of(a), "bbr");
  EXPECT_EQ(cc_of(b), "sluice_aimd");
  EXPECT_EQ(cwnd_of(b), 32u) << "IW 32 before any data";
  EXPECT_EQ(sndbuf_of(b), 2 * 131072) << "the kernel keeps twice SO_SNDBUF";
  EXPECT_EQ(cc_of(b_other_port), "cubic") << "port 80 is not net-b-iperf's: the default";
  EXPECT_EQ(cc_of(c), "cubic");

  // ss -ti says the same.
  CmdResult ss = topo_->lb.exec("ss -tin dst 198.18.2.2:5201");
  EXPECT_NE(ss.out.find("sluice_aimd"), std::string::npos) << ss.out;
  EXPECT_NE(ss.out.find("cwnd:32"), std::string::npos) << ss.out;

  // sluicectl cc lists each with its rule and algorithm.
  json eb = entry_of(b), ea = entry_of(a), ec = entry_of(c);
  ASSERT_FALSE(eb.is_null()) << Sluicectl("cc");
  EXPECT_EQ(eb["cc"], "sluice_aimd");
  EXPECT_EQ(eb["rule"], "net-b-iperf");
  EXPECT_EQ(ea["cc"], "bbr");
  EXPECT_EQ(ec["rule"], "default");
  json rules = json::parse(Sluicectl("cc --rules -o json"));
  auto applied = [&](const std::string& name) -> int {
    for (const json& r : rules["rules"])
      if (r["name"] == name) return r["applied"].get<int>();
    return -1;
  };
  EXPECT_EQ(applied("net-a"), 1) << rules.dump(2);
  EXPECT_EQ(applied("net-b-iperf"), 1);
  EXPECT_EQ(applied("default"), 2);

  // And /metrics, from inside the LB namespace (the scrape's own connection falls to the
  // default rule, so only the other rules' series are exact here).
  CmdResult m = topo_->lb.exec("curl -s 127.0.0.1:9435/metrics");
  for (const char* line :
       {"sluice_cc_rule_connections_total{rule=\"net-b-iperf\",result=\"applied\"} 1",
        "sluice_cc_rule_connections_total{rule=\"net-a\",result=\"applied\"} 1",
        "sluice_cc_rule_connections_total{rule=\"net-a\",result=\"failed\"} 0",
        "sluice_cc_connections{algorithm=\"sluice_aimd\"} 1"})
    EXPECT_NE(m.out.find(line), std::string::npos) << "no `" << line << "` in:\n" << m.out;
}

TEST_F(CcE2e, ReloadChangesNewConnectionsOnlyAndNoDefaultLeavesTheRestAlone) {
  StartAgent(config(kRules));
  const int before = connect_to(1, 80);
  const std::string first = cc_of(before);
  // net-a now reno, and no default.
  std::string rules = kRules;
  rules.replace(rules.find("algorithm: bbr"), 14, "algorithm: reno");
  rules = rules.substr(0, rules.find("  default:"));
  write_file(rundir_ / "config.yaml", config(rules));
  Sluicectl("reload");
  const int after = connect_to(1, 80);
  EXPECT_EQ(cc_of(after), "reno");
  EXPECT_EQ(cc_of(before), first) << "a reload changed an established connection";
  const int unmatched = connect_to(3, 80);
  EXPECT_EQ(cc_of(unmatched), host_default_cc());
  EXPECT_TRUE(entry_of(unmatched).is_null()) << "an unmatched connection is tracked:\n"
                                             << Sluicectl("cc");
}

// The sockops programs attached to the test's cgroup (bpftool cgroup show).
int sockops_attached(const std::string& cgroup) {
  CmdResult r = run("bpftool cgroup show " + cgroup);
  int n = 0;
  for (size_t at = r.out.find("sock_ops"); at != std::string::npos;
       at = r.out.find("sock_ops", at + 1))
    ++n;
  return n;
}

TEST_F(CcE2e, KillNineAndRestartKeepThePolicyWithOneAttachment) {
  StartAgent(config(kRules), /*detach_on_exit=*/false);
  EXPECT_EQ(sockops_attached(cg_->path()), 1);
  agent_->stop(SIGKILL, 1s);
  // No agent: the pinned link and the pinned struct_ops keep working.
  const int during = connect_to(2, kIperfPort);
  EXPECT_EQ(cc_of(during), "sluice_aimd");
  EXPECT_EQ(cwnd_of(during), 32u);
  StartAgent(config(kRules), /*detach_on_exit=*/true);
  EXPECT_EQ(sockops_attached(cg_->path()), 1) << "a restart attached the policy twice";
  EXPECT_NE(agent_log().find("took over the sockops link"), std::string::npos);
  const int after = connect_to(2, kIperfPort);
  EXPECT_EQ(cc_of(after), "sluice_aimd");
  // The connection made while the agent was down is in the adopted table.
  EXPECT_FALSE(entry_of(during).is_null()) << Sluicectl("cc");
}

TEST_F(CcE2e, DetachOnExitLeavesNoProgramNoAlgorithmNoPins) {
  StartAgent(config(kRules));
  const int b = connect_to(2, kIperfPort);
  EXPECT_EQ(cc_of(b), "sluice_aimd");
  EXPECT_TRUE(cc_available("sluice_aimd"));
  for (int fd : conns_) close(fd);
  conns_.clear();
  // sluice_aimd's users drop as the sockets finish closing.
  ASSERT_TRUE(wait_until(
      [&] {
        return json::parse(Sluicectl("cc --rules -o json"))["algorithm_users"].value("sluice_aimd",
                                                                                     1) == 0;
      },
      5s))
      << Sluicectl("cc --rules");
  std::optional<int> status = agent_->stop(SIGTERM, 10s);
  EXPECT_EQ(status, std::optional<int>(0)) << agent_log();
  agent_.reset();
  EXPECT_EQ(sockops_attached(cg_->path()), 0);
  EXPECT_FALSE(cc_available("sluice_aimd")) << "sluice_aimd still registered";
  EXPECT_FALSE(fs::exists(pin_dir_ / "cc"));
  EXPECT_FALSE(fs::exists(pin_dir_));
}

// An operator takes the section out, then puts it back: each reload leaves the cgroup with
// exactly the policy the file says, and sluice_aimd registered only while it is wanted.
TEST_F(CcE2e, RemovingTheSectionOnReloadDetachesAndPuttingItBackAttaches) {
  StartAgent(config(kRules));
  ASSERT_EQ(sockops_attached(cg_->path()), 1);
  write_file(rundir_ / "config.yaml", config_yaml({vip_yaml("198.19.0.1", 80, "tcp", "nat", 80)}));
  Sluicectl("reload");
  EXPECT_EQ(sockops_attached(cg_->path()), 0);
  EXPECT_FALSE(cc_available("sluice_aimd"));
  EXPECT_FALSE(fs::exists(pin_dir_ / "cc"));
  const int untouched = connect_to(2, kIperfPort);
  EXPECT_EQ(cc_of(untouched), host_default_cc());
  write_file(rundir_ / "config.yaml", config(kRules));
  Sluicectl("reload");
  EXPECT_EQ(sockops_attached(cg_->path()), 1);
  const int again = connect_to(2, kIperfPort);
  EXPECT_EQ(cc_of(again), "sluice_aimd");
  EXPECT_EQ(cwnd_of(again), 32u);
}

TEST_F(CcE2e, UnknownAlgorithmIsANamedConfigError) {
  const fs::path bad = rundir_ / "bad.yaml";
  write_file(bad, config("  rules:\n    - destination: 198.18.1.0/24\n      algorithm: vegas2\n"));
  CmdResult r = run(std::string(kSluiced) + " --check --config " + bad.string());
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_NE(r.out.find("vegas2"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("sluice_aimd"), std::string::npos) << r.out;
  EXPECT_TRUE(std::regex_search(
      r.out, std::regex(R"(bad\.yaml:[0-9]+:[0-9]+: congestion\.rules\[0\]\.algorithm)")))
      << "no line named:\n"
      << r.out;
}

}  // namespace
}  // namespace sluice::test
