// `sluicectl conntrack`: the listing, filters, summary and text rendering against real
// pinned maps holding synthetic entries (needs root; skips otherwise). Filter parsing, which
// needs no kernel, is tests/unit/ctl_conntrack_filter_test.cc.
#include <gtest/gtest.h>
#include <unistd.h>

#include <sluice/config/config.h>
#include <sluice/conntrack/conntrack.h>
#include <sluice/conntrack/host_track.h>
#include <sluice/ctl/ctl.h>

#include <string>
#include <vector>

#include "conntrack_util.h"

namespace sluice::test {
namespace {

using nlohmann::json;

// ---- against pinned maps ---------------------------------------------------------------------

constexpr char kConfig[] = R"(interfaces: [lo]
vips:
  - address: 198.19.0.1
    port: 80
    protocol: tcp
    backends:
      - {address: 198.18.1.2, port: 8080}
      - {address: 198.18.2.2, port: 8080}
  - address: fd00:19::1
    port: 80
    protocol: tcp
    backends:
      - {address: "fd00:18:1::2", port: 8080}
  - address: 198.19.0.3
    port: 0
    protocol: tcp
    backends:
      - {address: 198.18.3.2}
  - address: 198.19.0.2
    port: 80
    protocol: tcp
    mode: dsr
    backends:
      - {address: 198.18.1.2}
)";
// Backend ids follow the config order: 0, 1 (198.19.0.1), 2 (fd00:19::1), 3 (198.19.0.3),
// 4 (198.19.0.2).

constexpr uint64_t kNow = 5000 * kSec;

class ConntrackCli : public LoadedDatapathTest {
 protected:
  void SetUp() override {
    LoadedDatapathTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    ASSERT_NO_FATAL_FAILURE(Apply(kConfig));
    pin_dir_ = "/sys/fs/bpf/sl-ut-ct-" + std::to_string(getpid());
    auto s = dp_->pin(pin_dir_);
    ASSERT_TRUE(s) << s.error().to_string();
    s = dp_->publish();
    ASSERT_TRUE(s) << s.error().to_string();
    auto pm = PinnedMaps::open(pin_dir_);
    ASSERT_TRUE(pm) << pm.error().to_string();
    pm_ = std::make_unique<PinnedMaps>(std::move(*pm));

    // A: established nat flow with traffic and a measured handshake.
    sl_ct_entry a = ct_entry(SL_TCP_ESTABLISHED, kNow - 100 * kSec, kNow - 1 * kSec, 0, 1);
    a.packets[0] = 5;
    a.packets[1] = 4;
    a.bytes[0] = 500;
    a.bytes[1] = 400;
    a.rtt_synack_ns = 200000;
    a.rtt_ack_ns = 300000;
    Put("198.18.0.100", 40000, "198.19.0.1", 80, a, 0);
    // B: closed by the backend, in TIME_WAIT.
    sl_ct_entry b = ct_entry(SL_TCP_TIME_WAIT, kNow - 10 * kSec, kNow - 5 * kSec, 1);
    b.flags = SL_CT_F_CLOSER_BACKEND;
    Put("198.18.0.101", 40001, "198.19.0.1", 80, b, 0);
    // C: IPv6 handshake in flight.
    Put("fd00:18::100", 5555, "fd00:19::1", 80,
        ct_entry(SL_TCP_SYN_SENT, kNow - 2 * kSec, kNow - 2 * kSec, 2, 1), 1);
    // D: through the port-0 VIP: the backend takes the client's destination port.
    Put("198.18.0.102", 1234, "198.19.0.3", 443,
        ct_entry(SL_TCP_ESTABLISHED, kNow - 4000 * kSec, kNow, 3, 1), 2);
    // E: dsr, one-sided: the state is inferred.
    sl_ct_entry e = ct_entry(SL_TCP_ESTABLISHED, kNow - 50 * kSec, kNow - 50 * kSec, 4, 1);
    e.flags = SL_CT_F_ONE_SIDED;
    Put("198.18.0.103", 999, "198.19.0.2", 80, e, 3);
    // F: a backend id no longer configured (the config changed under the flow).
    Put("198.18.0.104", 7, "198.19.0.9", 80,
        ct_entry(SL_TCP_FIN_WAIT, kNow - 30 * kSec, kNow - 30 * kSec, 15), 0);
  }

