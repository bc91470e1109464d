// The host's own TCP flows (bpf/tc_flow.bpf.c) through BPF_PROG_TEST_RUN of the SCHED_CLS
// programs: every segment goes through tc_flow_egress (sent by this host) or tc_flow_ingress
// (received), must come out unchanged with TC_ACT_UNSPEC (TCX_NEXT: the rest of the hook's
// chain still runs), and leaves the `host_flows` entry (keyed local -> peer) in the asserted
// state. The programs need no interface: the test runs
// them on bare frames, no namespace required.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <sluice/abi/abi.h>
#include <sluice/core/net.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "netns.h"
#include "packet.h"
#include "tc_flow.skel.h"

namespace sluice::test {
namespace {

constexpr char kLocalMac[] = "02:00:00:00:00:01";
constexpr char kPeerMac[] = "02:00:00:00:00:02";
constexpr uint8_t kS = tcpf::kSyn, kA = tcpf::kAck, kF = tcpf::kFin, kR = tcpf::kRst;
constexpr int kTcActUnspec = -1;  // TCX_NEXT

// A TCP connection between this host (local) and a peer, seen at the host's interface.
struct HostConn {
  std::string local, peer;
  uint16_t lport, pport;

  bool v6() const { return local.find(':') != std::string::npos; }
  // Sent by this host: egress.
  Packet out(uint8_t flags, uint32_t seq, uint32_t ack, size_t payload = 0) const {
    Packet p = Packet().eth(kLocalMac, kPeerMac);
    p = v6() ? p.ipv6(local, peer) : p.ipv4(local, peer);
    p.tcp(lport, pport, flags, seq, ack);
    return payload ? p.payload(payload) : p;
  }
  // Received from the peer: ingress.
  Packet in(uint8_t flags, uint32_t seq, uint32_t ack, size_t payload = 0) const {
    Packet p = Packet().eth(kPeerMac, kLocalMac);
    p = v6() ? p.ipv6(peer, local) : p.ipv4(peer, local);
    p.tcp(pport, lport, flags, seq, ack);
    return payload ? p.payload(payload) : p;
  }
  sl_flow_key key() const {
    sl_flow_key k{};
    const int af = v6() ? AF_INET6 : AF_INET;
    inet_pton(af, local.c_str(), k.src.w);
    inet_pton(af, peer.c_str(), k.dst.w);
    k.sport = htons(lport);
    k.dport = htons(pport);
    k.proto = IPPROTO_TCP;
    k.family = v6() ? SL_AF_INET6 : SL_AF_INET;
    return k;
  }
};

struct Seg {
  std::string what;
  Packet pkt;
  bool ingress;
  std::optional<uint8_t> state;  // nullopt: no entry
  std::chrono::microseconds sleep_before{0};
  std::function<void(const sl_ct_entry&)> check;
};

class TcFlowTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = skip_reason()) GTEST_SKIP() << *why;
    skel_ = tc_flow_bpf__open();
    ASSERT_NE(skel_, nullptr) << strerror(errno);
    ASSERT_EQ(bpf_map__set_max_entries(skel_->maps.host_flows, 64), 0);
    ASSERT_EQ(tc_flow_bpf__load(skel_), 0) << "tc_flow_bpf__load";
  }
  void TearDown() override {
    if (skel_) tc_flow_bpf__destroy(skel_);
  }

  void Run(const HostConn& c, const std::vector<Seg>& segs) {
    const sl_flow_key k = c.key();
    for (size_t i = 0; i < segs.size(); i++) {
      const Seg& s = segs[i];
      SCOPED_TRACE("segment " + std::to_string(i + 1) + ": " + (s.ingress ? "in: " : "out: ") +
                   s.what);
      if (s.sleep_before.count() > 0) std::this_thread::sleep_for(s.sleep_before);
      const Bytes frame = s.pkt.build();
      Bytes out(frame.size() + 64);
      LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = frame.data(), .data_out = out.data(),
                  .data_size_in = static_cast<uint32_t>(frame.size()),
                  .data_size_out = static_cast<uint32_t>(out.size()), .repeat = 1);
      bpf_program* prog = s.ingress ? skel_->progs.tc_flow_ingress : skel_->progs.tc_flow_egress;
      ASSERT_EQ(bpf_prog_test_run_opts(bpf_program__fd(prog), &o), 0) << strerror(errno);
      EXPECT_EQ(o.retval, static_cast<uint32_t>(kTcActUnspec));
      out.resize(o.data_size_out);
      EXPECT_TRUE(out == frame) << "tc_flow changed the packet\n" << diff(frame, out);
      sl_ct_entry e{};
      const bool found = bpf_map_lookup_elem(bpf_map__fd(skel_->maps.host_flows), &k, &e) == 0;
      if (!s.state) {
        EXPECT_FALSE(found) << "entry in state " << tcp_state_name(e.state);
        continue;
      }
      ASSERT_TRUE(found) << "no host_flows entry, expected " << tcp_state_name(*s.state);
      EXPECT_STREQ(tcp_state_name(e.state), tcp_state_name(*s.state));
      if (s.check) s.check(e);
    }
  }

  size_t Entries() {
    size_t n = 0;
    sl_flow_key key{}, next{};
    void* prev = nullptr;
    while (bpf_map_get_next_key(bpf_map__fd(skel_->maps.host_flows), prev, &next) == 0) {
      n++;
      key = next;
      prev = &key;
    }
    return n;
  }

  tc_flow_bpf* skel_ = nullptr;
};

