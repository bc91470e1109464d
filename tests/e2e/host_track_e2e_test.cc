// Host flow tracking end to end: the real sluiced with `track: {interfaces: [lc]}` attaches
// tc_flow to the LB's client-facing veth; the LB namespace (the "host") opens real TCP
// connections to a listener in the client namespace and accepts connections from it, and
// `sluicectl conntrack --host -o json` reads them back from the pinned host_flows. After
// SIGTERM nothing may be left: no tcx program on lc, no classic tc, no pin.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>
#include <poll.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent.h"

namespace sluice::test {
namespace {

using nlohmann::json;

constexpr char kHost[] = "198.18.0.1";  // the LB's address on lc
constexpr char kPeer[] = "198.18.0.2";  // the client namespace's, across lc
// uapi enum bpf_attach_type (Linux 6.6+); Debian 12's headers predate tcx.
constexpr auto kTcxIngress = static_cast<bpf_attach_type>(46);
constexpr auto kTcxEgress = static_cast<bpf_attach_type>(47);

std::string track_yaml(const std::string& more = "") {
  return "track:\n  interfaces: [lc]\n" + more;
}

// A listening TCP socket in `ns` on addr:port.
int listen_in(const NetNs& ns, const std::string& addr, uint16_t port) {
  int fd = ns.in([] { return socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0); });
  if (fd < 0) throw std::runtime_error(errno_text("listener socket"));
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  SockAddr a = sockaddr_of(addr, port);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a.ss), a.len) != 0 || listen(fd, 8) != 0) {
    close(fd);
    throw std::runtime_error(errno_text("listener bind/listen " + addr));
  }
  return fd;
}

void set_timeouts(int fd) {
  timeval tv{2, 0};  // a lost segment fails the test instead of hanging it
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

// Both ends of one connection across lc, and how sluicectl names its host side.
struct HostConn {
  std::unique_ptr<Fd> host;  // the socket in the LB namespace
  std::unique_ptr<Fd> peer;  // the socket in the client namespace
  std::string local;         // "198.18.0.1:PORT"
  std::string peer_name;     // "198.18.0.2:PORT"
};

std::string name_of(int fd, bool local) {
  sockaddr_in a{};
  socklen_t len = sizeof(a);
  if (local) {
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  } else {
    getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len);
  }
  char buf[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, &a.sin_addr, buf, sizeof(buf));
  return std::string(buf) + ":" + std::to_string(ntohs(a.sin_port));
}

// Opens a connection from `from` to the listener `lfd` (in the other namespace) at dst:port
// and accepts it. `outbound`: the host (LB namespace) connects.
HostConn connect_across(const NetNs& from, int lfd, const std::string& dst, uint16_t port,
                        bool outbound) {
  HostConn c;
  SockAddr d = sockaddr_of(dst, port);
  int cfd = from.in([] { return socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0); });
  EXPECT_GE(cfd, 0) << strerror(errno);
  if (cfd < 0) return c;
  auto client = std::make_unique<Fd>(cfd);
  set_timeouts(cfd);
  if (connect(cfd, reinterpret_cast<sockaddr*>(&d.ss), d.len) != 0) {
    ADD_FAILURE() << errno_text("connect " + dst + ":" + std::to_string(port));
    return c;
  }
  pollfd p{lfd, POLLIN, 0};
  int sfd = poll(&p, 1, 3000) == 1 ? accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC) : -1;
  EXPECT_GE(sfd, 0) << "nothing to accept";
  if (sfd < 0) return c;
  auto server = std::make_unique<Fd>(sfd);
  set_timeouts(sfd);
  if (outbound) {
    c.host = std::move(client);
    c.peer = std::move(server);
  } else {
    c.host = std::move(server);
    c.peer = std::move(client);
  }
  c.local = name_of(c.host->get(), true);
  c.peer_name = name_of(c.host->get(), false);
  return c;
}