  void Put(const std::string& src, uint16_t sport, const std::string& dst, uint16_t dport,
           sl_ct_entry e, uint32_t vip_id) {
    e.vip_id = vip_id;
    ct_put(ct_fd(), flow_key(src, sport, dst, dport), e);
  }

  // conntrack_json with the filter words, as sluicectl would run it.
  json List(const std::string& state = "", const std::string& vip = "",
            const std::string& backend = "", const std::string& older = "",
            const ConntrackTimeouts& t = {}) {
    auto f = parse_conntrack_filter(state, vip, backend, older);
    EXPECT_TRUE(f) << f.error().to_string();
    if (!f) return json::array();
    auto r = conntrack_json(*pm_, *f, t, kNow);
    EXPECT_TRUE(r) << r.error().to_string();
    return r ? *r : json::array();
  }

  static std::vector<std::string> ClientsOf(const json& flows) {
    std::vector<std::string> out;
    for (const json& f : flows) out.push_back(f["client"].get<std::string>());
    return out;
  }

  std::string pin_dir_;
  std::unique_ptr<PinnedMaps> pm_;
};

using Names = std::vector<std::string>;

TEST_F(ConntrackCli, ListsEveryFlowSortedByVipBackendAndClient) {
  const json flows = List();
  EXPECT_EQ(ClientsOf(flows),
            (Names{"198.18.0.100:40000", "198.18.0.101:40001", "198.18.0.103:999",
                   "198.18.0.102:1234", "198.18.0.104:7", "[fd00:18::100]:5555"}));
  ASSERT_EQ(flows.size(), 6u);
  const json& a = flows[0];
  EXPECT_EQ(a["protocol"], "tcp");
  EXPECT_EQ(a["state"], "established");
  EXPECT_EQ(a["inferred"], false);
  EXPECT_EQ(a["flags"], json::array());
  EXPECT_EQ(a["mode"], "nat");
  EXPECT_EQ(a["vip"], "198.19.0.1:80");
  EXPECT_EQ(a["vip_id"], 0);
  EXPECT_EQ(a["backend"], "198.18.1.2:8080");
  EXPECT_EQ(a["backend_id"], 0);
  EXPECT_DOUBLE_EQ(a["age_s"].get<double>(), 100.0);
  EXPECT_DOUBLE_EQ(a["idle_s"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(a["expires_in_s"].get<double>(), 432000.0 - 1.0);
  EXPECT_EQ(a["packets"], (json{{"original", 5}, {"reply", 4}}));
  EXPECT_EQ(a["bytes"], (json{{"original", 500}, {"reply", 400}}));
  EXPECT_EQ(a["rtt_us"], (json{{"syn_synack", 200.0}, {"synack_ack", 300.0}}));

  EXPECT_EQ(flows[1]["flags"], json::array({"closer_backend"}));
  EXPECT_DOUBLE_EQ(flows[1]["expires_in_s"].get<double>(), 120.0 - 5.0);  // time_wait default
  EXPECT_TRUE(flows[1]["rtt_us"]["syn_synack"].is_null());

  const json& e = flows[2];
  EXPECT_EQ(e["inferred"], true);
  EXPECT_EQ(e["flags"], json::array({"one_sided"}));
  EXPECT_EQ(e["mode"], "dsr");
  EXPECT_EQ(e["backend"], "198.18.1.2:80");

  EXPECT_EQ(flows[3]["backend"], "198.18.3.2:443") << "a port-0 backend keeps the client's port";
  EXPECT_EQ(flows[4]["backend"], "#15");
  EXPECT_EQ(flows[5]["vip"], "[fd00:19::1]:80");
  EXPECT_EQ(flows[5]["backend"], "[fd00:18:1::2]:8080");
  EXPECT_EQ(flows[5]["state"], "syn_sent");
}

TEST_F(ConntrackCli, Filters) {
  EXPECT_EQ(ClientsOf(List("time_wait")), Names{"198.18.0.101:40001"});
  EXPECT_EQ(ClientsOf(List("", "198.19.0.1")), (Names{"198.18.0.100:40000", "198.18.0.101:40001"}));
  EXPECT_EQ(ClientsOf(List("", "198.19.0.1:81")), Names{});
  EXPECT_EQ(ClientsOf(List("", "[fd00:19::1]:80")), Names{"[fd00:18::100]:5555"});
  EXPECT_EQ(ClientsOf(List("", "198.19.0.3:443")), Names{"198.18.0.102:1234"});
  // Backend filters match the backend's own address and port (after a port-0 backend took
  // the client's): 198.18.1.2 serves the nat VIP on 8080 and the dsr VIP on 80.
  EXPECT_EQ(ClientsOf(List("", "", "198.18.1.2")),
            (Names{"198.18.0.100:40000", "198.18.0.103:999"}));
  EXPECT_EQ(ClientsOf(List("", "", "198.18.1.2:8080")), Names{"198.18.0.100:40000"});
  EXPECT_EQ(ClientsOf(List("", "", "198.18.3.2:443")), Names{"198.18.0.102:1234"});
  // Strictly older: A is exactly 100 s old.
  EXPECT_EQ(ClientsOf(List("", "", "", "60")), (Names{"198.18.0.100:40000", "198.18.0.102:1234"}));
  EXPECT_EQ(ClientsOf(List("", "", "", "100")), Names{"198.18.0.102:1234"});
  // Filters combine with AND.
  EXPECT_EQ(ClientsOf(List("established", "", "198.18.3.2")), Names{"198.18.0.102:1234"});
  EXPECT_EQ(ClientsOf(List("syn_sent", "198.19.0.1")), Names{});
}

TEST_F(ConntrackCli, ExpiresInUsesTheGivenTimeouts) {
  ConntrackTimeouts t;
  t.time_wait = 30;
  const json flows = List("time_wait", "", "", "", t);
  ASSERT_EQ(flows.size(), 1u);
  EXPECT_DOUBLE_EQ(flows[0]["expires_in_s"].get<double>(), 25.0);
  t.time_wait = 3;
  EXPECT_DOUBLE_EQ(List("time_wait", "", "", "", t)[0]["expires_in_s"].get<double>(), 0.0)
      << "past its timeout, not yet swept: 0, never negative";
}

TEST_F(ConntrackCli, Summary) {
  const json s = conntrack_summary_json(List());
  EXPECT_EQ(s["total"], 6);
  EXPECT_EQ(s["states"]["established"], 3);
  EXPECT_EQ(s["states"]["time_wait"], 1);
  EXPECT_EQ(s["states"]["syn_sent"], 1);
  EXPECT_EQ(s["states"]["fin_wait"], 1);
  EXPECT_EQ(s["states"]["closed"], 0) << "every state is listed, also at 0";
  EXPECT_EQ(conntrack_summary_json(List("", "198.19.0.1"))["total"], 2) << "filters apply";

  const std::string text = conntrack_summary_text(s);
  EXPECT_EQ(text,
            "State             Flows\n"
            "none                  0\n"
            "syn_sent              1\n"
            "syn_recv              0\n"
            "established           3\n"
            "fin_wait              1\n"
            "close_wait            0\n"
            "last_ack              0\n"
            "time_wait             1\n"
            "closed                0\n"
            "total                 6\n");
}

TEST_F(ConntrackCli, TextTable) {
  const std::string text = conntrack_text(List());
  std::vector<std::string> lines;
  for (size_t pos = 0, nl; (nl = text.find('\n', pos)) != std::string::npos; pos = nl + 1) {
    lines.push_back(text.substr(pos, nl - pos));
  }
  ASSERT_EQ(lines.size(), 7u) << text;
  EXPECT_EQ(lines[0].rfind("Pro  State", 0), 0u) << lines[0];
  for (const char* col : {"Client", "VIP", "Backend", "Age", "Idle", "Expires", "RTT", "Pkts>",
                          "Bytes>", "Pkts<", "Bytes<"}) {
    EXPECT_NE(lines[0].find(col), std::string::npos) << col;
  }
  auto row_has = [&](int row, const std::vector<std::string>& cells) {
    for (const auto& c : cells) {
      EXPECT_NE(lines[row].find(c), std::string::npos) << "'" << c << "' in: " << lines[row];
    }
  };
  row_has(1, {"TCP", "established", "198.18.0.100:40000", "198.19.0.1:80", "198.18.1.2:8080",
              "1m40s", "4d23h", "500us", "500", "400"});
  row_has(2, {"time_wait", "1m55s"});
  row_has(3, {"established (inferred)", "198.19.0.2:80"});
  row_has(4, {"1h06m", "198.18.3.2:443"});
  row_has(5, {"#15", "fin_wait"});
  row_has(6, {"[fd00:18::100]:5555", "[fd00:19::1]:80", "syn_sent", " - "});
  // Columns line up: every row starts its Client column where the header does.
  const size_t client_col = lines[0].find("Client");
  for (size_t r = 1; r < lines.size(); ++r) {
    EXPECT_EQ(lines[r].find("198.18.0.", client_col) == client_col ||
                  lines[r].find("[fd00", client_col) == client_col,
              true)
        << lines[r];
  }
  EXPECT_EQ(conntrack_text(json::array()),
            "Pro  State  Client  VIP  Backend  Age  Idle  Expires  RTT  Pkts>  Bytes>  Pkts<  "
            "Bytes<\n")
      << "no flows: the header only, as narrow as the titles";
}

// ---- host flows (--host) ---------------------------------------------------------------------

class HostFlowsCli : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = skip_reason()) GTEST_SKIP() << *why;
    auto t = HostTracker::load(1024);  // maps only: nothing attached
    ASSERT_TRUE(t) << t.error().to_string();
    tracker_ = std::move(*t);
    const int fd = tracker_->host_flows_fd();
    // Keys are local -> peer; direction 0 is the side that opened.
    // A: this host opened it, established, with traffic and a measured handshake.
    sl_ct_entry a = ct_entry(SL_TCP_ESTABLISHED, kNow - 100 * kSec, kNow - 1 * kSec);
    a.packets[0] = 5;
    a.packets[1] = 4;
    a.bytes[0] = 500;
    a.bytes[1] = 400;
    a.rtt_synack_ns = 200000;
    a.rtt_ack_ns = 3000;
    ct_put(fd, flow_key("198.18.0.1", 40000, "198.18.1.2", 443), a);
    // B: the peer opened it (ssh to this host); this host sent the first FIN.
    sl_ct_entry b = ct_entry(SL_TCP_TIME_WAIT, kNow - 10 * kSec, kNow - 5 * kSec);
    b.flags = SL_CT_F_INBOUND | SL_CT_F_CLOSER_BACKEND;
    b.seen = SL_CT_SEEN_FIN(0) | SL_CT_SEEN_FIN(1);
    b.packets[0] = 7;  // peer -> this host
    b.packets[1] = 3;
    b.bytes[0] = 700;
    b.bytes[1] = 300;
    ct_put(fd, flow_key("198.18.0.1", 22, "198.18.0.2", 50000), b);
    // C: IPv6, our SYN is out.
    ct_put(fd, flow_key("fd00:18::1", 5555, "fd00:18:1::2", 80),
           ct_entry(SL_TCP_SYN_SENT, kNow - 2 * kSec, kNow - 2 * kSec));
    // D: picked up mid-stream, this host closed first (it opened: direction 0).
    sl_ct_entry d = ct_entry(SL_TCP_FIN_WAIT, kNow - 4000 * kSec, kNow);
    d.flags = SL_CT_F_MIDSTREAM;
    d.seen = SL_CT_SEEN_FIN(0);
    ct_put(fd, flow_key("198.18.0.1", 40001, "198.18.1.2", 443), d);
  }

