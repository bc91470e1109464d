// sluiced with health checks, end to end: the agent checks the backends from the LB
// namespace (through the XDP program, which must leave those replies to the host), takes a
// backend whose service stops out of the Maglev selection within fall x interval, puts it
// back within rise x interval after it restarts, and reports it on /metrics.
#include <gtest/gtest.h>

#include <chrono>
#include <set>

#include <nlohmann/json.hpp>

#include "agent.h"
#include "pinned_counters.h"
#include "tcp_conns.h"

namespace sluice::test {
namespace {

constexpr int kIntervalMs = 100, kTimeoutMs = 50, kRise = 2, kFall = 2;

std::string health_config() {
  std::string vip = vip_yaml("198.19.0.1", 80, "tcp", "nat", 8080);
  vip += "    health_check: {type: tcp, interval_ms: " + std::to_string(kIntervalMs) +
         ", timeout_ms: " + std::to_string(kTimeoutMs) + ", rise: " + std::to_string(kRise) +
         ", fall: " + std::to_string(kFall) + "}\n";
  return config_yaml({vip}, "metrics: {listen: \"127.0.0.1:9435\"}\n");
}

// GET /metrics from inside the LB namespace (the endpoint listens on the LB's loopback).
std::string scrape(const NetNs& lb) {
  std::string body;
  lb.in([&] {
    Fd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    SockAddr a = sockaddr_of("127.0.0.1", 9435);
    timeval tv{2, 0};
    setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd.get(), reinterpret_cast<sockaddr*>(&a.ss), a.len) != 0) return;
    std::string req = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    if (send(fd.get(), req.data(), req.size(), 0) < 0) return;
    char buf[65536];
    for (ssize_t n; (n = recv(fd.get(), buf, sizeof(buf), 0)) > 0;) body.append(buf, n);
  });
  return body;
}

class AgentHealth : public LbIntegration {
 protected:
  // Backend names reached by one TCP connection from each client source.
  std::multiset<std::string> reached(int* failures) {
    std::multiset<std::string> out;
    *failures = 0;
    for (const Probe& p : probe_all(v4_sources(), [&](const std::string& src) {
           return tcp_probe(topo_->client, src, "198.19.0.1", 80, payload_for(src));
         })) {
      if (p.ok())
        out.insert(p.backend);
      else
        ++*failures;
    }
    return out;
  }
};

TEST_F(AgentHealth, StoppedBackendLeavesSelectionAndComesBack) {
  StartAgent(health_config());
  int failures = 0;
  // The checker starts every backend as up; traffic must reach all three.
  ASSERT_TRUE(
      wait_until([&] { return reached(&failures).count("backend-2") > 0 && !failures; }, 5s));
  EXPECT_NE(scrape(topo_->lb).find(
                "sluice_backend_up{vip=\"198.19.0.1:80/tcp\",backend=\"198.18.2.2:8080\"} 1"),
            std::string::npos);

  // Stop backend-2's service: connections to it are refused from now on.
  auto t0 = Clock::now();
  ASSERT_TRUE(topo_->servers[1]->stop(SIGTERM, 5s));
  ASSERT_TRUE(wait_until(
      [&] {
        auto r = reached(&failures);
        return failures == 0 && r.count("backend-2") == 0;
      },
      5s))
      << "new flows still reach the stopped backend";
  auto down_after = Clock::now() - t0;
  // fall consecutive failures at the check interval, plus one timeout and the probes' own time.
  EXPECT_LE(down_after, std::chrono::milliseconds(kFall * kIntervalMs + kTimeoutMs + 1200));
  // Not before `fall` checks could have failed: the first one at once, the last (fall - 1)
  // intervals later.
  EXPECT_GE(down_after, std::chrono::milliseconds((kFall - 1) * kIntervalMs));
  EXPECT_NE(scrape(topo_->lb).find(
                "sluice_backend_up{vip=\"198.19.0.1:80/tcp\",backend=\"198.18.2.2:8080\"} 0"),
            std::string::npos);

  // Restart it: after rise successes it takes new flows again.
  t0 = Clock::now();
  topo_->servers[1] = start_echo(*topo_->backends[1], "backend-2", "80,8080", "53,5353", rundir_);
  ASSERT_TRUE(wait_until([&] { return reached(&failures).count("backend-2") > 0; }, 5s))
      << "the restarted backend never came back";
  EXPECT_LE(Clock::now() - t0, std::chrono::milliseconds(kRise * kIntervalMs + 1200));
  EXPECT_EQ(failures, 0);
}

// on_backend_down, with the backends' health endpoint (sl-echo on 8080) and their service
// (the test's own listeners on 9090) apart, so that a backend can fail its check while its
// established connections still work: what happens to them is then the policy's doing.
using nlohmann::json;