TEST_F(TcFlowTest, OutboundHandshakeCloseAndReuse) {
  const HostConn c{"198.18.0.1", "198.18.0.2", 40000, 80};
  std::vector<Seg> segs = {
      {"SYN",
       c.out(kS, 1000, 0),
       false,
       SL_TCP_SYN_SENT,
       {},
       [](const sl_ct_entry& e) {
         EXPECT_EQ(e.flags & SL_CT_F_INBOUND, 0) << "this host opened";
         EXPECT_GT(e.syn_ns, 0u);
       }},
      {"SYN+ACK", c.in(kS | kA, 5000, 1001), true, SL_TCP_SYN_RECV, std::chrono::microseconds(2000),
       nullptr},
      {"ACK", c.out(kA, 1001, 5001), false, SL_TCP_ESTABLISHED, std::chrono::microseconds(1000),
       [](const sl_ct_entry& e) {
         EXPECT_GE(e.rtt_synack_ns, 2000000u);
         EXPECT_LT(e.rtt_synack_ns, 1000000000u);
         EXPECT_GE(e.rtt_ack_ns, 1000000u);
         EXPECT_LT(e.rtt_ack_ns, 1000000000u);
       }},
      {"data", c.out(kA, 1001, 5001, 100), false, SL_TCP_ESTABLISHED, {}, nullptr},
      {"data",
       c.in(kA, 5001, 1101, 300),
       true,
       SL_TCP_ESTABLISHED,
       {},
       [](const sl_ct_entry& e) {
         EXPECT_EQ(e.packets[0], 3u);
         EXPECT_EQ(e.packets[1], 2u);
       }},
      {"FIN", c.out(kF | kA, 1101, 5301), false, SL_TCP_FIN_WAIT, {}, nullptr},
      {"ACK of the FIN", c.in(kA, 5301, 1102), true, SL_TCP_CLOSE_WAIT, {}, nullptr},
      {"FIN", c.in(kF | kA, 5301, 1102), true, SL_TCP_LAST_ACK, {}, nullptr},
      {"last ACK", c.out(kA, 1102, 5302), false, SL_TCP_TIME_WAIT, {}, nullptr},
      // The peer reconnects from the same port: a new connection it opened.
      {"new SYN from the peer",
       c.in(kS, 9000, 0),
       true,
       SL_TCP_SYN_SENT,
       {},
       [](const sl_ct_entry& e) {
         EXPECT_EQ(e.flags & (SL_CT_F_INBOUND | SL_CT_F_REUSED), SL_CT_F_INBOUND | SL_CT_F_REUSED);
         EXPECT_EQ(e.packets[0], 1u);
         EXPECT_EQ(e.packets[1], 0u);
       }},
      {"SYN+ACK", c.out(kS | kA, 7000, 9001), false, SL_TCP_SYN_RECV, {}, nullptr},
      {"ACK", c.in(kA, 9001, 7001), true, SL_TCP_ESTABLISHED, {}, nullptr},
  };
  Run(c, segs);
  EXPECT_EQ(Entries(), 1u);
}

