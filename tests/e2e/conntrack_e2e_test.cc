// TCP state tracking end to end: the real sluiced, real TCP connections through a NAT VIP,
// and `sluicectl conntrack -o json` reading the pinned conntrack map. The test plays both the
// client (in the client namespace) and the server (a listening socket in every backend
// namespace), so it decides who closes first and how.
//
// What each test needs of the agent (see the report of issue #3): the TCP state machine in
// the data path (states past SYN_SENT, the `live` count, events), and sluiced running
// ConntrackManager (the expiry sweep, the ct_events consumer).
#include <gtest/gtest.h>
#include <poll.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent.h"
#include "tcp_conns.h"

namespace sluice::test {
namespace {

using nlohmann::json;

constexpr char kVip[] = "198.19.0.1";
constexpr uint16_t kVipPort = 90;
constexpr uint16_t kServerPort = 9090;

std::string vip_key() { return std::string(kVip) + ":" + std::to_string(kVipPort); }

class ConntrackIntegration : public LbIntegration {
 protected:
  // Starts sluiced with the test VIP and `conntrack_yaml` (a top-level `conntrack:` section,
  // or empty), and the servers.
  void Start(const std::string& conntrack_yaml = "") {
    ASSERT_NO_FATAL_FAILURE(StartAgent(
        config_yaml({vip_yaml(kVip, kVipPort, "tcp", "nat", kServerPort)}, conntrack_yaml)));
    servers_ = std::make_unique<Servers>(*topo_, kServerPort);
  }

  // Connects from source `i` (Topology::source) and accepts the server side.
  Conn Connect(int i) { return connect_through(*topo_, *servers_, i, kVip, kVipPort); }

  // Connect(i) into *c, and waits until its flow is established.
  void ConnectEstablished(int i, Conn* c) {
    *c = Connect(i);
    ASSERT_TRUE(c->client && c->server);
    WaitState(c->client_name, "established");
  }

  // The flow of `client` in `sluicectl conntrack -o json`, or null.
  json Flow(const std::string& client) {
    const std::string out = Sluicectl("conntrack -o json --vip " + vip_key());
    json flows = json::parse(out, nullptr, /*allow_exceptions=*/false);
    EXPECT_TRUE(flows.is_array()) << "not a JSON list:\n" << out;
    if (!flows.is_array()) return nullptr;
    for (const json& f : flows) {
      if (f.value("client", "") == client) return f;
    }
    return nullptr;
  }

  // Polls until the flow of `client` is in `state` (3 s); returns the last view of it.
  json WaitState(const std::string& client, const std::string& state) {
    json last;
    const bool ok = wait_until(
        [&] {
          last = Flow(client);
          return last.is_object() && last.value("state", "") == state;
        },
        3000ms);
    EXPECT_TRUE(ok) << client << " never reached " << state << "; last seen: " << last.dump();
    return last;
  }

  // Polls until the flow of `client` is gone from the table (up to `timeout`).
  bool WaitGone(const std::string& client, std::chrono::milliseconds timeout) {
    return wait_until([&] { return Flow(client).is_null(); }, timeout);
  }

  // backend_conns summed over every backend, read from its pin with bpftool.
  std::optional<uint64_t> LiveConns() {
    const fs::path pin = pin_dir_ / "backend_conns";
    if (!fs::exists(pin)) {
      ADD_FAILURE() << pin << " is not pinned (the agent pins every data-path map)";
      return std::nullopt;
    }
    CmdResult r = run("bpftool -j map dump pinned " + shell_quote(pin.string()));
    json j = json::parse(r.out, nullptr, false);
    if (r.status != 0 || !j.is_array()) {
      ADD_FAILURE() << "bpftool map dump: " << r.out;
      return std::nullopt;
    }
    uint64_t sum = 0;
    for (const json& e : j) {
      const json& v = e.contains("formatted") ? e["formatted"]["value"] : e["value"];
      if (v.is_number()) {
        sum += v.get<uint64_t>();
      } else if (v.is_array()) {  // no BTF: little-endian hex bytes
        uint64_t x = 0;
        for (size_t b = 0; b < v.size() && b < 8; ++b) {
          x |= std::stoull(v[b].get<std::string>(), nullptr, 16) << (8 * b);
        }
        sum += x;
      }
    }
    return sum;
  }