void exchange(const HostConn& c) {
  char buf[16];
  ASSERT_EQ(send(c.host->get(), "ping", 4, MSG_NOSIGNAL), 4) << strerror(errno);
  ASSERT_EQ(recv(c.peer->get(), buf, sizeof(buf), 0), 4) << strerror(errno);
  ASSERT_EQ(send(c.peer->get(), "pong", 4, MSG_NOSIGNAL), 4) << strerror(errno);
  ASSERT_EQ(recv(c.host->get(), buf, sizeof(buf), 0), 4) << strerror(errno);
}

class HostTrackIntegration : public LbIntegration {
 protected:
  // sluiced with one VIP, `track: [lc]` and `extra` (more top-level YAML).
  void Start(const std::string& extra = "") {
    ASSERT_NO_FATAL_FAILURE(StartAgent(
        config_yaml({vip_yaml("198.19.0.1", 80, "tcp", "nat", 8080)}, track_yaml() + extra)));
    // Ready (info pinned) means tracking is up: host_flows is pinned before info.
    ASSERT_TRUE(fs::exists(pin_dir_ / "host_flows")) << agent_log();
    for (bool ingress : {true, false}) {
      const std::vector<std::string> names = TcxProgs("lc", ingress);
      ASSERT_EQ(names, std::vector<std::string>{ingress ? "tc_flow_ingress" : "tc_flow_egress"})
          << "tcx " << (ingress ? "ingress" : "egress") << " of lc";
    }
    EXPECT_TRUE(TcxProgs("lb1", true).empty()) << "lb1 is not tracked";
  }

  // Names of the programs tcx runs on `ifname` of the LB namespace, in chain order.
  std::vector<std::string> TcxProgs(const std::string& ifname, bool ingress) {
    const unsigned idx = ifindex(topo_->lb, ifname);
    std::vector<uint32_t> ids(64);
    const int err = topo_->lb.in([&] {
      LIBBPF_OPTS(bpf_prog_query_opts, q, .prog_ids = ids.data(),
                  .prog_cnt = static_cast<uint32_t>(ids.size()));
      const int r =
          bpf_prog_query_opts(static_cast<int>(idx), ingress ? kTcxIngress : kTcxEgress, &q);
      ids.resize(r == 0 ? q.prog_cnt : 0);
      return r == 0 ? 0 : errno;
    });
    EXPECT_EQ(err, 0) << "query tcx on " << ifname << ": " << strerror(err);
    std::vector<std::string> names;
    for (uint32_t id : ids) {
      Fd fd(bpf_prog_get_fd_by_id(id));
      bpf_prog_info info{};
      uint32_t len = sizeof(info);
      if (fd.get() >= 0 && bpf_obj_get_info_by_fd(fd.get(), &info, &len) == 0) {
        names.emplace_back(info.name);
      } else {
        names.push_back("#" + std::to_string(id));
      }
    }
    return names;
  }

  // The host flows as `sluicectl conntrack --host -o json <args>` lists them.
  json HostFlows(const std::string& args = "") {
    const std::string out = Sluicectl("conntrack --host -o json " + args);
    json flows = json::parse(out, nullptr, /*allow_exceptions=*/false);
    EXPECT_TRUE(flows.is_array()) << "not a JSON list:\n" << out;
    return flows.is_array() ? flows : json::array();
  }

  json Flow(const HostConn& c, const std::string& args = "") {
    for (const json& f : HostFlows(args)) {
      if (f.value("local", "") == c.local && f.value("peer", "") == c.peer_name) return f;
    }
    return nullptr;
  }

  // Polls until the flow of `c` is in `state` (3 s); returns the last view of it.
  json WaitState(const HostConn& c, const std::string& state) {
    json last;
    const bool ok = wait_until(
        [&] {
          last = Flow(c);
          return last.is_object() && last.value("state", "") == state;
        },
        3000ms);
    EXPECT_TRUE(ok) << c.local << " -> " << c.peer_name << " never reached " << state
                    << "; last seen: " << last.dump() << "\nall: " << HostFlows().dump();
    return last;
  }

