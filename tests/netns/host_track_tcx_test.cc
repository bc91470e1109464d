// HostTracker (agent/conntrack/host_track.cc) on real interfaces: tc_flow attached as tcx links to
// a veth in a private namespace, real TCP connections across it, and what attach, detach, pin and
// the destructor leave behind, read back from the kernel (BPF_PROG_QUERY on the tcx hooks, bpffs).
// Needs root and a kernel with tcx (Linux 6.6+); skips with the reason otherwise.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <sluice/bpf/maps.h>
#include <sluice/conntrack/host_track.h>
#include <sluice/core/event_loop.h>
#include <sluice/core/net.h>
#include <sluice/daemon/agent_metrics.h>
#include "conntrack_util.h"
#include "netns.h"

namespace sluice::test {
namespace {

using namespace std::chrono_literals;

// uapi enum bpf_attach_type; Debian 12's headers predate tcx (see agent/conntrack/host_track.cc).
constexpr auto kTcxIngress = static_cast<bpf_attach_type>(46);
constexpr auto kTcxEgress = static_cast<bpf_attach_type>(47);

constexpr char kLocalAddr[] = "198.18.200.1";
constexpr char kPeerAddr[] = "198.18.200.2";

sockaddr_in v4(const char* addr, uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  inet_pton(AF_INET, addr, &a.sin_addr);
  return a;
}

uint32_t prog_id(int prog_fd) {
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  EXPECT_EQ(bpf_obj_get_info_by_fd(prog_fd, &info, &len), 0) << strerror(errno);
  return info.id;
}

// Closes an fd on scope exit.
struct Closer {
  int fd;
  ~Closer() {
    if (fd >= 0) close(fd);
  }
};

class HostTrackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = skip_reason()) GTEST_SKIP() << *why;
    local_ = std::make_unique<NetNs>("ht");
    peer_ = std::make_unique<NetNs>("htp");
    make_veth(*local_, "ht0", *peer_, "ht1");
    make_veth(*local_, "ht2", *peer_, "ht3");
    local_->must(std::string("ip addr add ") + kLocalAddr + "/24 dev ht0");
    peer_->must(std::string("ip addr add ") + kPeerAddr + "/24 dev ht1");
    // tcx itself: a kernel without it refuses the attach type (EINVAL).
    auto t = Load();
    if (!t) return;
    auto s = local_->in([&] { return t->attach({"ht0"}); });
    if (!s && s.error().code == EINVAL) GTEST_SKIP() << "no tcx: " << s.error().to_string();
    ASSERT_TRUE(s) << s.error().to_string();
  }

  std::unique_ptr<HostTracker> Load(uint32_t max_flows = 1024) {
    auto t = HostTracker::load(max_flows);
    EXPECT_TRUE(t) << t.error().to_string();
    return t ? std::move(*t) : nullptr;
  }

  // Ids of the programs tcx runs on `ifname` of the local namespace, in chain order.
  std::vector<uint32_t> Tcx(const std::string& ifname, bool ingress) {
    const unsigned idx = ifindex(*local_, ifname);
    return local_->in([&] {
      std::vector<uint32_t> ids(64);
      LIBBPF_OPTS(bpf_prog_query_opts, q, .prog_ids = ids.data(),
                  .prog_cnt = static_cast<uint32_t>(ids.size()));
      const int err =
          bpf_prog_query_opts(static_cast<int>(idx), ingress ? kTcxIngress : kTcxEgress, &q);
      EXPECT_EQ(err, 0) << "query tcx on " << ifname << ": " << strerror(errno);
      ids.resize(err == 0 ? q.prog_cnt : 0);
      return ids;
    });
  }

  // Neither tcx hook of `ifname` runs anything, and no classic tc filter or qdisc was made.
  void ExpectBare(const std::string& ifname) {
    EXPECT_EQ(Tcx(ifname, true), std::vector<uint32_t>{}) << ifname << " tcx ingress";
    EXPECT_EQ(Tcx(ifname, false), std::vector<uint32_t>{}) << ifname << " tcx egress";
    const CmdResult q = local_->exec("tc qdisc show dev " + ifname);
    EXPECT_EQ(q.out.find("clsact"), std::string::npos) << q.out;
  }

  // One TCP connection from the local namespace to a listener in the peer one, across ht0:
  // connect, one exchange each way, then `close_how` (0: leave open; 1: orderly close from the
  // local side, the peer closing after; 2: RST by SO_LINGER 0). Returns the local port.
  uint16_t Connect(uint16_t port, int close_how) {
    const sockaddr_in dst = v4(kPeerAddr, port);
    int lfd = peer_->in([] { return socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0); });
    Closer lc{lfd};
    const int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    EXPECT_EQ(bind(lfd, reinterpret_cast<const sockaddr*>(&dst), sizeof(dst)), 0)
        << strerror(errno);
    EXPECT_EQ(listen(lfd, 4), 0);
    int cfd = local_->in([] { return socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0); });
    Closer cc{cfd};
    timeval tv{2, 0};
    setsockopt(cfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    EXPECT_EQ(connect(cfd, reinterpret_cast<const sockaddr*>(&dst), sizeof(dst)), 0)
        << strerror(errno);
    int sfd = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
    Closer sc{sfd};
    EXPECT_GE(sfd, 0) << strerror(errno);
    setsockopt(sfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char buf[16];
    EXPECT_EQ(send(cfd, "ping", 4, MSG_NOSIGNAL), 4);
    EXPECT_EQ(recv(sfd, buf, sizeof(buf), 0), 4);
    EXPECT_EQ(send(sfd, "pong", 4, MSG_NOSIGNAL), 4);
    EXPECT_EQ(recv(cfd, buf, sizeof(buf), 0), 4);
    sockaddr_in me{};
    socklen_t len = sizeof(me);
    getsockname(cfd, reinterpret_cast<sockaddr*>(&me), &len);
    if (close_how == 1) {
      EXPECT_EQ(shutdown(cfd, SHUT_WR), 0);
      EXPECT_EQ(recv(sfd, buf, sizeof(buf), 0), 0) << "the peer sees our FIN";
      EXPECT_EQ(shutdown(sfd, SHUT_WR), 0);
      EXPECT_EQ(recv(cfd, buf, sizeof(buf), 0), 0) << "we see the peer's FIN";
    } else if (close_how == 2) {
      linger lg{1, 0};
      setsockopt(cfd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
      close(cfd);
      cc.fd = -1;
    } else {
      open_.push_back(cc.fd);
      open_.push_back(sc.fd);
      cc.fd = sc.fd = -1;
    }
    return ntohs(me.sin_port);
  }

  // The host_flows entry of local:lport -> peer:pport, once its state is `state` (2 s).
  std::optional<sl_ct_entry> WaitEntry(const HostTracker& t, uint16_t lport, uint16_t pport,
                                       uint8_t state) {
    const sl_flow_key k = flow_key(kLocalAddr, lport, kPeerAddr, pport);
    sl_ct_entry e{};
    for (auto deadline = std::chrono::steady_clock::now() + 2s;
         std::chrono::steady_clock::now() < deadline; std::this_thread::sleep_for(10ms)) {
      if (bpf_map_lookup_elem(t.host_flows_fd(), &k, &e) == 0 && e.state == state) return e;
    }
    ADD_FAILURE() << "host_flows never showed " << kLocalAddr << ":" << lport << " -> " << kPeerAddr
                  << ":" << pport << " in " << tcp_state_name(state) << " (last: "
                  << (bpf_map_lookup_elem(t.host_flows_fd(), &k, &e) == 0 ? tcp_state_name(e.state)
                                                                          : "no entry")
                  << ")";
    return std::nullopt;
  }

  void TearDown() override {
    for (int fd : open_) close(fd);
  }

  std::unique_ptr<NetNs> local_, peer_;
  std::vector<int> open_;
};

TEST_F(HostTrackTest, AttachSeesRealConnectionsAndDetachLeavesNothing) {
  // SetUp proved tcx works with a tracker it dropped again: nothing may be left of it.
  ExpectBare("ht0");
  auto t = Load();
  ASSERT_TRUE(t);
  ASSERT_TRUE(local_->in([&] { return t->attach({"ht0", "ht2"}); }));
  ASSERT_EQ(t->attachments().size(), 2u);
  for (const char* ifname : {"ht0", "ht2"}) {
    EXPECT_EQ(Tcx(ifname, true), std::vector<uint32_t>{prog_id(t->ingress_prog_fd())}) << ifname;
    EXPECT_EQ(Tcx(ifname, false), std::vector<uint32_t>{prog_id(t->egress_prog_fd())}) << ifname;
  }

  // Real connections through ht0: an open one, an orderly close, an abortive close.
  const uint16_t open_port = Connect(7001, 0);
  auto e = WaitEntry(*t, open_port, 7001, SL_TCP_ESTABLISHED);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->flags & (SL_CT_F_INBOUND | SL_CT_F_MIDSTREAM), 0) << "this host opened it";
  EXPECT_GT(e->rtt_synack_ns, 0u) << "the handshake was seen";
  EXPECT_GE(e->packets[0], 3u) << "SYN, ACK, ping";
  EXPECT_GE(e->packets[1], 2u) << "SYN+ACK, pong";
  const uint16_t closed_port = Connect(7002, 1);
  EXPECT_TRUE(WaitEntry(*t, closed_port, 7002, SL_TCP_TIME_WAIT));
  const uint16_t reset_port = Connect(7003, 2);
  EXPECT_TRUE(WaitEntry(*t, reset_port, 7003, SL_TCP_CLOSED));

  t->detach();
  EXPECT_TRUE(t->attachments().empty());
  ExpectBare("ht0");
  ExpectBare("ht2");
  // Detached: a new connection leaves no entry.
  const uint16_t after = Connect(7004, 0);
  std::this_thread::sleep_for(100ms);
  const sl_flow_key k = flow_key(kLocalAddr, after, kPeerAddr, 7004);
  EXPECT_FALSE(ct_has(t->host_flows_fd(), k));

  // The destructor detaches too.
  ASSERT_TRUE(local_->in([&] { return t->attach({"ht0"}); }));
  EXPECT_EQ(Tcx("ht0", true).size(), 1u);
  t.reset();
  ExpectBare("ht0");
}