  json List(const std::string& state = "", const std::string& older = "",
            const ConntrackTimeouts& t = {}) {
    auto f = parse_conntrack_filter(state, "", "", older);
    EXPECT_TRUE(f) << f.error().to_string();
    if (!f) return json::array();
    auto r = host_flows_json(tracker_->host_flows_fd(), *f, t, kNow);
    EXPECT_TRUE(r) << r.error().to_string();
    return r ? *r : json::array();
  }

  static std::vector<std::string> LocalsOf(const json& flows) {
    std::vector<std::string> out;
    for (const json& f : flows) out.push_back(f["local"].get<std::string>());
    return out;
  }

  std::unique_ptr<HostTracker> tracker_;
};

TEST_F(HostFlowsCli, ListsLocalPeerDirectionAndTrafficEachWay) {
  const json flows = List();
  EXPECT_EQ(LocalsOf(flows),
            (Names{"198.18.0.1:22", "198.18.0.1:40000", "198.18.0.1:40001", "[fd00:18::1]:5555"}));
  ASSERT_EQ(flows.size(), 4u);
  const json& b = flows[0];
  EXPECT_EQ(b["protocol"], "tcp");
  EXPECT_EQ(b["state"], "time_wait");
  EXPECT_EQ(b["direction"], "in");
  EXPECT_EQ(b["peer"], "198.18.0.2:50000");
  EXPECT_EQ(b["flags"], json::array({"closer_local"}));
  EXPECT_EQ(b["packets"], (json{{"out", 3}, {"in", 7}})) << "the peer opened: direction 0 is in";
  EXPECT_EQ(b["bytes"], (json{{"out", 300}, {"in", 700}}));
  EXPECT_DOUBLE_EQ(b["expires_in_s"].get<double>(), 120.0 - 5.0);
  EXPECT_TRUE(b["rtt_us"]["syn_synack"].is_null());

  const json& a = flows[1];
  EXPECT_EQ(a["state"], "established");
  EXPECT_EQ(a["direction"], "out");
  EXPECT_EQ(a["peer"], "198.18.1.2:443");
  EXPECT_EQ(a["flags"], json::array());
  EXPECT_EQ(a["packets"], (json{{"out", 5}, {"in", 4}}));
  EXPECT_EQ(a["bytes"], (json{{"out", 500}, {"in", 400}}));
  EXPECT_DOUBLE_EQ(a["age_s"].get<double>(), 100.0);
  EXPECT_DOUBLE_EQ(a["idle_s"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(a["expires_in_s"].get<double>(), 432000.0 - 1.0);
  EXPECT_EQ(a["rtt_us"], (json{{"syn_synack", 200.0}, {"synack_ack", 3.0}}));
  EXPECT_FALSE(a.contains("vip") || a.contains("backend") || a.contains("client"));

  EXPECT_EQ(flows[2]["flags"], json::array({"midstream", "closer_local"}));
  EXPECT_EQ(flows[3]["peer"], "[fd00:18:1::2]:80");
  EXPECT_EQ(flows[3]["state"], "syn_sent");
}

TEST_F(HostFlowsCli, FiltersSummaryAndTimeouts) {
  EXPECT_EQ(LocalsOf(List("time_wait")), Names{"198.18.0.1:22"});
  EXPECT_EQ(LocalsOf(List("ESTABLISHED", "60")), Names{"198.18.0.1:40000"});
  EXPECT_EQ(LocalsOf(List("", "100")), Names{"198.18.0.1:40001"}) << "strictly older";
  ConntrackTimeouts t;
  t.time_wait = 30;
  EXPECT_DOUBLE_EQ(List("time_wait", "", t)[0]["expires_in_s"].get<double>(), 25.0);
  const json summary = conntrack_summary_json(List());
  EXPECT_EQ(summary["total"], 4);
  EXPECT_EQ(summary["states"]["established"], 1);
  EXPECT_EQ(summary["states"]["fin_wait"], 1);
  EXPECT_EQ(summary["states"]["closed"], 0);

  // VIP and backend filters mean nothing here.
  auto f = parse_conntrack_filter("", "198.19.0.1", "", "");
  ASSERT_TRUE(f);
  auto r = host_flows_json(tracker_->host_flows_fd(), *f, {}, kNow);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("no VIP or backend"), std::string::npos);
}

TEST_F(HostFlowsCli, TextTable) {
  const std::string text = host_flows_text(List());
  std::vector<std::string> lines;
  for (size_t pos = 0, nl; (nl = text.find('\n', pos)) != std::string::npos; pos = nl + 1) {
    lines.push_back(text.substr(pos, nl - pos));
  }
  ASSERT_EQ(lines.size(), 5u) << text;
  EXPECT_EQ(lines[0].rfind("Pro  State        Dir  Local", 0), 0u) << lines[0];
  for (const char* col :
       {"Peer", "Age", "Idle", "Expires", "RTT", "Pkts>", "Bytes>", "Pkts<", "Bytes<"}) {
    EXPECT_NE(lines[0].find(col), std::string::npos) << col;
  }
  auto row_has = [&](int row, const std::vector<std::string>& cells) {
    for (const auto& c : cells) {
      EXPECT_NE(lines[row].find(c), std::string::npos) << "'" << c << "' in: " << lines[row];
    }
  };
  row_has(1, {"TCP", "time_wait", " in ", "198.18.0.1:22", "198.18.0.2:50000", "1m55s"});
  row_has(2, {"established", " out ", "198.18.1.2:443", "1m40s", "4d23h", "203us", "500", "400"});
  row_has(4, {"[fd00:18::1]:5555", "syn_sent", " - "});
  // Pkts> Bytes> are what this host sent, Pkts< Bytes< what it received: 3/300 and 7/700 for
  // the inbound flow B, whose direction 0 (the opener's) is received.
  EXPECT_NE(lines[1].find("3     300      7     700"), std::string::npos) << lines[1];
}

}  // namespace
}  // namespace sluice::test