  // SIGTERM: exit 0, no pin, no XDP, and nothing of tc_flow on lc (tcx or classic tc).
  void TearDown() override {
    if (agent_ && topo_) {
      const std::optional<int> status = agent_->stop(SIGTERM, 10s);
      EXPECT_EQ(status, std::optional<int>(0)) << "sluiced on SIGTERM; log:\n" << agent_log();
      agent_.reset();
      EXPECT_FALSE(fs::exists(pin_dir_)) << "pins left in " << pin_dir_;
      ExpectNoXdp();
      for (bool ingress : {true, false}) {
        EXPECT_EQ(TcxProgs("lc", ingress), std::vector<std::string>{})
            << "tcx " << (ingress ? "ingress" : "egress") << " of lc after SIGTERM";
      }
      const CmdResult tc = topo_->lb.exec(
          "tc qdisc show dev lc; tc filter show dev lc ingress; tc filter show dev lc egress");
      EXPECT_EQ(tc.out.find("clsact"), std::string::npos) << tc.out;
      EXPECT_EQ(tc.out.find("bpf"), std::string::npos) << tc.out;
      EXPECT_NE(agent_log().find("host flows: tc_flow detached from lc"), std::string::npos)
          << agent_log();
    }
    LbIntegration::TearDown();
  }
};

// The host opens a connection across lc: ESTABLISHED, direction out, with the right local and
// peer and traffic both ways; the host closes first and the flow ends in TIME_WAIT.
TEST_F(HostTrackIntegration, OutboundConnectionEstablishedThenTimeWait) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Fd listener(listen_in(topo_->client, kPeer, 9100));
  HostConn c = connect_across(topo_->lb, listener.get(), kPeer, 9100, /*outbound=*/true);
  ASSERT_TRUE(c.host && c.peer);
  ASSERT_NO_FATAL_FAILURE(exchange(c));
  EXPECT_EQ(c.peer_name, std::string(kPeer) + ":9100");
  EXPECT_EQ(c.local.rfind(std::string(kHost) + ":", 0), 0u) << c.local;

  json f = WaitState(c, "established");
  ASSERT_TRUE(f.is_object());
  EXPECT_EQ(f["protocol"], "tcp");
  EXPECT_EQ(f["direction"], "out");
  EXPECT_EQ(f["flags"], json::array()) << "the handshake was seen: not midstream";
  EXPECT_TRUE(f["rtt_us"]["syn_synack"].is_number()) << f.dump();
  EXPECT_TRUE(f["rtt_us"]["synack_ack"].is_number()) << f.dump();
  // SYN, ACK, "ping" out; SYN+ACK, "pong" in (TC sees skbs: GRO may merge, never split).
  EXPECT_GE(f["packets"]["out"].get<uint64_t>(), 3u) << f.dump();
  EXPECT_GE(f["packets"]["in"].get<uint64_t>(), 2u) << f.dump();
  EXPECT_GT(f["expires_in_s"].get<double>(), 431000.0) << "the 5-day established default";
  // The filters and the summary see it too.
  EXPECT_TRUE(Flow(c, "--state established").is_object());
  EXPECT_TRUE(Flow(c, "--state syn_sent").is_null());
  EXPECT_TRUE(Flow(c, "--older-than 3600").is_null());
  json summary = json::parse(Sluicectl("conntrack --host --summary -o json"), nullptr, false);
  EXPECT_GE(summary["states"].value("established", 0), 1) << summary.dump();
  const std::string text = Sluicectl("conntrack --host");
  EXPECT_NE(text.find(c.local), std::string::npos) << text;
  EXPECT_NE(text.find(" out "), std::string::npos) << text;
  // The VIP table knows nothing of it.
  EXPECT_EQ(Sluicectl("conntrack -o json").find(c.local), std::string::npos);

  // The host closes first: its FIN, the peer's ACK (close_wait), the peer's FIN, our ACK.
  ASSERT_EQ(shutdown(c.host->get(), SHUT_WR), 0);
  char buf[8];
  EXPECT_EQ(recv(c.peer->get(), buf, sizeof(buf), 0), 0) << "the peer sees our FIN";
  WaitState(c, "close_wait");
  ASSERT_EQ(shutdown(c.peer->get(), SHUT_WR), 0);
  EXPECT_EQ(recv(c.host->get(), buf, sizeof(buf), 0), 0) << "we see the peer's FIN";
  f = WaitState(c, "time_wait");
  EXPECT_EQ(f["flags"], json::array({"closer_local"})) << f.dump();
}

