// End-to-end tests: the real sluiced attaches XDP to the veths of a load-balancer namespace,
// and real TCP/UDP clients in a client namespace reach sl-echo backends through the VIPs.
//
// The world and the fixture are in tests/common/agent.h.
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "agent.h"
#include "param_name.h"

namespace sluice::test {
namespace {

constexpr int kRounds = 5;
// Loose on purpose: with 32 sources and 3 equal backends, Maglev gives ~10.7 each; 60% (19)
// would mean the hash is badly skewed, not unlucky.
constexpr double kMaxShare = 0.60;

// kRounds rounds, one probe per source each: every probe must be answered, each source must
// stay on one backend, every backend must get some sources and none more than kMaxShare.
// Returns how many probes each backend answered.
std::map<std::string, int> expect_sticky_and_spread(
    const std::vector<std::string>& sources,
    const std::function<Probe(const std::string&)>& probe) {
  std::map<std::string, std::string> first;  // source -> backend of round 0
  std::map<std::string, int> answered;
  for (int round = 0; round < kRounds; ++round) {
    std::vector<Probe> results = probe_all(sources, probe);
    for (size_t i = 0; i < sources.size(); ++i) {
      const Probe& r = results[i];
      EXPECT_TRUE(r.ok()) << "round " << round << ": " << r.error;
      if (!r.ok()) continue;
      ++answered[r.backend];
      auto [it, inserted] = first.emplace(sources[i], r.backend);
      EXPECT_EQ(it->second, r.backend) << sources[i] << " moved in round " << round;
    }
  }
  std::map<std::string, int> sources_per_backend;
  for (const auto& [src, backend] : first) ++sources_per_backend[backend];
  std::ostringstream dist;
  for (const auto& [b, n] : sources_per_backend) dist << b << "=" << n << " ";
  for (const char* b : {"backend-1", "backend-2", "backend-3"}) {
    EXPECT_GT(sources_per_backend[b], 0) << b << " got no source; distribution: " << dist.str();
    EXPECT_LE(sources_per_backend[b], kMaxShare * sources.size())
        << b << " got too many sources; distribution: " << dist.str();
  }
  return answered;
}

// (a) NAT UDP: stateless fast path, reverse NAT of the replies.
TEST_F(LbIntegration, NatUdpSticksAndSpreads) {
  ASSERT_NO_FATAL_FAILURE(
      StartAgent(config_yaml({vip_yaml("198.19.0.1", 53, "udp", "nat", 5353)})));
  const NetNs& c = topo_->client;
  expect_sticky_and_spread(v4_sources(),
                           [&](const std::string& s) { return udp_probe(c, s, "198.19.0.1", 53); });
}

// (b) NAT TCP: conntrack + reverse NAT; each connection echoes data and closes cleanly.
TEST_F(LbIntegration, NatTcpSticksAndSpreads) {
  ASSERT_NO_FATAL_FAILURE(
      StartAgent(config_yaml({vip_yaml("198.19.0.1", 80, "tcp", "nat", 8080)})));
  const NetNs& c = topo_->client;
  expect_sticky_and_spread(v4_sources(), [&](const std::string& s) {
    return tcp_probe(c, s, "198.19.0.1", 80, payload_for(s));
  });
}

// (c) DSR: only MACs are rewritten; backends answer from the VIP held on their lo.
TEST_F(LbIntegration, DsrUdpAndTcpSticksAndSpreads) {
  ASSERT_NO_FATAL_FAILURE(StartAgent(config_yaml({vip_yaml("198.19.0.2", 53, "udp", "dsr", 53),
                                                  vip_yaml("198.19.0.2", 80, "tcp", "dsr", 80)})));
  const NetNs& c = topo_->client;
  expect_sticky_and_spread(v4_sources(),
                           [&](const std::string& s) { return udp_probe(c, s, "198.19.0.2", 53); });
  expect_sticky_and_spread(v4_sources(), [&](const std::string& s) {
    return tcp_probe(c, s, "198.19.0.2", 80, payload_for(s));
  });

  // Longer-lived connections through sl-probe: data every 50 ms for 300 ms, all echoed, and the
  // same backend as the in-process clients saw for that source.
  std::string expected = tcp_probe(c, Topology::source(0), "198.19.0.2", 80, "x").backend;
  CmdResult r = c.exec(std::string(kSlProbe) + " --proto tcp --dst 198.19.0.2 --port 80 --src " +
                       Topology::source(0) + " --count 3 --hold-ms 300");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(r.out, expected + "\n" + expected + "\n" + expected + "\n");
}

// (d) IPv6 NAT TCP, with 32 IPv6 sources.
TEST_F(LbIntegration, Ipv6NatTcpSticksAndSpreads) {
  const NetNs& c = topo_->client;
  std::vector<std::string> sources;
  std::string cmd = "true";
  for (int i = 0; i < kSources; ++i) {
    sources.push_back("fd00:18::" + std::to_string(100 + i));
    cmd += " && ip addr add " + sources.back() + "/64 dev c0 nodad";
  }
  c.must(cmd);
  ASSERT_NO_FATAL_FAILURE(
      StartAgent(config_yaml({vip_yaml("fd00:19::1", 80, "tcp", "nat", 8080)})));
  expect_sticky_and_spread(sources, [&](const std::string& s) {
    return tcp_probe(c, s, "fd00:19::1", 80, payload_for(s));
  });
}

// (e) sluice leaves the host's own traffic alone while attached.
TEST_F(LbIntegration, NonVipTrafficPassesToTheKernel) {
  ASSERT_NO_FATAL_FAILURE(
      StartAgent(config_yaml({vip_yaml("198.19.0.1", 80, "tcp", "nat", 8080)})));
  const NetNs& c = topo_->client;
  CmdResult ping = c.exec("ping -c2 -i0.2 -W2 198.18.0.1");
  EXPECT_EQ(ping.status, 0) << ping.out;
  CmdResult ping6 = c.exec("ping -6 -c2 -i0.2 -W2 fd00:18::1");
  EXPECT_EQ(ping6.status, 0) << ping6.out;

  // A server in the LB namespace itself, on addresses and ports that are no VIP.
  auto local = start_echo(topo_->lb, "lb-local", "9000", "9053", rundir_);
  for (std::string dst : {"198.18.0.1", "fd00:18::1"}) {
    std::string src = dst == "198.18.0.1" ? "198.18.0.2" : "fd00:18::2";
    Probe t = tcp_probe(c, src, dst, 9000, payload_for(src));
    EXPECT_TRUE(t.ok()) << t.error;
    EXPECT_EQ(t.backend, "lb-local");
    Probe u = udp_probe(c, src, dst, 9053);
    EXPECT_TRUE(u.ok()) << u.error;
    EXPECT_EQ(u.backend, "lb-local");
  }
  // Also from a backend: the return path interfaces (lbN) carry XDP too.
  CmdResult from_backend = topo_->backends[0]->exec("ping -c1 -W2 198.18.1.1");
  EXPECT_EQ(from_backend.status, 0) << from_backend.out;
}

// (f) The CLI reads the pinned counters: per-backend packets add up to what was forwarded.
TEST_F(LbIntegration, StatsJsonCountsForwardedTraffic) {
  ASSERT_NO_FATAL_FAILURE(
      StartAgent(config_yaml({vip_yaml("198.19.0.1", 53, "udp", "nat", 5353),
                              vip_yaml("198.19.0.1", 80, "tcp", "nat", 8080)})));
  const NetNs& c = topo_->client;
  std::vector<Probe> udp = probe_all(
      v4_sources(), [&](const std::string& s) { return udp_probe(c, s, "198.19.0.1", 53); });
  std::vector<Probe> tcp = probe_all(v4_sources(), [&](const std::string& s) {
    return tcp_probe(c, s, "198.19.0.1", 80, payload_for(s));
  });
  std::map<std::string, int> requests;  // "vip" string of sluicectl -> answered requests
  for (const Probe& p : udp) {
    ASSERT_TRUE(p.ok()) << p.error;
    ++requests["198.19.0.1:53/udp"];
  }
  for (const Probe& p : tcp) {
    ASSERT_TRUE(p.ok()) << p.error;
    ++requests["198.19.0.1:80/tcp"];
  }

  std::string out = Sluicectl("-o json stats");
  nlohmann::json j = nlohmann::json::parse(out, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(j.is_discarded()) << "not JSON:\n" << out;
  ASSERT_TRUE(j.contains("backends") && j["backends"].is_array()) << out;
  std::map<std::string, uint64_t> per_vip;
  int backends_seen = 0;
  for (const auto& b : j["backends"]) {
    std::string vip = b.value("vip", "");
    uint64_t packets = b.value("packets", uint64_t{0});
    EXPECT_GT(packets, 0u) << "backend without packets: " << b.dump();
    per_vip[vip] += packets;
    ++backends_seen;
  }
  EXPECT_EQ(backends_seen, 6) << out;
  for (const auto& [vip, n] : requests) {
    // UDP: one packet per request. TCP: several per connection, at least one.
    EXPECT_GE(per_vip[vip], static_cast<uint64_t>(n)) << vip << " in\n" << out;
  }
  ASSERT_TRUE(j.contains("vips") && j["vips"].is_array()) << out;
  for (const auto& v : j["vips"]) EXPECT_GT(v.value("packets", uint64_t{0}), 0u) << v.dump();
  ASSERT_TRUE(j.contains("verdicts")) << out;
  EXPECT_GT(j["verdicts"].value("redirect", uint64_t{0}) + j["verdicts"].value("tx", uint64_t{0}),
            0u)
      << out;

  // The text forms work too.
  EXPECT_NE(Sluicectl("vips").find("198.19.0.1"), std::string::npos);
  Sluicectl("stats");
}

// (g) A bad config is refused whole: exit code 2, a FILE:LINE:COL: FIELD: MESSAGE line on
// stderr, nothing attached and nothing pinned.
struct BadConfigCase {
  const char* name;
  std::string yaml;
  const char* field;  // expected in the error line
};
// Names the case in test listings instead of a byte dump of the struct.
void PrintTo(const BadConfigCase& c, std::ostream* os) { *os << c.name; }

class LbBadConfig : public LbIntegration, public ::testing::WithParamInterface<BadConfigCase> {};

TEST_P(LbBadConfig, IsRejectedAndNothingIsAttached) {
  const BadConfigCase& bc = GetParam();
  fs::path config = rundir_ / "bad.yaml";
  write_file(config, bc.yaml);
  Child agent({kSluiced, "--config", config, "--netns", topo_->lb.name(), "--pin-dir", pin_dir_},
              rundir_ / "bad.log");
  bool exited = wait_until([&] { return agent.poll().has_value(); }, 10s);
  ASSERT_TRUE(exited) << "sluiced still running with a bad config";
  std::string log = read_file(rundir_ / "bad.log");
  EXPECT_EQ(agent.poll(), std::optional<int>(2)) << log;
  // FILE:LINE:COL: FIELD: MESSAGE
  std::regex line(
      std::regex_replace(config.string(), std::regex(R"([.^$|()\[\]{}*+?\\])"), R"(\$&)") +
      R"(:[0-9]+:[0-9]+: [^\n]*)" + bc.field);
  EXPECT_TRUE(std::regex_search(log, line))
      << "no '" << config.string() << ":LINE:COL: ..." << bc.field << "...' line in:\n"
      << log;
  EXPECT_FALSE(fs::exists(pin_dir_)) << "pinned despite the bad config";
  ExpectNoXdp();
}

std::string good_vip() { return vip_yaml("198.19.0.1", 80, "tcp", "nat", 8080); }

INSTANTIATE_TEST_SUITE_P(
    Cases, LbBadConfig,
    ::testing::Values(
        BadConfigCase{"UnknownField", config_yaml({good_vip() + "    colour: blue\n"}), "colour"},
        BadConfigCase{"BadAddress", config_yaml({vip_yaml("198.19.0.300", 80, "tcp", "nat", 8080)}),
                      "address"},
        BadConfigCase{"DuplicateVip", config_yaml({good_vip(), good_vip()}), "vips\\[1\\]"},
        BadConfigCase{"ZeroBackends",
                      config_yaml({"  - address: 198.19.0.1\n    port: 80\n    protocol: tcp\n"
                                   "    mode: nat\n    backends: []\n"}),
                      "backends"}),
    ParamName());

}  // namespace
}  // namespace sluice::test
