// sluiced as operators run it, end to end with real sockets through the LB namespace:
//  - reload (SIGHUP and `sluicectl reload`) under UDP and TCP traffic: nothing dropped by the
//    switch, established connections keep their backend, a rejected reload changes nothing;
//  - hitless restart: `kill -9 sluiced` and start again, connections and a UDP stream carry on,
//    conntrack and counters continue;
//  - the control API: `sluicectl backend drain|enable|add|remove|weight`, `status`, and its
//    permissions (socket 0600, non-root refused).
#include <grp.h>
#include <gtest/gtest.h>
#include <sluice/api/api_server.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <atomic>
#include <map>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "agent.h"
#include "tcp_conns.h"

namespace sluice::test {
namespace {

using nlohmann::json;

constexpr char kVip[] = "198.19.0.1";
constexpr uint16_t kTcpPort = 90;
constexpr uint16_t kServerPort = 9090;
constexpr char kTcpVip[] = "198.19.0.1:90/tcp";

// A VIP block with the given backends ({backend number 1..3, weight}).
std::string vip_block(uint16_t port, const std::string& proto, uint16_t backend_port,
                      const std::vector<std::pair<int, int>>& backends) {
  std::string y = "  - address: " + std::string(kVip) + "\n    port: " + std::to_string(port) +
                  "\n    protocol: " + proto + "\n    backends:\n";
  for (auto [n, w] : backends)
    y += "      - {address: 198.18." + std::to_string(n) +
         ".2, port: " + std::to_string(backend_port) + ", weight: " + std::to_string(w) + "}\n";
  return y;
}

// The TCP VIP (kTcpPort -> kServerPort, the test's own listeners) and a UDP VIP (53 -> the
// sl-echo servers on 5353), both over `backends`.
std::string ops_config(const std::vector<std::pair<int, int>>& backends,
                       const std::string& extra = "") {
  return config_yaml(
      {vip_block(kTcpPort, "tcp", kServerPort, backends), vip_block(53, "udp", 5353, backends)},
      extra);
}

// A UDP request/response stream from one socket (one source port, so one backend) until
// stopped. Every request waits for its answer (up to 300 ms) before the next one goes.
class UdpStream {
 public:
  UdpStream(const NetNs& ns, const std::string& src) {
    std::string err;
    fd_ = client_socket(ns, SOCK_DGRAM, src, kVip, 53, err);
    if (fd_ < 0) throw std::runtime_error(err);
    timeval tv{0, 300000};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    thread_ = std::thread([this] { loop(); });
  }
  ~UdpStream() {
    stop();
    close(fd_);
  }
  void stop() {
    running_ = false;
    if (thread_.joinable()) thread_.join();
  }
  // Waits until `n` more replies came back than when called.
  bool wait_replies(uint64_t n, std::chrono::milliseconds timeout) {
    const uint64_t target = received_ + n;
    return wait_until([&] { return received_ >= target; }, timeout);
  }
  uint64_t sent() const { return sent_; }
  uint64_t received() const { return received_; }
  std::set<std::string> backends() {
    std::lock_guard<std::mutex> l(mu_);
    return backends_;
  }