// An abortive close (SO_LINGER 0: a RST) leaves the flow CLOSED.
TEST_F(HostTrackIntegration, AbortiveCloseIsClosed) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Fd listener(listen_in(topo_->client, kPeer, 9101));
  HostConn c = connect_across(topo_->lb, listener.get(), kPeer, 9101, /*outbound=*/true);
  ASSERT_TRUE(c.host && c.peer);
  ASSERT_NO_FATAL_FAILURE(exchange(c));
  WaitState(c, "established");
  linger lg{1, 0};
  ASSERT_EQ(setsockopt(c.host->get(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
  const HostConn view{nullptr, nullptr, c.local, c.peer_name};
  c.host.reset();  // close(): RST
  json f = WaitState(view, "closed");
  EXPECT_EQ(f["direction"], "out");
}

// The peer opens a connection to a listener in the LB namespace: direction in; the packet
// counts follow the host's view (out = sent by the host).
TEST_F(HostTrackIntegration, InboundConnectionIsDirectionIn) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Fd listener(listen_in(topo_->lb, kHost, 9200));
  HostConn c = connect_across(topo_->client, listener.get(), kHost, 9200, /*outbound=*/false);
  ASSERT_TRUE(c.host && c.peer);
  ASSERT_NO_FATAL_FAILURE(exchange(c));
  EXPECT_EQ(c.local, std::string(kHost) + ":9200");
  json f = WaitState(c, "established");
  ASSERT_TRUE(f.is_object());
  EXPECT_EQ(f["direction"], "in");
  EXPECT_EQ(f["peer"].get<std::string>().rfind(std::string(kPeer) + ":", 0), 0u) << f.dump();
  EXPECT_GE(f["packets"]["in"].get<uint64_t>(), 3u) << "SYN, ACK, ping: " << f.dump();
  EXPECT_GE(f["packets"]["out"].get<uint64_t>(), 2u) << "SYN+ACK, pong: " << f.dump();
  // The peer closes first this time.
  ASSERT_EQ(shutdown(c.peer->get(), SHUT_WR), 0);
  char buf[8];
  EXPECT_EQ(recv(c.host->get(), buf, sizeof(buf), 0), 0);
  ASSERT_EQ(shutdown(c.host->get(), SHUT_WR), 0);
  EXPECT_EQ(recv(c.peer->get(), buf, sizeof(buf), 0), 0);
  f = WaitState(c, "time_wait");
  EXPECT_EQ(f["direction"], "in");
  EXPECT_EQ(f["flags"], json::array({"closer_peer"})) << f.dump();
}

// With short timeouts, host flows leave the table by the same per-state timeouts as VIP
// flows; `--timeouts-from` shows the configured expiry; /metrics counts them by state.
TEST_F(HostTrackIntegration, ShortTimeoutsExpireHostFlows) {
  ASSERT_NO_FATAL_FAILURE(
      Start("conntrack:\n  sweep_interval_ms: 100\n  timeouts: {established: 3, time_wait: 1, "
            "close: 1}\nmetrics: {listen: \"127.0.0.1:9435\"}\n"));
  Fd listener(listen_in(topo_->client, kPeer, 9300));
  HostConn idle = connect_across(topo_->lb, listener.get(), kPeer, 9300, /*outbound=*/true);
  HostConn done = connect_across(topo_->lb, listener.get(), kPeer, 9300, /*outbound=*/true);
  ASSERT_TRUE(idle.host && done.host);
  ASSERT_NO_FATAL_FAILURE(exchange(idle));
  const auto idle_since = Clock::now();  // its last packet: the ACK of "pong"
  ASSERT_NO_FATAL_FAILURE(exchange(done));
  WaitState(idle, "established");
  // Without --timeouts-from, `expires` follows the timeouts the agent published in `info`.
  const json idle_flow = Flow(idle);
  ASSERT_TRUE(idle_flow.is_object());
  EXPECT_LE(idle_flow["expires_in_s"].get<double>(), 3.0) << idle_flow.dump();

  // Swept into the gauge within a sweep interval or two.
  const auto scrape = [&] {
    std::string body;
    topo_->lb.in([&] {
      Fd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
      SockAddr a = sockaddr_of("127.0.0.1", 9435);
      set_timeouts(fd.get());
      if (connect(fd.get(), reinterpret_cast<sockaddr*>(&a.ss), a.len) != 0) return;
      const std::string req = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
      if (send(fd.get(), req.data(), req.size(), 0) < 0) return;
      char buf[65536];
      for (ssize_t n; (n = recv(fd.get(), buf, sizeof(buf), 0)) > 0;) body.append(buf, n);
    });
    return body;
  };
  std::string body;
  EXPECT_TRUE(wait_until(
      [&] {
        body = scrape();
        return body.find("sluice_host_flows{state=\"established\"} 2\n") != std::string::npos;
      },
      2000ms))
      << body;

  linger lg{1, 0};
  ASSERT_EQ(setsockopt(done.host->get(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
  const HostConn done_view{nullptr, nullptr, done.local, done.peer_name};
  done.host.reset();
  json f = WaitState(done_view, "closed");
  const std::string cfg = (rundir_ / "config.yaml").string();
  f = Flow(done_view, "--timeouts-from " + cfg);
  if (f.is_object()) {
    EXPECT_LE(f["expires_in_s"].get<double>(), 1.0) << f.dump();
  }

  // closed: 1 s, plus up to a sweep interval; established: 3 s of idleness.
  EXPECT_TRUE(wait_until([&] { return Flow(done_view).is_null(); }, 3000ms))
      << "the closed flow is still listed: " << Flow(done_view).dump();
  EXPECT_TRUE(wait_until([&] { return Flow(idle).is_null(); }, 5000ms))
      << "the idle established flow is still listed: " << Flow(idle).dump();
  EXPECT_GE(Clock::now() - idle_since, 2900ms) << "an established flow went before its timeout";
  EXPECT_NE(agent_log().find("host_flows: expired " + idle.local + " -> " + idle.peer_name),
            std::string::npos)
      << agent_log();
  EXPECT_TRUE(wait_until(
      [&] {
        body = scrape();
        return body.find("sluice_host_flow_expiries_total{state=\"established\"} 1\n") !=
                   std::string::npos &&
               body.find("sluice_host_flow_expiries_total{state=\"closed\"} 1\n") !=
                   std::string::npos;
      },
      2000ms))
      << body;
}

// A config naming an interface that does not exist: sluiced refuses to start, says which, and
// leaves nothing behind (no XDP, no tc, no pins).
TEST_F(HostTrackIntegration, MissingTrackedInterfaceStopsTheStart) {
  const fs::path config = rundir_ / "config.yaml";
  write_file(config, config_yaml({vip_yaml("198.19.0.1", 80, "tcp", "nat", 8080)},
                                 "track:\n  interfaces: [lc, nosuch0]\n"));
  Child agent({kSluiced, "--config", config, "--netns", topo_->lb.name(), "--pin-dir", pin_dir_},
              rundir_ / "sluiced.log");
  ASSERT_TRUE(wait_until([&] { return agent.poll().has_value(); }, 10s)) << agent_log();
  EXPECT_EQ(agent.poll(), std::optional<int>(1));
  EXPECT_NE(agent_log().find("track: interface 'nosuch0' not found in this network namespace: "
                             "No such device"),
            std::string::npos)
      << agent_log();
  EXPECT_FALSE(fs::exists(pin_dir_));
  ExpectNoXdp();
  for (bool ingress : {true, false}) EXPECT_TRUE(TcxProgs("lc", ingress).empty());
}

}  // namespace
}  // namespace sluice::test