  std::unique_ptr<Servers> servers_;
};

// An open connection is ESTABLISHED with the backend that accepted it, its handshake RTTs
// and its packets in both directions; the filters and the summary find it.
TEST_F(ConntrackIntegration, OpenConnectionIsEstablishedWithItsBackend) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Conn c = Connect(0);
  ASSERT_TRUE(c.client && c.server);
  send_all(c.client->get(), "ping");
  EXPECT_EQ(recv_some(c.server->get()), "ping");
  send_all(c.server->get(), "pong");
  EXPECT_EQ(recv_some(c.client->get()), "pong");

  json f = WaitState(c.client_name, "established");
  ASSERT_TRUE(f.is_object());
  EXPECT_EQ(f["backend"], c.backend_name);
  EXPECT_EQ(f["vip"], vip_key());
  EXPECT_EQ(f["protocol"], "tcp");
  EXPECT_EQ(f["mode"], "nat");
  EXPECT_EQ(f["inferred"], false);
  EXPECT_TRUE(f["rtt_us"]["syn_synack"].is_number()) << f.dump();
  EXPECT_TRUE(f["rtt_us"]["synack_ack"].is_number()) << f.dump();
  // SYN, ACK, "ping" from the client; SYN+ACK, "pong" from the backend (at least).
  EXPECT_GE(f["packets"]["original"].get<uint64_t>(), 3u) << f.dump();
  EXPECT_GE(f["packets"]["reply"].get<uint64_t>(), 2u) << f.dump();
  EXPECT_GT(f["expires_in_s"].get<double>(), 431000.0) << "the 5-day established default";

  const std::string backend_addr = "198.18." + std::to_string(c.backend) + ".2";
  EXPECT_NE(Sluicectl("conntrack -o json --state established --backend " + backend_addr)
                .find(c.client_name),
            std::string::npos);
  EXPECT_EQ(Sluicectl("conntrack -o json --state syn_sent").find(c.client_name), std::string::npos);
  json summary = json::parse(Sluicectl("conntrack --summary -o json"), nullptr, false);
  EXPECT_GE(summary["states"].value("established", 0), 1) << summary.dump();
  const std::string text = Sluicectl("conntrack");
  EXPECT_NE(text.find(c.client_name), std::string::npos) << text;
  EXPECT_NE(text.find(c.backend_name), std::string::npos) << text;
  EXPECT_EQ(LiveConns(), std::optional<uint64_t>(1));

  // The agent consumed the data path's events for this flow (logged at debug).
  EXPECT_TRUE(wait_until(
      [&] {
        return agent_log().find("conntrack: established " + c.client_name + " -> " + vip_key() +
                                "/tcp") != std::string::npos;
      },
      2000ms))
      << agent_log();
}

// The client closes first: its FIN, the backend's ACK (CLOSE_WAIT: the backend may still
// send), the backend's FIN (LAST_ACK), the client's ACK: TIME_WAIT, and the live count is
// released. FIN_WAIT lasts only until the peer's immediate ACK, too short to observe here.
TEST_F(ConntrackIntegration, ClientCloseEndsInTimeWait) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Conn c;
  ASSERT_NO_FATAL_FAILURE(ConnectEstablished(1, &c));
  ASSERT_EQ(shutdown(c.client->get(), SHUT_WR), 0);
  json f = WaitState(c.client_name, "close_wait");
  EXPECT_EQ(f["flags"], json::array()) << "the client closed: no closer_backend";
  // The backend still sends after the client's FIN.
  send_all(c.server->get(), "late data");
  EXPECT_EQ(recv_some(c.client->get()), "late data");
  ASSERT_EQ(shutdown(c.server->get(), SHUT_WR), 0);
  EXPECT_EQ(recv_some(c.client->get()), "") << "the client sees the backend's FIN";
  f = WaitState(c.client_name, "time_wait");
  EXPECT_EQ(f["backend"], c.backend_name);
  EXPECT_EQ(LiveConns(), std::optional<uint64_t>(0)) << "TIME_WAIT no longer counts as live";
}