// tc_flow goes first in the chain, so it sees every packet whatever later programs decide,
// and detaching removes exactly its own links.
TEST_F(HostTrackTest, AttachesFirstAndDetachesOnlyItsOwn) {
  auto first = Load();
  auto second = Load();
  ASSERT_TRUE(first && second);
  ASSERT_TRUE(local_->in([&] { return first->attach({"ht0"}); }));
  ASSERT_TRUE(local_->in([&] { return second->attach({"ht0"}); }));
  const uint32_t a = prog_id(first->ingress_prog_fd()), b = prog_id(second->ingress_prog_fd());
  EXPECT_EQ(Tcx("ht0", true), (std::vector<uint32_t>{b, a}));
  // Both see the same connection: tc_flow returns TCX_NEXT, so the chain goes on.
  const uint16_t port = Connect(7010, 0);
  EXPECT_TRUE(WaitEntry(*first, port, 7010, SL_TCP_ESTABLISHED));
  EXPECT_TRUE(WaitEntry(*second, port, 7010, SL_TCP_ESTABLISHED));
  second.reset();
  EXPECT_EQ(Tcx("ht0", true), std::vector<uint32_t>{a});
  EXPECT_EQ(Tcx("ht0", false), std::vector<uint32_t>{prog_id(first->egress_prog_fd())});
  first.reset();
  ExpectBare("ht0");
}

