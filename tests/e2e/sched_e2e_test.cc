// Round-robin and least-conn end to end: the real sluiced with its own VIPs for them, real TCP
// connections from the client namespace to the sl-echo backends (which answer with their
// name), `sluicectl vips/stats -o json`, and the live connection counts least-conn uses
// (`backend_conns`, read from its pin).
//
//   198.19.0.1:81/tcp round-robin, nat -> 198.18.N.2:8080, weights 1, 2, 3
//   198.19.0.1:82/tcp least-conn,  nat -> 198.18.N.2:80,   weights 1, 1, 1
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent.h"

namespace sluice::test {
namespace {

using nlohmann::json;

constexpr char kVip[] = "198.19.0.1";
constexpr uint16_t kRrPort = 81;
constexpr uint16_t kLcPort = 82;

// A TCP nat VIP block with the topology's three backends on `backend_port`.
std::string sched_vip_yaml(uint16_t port, const std::string& sched, uint16_t backend_port,
                           const std::array<int, 3>& weights) {
  std::string y = "  - address: " + std::string(kVip) + "\n    port: " + std::to_string(port) +
                  "\n    protocol: tcp\n    scheduler: " + sched +
                  "\n    mode: nat\n    backends:\n";
  for (int n = 1; n <= 3; ++n) {
    y += "      - {address: 198.18." + std::to_string(n) +
         ".2, port: " + std::to_string(backend_port) +
         ", weight: " + std::to_string(weights[n - 1]) + "}\n";
  }
  return y;
}

std::map<std::string, int> tally(const std::vector<std::string>& names) {
  std::map<std::string, int> out;
  for (const auto& n : names) ++out[n];
  return out;
}

std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

class SchedIntegration : public LbIntegration {
 protected:
  void Start() {
    ASSERT_NO_FATAL_FAILURE(
        StartAgent(config_yaml({sched_vip_yaml(kRrPort, "round-robin", 8080, {1, 2, 3}),
                                sched_vip_yaml(kLcPort, "least-conn", 80, {1, 1, 1})})));
  }

  // `count` connections in a row through sl-probe (each with its own source port, each
  // echoing data and closing with FINs); the names of the backends that answered.
  std::vector<std::string> SlProbe(int count, uint16_t port) {
    CmdResult r = topo_->client.exec(std::string(kSlProbe) + " --proto tcp --dst " + kVip +
                                     " --port " + std::to_string(port) + " --src " +
                                     Topology::source(0) + " --count " + std::to_string(count));
    EXPECT_EQ(r.status, 0) << r.out;
    return lines(r.out);
  }

  // Backend name ("backend-N") -> backend id of the VIP on `port`, from `sluicectl vips`.
  std::map<std::string, uint32_t> BackendIds(uint16_t port) {
    json vips = json::parse(Sluicectl("vips -o json"), nullptr, false);
    std::map<std::string, uint32_t> out;
    for (const json& v : vips) {
      if (v["port"] != port) continue;
      for (const json& b : v["backends"]) {
        const std::string addr = b["address"].get<std::string>();  // 198.18.N.2
        out["backend-" + addr.substr(7, 1)] = b["id"].get<uint32_t>();
      }
    }
    EXPECT_EQ(out.size(), 3u) << vips.dump();
    return out;
  }

  // backend_conns[id] for every id, from its pin (bpftool), as least-conn reads it.
  std::map<uint32_t, uint64_t> LiveConns() {
    std::map<uint32_t, uint64_t> out;
    CmdResult r =
        run("bpftool -j map dump pinned " + shell_quote((pin_dir_ / "backend_conns").string()));
    json j = json::parse(r.out, nullptr, false);
    EXPECT_TRUE(r.status == 0 && j.is_array()) << r.out;
    if (!j.is_array()) return out;
    for (const json& e : j) {
      const json& k = e.contains("formatted") ? e["formatted"]["key"] : e["key"];
      const json& v = e.contains("formatted") ? e["formatted"]["value"] : e["value"];
      auto num = [](const json& x) -> uint64_t {
        if (x.is_number()) return x.get<uint64_t>();
        uint64_t n = 0;  // no BTF: little-endian hex bytes
        for (size_t b = 0; b < x.size() && b < 8; ++b)
          n |= std::stoull(x[b].get<std::string>(), nullptr, 16) << (8 * b);
        return n;
      };
      out[static_cast<uint32_t>(num(k))] = num(v);
    }
    return out;
  }

  // Polls until the live counts of the least-conn VIP's backends are `want` (by name).
  void WaitLive(const std::map<std::string, uint64_t>& want) {
    const auto ids = BackendIds(kLcPort);
    std::map<std::string, uint64_t> got;
    const bool ok = wait_until(
        [&] {
          auto live = LiveConns();
          got.clear();
          for (const auto& [name, id] : ids) got[name] = live[id];
          return got == want;
        },
        3000ms);
    std::ostringstream os;
    for (const auto& [name, n] : got) os << name << "=" << n << " ";
    EXPECT_TRUE(ok) << "live connections never matched; last seen: " << os.str();
  }

  // A long-lived connection to the least-conn VIP: connected, greeted; kept open.
  struct Held {
    std::unique_ptr<Fd> fd;
    std::string backend;
  };
  Held Open(int source) {
    Held h;
    std::string err;
    int fd =
        client_socket(topo_->client, SOCK_STREAM, Topology::source(source), kVip, kLcPort, err);
    EXPECT_GE(fd, 0) << err;
    if (fd < 0) return h;
    h.fd = std::make_unique<Fd>(fd);
    std::string buf;
    char c;
    while (recv(fd, &c, 1, 0) == 1 && c != '\n') buf += c;
    EXPECT_FALSE(buf.empty()) << "no greeting from " << Topology::source(source);
    h.backend = buf;
    return h;
  }