class BackendDownPolicy : public LbIntegration {
 protected:
  void Start(const std::string& policy) {
    std::string vip =
        "  - address: 198.19.0.1\n    port: 90\n    protocol: tcp\n    on_backend_down: " + policy +
        "\n    health_check: {type: tcp, port: 8080, interval_ms: " + std::to_string(kIntervalMs) +
        ", timeout_ms: " + std::to_string(kTimeoutMs) + ", rise: " + std::to_string(kRise) +
        ", fall: " + std::to_string(kFall) + "}\n    backends:\n";
    for (int n = 1; n <= 3; ++n)
      vip += "      - {address: 198.18." + std::to_string(n) + ".2, port: 9090}\n";
    ASSERT_NO_FATAL_FAILURE(StartAgent(config_yaml({vip})));
    servers_ = std::make_unique<Servers>(*topo_, 9090);
  }

  // A connection from each of the first sources until one lands on `backend`.
  Conn ConnectTo(int backend) {
    for (int i = 0; i < kSources; ++i) {
      Conn c = connect_through(*topo_, *servers_, i, "198.19.0.1", 90);
      if (c.backend == backend) return c;
    }
    ADD_FAILURE() << "no source reaches backend " << backend;
    return {};
  }

  // Fails backend `n`'s health check only: its port 8080 now answers with RST.
  void FailHealthCheck(int n) {
    topo_->backends[n - 1]->must(
        "nft add table inet sltest && "
        "nft add chain inet sltest in '{ type filter hook input priority 0; }' && "
        "nft add rule inet sltest in tcp dport 8080 reject with tcp reset");
  }

  // Waits until `sluicectl vips` shows backend `n` down.
  bool WaitDown(int n) {
    const std::string addr = "198.18." + std::to_string(n) + ".2";
    return wait_until(
        [&] {
          json v = json::parse(Sluicectl("vips -o json"), nullptr, false);
          if (!v.is_array()) return false;
          for (const json& b : v[0]["backends"])
            if (b["address"] == addr) return b["state"] == "down";
          return false;
        },
        3s);
  }

  std::unique_ptr<Servers> servers_;
};

// reset: the client of the dead backend gets a TCP RST from the LB on its next packet
// (ECONNRESET on a real socket) instead of a silent blackhole; its conntrack entry is gone.
TEST_F(BackendDownPolicy, ResetAnswersTheClientWithRst) {
  ASSERT_NO_FATAL_FAILURE(Start("reset"));
  Conn c = ConnectTo(2);
  ASSERT_TRUE(c.server);
  send_all(c.client->get(), "before");
  ASSERT_EQ(recv_some(c.server->get()), "before");
  FailHealthCheck(2);
  ASSERT_TRUE(WaitDown(2)) << Sluicectl("vips");

  // The next segment is answered with RST: send succeeds (it is queued), the reply resets.
  // The LB's own RST, not another backend's: it is counted (ct_stats[reset_sent]), and it
  // comes back within a round trip, long before the client's first retransmission (RTO at
  // least 200 ms) could reach a backend that answers it.
  const PinnedMaps maps(pin_dir_);
  const uint64_t sent0 = maps.ct_stat(SL_CT_STAT_RESET_SENT);
  const auto t0 = std::chrono::steady_clock::now();
  send_all(c.client->get(), "after");
  char buf[16];
  errno = 0;
  ssize_t n = recv(c.client->get(), buf, sizeof(buf), 0);
  const auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(n, -1);
  EXPECT_EQ(errno, ECONNRESET) << "expected a reset, got " << (n < 0 ? strerror(errno) : "data");
  EXPECT_LT(waited, 150ms) << "the reset came after a retransmission: not the LB's";
  EXPECT_GE(maps.ct_stat(SL_CT_STAT_RESET_SENT) - sent0, 1u);
  // The server never saw the segment: the LB answered it.
  timeval tv{0, 300000};
  setsockopt(c.server->get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  EXPECT_EQ(recv_some(c.server->get()), "");
  // Its entry to the dead backend is gone. (A later segment of the client, sent before the
  // RST arrived, may open a mid-stream entry to another backend, which resets it too.)
  json flows = json::parse(Sluicectl("conntrack -o json"), nullptr, false);
  for (const json& f : flows)
    EXPECT_FALSE(f.value("client", "") == c.client_name && f.value("backend", "") == c.backend_name)
        << f.dump();
  // New connections avoid the dead backend and work.
  for (int i = 0; i < 8; ++i) {
    Conn n2 = connect_through(*topo_, *servers_, i, "198.19.0.1", 90);
    EXPECT_NE(n2.backend, 2);
  }
}

// keep (the default): the dead backend's established connections carry on.
TEST_F(BackendDownPolicy, KeepLeavesEstablishedConnectionsAlone) {
  ASSERT_NO_FATAL_FAILURE(Start("keep"));
  Conn c = ConnectTo(2);
  ASSERT_TRUE(c.server);
  FailHealthCheck(2);
  ASSERT_TRUE(WaitDown(2)) << Sluicectl("vips");
  send_all(c.client->get(), "after");
  EXPECT_EQ(recv_some(c.server->get()), "after");
  send_all(c.server->get(), "reply");
  EXPECT_EQ(recv_some(c.client->get()), "reply") << strerror(errno);
}

}  // namespace
}  // namespace sluice::test