TEST_F(TcFlowTest, InboundHandshakeAndReset) {
  const HostConn c{"fd00:18::1", "fd00:18::2", 22, 50000};
  Run(c, {
             {"SYN",
              c.in(kS, 1000, 0),
              true,
              SL_TCP_SYN_SENT,
              {},
              [](const sl_ct_entry& e) { EXPECT_EQ(e.flags & SL_CT_F_INBOUND, SL_CT_F_INBOUND); }},
             {"SYN+ACK", c.out(kS | kA, 5000, 1001), false, SL_TCP_SYN_RECV, {}, nullptr},
             {"ACK", c.in(kA, 1001, 5001), true, SL_TCP_ESTABLISHED, {}, nullptr},
             {"data",
              c.in(kA, 1001, 5001, 40),
              true,
              SL_TCP_ESTABLISHED,
              {},
              [](const sl_ct_entry& e) {
                EXPECT_EQ(e.packets[0], 3u) << "the peer opened: ingress is direction 0";
                EXPECT_EQ(e.packets[1], 1u);
              }},
             {"RST", c.out(kR | kA, 5001, 1041), false, SL_TCP_CLOSED, {}, nullptr},
         });
}

TEST_F(TcFlowTest, FirstSeenSynAckAndNonTcp) {
  const HostConn c{"198.18.0.1", "198.18.0.2", 40001, 443};
  Run(c, {
             // Attached after this host's SYN left: the SYN+ACK's receiver opened the flow.
             {"SYN+ACK, no entry",
              c.in(kS | kA, 5000, 1001),
              true,
              SL_TCP_ESTABLISHED,
              {},
              [](const sl_ct_entry& e) {
                EXPECT_EQ(e.flags & (SL_CT_F_INBOUND | SL_CT_F_MIDSTREAM), SL_CT_F_MIDSTREAM);
                EXPECT_EQ(e.packets[1], 1u);
              }},
             {"ACK",
              c.out(kA, 1001, 5001),
              false,
              SL_TCP_ESTABLISHED,
              {},
              [](const sl_ct_entry& e) { EXPECT_EQ(e.packets[0], 1u); }},
         });
  const HostConn other{"198.18.0.1", "198.18.0.2", 40002, 443};
  Run(other, {{"RST, no entry", other.out(kR, 1, 0), false, std::nullopt, {}, nullptr}});
  // UDP is not tracked.
  const Bytes udp = Packet()
                        .eth(kLocalMac, kPeerMac)
                        .ipv4("198.18.0.1", "198.18.0.2")
                        .udp(5000, 53)
                        .payload(8)
                        .build();
  LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = udp.data(),
              .data_size_in = static_cast<uint32_t>(udp.size()), .repeat = 1);
  ASSERT_EQ(bpf_prog_test_run_opts(bpf_program__fd(skel_->progs.tc_flow_egress), &o), 0);
  EXPECT_EQ(o.retval, static_cast<uint32_t>(kTcActUnspec));
  EXPECT_EQ(Entries(), 1u);
}

}  // namespace
}  // namespace sluice::test