// The backend half-closes first: CLOSE_WAIT once the client ACKs, and the client may still
// send; then the client's FIN and the backend's ACK end in TIME_WAIT.
TEST_F(ConntrackIntegration, ServerFirstHalfCloseIsCloseWait) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Conn c;
  ASSERT_NO_FATAL_FAILURE(ConnectEstablished(2, &c));
  ASSERT_EQ(shutdown(c.server->get(), SHUT_WR), 0);
  EXPECT_EQ(recv_some(c.client->get()), "") << "the client sees the backend's FIN";
  json f = WaitState(c.client_name, "close_wait");
  EXPECT_EQ(f["flags"], json::array({"closer_backend"})) << f.dump();
  send_all(c.client->get(), "still talking");
  EXPECT_EQ(recv_some(c.server->get()), "still talking");
  EXPECT_EQ(LiveConns(), std::optional<uint64_t>(1)) << "a half-closed flow is still live";
  ASSERT_EQ(shutdown(c.client->get(), SHUT_WR), 0);
  EXPECT_EQ(recv_some(c.server->get()), "");
  WaitState(c.client_name, "time_wait");
  EXPECT_EQ(LiveConns(), std::optional<uint64_t>(0));
}

// SO_LINGER 0: close() sends a RST, and the flow is CLOSED at once.
TEST_F(ConntrackIntegration, ResetClosesTheFlow) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Conn c;
  ASSERT_NO_FATAL_FAILURE(ConnectEstablished(3, &c));
  linger lg{1, 0};
  ASSERT_EQ(setsockopt(c.client->get(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
  c.client.reset();  // close(): RST
  json f = WaitState(c.client_name, "closed");
  EXPECT_EQ(f["backend"], c.backend_name);
  EXPECT_EQ(LiveConns(), std::optional<uint64_t>(0));
  EXPECT_TRUE(wait_until(
      [&] {
        return agent_log().find("conntrack: closed_rst " + c.client_name) != std::string::npos;
      },
      2000ms))
      << agent_log();
}

// Short timeouts: the agent's sweep deletes an idle ESTABLISHED flow and a TIME_WAIT flow
// once their timeouts pass, gives their live counts back, and logs the expiries. A packet of
// the expired (still open) connection is placed again on the same backend.
TEST_F(ConntrackIntegration, IdleFlowsExpireAndReleaseTheirCounts) {
  ASSERT_NO_FATAL_FAILURE(
      Start("conntrack:\n"
            "  sweep_interval_ms: 100\n"
            "  timeouts: {established: 3, time_wait: 1, close_wait: 3, last_ack: 3}\n"));
  Conn idle = Connect(4);
  Conn closed = Connect(5);
  ASSERT_TRUE(idle.client && idle.server && closed.client && closed.server);
  WaitState(idle.client_name, "established");
  // sluicectl knows the agent's timeouts only from its config file.
  json flows = json::parse(Sluicectl("conntrack -o json --timeouts-from " +
                                     shell_quote((rundir_ / "config.yaml").string())),
                           nullptr, false);
  ASSERT_TRUE(flows.is_array());
  for (const json& f : flows) EXPECT_LE(f["expires_in_s"].get<double>(), 3.0) << f.dump();
  ASSERT_EQ(shutdown(closed.client->get(), SHUT_WR), 0);
  ASSERT_EQ(shutdown(closed.server->get(), SHUT_WR), 0);
  WaitState(closed.client_name, "time_wait");
  EXPECT_EQ(LiveConns(), std::optional<uint64_t>(1));

  const auto t0 = Clock::now();
  EXPECT_TRUE(WaitGone(closed.client_name, 3000ms)) << "TIME_WAIT (1 s) never expired";
  EXPECT_TRUE(Flow(idle.client_name).is_object()) << "the established flow expired early";
  EXPECT_TRUE(WaitGone(idle.client_name, 5000ms)) << "idle ESTABLISHED (3 s) never expired";
  EXPECT_GE(Clock::now() - t0, 2000ms) << "expired well before its 3 s timeout";
  EXPECT_EQ(LiveConns(), std::optional<uint64_t>(0)) << "expiry gave the live count back";
  const std::string log = agent_log();
  EXPECT_NE(log.find("conntrack: expired " + closed.client_name), std::string::npos) << log;
  EXPECT_NE(log.find("conntrack: expired " + idle.client_name), std::string::npos) << log;

  // The connection itself is still open at both ends: its next packet re-creates the entry
  // (midstream) on the same backend, by consistent hash.
  send_all(idle.client->get(), "after expiry");
  EXPECT_EQ(recv_some(idle.server->get()), "after expiry");
  json f = WaitState(idle.client_name, "established");
  EXPECT_EQ(f["backend"], idle.backend_name);
  EXPECT_NE(f["flags"].dump().find("midstream"), std::string::npos) << f.dump();
}

}  // namespace
}  // namespace sluice::test