TEST_F(HostTrackTest, MissingInterfaceIsAClearErrorAndAttachesNothing) {
  auto t = Load();
  ASSERT_TRUE(t);
  auto s = local_->in([&] { return t->attach({"ht0", "nosuch0", "ht2"}); });
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, ENODEV) << s.error().to_string();
  EXPECT_EQ(s.error().to_string(),
            "track: interface 'nosuch0' not found in this network namespace: No such device "
            "(errno 19)");
  EXPECT_TRUE(t->attachments().empty()) << "all or nothing";
  ExpectBare("ht0");
  ExpectBare("ht2");
}

// host_flows entries leave by the per-state timeouts of VIP flows (a ConntrackManager in
// host-flows mode), on a fake clock.
TEST_F(HostTrackTest, ExpiryUsesTheConntrackTimeouts) {
  auto t = Load();
  ASSERT_TRUE(t);
  auto loop = EventLoop::create();
  ASSERT_TRUE(loop) << loop.error().to_string();
  uint64_t now = 1000 * kSec;
  ConntrackOptions opts;
  opts.clock = [&now] { return now; };
  ConntrackTimeouts timeouts;
  timeouts.established = 100;
  timeouts.time_wait = 5;
  ASSERT_TRUE(t->start_expiry(**loop, timeouts, opts));
  ASSERT_NE(t->expiry(), nullptr);
  now = 2000 * kSec;  // after the manager's start: no restart grace
  const sl_flow_key open = flow_key(kLocalAddr, 40000, kPeerAddr, 80);
  const sl_flow_key closing = flow_key(kLocalAddr, 40001, kPeerAddr, 80);
  const sl_flow_key done = flow_key(kLocalAddr, 40002, kPeerAddr, 80);
  ASSERT_TRUE(ct_put(t->host_flows_fd(), open, ct_entry(SL_TCP_ESTABLISHED, 0, now - 90 * kSec)));
  ASSERT_TRUE(ct_put(t->host_flows_fd(), closing, ct_entry(SL_TCP_TIME_WAIT, 0, now - 4 * kSec)));
  ASSERT_TRUE(ct_put(t->host_flows_fd(), done, ct_entry(SL_TCP_TIME_WAIT, 0, now - 6 * kSec)));
  auto r = t->expiry()->sweep_now();
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->expired, 1u);
  EXPECT_TRUE(ct_has(t->host_flows_fd(), open));
  EXPECT_TRUE(ct_has(t->host_flows_fd(), closing));
  EXPECT_FALSE(ct_has(t->host_flows_fd(), done));
  now += 2 * kSec;
  ASSERT_TRUE(t->expiry()->sweep_now());
  EXPECT_TRUE(ct_has(t->host_flows_fd(), open));
  EXPECT_FALSE(ct_has(t->host_flows_fd(), closing));
  const ConntrackStats st = t->expiry()->snapshot();
  EXPECT_EQ(st.expired[SL_TCP_TIME_WAIT], 2u);
  EXPECT_EQ(st.entries[SL_TCP_ESTABLISHED], 1u);
  EXPECT_FALSE(st.events_enabled);

  // The same numbers on /metrics.
  MetricsWriter w;
  ASSERT_TRUE(host_flow_metrics(*t->expiry())(w));
  const std::string text = w.text();
  for (const char* line :
       {"# TYPE sluice_host_flows gauge\n", "sluice_host_flows{state=\"established\"} 1\n",
        "sluice_host_flows{state=\"time_wait\"} 0\n",
        "sluice_host_flow_expiries_total{state=\"time_wait\"} 2\n",
        "sluice_host_flow_sweep_errors_total 0\n"}) {
    EXPECT_NE(text.find(line), std::string::npos) << line << "in:\n" << text;
  }
  EXPECT_EQ(text.find("state=\"none\""), std::string::npos) << text;
}