 private:
  void loop() {
    char buf[256];
    while (running_) {
      if (send(fd_, "q", 1, 0) != 1) continue;
      ++sent_;
      ssize_t n = recv(fd_, buf, sizeof(buf), 0);
      if (n > 0) {
        ++received_;
        std::lock_guard<std::mutex> l(mu_);
        backends_.insert(std::string(buf, static_cast<size_t>(n)));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  int fd_ = -1;
  std::atomic<bool> running_{true};
  std::atomic<uint64_t> sent_{0}, received_{0};
  std::mutex mu_;
  std::set<std::string> backends_;
  std::thread thread_;
};

class AgentOps : public LbIntegration {
 protected:
  void Start(const std::string& yaml, bool detach_on_exit = true) {
    ASSERT_NO_FATAL_FAILURE(StartAgent(yaml, detach_on_exit));
    if (!servers_) servers_ = std::make_unique<Servers>(*topo_, kServerPort);
  }

  Conn Connect(int i) { return connect_through(*topo_, *servers_, i, kVip, kTcpPort); }

  // Data both ways on an established connection: proves it is alive and on the same server.
  void ExpectAlive(const Conn& c, const std::string& tag) {
    ASSERT_TRUE(c.client && c.server) << tag;
    const std::string up = "up " + tag, down = "down " + tag;
    ASSERT_EQ(send(c.client->get(), up.data(), up.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(up.size()))
        << tag << ": " << strerror(errno);
    EXPECT_EQ(recv_some(c.server->get()), up) << tag << " (client -> backend " << c.backend << ")";
    ASSERT_EQ(send(c.server->get(), down.data(), down.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(down.size()))
        << tag << ": " << strerror(errno);
    std::string got = recv_some(c.client->get());
    EXPECT_EQ(got, down) << tag << " (backend " << c.backend
                         << " -> client): " << (got.empty() ? strerror(errno) : "");
  }

  json Json(const std::string& args) {
    std::string out = Sluicectl(args + " -o json");
    json j = json::parse(out, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << "sluicectl " << args << " printed no JSON:\n" << out;
    return j;
  }
  uint64_t Generation() { return Json("status").value("generation", 0ull); }
  uint64_t TotalDrops() {
    uint64_t sum = 0;
    for (auto& [reason, c] : Json("stats")["drops"].items()) sum += c["packets"].get<uint64_t>();
    return sum;
  }
  // Which backend (1..3) each of the 32 sources reaches with a new connection.
  std::map<int, int> NewConnectionSpread() {
    std::map<int, int> per_backend;
    for (int i = 0; i < kSources; ++i) {
      Conn c = Connect(i);
      if (c.server) ++per_backend[c.backend];
    }
    return per_backend;
  }
  // The flows of the TCP VIP: client -> backend.
  std::map<std::string, std::string> Flows() {
    std::map<std::string, std::string> out;
    for (const json& f : Json("conntrack --vip 198.19.0.1:90"))
      out[f.value("client", "")] = f.value("backend", "");
    return out;
  }
  // sluicectl with the test's API socket, its status and output (stdout and stderr) returned.
  CmdResult Ctl(const std::string& args) {
    return run(std::string(kSluicectl) + " --pin-dir " + shell_quote(pin_dir_.string()) +
               " --api-socket " + shell_quote(api_socket().string()) + " " + args + " ");
  }
  void RewriteConfig(const std::string& yaml) { write_file(rundir_ / "config.yaml", yaml); }

  std::unique_ptr<Servers> servers_;
};

// Weights change, a backend is added (SIGHUP), then one is removed (`sluicectl reload`), all
// while a UDP stream and established TCP connections run: no request is lost, no drop is
// counted, every connection stays on its backend, and new connections see the new config.
TEST_F(AgentOps, ReloadUnderTrafficDropsNothingAndKeepsEstablishedFlows) {
  ASSERT_NO_FATAL_FAILURE(Start(ops_config({{1, 1}, {2, 1}})));
  std::vector<Conn> conns;
  for (int i = 0; i < 8; ++i) conns.push_back(Connect(i));
  for (auto& c : conns) ASSERT_NO_FATAL_FAILURE(ExpectAlive(c, "before"));
  UdpStream stream(topo_->client, Topology::source(20));
  ASSERT_TRUE(stream.wait_replies(20, 3s)) << "the UDP stream does not get answers";
  const uint64_t drops = TotalDrops();
  EXPECT_EQ(Generation(), 1u);

  // 1. SIGHUP: weights change, backend 3 joins.
  RewriteConfig(ops_config({{1, 3}, {2, 1}, {3, 2}}));
  agent_->signal(SIGHUP);
  ASSERT_TRUE(wait_until([&] { return Generation() == 2; }, 5s)) << agent_log();
  ASSERT_TRUE(stream.wait_replies(50, 3s));
  for (auto& c : conns) ASSERT_NO_FATAL_FAILURE(ExpectAlive(c, "after SIGHUP"));
  std::map<int, int> spread = NewConnectionSpread();
  EXPECT_GT(spread[3], 0) << "no new connection reached the added backend 3";

  // 2. API reload: backend 1 leaves. Its established connections finish on it.
  RewriteConfig(ops_config({{2, 1}, {3, 2}}));
  std::string out = Sluicectl("reload");
  EXPECT_NE(out.find("reloaded"), std::string::npos) << out;
  EXPECT_EQ(Generation(), 3u);
  ASSERT_TRUE(stream.wait_replies(50, 3s));
  for (auto& c : conns) ASSERT_NO_FATAL_FAILURE(ExpectAlive(c, "after removing backend 1"));
  spread = NewConnectionSpread();
  EXPECT_EQ(spread[1], 0) << "new connections still reach the removed backend 1";
  EXPECT_GT(spread[2] + spread[3], kSources - 2);
  // `sluicectl vips` shows the removed backend as retired while its flows finish.
  bool retired = false;
  for (const json& v : Json("vips"))
    if (v["vip"] == kTcpVip)
      for (const json& b : v["backends"])
        retired |= b["address"] == "198.18.1.2" && b["state"] == "retired";
  EXPECT_TRUE(retired) << Sluicectl("vips");

  stream.stop();
  EXPECT_EQ(stream.sent(), stream.received())
      << "UDP requests lost across the reloads: " << stream.sent() - stream.received();
  EXPECT_EQ(TotalDrops(), drops) << Sluicectl("stats");
  // Nothing went untracked: the table never filled.
  EXPECT_EQ(Json("stats")["conntrack"]["full_untracked"], 0) << Sluicectl("stats");
  EXPECT_NE(agent_log().find("config " + (rundir_ / "config.yaml").string() + " applied"),
            std::string::npos)
      << agent_log();
}

// A config with errors, sent by SIGHUP and by `sluicectl reload` under traffic: rejected whole
// with every error named by line, the running config (generation, VIPs, flows) untouched.
TEST_F(AgentOps, RejectedReloadUnderTrafficChangesNothing) {
  ASSERT_NO_FATAL_FAILURE(Start(ops_config({{1, 1}, {2, 1}, {3, 1}})));
  std::vector<Conn> conns;
  for (int i = 0; i < 6; ++i) conns.push_back(Connect(i));
  UdpStream stream(topo_->client, Topology::source(21));
  ASSERT_TRUE(stream.wait_replies(20, 3s));
  const json vips_before = Json("vips");

  // Two errors: a bad address (line 7) and a bad port (line 8).
  std::string bad = ops_config({{1, 1}, {2, 1}, {3, 1}});
  bad.replace(bad.find("198.18.1.2"), 10, "198.18.1.x");
  bad.replace(bad.find("198.18.2.2, port: 9090"), 22, "198.18.2.2, port: 99999");
  RewriteConfig(bad);
  agent_->signal(SIGHUP);
  ASSERT_TRUE(wait_until([&] { return agent_log().find("rejected") != std::string::npos; }, 5s))
      << agent_log();
  EXPECT_NE(agent_log().find("config.yaml:7:"), std::string::npos) << agent_log();
  EXPECT_NE(agent_log().find("config.yaml:8:"), std::string::npos) << agent_log();

  CmdResult r = Ctl("reload");
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("config.yaml:7:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("stays in force"), std::string::npos) << r.out;

  // Limits cannot change while running: also a rejection, with the reason.
  RewriteConfig(ops_config({{1, 1}, {2, 1}, {3, 1}}, "limits: {max_vips: 8}\n"));
  r = Ctl("reload");
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("limits.max_vips: cannot change"), std::string::npos) << r.out;

  EXPECT_EQ(Generation(), 1u);
  EXPECT_EQ(Json("vips"), vips_before);
  ASSERT_TRUE(stream.wait_replies(50, 3s));
  for (auto& c : conns) ASSERT_NO_FATAL_FAILURE(ExpectAlive(c, "after the rejected reloads"));
  stream.stop();
  EXPECT_EQ(stream.sent(), stream.received());
}

// kill -9 and start again: the data path never stopped. Connections carry on without a reset
// (even while no agent runs), the UDP stream loses nothing, the new agent adopts the pinned
// maps: the same conntrack entries, counters that continue.
TEST_F(AgentOps, KillNineAndRestartIsHitless) {
  ASSERT_NO_FATAL_FAILURE(Start(ops_config({{1, 1}, {2, 1}, {3, 1}}), /*detach_on_exit=*/false));
  std::vector<Conn> conns;
  for (int i = 0; i < 8; ++i) conns.push_back(Connect(i));
  for (auto& c : conns) ASSERT_NO_FATAL_FAILURE(ExpectAlive(c, "before"));
  UdpStream stream(topo_->client, Topology::source(22));
  ASSERT_TRUE(stream.wait_replies(20, 3s));
  const auto flows_before = Flows();
  ASSERT_EQ(flows_before.size(), conns.size());
  const uint64_t packets_before = Json("stats")["verdicts"]["tx"].get<uint64_t>() +
                                  Json("stats")["verdicts"]["redirect"].get<uint64_t>();

  agent_->stop(SIGKILL, 1s);
  agent_.reset();
  // No agent: XDP still forwards.
  ASSERT_TRUE(fs::exists(pin_dir_ / "info"));
  CmdResult link = topo_->lb.exec("ip -d link show dev lc");
  EXPECT_NE(link.out.find("prog/xdp"), std::string::npos) << link.out;
  ASSERT_TRUE(stream.wait_replies(50, 3s)) << "the stream stopped while no agent ran";
  for (auto& c : conns) ASSERT_NO_FATAL_FAILURE(ExpectAlive(c, "with no agent"));

  ASSERT_NO_FATAL_FAILURE(Start(ops_config({{1, 1}, {2, 1}, {3, 1}})));
  EXPECT_NE(agent_log().find("adopted the data path"), std::string::npos) << agent_log();
  EXPECT_NE(agent_log().find("program replaced in place"), std::string::npos) << agent_log();
  EXPECT_TRUE(Json("status").value("adopted", false));
  ASSERT_TRUE(stream.wait_replies(50, 3s));
  for (auto& c : conns) ASSERT_NO_FATAL_FAILURE(ExpectAlive(c, "after the restart"));
  EXPECT_EQ(Flows(), flows_before) << "conntrack entries changed across the restart";
  const uint64_t packets_after = Json("stats")["verdicts"]["tx"].get<uint64_t>() +
                                 Json("stats")["verdicts"]["redirect"].get<uint64_t>();
  EXPECT_GT(packets_after, packets_before) << "counters restarted instead of continuing";
  // New connections still spread over every backend.
  std::map<int, int> spread = NewConnectionSpread();
  EXPECT_EQ(spread.size(), 3u);
  stream.stop();
  EXPECT_EQ(stream.sent(), stream.received())
      << "UDP requests lost across the restart: " << stream.sent() - stream.received();
}

// SIGTERM without --detach-on-exit leaves the data path (pins, XDP) for the next agent.
TEST_F(AgentOps, SigtermLeavesTheDataPathForTheNextAgent) {
  ASSERT_NO_FATAL_FAILURE(Start(ops_config({{1, 1}, {2, 1}}), /*detach_on_exit=*/false));
  Conn c = Connect(0);
  EXPECT_EQ(agent_->stop(SIGTERM, 10s), std::optional<int>(0)) << agent_log();
  agent_.reset();
  EXPECT_TRUE(fs::exists(pin_dir_ / "info"));
  EXPECT_NE(agent_log().find("leaving the data path running"), std::string::npos) << agent_log();
  ASSERT_NO_FATAL_FAILURE(ExpectAlive(c, "with no agent"));
  // A second agent takes over; it is started with --detach-on-exit, so the fixture's
  // teardown checks that everything goes when it stops.
  ASSERT_NO_FATAL_FAILURE(Start(ops_config({{1, 1}, {2, 1}})));
  ASSERT_NO_FATAL_FAILURE(ExpectAlive(c, "after the takeover"));
}

// Two agents never manage one data path: the second finds the pin directory locked and stops
// with nothing changed.
TEST_F(AgentOps, SecondAgentOnTheSamePinDirIsRefused) {
  ASSERT_NO_FATAL_FAILURE(Start(ops_config({{1, 1}, {2, 1}})));
  const fs::path other = rundir_ / "other.yaml";
  write_file(other, ops_config({{3, 1}}, "metrics: {enabled: false}\n"));
  CmdResult r =
      run(std::string(kSluiced) + " --config " + shell_quote(other.string()) + " --netns " +
          topo_->lb.name() + " --pin-dir " + shell_quote(pin_dir_.string()) + " --api-socket " +
          shell_quote((rundir_ / "other.sock").string()) + " 2>&1");
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("another sluiced is running on it"), std::string::npos) << r.out;
  // The first one still serves its config.
  EXPECT_EQ(Json("status").value("generation", 0ull), 1u);
  EXPECT_GT(NewConnectionSpread()[1], 0);
}

// Issue #13 (6): `sluiced --check --netns` says what a start there would refuse: a namespace
// that does not exist, and interfaces the namespace lacks, each with its line.
TEST_F(AgentOps, CheckWithNetnsNamesAMissingNamespaceAndMissingInterfaces) {
  const fs::path good = rundir_ / "good.yaml", bad = rundir_ / "bad.yaml";
  write_file(good, ops_config({{1, 1}}));
  std::string text = ops_config({{1, 1}});
  text.replace(text.find("interfaces: ["), 13, "interfaces: [nosuch0, ");
  write_file(bad, text);
  auto check = [&](const fs::path& f, const std::string& netns) {
    return run(std::string(kSluiced) + " --check --config " + shell_quote(f.string()) +
               " --netns " + netns + " 2>&1");
  };
  CmdResult ok = check(good, topo_->lb.name());
  EXPECT_EQ(ok.status, 0) << ok.out;
  CmdResult missing = check(bad, topo_->lb.name());
  EXPECT_EQ(missing.status, 2) << missing.out;
  EXPECT_NE(missing.out.find("bad.yaml:1: interfaces[0]: interface 'nosuch0' not found in "
                             "network namespace " +
                             topo_->lb.name()),
            std::string::npos)
      << missing.out;
  CmdResult no_ns = check(good, "sl-no-such-ns-" + std::to_string(getpid()));
  EXPECT_EQ(no_ns.status, 2) << no_ns.out;
  EXPECT_NE(no_ns.out.find("--netns sl-no-such-ns-"), std::string::npos) << no_ns.out;
}

// `sluicectl backend ...` through the control API.
TEST_F(AgentOps, BackendDrainEnableAddRemoveWeight) {
  ASSERT_NO_FATAL_FAILURE(Start(ops_config({{1, 1}, {2, 1}})));
  std::map<int, int> spread = NewConnectionSpread();
  ASSERT_GT(spread[1], 0);
  ASSERT_GT(spread[2], 0);
  // A connection to backend 1, held across its drain.
  Conn on1;
  for (int i = 0; i < kSources && !on1.server; ++i) {
    Conn c = Connect(i);
    if (c.backend == 1) on1 = std::move(c);
  }
  ASSERT_TRUE(on1.server);

  std::string out = Sluicectl("backend drain 198.19.0.1:90/tcp 198.18.1.2:9090");
  EXPECT_NE(out.find("drain done"), std::string::npos) << out;
  spread = NewConnectionSpread();
  EXPECT_EQ(spread[1], 0) << "new connections reach the drained backend 1";
  ASSERT_NO_FATAL_FAILURE(ExpectAlive(on1, "drained backend"));
  bool drained = false;
  for (const json& v : Json("vips"))
    for (const json& b : v["backends"])
      drained |= b["address"] == "198.18.1.2" && b["state"] == "drained";
  EXPECT_TRUE(drained) << Sluicectl("vips");

  Sluicectl("backend enable 198.19.0.1:90/tcp 198.18.1.2:9090");
  EXPECT_GT(NewConnectionSpread()[1], 0);

  // Add backend 3 (port defaults to the VIP's... here the config's backends use 9090, so say it).
  Sluicectl("backend add 198.19.0.1:90/tcp 198.18.3.2:9090 --weight 2");
  EXPECT_GT(NewConnectionSpread()[3], 0);
  Conn on3;
  for (int i = 0; i < kSources && !on3.server; ++i) {
    Conn c = Connect(i);
    if (c.backend == 3) on3 = std::move(c);
  }
  ASSERT_TRUE(on3.server);
  Sluicectl("backend weight 198.19.0.1:90/tcp 198.18.2.2:9090 0");
  spread = NewConnectionSpread();
  EXPECT_EQ(spread[2], 0) << "weight 0 still takes new connections";
  Sluicectl("backend remove 198.19.0.1:90/tcp 198.18.3.2:9090");
  spread = NewConnectionSpread();
  EXPECT_EQ(spread[3], 0);
  EXPECT_EQ(spread[1], kSources);
  ASSERT_NO_FATAL_FAILURE(ExpectAlive(on3, "removed backend"));

  // Mistakes are named.
  CmdResult r = Ctl("backend drain 198.19.0.9:90/tcp 198.18.1.2:9090");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("no VIP '198.19.0.9:90/tcp'; VIPs: 198.19.0.1:90/tcp"), std::string::npos)
      << r.out;
  r = Ctl("backend remove 198.19.0.1:90/tcp 198.18.1.2:9090");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("would have no backend with a weight above 0"), std::string::npos) << r.out;
  r = Ctl("backend weight 198.19.0.1:90/tcp 198.18.1.2:9090 heavy ");
  EXPECT_EQ(r.status, 2) << r.out;
  r = Ctl("backend undrain 198.19.0.1:90/tcp 198.18.1.2:9090");
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_NE(
      r.out.find("unknown action 'undrain'; valid actions: drain, enable, add, remove, weight"),
      std::string::npos)
      << r.out;
}

// A backend the config file would refuse, the API refuses too, in the config's words, with
// nothing changed (generation, `sluicectl vips`, where new connections go). The VIP's own
// address is the regression: before the API ran validate() on the changed config it took it
// (and a multicast address, and port 0), and its own checks of the family and the dsr port had
// other words than the config's.
TEST_F(AgentOps, BackendAddRefusesWhatTheConfigRefuses) {
  ASSERT_NO_FATAL_FAILURE(
      Start(config_yaml({vip_block(kTcpPort, "tcp", kServerPort, {{1, 1}, {2, 1}}),
                         vip_yaml("198.19.0.2", 80, "tcp", "dsr", 80)})));
  const json vips_before = Json("vips");
  const uint64_t generation = Generation();
  const std::string own =
      "the backend address is the VIP's own address; give the backend host's address";
  const struct {
    std::string vip, backend, error;
  } cases[] = {
      {kTcpVip, "198.19.0.1:9090", own},
      {kTcpVip, "198.19.0.1", own},  // a bare address: the VIP's port
      {kTcpVip, "[fd00:18:3::2]:9090",
       "backend fd00:18:3::2 is IPv6 but the VIP 198.19.0.1 is IPv4; a VIP's backends must use "
       "the VIP's address family"},
      {kTcpVip, "224.0.0.1:9090",
       "224.0.0.1 is a multicast address and cannot be a backend; give a unicast address"},
      {kTcpVip, "198.18.3.2:0",
       "port 0 is only valid under a port-0 VIP; use 1..65535, or omit it to use the VIP's port "
       "90"},
      {"198.19.0.2:80/tcp", "198.18.3.2:8080",
       "dsr mode does not rewrite ports, so the backend port must equal the VIP port 80; omit "
       "'port' or set it to 80"},
  };
  for (const auto& c : cases) {
    CmdResult r = Ctl("backend add " + c.vip + " " + c.backend);
    EXPECT_EQ(r.status, 1) << c.backend << " was taken as a backend of " << c.vip << ":\n" << r.out;
    EXPECT_NE(r.out.find(c.error), std::string::npos) << c.backend << ":\n" << r.out;
  }
  EXPECT_EQ(Generation(), generation);
  EXPECT_EQ(Json("vips"), vips_before);
  std::map<int, int> spread = NewConnectionSpread();
  EXPECT_EQ(spread[1] + spread[2], kSources) << "new connections go elsewhere than backends 1, 2";
}

// What a client that skips sluicectl may send: the API itself refuses each malformed request
// with ok false and an error that names what is wrong, and nothing changes.
TEST_F(AgentOps, ApiRefusesMalformedRequestsRaw) {
  ASSERT_NO_FATAL_FAILURE(Start(ops_config({{1, 1}, {2, 1}})));
  const json vips_before = Json("vips");
  const uint64_t generation = Generation();
  const std::string vip = R"("vip":"198.19.0.1:90/tcp")", be = R"("backend":"198.18.1.2:9090")";
  const std::string weight = R"({"cmd":"backend","action":"weight",)" + vip + "," + be;
  const std::string weight_error = "\"weight\" must be an integer 0..65535";
  const struct {
    std::string request, error;
  } cases[] = {
      {weight + R"(,"weight":"2"})", weight_error},
      {weight + R"(,"weight":-1})", weight_error},
      {weight + R"(,"weight":2.5})", weight_error},
      {weight + R"(,"weight":1e20})", weight_error},
      {weight + R"(,"weight":65536})", weight_error},
      {weight + R"(,"weight":true})", weight_error},
      {weight + R"(,"weight":{"n":2}})", weight_error},
      {weight + "}", weight_error},
      {R"({"cmd":"backend","action":"weight",)" + vip + R"(,"backend":1,"weight":2})",
       "\"backend\" must be a string, not number"},
      {R"({"cmd":"backend","action":"drain",)" + vip + R"(,"backend":["198.18.1.2:9090"]})",
       "\"backend\" must be a string, not array"},
      {R"({"cmd":"backend","action":"drain","vip":90,)" + be + "}",
       "\"vip\" must be a string, not number"},
      {R"({"cmd":"backend","action":7,)" + vip + "," + be + "}",
       "\"action\" must be a string, not number"},
      {R"({"cmd":"backend","action":"drain",)" + vip + "}", "missing \"backend\""},
      {R"({"cmd":"backend","action":"explode",)" + vip + "," + be + "}",
       "drain, enable, add, remove, weight"},
      {R"({"cmd":"nope"})", "status, vips, backend, reload"},
      {R"({"cmd":5})", "missing \"cmd\""},
      {R"(["status"])", "one JSON object"},
      {R"({"cmd":"status")", "not valid JSON"},
  };
  for (const auto& c : cases) {
    auto r = api_call(api_socket(), c.request, std::chrono::seconds(3));
    ASSERT_TRUE(r) << c.request << ": " << r.error().message;
    json j = json::parse(*r, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << c.request << " got no JSON: " << *r;
    EXPECT_EQ(j.value("ok", true), false) << c.request << " was taken: " << *r;
    EXPECT_NE(j.value("error", "").find(c.error), std::string::npos)
        << c.request << "\n  answer: " << *r << "\n  expected to contain: " << c.error;
  }
  EXPECT_EQ(Generation(), generation);
  EXPECT_EQ(Json("vips"), vips_before);
  // The agent still answers a good request on the same socket.
  EXPECT_EQ(Json("status").value("ok", false), true);
}

// The API socket is 0600 and answers root only: a non-root process cannot connect, and if the
// mode is widened by hand, the server still refuses it by its credentials.
TEST_F(AgentOps, ApiRefusesNonRoot) {
  ASSERT_NO_FATAL_FAILURE(Start(ops_config({{1, 1}, {2, 1}})));
  struct stat st {};
  ASSERT_EQ(stat(api_socket().c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(st.st_uid, 0u);

  // As uid/gid 65534 (nobody): 0 = answered, 1 = connect refused with EACCES, 2 = other.
  auto as_nobody = [&](std::string* answer) {
    int pipefd[2];
    EXPECT_EQ(pipe(pipefd), 0);
    pid_t pid = fork();
    if (pid == 0) {
      close(pipefd[0]);
      if (setgroups(0, nullptr) != 0 || setgid(65534) != 0 || setuid(65534) != 0) _exit(3);
      auto r = api_call(api_socket(), R"({"cmd":"status"})", std::chrono::seconds(3));
      if (!r) _exit(r.error().code == EACCES ? 1 : 2);
      (void)!write(pipefd[1], r->data(), r->size());
      _exit(0);
    }
    close(pipefd[1]);
    char buf[512];
    ssize_t n;
    while ((n = read(pipefd[0], buf, sizeof(buf))) > 0) answer->append(buf, static_cast<size_t>(n));
    close(pipefd[0]);
    int ws = 0;
    waitpid(pid, &ws, 0);
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
  };
  std::string answer;
  EXPECT_EQ(as_nobody(&answer), 1) << "a non-root client got through: " << answer;

  // Widen the socket and its directory: the connection now succeeds, the request does not.
  ASSERT_EQ(chmod(rundir_.c_str(), 0755), 0);
  ASSERT_EQ(chmod(api_socket().c_str(), 0666), 0);
  answer.clear();
  EXPECT_EQ(as_nobody(&answer), 0);
  EXPECT_NE(answer.find("permission denied"), std::string::npos) << answer;
  EXPECT_NE(agent_log().find("refused a request from uid 65534"), std::string::npos);
  // Root still gets its answer.
  EXPECT_EQ(Json("status").value("ok", false), true);
}

}  // namespace
}  // namespace sluice::test