  // Closes with a RST (SO_LINGER 0): the flow is CLOSED at once and its count given back.
  static void Reset(Held& h) {
    linger lg{1, 0};
    setsockopt(h.fd->get(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    h.fd.reset();
  }
};

// Weights 1 : 2 : 3 over 60 new connections: exactly 10, 20, 30, whether they come one after
// another or 30 at once; the first six follow the smooth sequence.
TEST_F(SchedIntegration, RoundRobinSpreadsNewConnectionsExactlyByWeight) {
  ASSERT_NO_FATAL_FAILURE(Start());
  const std::string text = Sluicectl("vips");
  EXPECT_NE(text.find("round-robin"), std::string::npos) << text;
  EXPECT_NE(text.find("least-conn"), std::string::npos) << text;
  json vips = json::parse(Sluicectl("vips -o json"), nullptr, false);
  ASSERT_TRUE(vips.is_array());
  for (const json& v : vips) {
    EXPECT_EQ(v["scheduler"], v["port"] == kRrPort ? "round-robin" : "least-conn") << v.dump();
  }

  EXPECT_EQ(SlProbe(6, kRrPort), (std::vector<std::string>{"backend-3", "backend-2", "backend-1",
                                                           "backend-3", "backend-2", "backend-3"}));
  // 30 at once, from 30 sources: five whole periods, in whatever order the CPUs take them.
  std::vector<std::string> sources = v4_sources();
  sources.resize(30);
  std::vector<std::string> names;
  for (const Probe& p : probe_all(sources, [&](const std::string& s) {
         return tcp_probe(topo_->client, s, kVip, kRrPort, payload_for(s));
       })) {
    EXPECT_TRUE(p.ok()) << p.error;
    names.push_back(p.backend);
  }
  EXPECT_EQ(tally(names),
            (std::map<std::string, int>{{"backend-1", 5}, {"backend-2", 10}, {"backend-3", 15}}));
  EXPECT_EQ(tally(SlProbe(24, kRrPort)),
            (std::map<std::string, int>{{"backend-1", 4}, {"backend-2", 8}, {"backend-3", 12}}));

  json stats = json::parse(Sluicectl("stats -o json"), nullptr, false);
  std::map<std::string, uint64_t> new_flows;
  for (const json& b : stats["backends"]) {
    if (b["vip"] == std::string(kVip) + ":" + std::to_string(kRrPort) + "/tcp")
      new_flows[b["address"].get<std::string>()] = b["new_flows"].get<uint64_t>();
  }
  EXPECT_EQ(new_flows,
            (std::map<std::string, uint64_t>{
                {"198.18.1.2:8080", 10}, {"198.18.2.2:8080", 20}, {"198.18.3.2:8080", 30}}))
      << stats.dump();
}

// Least-conn follows the live counts: 30 held connections spread 10/10/10; once the ones on
// backends 2 and 3 are reset, backend 1 holds 10 and the next 20 connections all go to the
// other two, until the three are level again.
TEST_F(SchedIntegration, LeastConnSendsNewConnectionsToTheLeastLoaded) {
  ASSERT_NO_FATAL_FAILURE(Start());
  std::vector<Held> held;
  for (int i = 0; i < 30; ++i) held.push_back(Open(i % kSources));
  std::vector<std::string> names;
  for (const Held& h : held) names.push_back(h.backend);
  EXPECT_EQ(tally(names),
            (std::map<std::string, int>{{"backend-1", 10}, {"backend-2", 10}, {"backend-3", 10}}));
  WaitLive({{"backend-1", 10}, {"backend-2", 10}, {"backend-3", 10}});

  for (Held& h : held) {
    if (h.backend != "backend-1") Reset(h);
  }
  WaitLive({{"backend-1", 10}, {"backend-2", 0}, {"backend-3", 0}});

  names.clear();
  for (int i = 0; i < 20; ++i) {
    held.push_back(Open(i % kSources));
    names.push_back(held.back().backend);
  }
  EXPECT_EQ(tally(names), (std::map<std::string, int>{{"backend-2", 10}, {"backend-3", 10}}));
  WaitLive({{"backend-1", 10}, {"backend-2", 10}, {"backend-3", 10}});

  // Level again: the next three go one to each.
  names.clear();
  for (int i = 0; i < 3; ++i) {
    held.push_back(Open(i));
    names.push_back(held.back().backend);
  }
  EXPECT_EQ(tally(names),
            (std::map<std::string, int>{{"backend-1", 1}, {"backend-2", 1}, {"backend-3", 1}}));
  // The conntrack view agrees: every held connection is established on the backend it greeted
  // from.
  json flows = json::parse(Sluicectl("conntrack -o json --state established --vip " +
                                     std::string(kVip) + ":" + std::to_string(kLcPort)),
                           nullptr, false);
  ASSERT_TRUE(flows.is_array());
  std::map<std::string, int> per_backend;
  for (const json& f : flows) per_backend[f["backend"].get<std::string>()]++;
  EXPECT_EQ(per_backend, (std::map<std::string, int>{
                             {"198.18.1.2:80", 11}, {"198.18.2.2:80", 11}, {"198.18.3.2:80", 11}}));
}

}  // namespace
}  // namespace sluice::test