TEST_F(HostTrackTest, PinIsReadableAndGoesAway) {
  auto t = Load(4096);
  ASSERT_TRUE(t);
  const std::string dir = "/sys/fs/bpf/sluice-ut-ht-" + std::to_string(getpid());
  ASSERT_TRUE(t->pin(dir));
  const std::string path = dir + "/" + kHostFlowsPin;
  {
    auto fd = open_pinned_host_flows(dir);
    ASSERT_TRUE(fd) << fd.error().to_string();
    bpf_map_info info{};
    uint32_t len = sizeof(info);
    ASSERT_EQ(bpf_obj_get_info_by_fd(fd->get(), &info, &len), 0);
    EXPECT_EQ(info.type, BPF_MAP_TYPE_LRU_HASH);
    EXPECT_GE(info.max_entries, 4096u) << "max_flows (rounded up to a multiple of the CPUs)";
    EXPECT_LT(info.max_entries, 4096u + 1024u);
  }
  EXPECT_FALSE(t->pin(dir)) << "pinned twice";
  t->unpin();
  struct stat st {};
  EXPECT_NE(stat(path.c_str(), &st), 0);
  EXPECT_NE(stat(dir.c_str(), &st), 0) << "the directory pin() created goes too";
  // The destructor unpins as well.
  ASSERT_TRUE(t->pin(dir));
  t.reset();
  EXPECT_NE(stat(dir.c_str(), &st), 0);
  auto gone = open_pinned_host_flows(dir);
  ASSERT_FALSE(gone);
  EXPECT_NE(gone.error().message.find("'track' section"), std::string::npos)
      << gone.error().to_string();
}

}  // namespace
}  // namespace sluice::test
