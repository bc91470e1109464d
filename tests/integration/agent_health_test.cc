// sluiced with health checks, end to end: the agent checks the backends from the LB
// namespace (through the XDP program, which must leave those replies to the host), takes a
// backend whose service stops out of the Maglev selection within fall x interval, puts it
// back within rise x interval after it restarts, and reports it on /metrics.
#include <gtest/gtest.h>

#include <set>

#include "lb_fixture.h"

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
      if (p.ok()) out.insert(p.backend);
      else ++*failures;
    }
    return out;
  }
};

TEST_F(AgentHealth, StoppedBackendLeavesSelectionAndComesBack) {
  StartAgent(health_config());
  int failures = 0;
  // The checker starts every backend as up; traffic must reach all three.
  ASSERT_TRUE(wait_until([&] { return reached(&failures).count("backend-2") > 0 && !failures; }, 5s));
  EXPECT_NE(scrape(topo_->lb).find("sluice_backend_up{vip=\"198.19.0.1:80/tcp\",backend=\"198.18.2.2:8080\"} 1"),
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
  EXPECT_NE(scrape(topo_->lb).find("sluice_backend_up{vip=\"198.19.0.1:80/tcp\",backend=\"198.18.2.2:8080\"} 0"),
            std::string::npos);

  // Restart it: after rise successes it takes new flows again.
  t0 = Clock::now();
  topo_->servers[1] = start_echo(*topo_->backends[1], "backend-2", "80,8080", "53,5353", rundir_);
  ASSERT_TRUE(wait_until([&] { return reached(&failures).count("backend-2") > 0; }, 5s))
      << "the restarted backend never came back";
  EXPECT_LE(Clock::now() - t0, std::chrono::milliseconds(kRise * kIntervalMs + 1200));
  EXPECT_EQ(failures, 0);
}

}  // namespace
}  // namespace sluice::test
