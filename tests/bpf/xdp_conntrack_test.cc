// TCP state tracking of xdp_lb (bpf/lib/conntrack.h) through BPF_PROG_TEST_RUN: crafted
// segment sequences go through the real program (client segments in on the client interface,
// NAT replies in on the backend's), and after EVERY segment the test asserts
//   - the verdict;
//   - the conntrack entry's state (or that there is none);
//   - backend_conns for every backend id (the live counts least-conn uses), exactly;
//   - the ct_events records that segment produced, in order, with their fields;
// plus per-case checks of flags, handshake RTTs, per-direction counters and the ct_stats /
// ct_transitions counters. The state table these sequences walk is in docs/design.md, "TCP
// state machine". The world (namespaces, addresses) is the one of xdp_lb_test: xdp_env.h.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sluice/abi/abi.h>
#include <sluice/conntrack/conntrack.h>
#include <sluice/core/net.h>

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "packet.h"
#include "param_name.h"
#include "xdp_env.h"

namespace sluice::test {
namespace {

// ---------------------------------------------------------------------------------------------
// Sequences

struct EventExp {
  uint8_t type;  // enum sl_ct_event_type
  uint8_t old_state, new_state;
  uint32_t backend_id;
};

// One segment of a sequence and everything that must hold right after it.
struct Seg {
  std::string what;
  Packet in;
  Iface ingress = Iface::kTin;
  int verdict = XDP_REDIRECT;
  std::optional<uint8_t> state;               // the flow's state after it; nullopt: no entry
  std::map<uint32_t, uint64_t> conns;         // backend_conns after it; unlisted ids must be 0
  std::vector<EventExp> events;               // the ct_events records it produced, in order
  std::chrono::microseconds sleep_before{0};  // to give the handshake RTTs a known minimum
  std::function<void(Env&)> before;           // e.g. a ring switch
  std::function<void(Env&, const sl_ct_entry&)> check;  // more fields of the entry
};

struct Seq {
  std::string name;
  std::string description;
  std::vector<VipSpec> vips;  // vip_id = index
  sl_flow_key key;            // the flow whose entry the segments' expectations describe
  std::vector<Seg> segs;
  std::function<void(Env&)> check;  // after the last segment
};

void PrintTo(const Seq& s, std::ostream* os) { *os << s.name << ": " << s.description; }

std::string state_name(uint8_t s) { return sluice::tcp_state_name(s); }

std::string ev_str(const EventExp& e) {
  std::ostringstream os;
  os << sluice::ct_event_name(e.type) << " " << state_name(e.old_state) << "->"
     << state_name(e.new_state) << " backend " << e.backend_id;
  return os.str();
}

std::string ev_str(const sl_ct_event& e) {
  return ev_str(EventExp{e.type, e.old_state, e.new_state, e.backend_id});
}

// A TCP connection client:cport -> vip:vport served by `be` (nat: replies come back through
// the LB from be's interface). Sequence numbers are the test's choice: the client's ISN is
// 1000 and the backend's 5000 in every case below.
struct Conn {
  std::string client;
  uint16_t cport;
  std::string vip;
  uint16_t vport;
  BackendSpec be;

  Packet ip_from_client() const {
    return is_v6(client) ? client_eth().ipv6(client, vip) : client_eth().ipv4(client, vip);
  }
  Packet ip_from_backend() const {
    const Hop h = hop_to(be.addr);
    Packet p = Packet().eth(h.dmac, h.smac);
    return is_v6(client) ? p.ipv6(be.addr, client) : p.ipv4(be.addr, client);
  }
  // The backend's source port on the wire: a port-0 backend answers from the VIP's port.
  uint16_t be_port() const { return be.port ? be.port : vport; }

  Packet c(uint8_t flags, uint32_t seq, uint32_t ack, size_t payload = 0) const {
    Packet p = ip_from_client().tcp(cport, vport, flags, seq, ack);
    return payload ? p.payload(payload) : p;
  }
  Packet b(uint8_t flags, uint32_t seq, uint32_t ack, size_t payload = 0) const {
    Packet p = ip_from_backend().tcp(be_port(), cport, flags, seq, ack);
    return payload ? p.payload(payload) : p;
  }

  Seg to_vip(std::string what, Packet in, std::optional<uint8_t> state,
             std::map<uint32_t, uint64_t> conns, std::vector<EventExp> events = {}) const {
    Seg s;
    s.what = "client: " + std::move(what);
    s.in = std::move(in);
    s.ingress = Iface::kTin;
    s.state = state;
    s.conns = std::move(conns);
    s.events = std::move(events);
    return s;
  }
  Seg reply(std::string what, Packet in, std::optional<uint8_t> state,
            std::map<uint32_t, uint64_t> conns, std::vector<EventExp> events = {}) const {
    Seg s;
    s.what = "backend: " + std::move(what);
    s.in = std::move(in);
    s.ingress = hop_to(be.addr).egress;
    s.state = state;
    s.conns = std::move(conns);
    s.events = std::move(events);
    return s;
  }

  EventExp ev(uint8_t type, uint8_t from, uint8_t to) const { return {type, from, to, be.id}; }
  std::map<uint32_t, uint64_t> live() const { return {{be.id, 1}}; }
  sl_flow_key key() const { return flow_key(client, vip, cport, vport); }

  // The client's SYN (ISN 1000) that opens the flow.
  Seg syn() const;
  // The client's ACK with 20 bytes (seq 7000, ack 9000) of a flow sluice has no entry for.
  Seg midstream() const;
  // The client's ACK of a SYN+ACK (ISN 5000) that did not come through the LB: it establishes,
  // with `conns` counted.
  Seg ack_of_unseen_synack(std::string what, std::map<uint32_t, uint64_t> conns) const;
};

constexpr uint8_t kS = tcpf::kSyn, kA = tcpf::kAck, kF = tcpf::kFin, kR = tcpf::kRst;
constexpr uint32_t kFar = 0x40000000;  // a quarter of the sequence space away

Seg Conn::syn() const {
  return to_vip("SYN", c(kS, 1000, 0), SL_TCP_SYN_SENT, {},
                {ev(SL_CT_EV_NEW, SL_TCP_NONE, SL_TCP_SYN_SENT)});
}

Seg Conn::midstream() const {
  return to_vip("ACK + data, no entry", c(kA, 7000, 9000, 20), SL_TCP_ESTABLISHED, {},
                {ev(SL_CT_EV_NEW, SL_TCP_NONE, SL_TCP_ESTABLISHED)});
}

Seg Conn::ack_of_unseen_synack(std::string what, std::map<uint32_t, uint64_t> conns) const {
  return to_vip(std::move(what), c(kA, 1001, 5001), SL_TCP_ESTABLISHED, std::move(conns),
                {ev(SL_CT_EV_ESTABLISHED, SL_TCP_SYN_SENT, SL_TCP_ESTABLISHED)});
}

// The 3-way handshake: client ISN 1000, backend ISN 5000. The flow is counted (backend_conns)
// from the ACK that confirms it: before, it is pending, and a blind sender's SYNs count for
// nothing.
std::vector<Seg> open_segs(const Conn& c) {
  return {
      c.syn(),
      c.reply("SYN+ACK", c.b(kS | kA, 5000, 1001), SL_TCP_SYN_RECV, {}),
      c.to_vip("ACK", c.c(kA, 1001, 5001), SL_TCP_ESTABLISHED, c.live(),
               {c.ev(SL_CT_EV_ESTABLISHED, SL_TCP_SYN_RECV, SL_TCP_ESTABLISHED)}),
  };
}

// The dsr handshake: the client's SYN and its ACK; the SYN+ACK goes straight to the client.
std::vector<Seg> dsr_open_segs(const Conn& c) {
  return {c.syn(), c.ack_of_unseen_synack("ACK", c.live())};
}

// The segments that bring a fresh flow to `state` along the client-first close.
std::vector<Seg> prefix_to(const Conn& c, uint8_t state) {
  std::vector<Seg> all = open_segs(c);
  all.push_back(c.to_vip("FIN", c.c(kF | kA, 1001, 5001), SL_TCP_FIN_WAIT, c.live()));
  all.push_back(c.reply("ACK of the FIN", c.b(kA, 5001, 1002), SL_TCP_CLOSE_WAIT, c.live()));
  all.push_back(c.reply("FIN", c.b(kF | kA, 5001, 1002), SL_TCP_LAST_ACK, c.live()));
  all.push_back(c.to_vip("last ACK", c.c(kA, 1002, 5002), SL_TCP_TIME_WAIT, {},
                         {c.ev(SL_CT_EV_CLOSED_FIN, SL_TCP_LAST_ACK, SL_TCP_TIME_WAIT)}));
  std::vector<Seg> out;
  for (Seg& s : all) {
    out.push_back(std::move(s));
    if (out.back().state == state) return out;
  }
  ADD_FAILURE() << "no prefix reaches " << state_name(state);
  return out;
}

VipSpec nat_vip(const std::string& vip, uint16_t port = 80) {
  const bool v6 = is_v6(vip);
  return {vip,         port, IPPROTO_TCP,
          SL_MODE_NAT, 0,    {{1, v6 ? kBe1v6 : kBe1v4, 8080}, {2, v6 ? kBe2v6 : kBe2v4, 8080}}};
}

VipSpec dsr_vip(const std::string& vip) {
  VipSpec v = nat_vip(vip);
  v.mode = SL_MODE_DSR;
  for (auto& b : v.backends) b.port = 80;
  return v;
}

Conn conn(const VipSpec& v, const std::string& client, uint16_t cport) {
  return {client, cport, v.addr, v.port, pick(v, client, cport)};
}

// The sequence `segs` of connection `c` to the one VIP `v`.
Seq seq(std::string name, std::string description, const VipSpec& v, const Conn& c,
        std::vector<Seg> segs, std::function<void(Env&)> check = nullptr) {
  return {std::move(name), std::move(description), {v}, c.key(), std::move(segs), std::move(check)};
}

void expect_flags(const sl_ct_entry& e, uint8_t set, uint8_t clear = 0) {
  EXPECT_EQ(e.flags & set, set) << "flags 0x" << std::hex << int{e.flags};
  EXPECT_EQ(e.flags & clear, 0) << "flags 0x" << std::hex << int{e.flags};
}

// ---------------------------------------------------------------------------------------------
// The cases

std::vector<Seq> OpenAndCloseCases() {
  std::vector<Seq> out;
  const VipSpec v = nat_vip(kVip4);
  {
    const Conn c = conn(v, kClient4, 42000);
    std::vector<Seg> s = open_segs(c);
    // Known gaps: the RTTs must cover them, and a sane clock keeps them well under a second.
    s[1].sleep_before = std::chrono::microseconds(2000);
    s[2].sleep_before = std::chrono::microseconds(3000);
    s[2].check = [](Env&, const sl_ct_entry& e) {
      EXPECT_GE(e.rtt_synack_ns, 2000000u);
      EXPECT_LT(e.rtt_synack_ns, 1000000000u);
      EXPECT_GE(e.rtt_ack_ns, 3000000u);
      EXPECT_LT(e.rtt_ack_ns, 1000000000u);
      EXPECT_GT(e.syn_ns, 0u);
      EXPECT_GE(e.synack_ns - e.syn_ns, 2000000u);
      expect_flags(e, 0, SL_CT_F_ONE_SIDED | SL_CT_F_MIDSTREAM | SL_CT_F_HS_RETRANS);
    };
    s.push_back(c.to_vip("data", c.c(kA, 1001, 5001, 100), SL_TCP_ESTABLISHED, c.live()));
    s.push_back(c.reply("data", c.b(kA, 5001, 1101, 300), SL_TCP_ESTABLISHED, c.live()));
    const Conn cc = c;
    s.back().check = [cc](Env&, const sl_ct_entry& e) {
      EXPECT_EQ(e.backend_id, cc.be.id);
      EXPECT_EQ(e.packets[0], 3u);
      EXPECT_EQ(e.packets[1], 2u);
      EXPECT_EQ(e.bytes[0], cc.c(kS, 1000, 0).size() + cc.c(kA, 1001, 5001).size() +
                                cc.c(kA, 1001, 5001, 100).size());
      EXPECT_EQ(e.bytes[1], cc.b(kS | kA, 5000, 1001).size() + cc.b(kA, 5001, 1101, 300).size());
      EXPECT_GT(e.first_seen_ns, 0u);
      EXPECT_GE(e.last_seen_ns, e.first_seen_ns);
    };
    out.push_back(seq(
        "open_handshake_rtt_and_counters",
        "SYN, SYN+ACK, ACK: SYN_SENT, SYN_RECV, ESTABLISHED; RTTs from the precise "
        "clock; per-direction packets and bytes",
        v, c, s, [cc](Env& env) {
          // The ESTABLISHED event carried the entry's RTTs: checked in the runner;
          // every transition counted once.
          EXPECT_EQ(env.ct_transitions(SL_TCP_NONE, SL_TCP_SYN_SENT), 1u);
          EXPECT_EQ(env.ct_transitions(SL_TCP_SYN_SENT, SL_TCP_SYN_RECV), 1u);
          EXPECT_EQ(env.ct_transitions(SL_TCP_SYN_RECV, SL_TCP_ESTABLISHED), 1u);
          EXPECT_EQ(env.percpu_sum<sl_traffic>(env.skel()->maps.backend_stats, cc.be.id).new_flows,
                    1u);
        }));
  }
  {
    const Conn c = conn(v, kClient4, 42001);
    std::vector<Seg> s = open_segs(c);
    // The FIN carries 50 bytes: it occupies sequence number 1051, so only ACK 1052 covers it.
    s.push_back(
        c.to_vip("FIN + 50 bytes", c.c(kF | kA, 1001, 5001, 50), SL_TCP_FIN_WAIT, c.live()));
    s.back().check = [](Env&, const sl_ct_entry& e) {
      EXPECT_EQ(e.fin_ack_seq[0], 1052u);
      EXPECT_EQ(e.seen & SL_CT_SEEN_FIN(0), SL_CT_SEEN_FIN(0));
      expect_flags(e, 0, SL_CT_F_CLOSER_BACKEND);
    };
    s.push_back(
        c.reply("ACK of the data only (1051)", c.b(kA, 5001, 1051), SL_TCP_FIN_WAIT, c.live()));
    s.push_back(c.reply("ACK of the FIN (1052)", c.b(kA, 5001, 1052), SL_TCP_CLOSE_WAIT, c.live()));
    s.push_back(
        c.reply("more data in CLOSE_WAIT", c.b(kA, 5001, 1052, 200), SL_TCP_CLOSE_WAIT, c.live()));
    s.push_back(c.to_vip("ACK of that data", c.c(kA, 1052, 5201), SL_TCP_CLOSE_WAIT, c.live()));
    s.push_back(c.reply("FIN", c.b(kF | kA, 5201, 1052), SL_TCP_LAST_ACK, c.live()));
    s.push_back(c.reply("FIN retransmitted", c.b(kF | kA, 5201, 1052), SL_TCP_LAST_ACK, c.live()));
    s.push_back(c.to_vip("last ACK", c.c(kA, 1052, 5202), SL_TCP_TIME_WAIT, {},
                         {c.ev(SL_CT_EV_CLOSED_FIN, SL_TCP_LAST_ACK, SL_TCP_TIME_WAIT)}));
    s.push_back(c.to_vip("last ACK retransmitted", c.c(kA, 1052, 5202), SL_TCP_TIME_WAIT, {}));
    s.back().check = [](Env&, const sl_ct_entry& e) {
      EXPECT_EQ(e.live, 0u);
      EXPECT_EQ(e.seen & 0xf0, 0xf0) << "both FINs sent and acknowledged";
    };
    out.push_back(seq("client_closes_first",
                      "FIN_WAIT until the ACK covers the FIN, CLOSE_WAIT while the backend still "
                      "sends, LAST_ACK, TIME_WAIT; retransmits change nothing",
                      v, c, s, [](Env& env) {
                        EXPECT_EQ(env.ct_transitions(SL_TCP_ESTABLISHED, SL_TCP_FIN_WAIT), 1u);
                        EXPECT_EQ(env.ct_transitions(SL_TCP_FIN_WAIT, SL_TCP_CLOSE_WAIT), 1u);
                        EXPECT_EQ(env.ct_transitions(SL_TCP_CLOSE_WAIT, SL_TCP_LAST_ACK), 1u);
                        EXPECT_EQ(env.ct_transitions(SL_TCP_LAST_ACK, SL_TCP_TIME_WAIT), 1u);
                      }));
  }
  {
    const Conn c = conn(v, kClient4, 42002);
    std::vector<Seg> s = open_segs(c);
    s.push_back(c.reply("FIN", c.b(kF | kA, 5001, 1001), SL_TCP_FIN_WAIT, c.live()));
    s.back().check = [](Env&, const sl_ct_entry& e) {
      expect_flags(e, SL_CT_F_CLOSER_BACKEND);
      EXPECT_EQ(e.fin_ack_seq[1], 5002u);
    };
    s.push_back(c.to_vip("ACK of the FIN", c.c(kA, 1001, 5002), SL_TCP_CLOSE_WAIT, c.live()));
    s.push_back(
        c.to_vip("data (half-close)", c.c(kA, 1001, 5002, 200), SL_TCP_CLOSE_WAIT, c.live()));
    s.push_back(c.to_vip("more data", c.c(kA, 1201, 5002, 200), SL_TCP_CLOSE_WAIT, c.live()));
    s.push_back(c.reply("ACK of the data", c.b(kA, 5002, 1401), SL_TCP_CLOSE_WAIT, c.live()));
    s.push_back(c.to_vip("FIN", c.c(kF | kA, 1401, 5002), SL_TCP_LAST_ACK, c.live()));
    s.push_back(c.reply("last ACK", c.b(kA, 5002, 1402), SL_TCP_TIME_WAIT, {},
                        {c.ev(SL_CT_EV_CLOSED_FIN, SL_TCP_LAST_ACK, SL_TCP_TIME_WAIT)}));
    s.back().check = [](Env&, const sl_ct_entry& e) {
      EXPECT_EQ(e.packets[0], 6u);
      EXPECT_EQ(e.packets[1], 4u);
      expect_flags(e, SL_CT_F_CLOSER_BACKEND, SL_CT_F_SIMCLOSE);
    };
    out.push_back(seq("backend_closes_first_half_close",
                      "the backend's FIN, then CLOSE_WAIT while the client keeps sending", v, c,
                      s));
  }
  {
    const Conn c = conn(v, kClient4, 42003);
    std::vector<Seg> s = open_segs(c);
    s.push_back(c.to_vip("FIN", c.c(kF | kA, 1001, 5001), SL_TCP_FIN_WAIT, c.live()));
    // The backend's FIN crosses the client's: it does not acknowledge it.
    s.push_back(c.reply("FIN (crossing)", c.b(kF | kA, 5001, 1001), SL_TCP_LAST_ACK, c.live()));
    s.back().check = [](Env&, const sl_ct_entry& e) { expect_flags(e, SL_CT_F_SIMCLOSE); };
    s.push_back(
        c.to_vip("ACK of the backend's FIN", c.c(kA, 1002, 5002), SL_TCP_LAST_ACK, c.live()));
    s.push_back(c.reply("ACK of the client's FIN", c.b(kA, 5002, 1002), SL_TCP_TIME_WAIT, {},
                        {c.ev(SL_CT_EV_CLOSED_FIN, SL_TCP_LAST_ACK, SL_TCP_TIME_WAIT)}));
    out.push_back(seq("simultaneous_close",
                      "FINs cross: FIN_WAIT, LAST_ACK, and TIME_WAIT once both are acknowledged", v,
                      c, s));
  }
  {
    const Conn c = conn(v, kClient4, 42004);
    std::vector<Seg> s = open_segs(c);
    // FIN+ACK answering the client's FIN at once (a 3-way close): no CLOSE_WAIT in between.
    s.push_back(c.to_vip("FIN", c.c(kF | kA, 1001, 5001), SL_TCP_FIN_WAIT, c.live()));
    s.push_back(c.reply("FIN+ACK covering the client's FIN", c.b(kF | kA, 5001, 1002),
                        SL_TCP_LAST_ACK, c.live()));
    s.back().check = [](Env&, const sl_ct_entry& e) { expect_flags(e, 0, SL_CT_F_SIMCLOSE); };
    s.push_back(c.to_vip("last ACK", c.c(kA, 1002, 5002), SL_TCP_TIME_WAIT, {},
                         {c.ev(SL_CT_EV_CLOSED_FIN, SL_TCP_LAST_ACK, SL_TCP_TIME_WAIT)}));
    out.push_back(seq("three_way_close",
                      "the backend's FIN acknowledges the client's: FIN_WAIT -> LAST_ACK", v, c,
                      s));
  }
  {
    const VipSpec v6 = nat_vip(kVip6);
    const Conn c = conn(v6, kClient6, 42005);
    std::vector<Seg> s = prefix_to(c, SL_TCP_TIME_WAIT);
    out.push_back(seq("ipv6_open_and_close",
                      "the whole client-first life of an IPv6 flow, replies matched by the "
                      "client's key",
                      v6, c, s));
  }
  {
    // A port-0 VIP with a port-0 backend: the client's port is kept, the reply's source port
    // is the VIP port the client used, and the rev_nat match is the wildcard.
    VipSpec w{kVip4, 0, IPPROTO_TCP, SL_MODE_NAT, 0, {{5, kBe2v4, 0}}};
    Conn c{kClient4, 42006, kVip4, 443, w.backends[0]};
    out.push_back(seq("wildcard_vip_replies_tracked",
                      "port-0 VIP and backend: replies from :443 find the flow", w, c,
                      prefix_to(c, SL_TCP_TIME_WAIT)));
  }
  return out;
}

std::vector<Seq> HandshakeCases() {
  std::vector<Seq> out;
  const VipSpec v = nat_vip(kVip4);
  {
    const Conn c = conn(v, kClient4, 42100);
    std::vector<Seg> s;
    s.push_back(c.syn());
    s.push_back(c.to_vip("SYN again", c.c(kS, 1000, 0), SL_TCP_SYN_SENT, {}));
    s.back().check = [](Env& env, const sl_ct_entry& e) {
      expect_flags(e, SL_CT_F_HS_RETRANS);
      EXPECT_EQ(env.ct_stat(SL_CT_STAT_HS_RETRANS), 1u);
    };
    s.push_back(c.reply("SYN+ACK", c.b(kS | kA, 5000, 1001), SL_TCP_SYN_RECV, {}));
    s.push_back(c.reply("SYN+ACK again", c.b(kS | kA, 5000, 1001), SL_TCP_SYN_RECV, {}));
    s.push_back(
        c.to_vip("SYN yet again (no answer seen yet)", c.c(kS, 1000, 0), SL_TCP_SYN_RECV, {}));
    s.back().sleep_before = std::chrono::microseconds(1000);
    s.push_back(c.to_vip("ACK", c.c(kA, 1001, 5001), SL_TCP_ESTABLISHED, c.live(),
                         {c.ev(SL_CT_EV_ESTABLISHED, SL_TCP_SYN_RECV, SL_TCP_ESTABLISHED)}));
    s.back().check = [](Env&, const sl_ct_entry& e) {
      // Measured from the last SYN+ACK copy: at least the 1 ms sleep.
      EXPECT_GE(e.rtt_ack_ns, 1000000u);
      EXPECT_GT(e.rtt_synack_ns, 0u);
    };
    s.push_back(
        c.reply("SYN+ACK late copy", c.b(kS | kA, 5000, 1001), SL_TCP_ESTABLISHED, c.live()));
    const uint32_t id = c.be.id;
    out.push_back(seq(
        "retransmitted_syn_and_synack",
        "copies of SYN and SYN+ACK: no state change, one connection, one count", v, c, s,
        [id](Env& env) {
          EXPECT_EQ(env.ct_stat(SL_CT_STAT_HS_RETRANS), 3u);
          EXPECT_EQ(env.percpu_sum<sl_traffic>(env.skel()->maps.backend_stats, id).new_flows, 1u);
          EXPECT_EQ(env.ct_transitions(SL_TCP_NONE, SL_TCP_SYN_SENT), 1u);
        }));
  }
  {
    const Conn c = conn(v, kClient4, 42101);
    std::vector<Seg> s;
    s.push_back(c.syn());
    s.push_back(c.reply("SYN (crossing)", c.b(kS, 5000, 0), SL_TCP_SYN_RECV, {}));
    s.back().check = [](Env&, const sl_ct_entry& e) { expect_flags(e, SL_CT_F_SIMOPEN); };
    s.push_back(c.to_vip("SYN+ACK", c.c(kS | kA, 1000, 5001), SL_TCP_SYN_RECV, {}));
    s.push_back(c.reply("SYN+ACK", c.b(kS | kA, 5000, 1001), SL_TCP_ESTABLISHED, c.live(),
                        {c.ev(SL_CT_EV_ESTABLISHED, SL_TCP_SYN_RECV, SL_TCP_ESTABLISHED)}));
    s.back().check = [](Env&, const sl_ct_entry& e) {
      expect_flags(e, SL_CT_F_SIMOPEN);
      EXPECT_EQ(e.rtt_ack_ns, 0u) << "no round trip to measure in a simultaneous open";
    };
    s.push_back(c.to_vip("data", c.c(kA, 1001, 5001, 10), SL_TCP_ESTABLISHED, c.live()));
    out.push_back(seq("simultaneous_open",
                      "SYNs cross, then SYN+ACKs: ESTABLISHED once both SYNs are acknowledged", v,
                      c, s));
  }
  {
    const Conn c = conn(v, kClient4, 42102);
    std::vector<Seg> s;
    s.push_back(c.syn());
    s.push_back(c.reply("SYN (crossing)", c.b(kS, 5000, 0), SL_TCP_SYN_RECV, {}));
    s.push_back(c.to_vip("SYN+ACK", c.c(kS | kA, 1000, 5001), SL_TCP_SYN_RECV, {}));
    // The backend ACKs the client's SYN+ACK without a SYN+ACK of its own.
    s.push_back(c.reply("ACK", c.b(kA, 5001, 1001), SL_TCP_ESTABLISHED, c.live(),
                        {c.ev(SL_CT_EV_ESTABLISHED, SL_TCP_SYN_RECV, SL_TCP_ESTABLISHED)}));
    out.push_back(seq("simultaneous_open_ack", "after crossing SYNs, either side's ACK establishes",
                      v, c, s));
  }
  {
    const Conn c = conn(v, kClient4, 42103);
    std::vector<Seg> s;
    s.push_back(c.midstream());
    s.back().check = [](Env&, const sl_ct_entry& e) {
      expect_flags(e, SL_CT_F_MIDSTREAM);
      EXPECT_EQ(e.rtt_synack_ns, 0u);
      EXPECT_EQ(e.rtt_ack_ns, 0u);
      EXPECT_EQ(e.syn_ns, 0u);
    };
    s.push_back(c.reply("ACK", c.b(kA, 9000, 7020), SL_TCP_ESTABLISHED, c.live()));
    s.push_back(c.to_vip("FIN", c.c(kF | kA, 7020, 9000), SL_TCP_FIN_WAIT, c.live()));
    out.push_back(seq("midstream_pickup",
                      "a flow first seen mid-stream: ESTABLISHED, counted, flagged; closes "
                      "normally",
                      v, c, s));
  }
  {
    const Conn c = conn(v, kClient4, 42104);
    std::vector<Seg> s;
    s.push_back(c.to_vip("RST, no entry", c.c(kR | kA, 7000, 9000), std::nullopt, {}));
    // Not a reply of a flow sluice translated: left to the kernel, untouched.
    s.push_back(c.reply("RST from the backend, no entry", c.b(kR, 9000, 0), std::nullopt, {}));
    s.back().verdict = XDP_PASS;
    out.push_back(seq("rst_creates_nothing",
                      "a RST of an unknown flow is forwarded (consistent pick) but gets no entry",
                      v, c, s,
                      [](Env& env) { EXPECT_EQ(env.ct_stat(SL_CT_STAT_REPLY_NO_ENTRY), 1u); }));
  }
  {
    // nat, but the SYN+ACK never came through the LB: the client's ACK still establishes.
    const Conn c = conn(v, kClient4, 42105);
    std::vector<Seg> s;
    s.push_back(c.syn());
    // Nothing proves the ACK is the client's: established, but not confirmed (uncounted,
    // expendable) until the backend is heard.
    s.push_back(c.ack_of_unseen_synack("ACK (SYN+ACK unseen)", {}));
    s.back().check = [](Env& env, const sl_ct_entry& e) {
      EXPECT_EQ(e.rtt_ack_ns, 0u);
      EXPECT_EQ(env.ct_stat(SL_CT_STAT_CONFIRMED), 0u);
    };
    s.push_back(c.reply("data: the backend is heard", c.b(kA, 5001, 1001, 10), SL_TCP_ESTABLISHED,
                        c.live()));
    s.back().check = [](Env& env, const sl_ct_entry&) {
      EXPECT_EQ(env.ct_stat(SL_CT_STAT_CONFIRMED), 1u);
    };
    out.push_back(seq("ack_without_synack_establishes",
                      "the client ACKs a SYN+ACK the LB never saw: ESTABLISHED, RTT unknown", v, c,
                      s));
  }
  return out;
}

// RST from each side in every state (RFC 5961, 3.2): one far outside the window is dropped and
// changes nothing; one inside it but not at the exact next sequence number is forwarded (the
// endpoint answers with a challenge ACK) and changes nothing; the exact one closes at once,
// releasing the count exactly once. A blind sender cannot produce the exact one.
std::vector<Seq> RstCases() {
  std::vector<Seq> out;
  const VipSpec v = nat_vip(kVip4);
  const uint8_t states[] = {SL_TCP_SYN_SENT,   SL_TCP_SYN_RECV, SL_TCP_ESTABLISHED, SL_TCP_FIN_WAIT,
                            SL_TCP_CLOSE_WAIT, SL_TCP_LAST_ACK, SL_TCP_TIME_WAIT};
  uint16_t port = 42200;
  for (bool from_client : {true, false}) {
    for (uint8_t st : states) {
      const Conn c = conn(v, kClient4, port);
      std::vector<Seg> s = prefix_to(c, st);
      const std::map<uint32_t, uint64_t> before = s.back().conns;
      // The next sequence number of each side, past its FIN once it sent one.
      const bool client_fin = st >= SL_TCP_FIN_WAIT;
      const bool backend_fin = st >= SL_TCP_LAST_ACK;
      const uint32_t cseq = client_fin ? 1002 : 1001, bseq = backend_fin ? 5002 : 5001;
      // A backend that never spoke (SYN_SENT) can only refuse the SYN: RST+ACK of the ISN.
      const bool ack_only = !from_client && st == SL_TCP_SYN_SENT;
      auto rst = [&](uint32_t off) {
        return from_client
                   ? c.c(kR | kA, cseq + off, bseq)
                   : (ack_only ? c.b(kR | kA, 0, 1001 + off) : c.b(kR | kA, bseq + off, cseq));
      };
      auto seg = [&](std::string what, Packet in, std::optional<uint8_t> state,
                     std::map<uint32_t, uint64_t> conns, std::vector<EventExp> ev = {}) {
        return from_client ? c.to_vip(std::move(what), std::move(in), state, std::move(conns), ev)
                           : c.reply(std::move(what), std::move(in), state, std::move(conns), ev);
      };
      // A finished flow has nothing left to protect: a RST there is forwarded, never dropped.
      const bool finished = st == SL_TCP_TIME_WAIT;
      s.push_back(seg("RST far out of window", rst(kFar), st, before));
      s.back().verdict = finished ? XDP_REDIRECT : XDP_DROP;
      if (!ack_only) s.push_back(seg("RST in window, not exact", rst(100), st, before));
      std::vector<EventExp> ev;
      // From TIME_WAIT the flow was already released and reported (closed by FIN).
      if (st != SL_TCP_TIME_WAIT) ev.push_back(c.ev(SL_CT_EV_CLOSED_RST, st, SL_TCP_CLOSED));
      s.push_back(seg("RST, exact", rst(0), SL_TCP_CLOSED, {}, ev));
      s.back().check = [](Env&, const sl_ct_entry& e) { EXPECT_EQ(e.live, 0u); };
      // A second RST, from the other side: still CLOSED, no second release, no event.
      s.push_back(from_client ? c.reply("RST after RST", c.b(kR, bseq, 0), SL_TCP_CLOSED, {})
                              : c.to_vip("RST after RST", c.c(kR, cseq, 0), SL_TCP_CLOSED, {}));
      s.push_back(c.to_vip("ACK after RST", c.c(kA, cseq, bseq), SL_TCP_CLOSED, {}));
      const uint8_t from = st;
      const uint64_t challenges = ack_only || finished ? 0 : 1, dropped = finished ? 0 : 1;
      out.push_back(seq(
          std::string("rst_from_") + (from_client ? "client" : "backend") + "_in_" + state_name(st),
          "RST in " + state_name(st) +
              ": out of window dropped, in window forwarded, exact: CLOSED, released "
              "once",
          v, c, s, [from, challenges, dropped](Env& env) {
            EXPECT_EQ(env.ct_transitions(from, SL_TCP_CLOSED), 1u);
            EXPECT_EQ(env.ct_stat(SL_CT_STAT_CONNS_UNDERFLOW), 0u);
            EXPECT_EQ(env.ct_stat(SL_CT_STAT_OOW_RST), dropped);
            EXPECT_EQ(env.ct_stat(SL_CT_STAT_RST_CHALLENGE), challenges);
            EXPECT_EQ(env.drops(SL_DROP_CT_WINDOW), dropped);
          }));
      port++;
    }
  }
  return out;
}

// Reuse of a finished tuple (RFC 6191 without timestamps, as Linux's TIME_WAIT): a new SYN
// whose sequence number is past everything the old connection sent opens a new incarnation,
// picked anew after TIME_WAIT and on the same backend after CLOSED. Anything else on the tuple
// (a lower ISN; any SYN on a live flow) goes to the stored backend and changes nothing.
std::vector<Seq> ReuseCases() {
  std::vector<Seq> out;
  const VipSpec v = nat_vip(kVip4);
  for (uint8_t finished : {SL_TCP_TIME_WAIT, SL_TCP_CLOSED}) {
    const bool tw = finished == SL_TCP_TIME_WAIT;
    const uint16_t port = tw ? 42300 : 42301;
    const Conn c = conn(v, kClient4, port);
    const BackendSpec& other = other_backend(v, c.be.id);
    Conn c2 = c;  // the new connection: after TIME_WAIT on the ring's new pick
    if (tw) c2.be = other;
    std::vector<Seg> s = prefix_to(c, tw ? SL_TCP_TIME_WAIT : SL_TCP_ESTABLISHED);
    if (!tw) {
      s.push_back(c.to_vip("RST", c.c(kR, 1001, 0), SL_TCP_CLOSED, {},
                           {c.ev(SL_CT_EV_CLOSED_RST, SL_TCP_ESTABLISHED, SL_TCP_CLOSED)}));
    }
    // Not past the old connection: the stored backend, no new incarnation.
    s.push_back(c.to_vip("new SYN, ISN below the old connection's", c.c(kS, 500, 0), finished, {}));
    s.back().check = [](Env& env, const sl_ct_entry&) {
      EXPECT_EQ(env.ct_stat(SL_CT_STAT_REUSE_REFUSED), 1u);
    };
    const uint32_t other_id = other.id, new_id = c2.be.id;
    Seg syn = c2.to_vip("new SYN (ISN past the old one) after the ring moved", c2.c(kS, 90000, 0),
                        SL_TCP_SYN_SENT, {}, {c2.ev(SL_CT_EV_NEW, finished, SL_TCP_SYN_SENT)});
    syn.before = [other_id](Env& env) { env.switch_ring(0, other_id); };
    syn.check = [new_id, tw](Env& env, const sl_ct_entry& e) {
      EXPECT_EQ(e.backend_id, new_id)
          << (tw ? "a reused tuple is picked anew" : "a CLOSED tuple keeps its backend");
      expect_flags(e, SL_CT_F_REUSED, SL_CT_F_HS_RETRANS | SL_CT_F_CLOSER_BACKEND);
      EXPECT_EQ(e.seen, SL_CT_SEEN_SYN(0)) << "the old connection's FIN bits are gone";
      EXPECT_EQ(e.packets[0], 1u);
      EXPECT_EQ(e.packets[1], 0u);
      EXPECT_EQ(env.ct_stat(SL_CT_STAT_REUSED), 1u);
    };
    s.push_back(syn);
    if (tw) {
      // A late FIN retransmit of the old connection from the old backend: not the flow's
      // backend any more, so not translated back: left to the kernel.
      s.push_back(c.reply("old backend's late FIN", c.b(kF | kA, 5001, 1002), SL_TCP_SYN_SENT, {}));
      s.back().verdict = XDP_PASS;
      s.back().check = [](Env& env, const sl_ct_entry&) {
        EXPECT_EQ(env.ct_stat(SL_CT_STAT_REPLY_OTHER_BACKEND), 1u);
      };
    }
    s.push_back(c2.reply("SYN+ACK", c2.b(kS | kA, 70000, 90001), SL_TCP_SYN_RECV, {}));
    s.push_back(c2.to_vip("ACK", c2.c(kA, 90001, 70001), SL_TCP_ESTABLISHED, c2.live(),
                          {c2.ev(SL_CT_EV_ESTABLISHED, SL_TCP_SYN_RECV, SL_TCP_ESTABLISHED)}));
    const uint32_t old_id = c.be.id;
    out.push_back(seq(std::string("reuse_after_") + state_name(finished),
                      "a new SYN on a " + state_name(finished) +
                          " tuple: a lower ISN is refused; a higher one is a new connection, "
                          "counted once",
                      v, c, s, [old_id, new_id, finished](Env& env) {
                        auto traffic = [&](uint32_t id) {
                          return env.percpu_sum<sl_traffic>(env.skel()->maps.backend_stats, id);
                        };
                        EXPECT_EQ(traffic(old_id).new_flows, old_id == new_id ? 2u : 1u);
                        EXPECT_EQ(traffic(new_id).new_flows, old_id == new_id ? 2u : 1u);
                        EXPECT_EQ(env.ct_transitions(finished, SL_TCP_SYN_SENT), 1u);
                      }));
  }
  {
    // A client behind a NAT reuses the port with a lower ISN: the SYN is not a new
    // incarnation here and goes to the stored backend, which takes it: its SYN+ACK reopens
    // the entry in place, and the handshake completes on that backend.
    const Conn c = conn(v, kClient4, 42305);
    std::vector<Seg> s = prefix_to(c, SL_TCP_TIME_WAIT);
    s.push_back(
        c.to_vip("new SYN, ISN below the old one's", c.c(kS, 500, 0), SL_TCP_TIME_WAIT, {}));
    s.push_back(c.reply("the backend's SYN+ACK", c.b(kS | kA, 60000, 501), SL_TCP_SYN_RECV, {},
                        {c.ev(SL_CT_EV_NEW, SL_TCP_TIME_WAIT, SL_TCP_SYN_RECV)}));
    s.back().check = [](Env&, const sl_ct_entry& e) { expect_flags(e, SL_CT_F_REUSED); };
    s.push_back(c.to_vip("ACK", c.c(kA, 501, 60001), SL_TCP_ESTABLISHED, c.live(),
                         {c.ev(SL_CT_EV_ESTABLISHED, SL_TCP_SYN_RECV, SL_TCP_ESTABLISHED)}));
    s.push_back(c.to_vip("data", c.c(kA, 501, 60001, 100), SL_TCP_ESTABLISHED, c.live()));
    out.push_back(
        seq("refused_reuse_taken_by_the_backend",
            "a SYN refused as a reuse that the backend accepts reopens the tuple in place", v, c, s,
            [](Env& env) {
              EXPECT_EQ(env.ct_stat(SL_CT_STAT_REUSE_REFUSED), 1u);
              EXPECT_EQ(env.drops(SL_DROP_CT_WINDOW), 0u);
            }));
  }
  {
    // The VIP is rebuilt (a new scheduler, say): its backends get new ids, the same
    // endpoints. A flow on an old id still gets its replies translated.
    const Conn c = conn(v, kClient4, 42306);
    std::vector<Seg> s = open_segs(c);
    s.push_back(c.reply("data after the endpoint got another id", c.b(kA, 5001, 1001, 10),
                        SL_TCP_ESTABLISHED, c.live()));
    const BackendSpec be = c.be;
    s.back().before = [be](Env& env) {
      sl_endpoint ep{};
      ep.addr = to_sl_addr(be.addr);
      ep.port = htons(be.port);
      ep.proto = IPPROTO_TCP;
      ep.family = is_v6(be.addr) ? SL_AF_INET6 : SL_AF_INET;
      sl_rev_nat rn{};
      ASSERT_EQ(bpf_map_lookup_elem(env.fd(env.skel()->maps.rev_nat), &ep, &rn), 0);
      rn.backend_id = Env::kMaxBackends - 2;  // the new id; the old one stays active
      ASSERT_EQ(bpf_map_update_elem(env.fd(env.skel()->maps.rev_nat), &ep, &rn, BPF_EXIST), 0);
    };
    out.push_back(seq("replies_follow_the_endpoint_not_the_id",
                      "reverse NAT knows a flow's backend by its endpoint", v, c, s, [](Env& env) {
                        EXPECT_EQ(env.ct_stat(SL_CT_STAT_REPLY_OTHER_BACKEND), 0u);
                      }));
  }
  // A SYN on a live flow, in every live state: forwarded to the flow's backend even after the
  // ring moved, never re-picked, nothing changed (the endpoint answers with a challenge ACK).
  const uint8_t live[] = {SL_TCP_SYN_RECV, SL_TCP_ESTABLISHED, SL_TCP_FIN_WAIT, SL_TCP_CLOSE_WAIT,
                          SL_TCP_LAST_ACK};
  uint16_t port = 42310;
  for (uint8_t st : live) {
    const Conn c = conn(v, kClient4, port);
    const BackendSpec& other = other_backend(v, c.be.id);
    std::vector<Seg> s = prefix_to(c, st);
    const std::map<uint32_t, uint64_t> before = s.back().conns;
    uint64_t client_segs = 0;
    for (const Seg& g : s) client_segs += g.ingress == Iface::kTin;
    s.push_back(
        c.to_vip("spoofed SYN, another ISN, after the ring moved", c.c(kS, 77777, 0), st, before));
    const uint32_t other_id = other.id, id = c.be.id;
    s.back().before = [other_id](Env& env) { env.switch_ring(0, other_id); };
    s.back().check = [id, client_segs](Env& env, const sl_ct_entry& e) {
      EXPECT_EQ(e.backend_id, id);
      EXPECT_EQ(env.ct_stat(SL_CT_STAT_SYN_LIVE), 1u);
      EXPECT_EQ(env.ct_stat(SL_CT_STAT_REUSED), 0u);
      // Not the flow's: not counted on it, and it does not refresh it (a blind sender could
      // otherwise keep any entry alive forever).
      EXPECT_EQ(e.packets[0], client_segs);
    };
    out.push_back(seq("syn_in_" + state_name(st) + "_keeps_backend",
                      "a SYN cannot reopen or move a live connection (" + state_name(st) + ")", v,
                      c, s));
    port++;
  }
  return out;
}

std::vector<Seq> DsrCases() {
  std::vector<Seq> out;
  const VipSpec v = dsr_vip(kVip4);
  {
    const Conn c = conn(v, kClient4, 42400);
    std::vector<Seg> s;
    s.push_back(c.syn());
    s.back().check = [](Env&, const sl_ct_entry& e) { expect_flags(e, SL_CT_F_ONE_SIDED); };
    s.push_back(c.ack_of_unseen_synack("ACK (the SYN+ACK went straight to the client)", c.live()));
    s.back().sleep_before = std::chrono::microseconds(2000);
    s.back().check = [](Env&, const sl_ct_entry& e) {
      EXPECT_EQ(e.rtt_synack_ns, 0u) << "never seen in dsr";
      EXPECT_GE(e.rtt_ack_ns, 2000000u) << "SYN -> ACK";
      EXPECT_LT(e.rtt_ack_ns, 1000000000u);
    };
    s.push_back(c.to_vip("data", c.c(kA, 1001, 5001, 100), SL_TCP_ESTABLISHED, c.live()));
    s.push_back(c.to_vip("FIN", c.c(kF | kA, 1101, 5301), SL_TCP_FIN_WAIT, c.live()));
    s.push_back(c.to_vip("FIN retransmitted", c.c(kF | kA, 1101, 5301), SL_TCP_FIN_WAIT, c.live()));
    s.push_back(c.to_vip("last ACK (after the FIN)", c.c(kA, 1102, 5302), SL_TCP_TIME_WAIT, {},
                         {c.ev(SL_CT_EV_CLOSED_FIN, SL_TCP_FIN_WAIT, SL_TCP_TIME_WAIT)}));
    out.push_back(seq("dsr_one_sided",
                      "dsr sees the client only: SYN_SENT, ESTABLISHED on its ACK, FIN_WAIT on "
                      "its FIN, TIME_WAIT on its ACK after the FIN",
                      v, c, s));
  }
  {
    const Conn c = conn(v, kClient4, 42401);
    std::vector<Seg> s = dsr_open_segs(c);
    s.push_back(c.to_vip("FIN", c.c(kF | kA, 1001, 5001), SL_TCP_FIN_WAIT, c.live()));
    // Sent before the FIN, arriving after it: it does not start past the FIN.
    s.push_back(c.to_vip("reordered older ACK", c.c(kA, 1001, 5001), SL_TCP_FIN_WAIT, c.live()));
    s.push_back(c.to_vip("RST", c.c(kR, 1002, 0), SL_TCP_CLOSED, {},
                         {c.ev(SL_CT_EV_CLOSED_RST, SL_TCP_FIN_WAIT, SL_TCP_CLOSED)}));
    out.push_back(seq("dsr_reordered_ack_and_rst",
                      "dsr: a reordered ACK from before the FIN is no close; RST closes", v, c, s));
  }
  return out;
}

// Windows (nf_conntrack's tcp_in_window): what a sender that cannot see the flow cannot guess.
std::vector<Seq> WindowCases() {
  std::vector<Seq> out;
  const VipSpec v = nat_vip(kVip4);
  {
    const Conn c = conn(v, kClient4, 42600);
    std::vector<Seg> s = open_segs(c);
    auto dropped = [&](Seg g) {
      g.verdict = XDP_DROP;
      return g;
    };
    s.push_back(dropped(
        c.to_vip("FIN far ahead", c.c(kF | kA, 1001 + kFar, 5001), SL_TCP_ESTABLISHED, c.live())));
    s.push_back(dropped(
        c.to_vip("data far ahead", c.c(kA, 1001 + kFar, 5001, 100), SL_TCP_ESTABLISHED, c.live())));
    s.push_back(dropped(c.to_vip("data acknowledging what the backend never sent",
                                 c.c(kA, 1001, 5001 + kFar, 10), SL_TCP_ESTABLISHED, c.live())));
    s.push_back(dropped(
        c.reply("FIN far ahead", c.b(kF | kA, 5001 + kFar, 1001), SL_TCP_ESTABLISHED, c.live())));
    s.push_back(dropped(
        c.reply("data far behind", c.b(kA, 5001 - kFar, 1001, 10), SL_TCP_ESTABLISHED, c.live())));
    s.push_back(c.to_vip("data in window", c.c(kA, 1001, 5001, 100), SL_TCP_ESTABLISHED, c.live()));
    s.push_back(c.reply("FIN in window", c.b(kF | kA, 5001, 1101), SL_TCP_FIN_WAIT, c.live()));
    out.push_back(seq("fin_and_data_out_of_window",
                      "FIN and data outside either side's window are dropped and change nothing", v,
                      c, s, [](Env& env) {
                        EXPECT_EQ(env.ct_stat(SL_CT_STAT_OOW_FIN), 2u);
                        EXPECT_EQ(env.ct_stat(SL_CT_STAT_OOW_DATA), 3u);
                        EXPECT_EQ(env.drops(SL_DROP_CT_WINDOW), 5u);
                      }));
  }
  // Window scaling (RFC 7323): both SYNs announce shift 7, so a window field of 512 allows
  // 64 KiB. Only the client announcing it: no scaling, 512 bytes.
  for (bool both : {true, false}) {
    const uint16_t port = both ? 42610 : 42611;
    const Conn c = conn(v, kClient4, port);
    const Bytes ws7{1, 3, 3, 7};  // NOP, window scale 7
    std::vector<Seg> s;
    s.push_back(c.to_vip("SYN, wscale 7", c.c(kS, 1000, 0).tcp_options(ws7).window(512),
                         SL_TCP_SYN_SENT, {}, {c.ev(SL_CT_EV_NEW, SL_TCP_NONE, SL_TCP_SYN_SENT)}));
    Packet sa = c.b(kS | kA, 5000, 1001);
    if (both) sa.tcp_options(ws7);
    s.push_back(c.reply(both ? "SYN+ACK, wscale 7" : "SYN+ACK, no wscale", sa.window(512),
                        SL_TCP_SYN_RECV, {}));
    s.push_back(c.to_vip("ACK", c.c(kA, 1001, 5001).window(512), SL_TCP_ESTABLISHED, c.live(),
                         {c.ev(SL_CT_EV_ESTABLISHED, SL_TCP_SYN_RECV, SL_TCP_ESTABLISHED)}));
    s.push_back(c.reply("data, window 512", c.b(kA, 5001, 1001, 10).window(512), SL_TCP_ESTABLISHED,
                        c.live()));
    s.push_back(c.to_vip("data 30000 bytes ahead", c.c(kA, 31001, 5011, 10).window(512),
                         SL_TCP_ESTABLISHED, c.live()));
    s.back().verdict = both ? XDP_REDIRECT : XDP_DROP;
    s.back().check = [both](Env&, const sl_ct_entry& e) {
      EXPECT_EQ(e.seq[0].scale, both ? 7 : 0);
      EXPECT_EQ(e.seq[1].scale, both ? 7 : 0);
    };
    out.push_back(seq(both ? "window_scale_both_sides" : "window_scale_one_side_only",
                      both ? "both SYNs announce scaling: windows are scaled"
                           : "only one SYN announces scaling: neither side scales (RFC 7323)",
                      v, c, s));
  }
  {
    // ISNs just below 2^32: the sequence space wraps in the middle of the connection.
    const Conn c = conn(v, kClient4, 42620);
    const uint32_t ci = 0xffffff00u, bi = 0xfffffff0u;
    std::vector<Seg> s;
    s.push_back(c.to_vip("SYN", c.c(kS, ci, 0), SL_TCP_SYN_SENT, {},
                         {c.ev(SL_CT_EV_NEW, SL_TCP_NONE, SL_TCP_SYN_SENT)}));
    s.push_back(c.reply("SYN+ACK", c.b(kS | kA, bi, ci + 1), SL_TCP_SYN_RECV, {}));
    s.push_back(c.to_vip("ACK", c.c(kA, ci + 1, bi + 1), SL_TCP_ESTABLISHED, c.live(),
                         {c.ev(SL_CT_EV_ESTABLISHED, SL_TCP_SYN_RECV, SL_TCP_ESTABLISHED)}));
    s.push_back(
        c.to_vip("data across 2^32", c.c(kA, ci + 1, bi + 1, 512), SL_TCP_ESTABLISHED, c.live()));
    s.push_back(
        c.reply("data across 2^32", c.b(kA, bi + 1, ci + 513, 100), SL_TCP_ESTABLISHED, c.live()));
    s.push_back(c.to_vip("data past the wrap", c.c(kA, ci + 513, bi + 101, 10), SL_TCP_ESTABLISHED,
                         c.live()));
    s.push_back(c.to_vip("RST, exact, after the wrap", c.c(kR, ci + 523, 0), SL_TCP_CLOSED, {},
                         {c.ev(SL_CT_EV_CLOSED_RST, SL_TCP_ESTABLISHED, SL_TCP_CLOSED)}));
    out.push_back(seq("sequence_wraparound",
                      "windows and the exact RST hold across the wrap of the sequence space", v, c,
                      s, [](Env& env) { EXPECT_EQ(env.drops(SL_DROP_CT_WINDOW), 0u); }));
  }
  {
    // A spoofed SYN takes the tuple before the client's own (another ISN): the client's SYN
    // changes nothing and goes to the same backend, whose SYN+ACK tells the ISN it took.
    const Conn c = conn(v, kClient4, 42630);
    std::vector<Seg> s;
    s.push_back(c.to_vip("spoofed SYN first", c.c(kS, 777777, 0), SL_TCP_SYN_SENT, {},
                         {c.ev(SL_CT_EV_NEW, SL_TCP_NONE, SL_TCP_SYN_SENT)}));
    s.push_back(c.to_vip("the client's SYN", c.c(kS, 1000, 0), SL_TCP_SYN_SENT, {}));
    s.push_back(
        c.reply("SYN+ACK of the client's SYN", c.b(kS | kA, 5000, 1001), SL_TCP_SYN_RECV, {}));
    s.push_back(c.to_vip("ACK", c.c(kA, 1001, 5001), SL_TCP_ESTABLISHED, c.live(),
                         {c.ev(SL_CT_EV_ESTABLISHED, SL_TCP_SYN_RECV, SL_TCP_ESTABLISHED)}));
    s.push_back(c.to_vip("data", c.c(kA, 1001, 5001, 100), SL_TCP_ESTABLISHED, c.live()));
    out.push_back(seq("spoofed_syn_before_client",
                      "a SYN slipped in before the client's cannot break its handshake", v, c, s,
                      [](Env& env) { EXPECT_EQ(env.ct_stat(SL_CT_STAT_SYN_LIVE), 1u); }));
  }
  {
    // A spoofed ACK in SYN_RECV that does not acknowledge the backend's ISN cannot complete the
    // handshake (it would confirm a flow no client opened).
    const Conn c = conn(v, kClient4, 42640);
    std::vector<Seg> s;
    s.push_back(c.syn());
    s.push_back(c.reply("SYN+ACK", c.b(kS | kA, 5000, 1001), SL_TCP_SYN_RECV, {}));
    s.push_back(
        c.to_vip("ACK of another ISN (in window)", c.c(kA, 1001, 4000), SL_TCP_SYN_RECV, {}));
    s.push_back(c.to_vip("ACK of the backend's ISN", c.c(kA, 1001, 5001), SL_TCP_ESTABLISHED,
                         c.live(),
                         {c.ev(SL_CT_EV_ESTABLISHED, SL_TCP_SYN_RECV, SL_TCP_ESTABLISHED)}));
    out.push_back(seq("handshake_needs_the_exact_ack",
                      "only the ACK of the backend's ISN establishes and confirms", v, c, s));
  }
  {
    // A flow picked up mid-stream that the backend does not know (it restarted, or the flow
    // was another LB's): the backend answers the client's segment with a RST whose sequence
    // number is that segment's ACK number (RFC 793). That closes; a guess does not.
    const Conn c = conn(v, kClient4, 42650);
    std::vector<Seg> s;
    s.push_back(c.midstream());
    s.push_back(
        c.reply("RST, a guessed sequence number", c.b(kR, 123456, 0), SL_TCP_ESTABLISHED, {}));
    s.back().verdict = XDP_DROP;
    s.push_back(c.reply("RST: no such connection", c.b(kR, 9000, 0), SL_TCP_CLOSED, {},
                        {c.ev(SL_CT_EV_CLOSED_RST, SL_TCP_ESTABLISHED, SL_TCP_CLOSED)}));
    out.push_back(seq("midstream_backend_refuses",
                      "the backend's RST for a flow it does not know reaches the client", v, c, s));
  }
  return out;
}

// dsr sees the client only: the client's highest sequence number is all there is to judge by.
std::vector<Seq> DsrWindowCases() {
  std::vector<Seq> out;
  const VipSpec v = dsr_vip(kVip4);
  const Conn c = conn(v, kClient4, 42700);
  std::vector<Seg> s = dsr_open_segs(c);
  s.push_back(c.to_vip("data", c.c(kA, 1001, 5001, 100), SL_TCP_ESTABLISHED, c.live()));
  const std::tuple<const char*, uint8_t, uint32_t> far[] = {{"RST far", kR, 1101 + kFar},
                                                            {"FIN far", kF | kA, 1101 + kFar}};
  for (const auto& [what, flags, seq] : far) {
    s.push_back(c.to_vip(what, c.c(flags, seq, 5001), SL_TCP_ESTABLISHED, c.live()));
    s.back().verdict = XDP_DROP;
  }
  // Data is the backend's to judge (it sees both sides): forwarded, wherever it lies; but only
  // a segment that continues the client's sequence moves it.
  s.push_back(c.to_vip("data far", c.c(kA, 1101 - kFar, 5001, 10), SL_TCP_ESTABLISHED, c.live()));
  s.push_back(c.to_vip("data a little ahead (a gap)", c.c(kA, 1101 + 1000, 5001, 10),
                       SL_TCP_ESTABLISHED, c.live()));
  s.back().check = [](Env&, const sl_ct_entry& e) {
    EXPECT_EQ(e.seq[0].end, 1101u) << "only a segment that continues it moves the sequence";
  };
  s.push_back(c.to_vip("FIN near, not exact", c.c(kF | kA, 1101 + 100, 5001), SL_TCP_ESTABLISHED,
                       c.live()));
  s.push_back(
      c.to_vip("RST near, not exact", c.c(kR, 1101 + 100, 0), SL_TCP_ESTABLISHED, c.live()));
  s.push_back(c.to_vip("RST exact", c.c(kR, 1101, 0), SL_TCP_CLOSED, {},
                       {c.ev(SL_CT_EV_CLOSED_RST, SL_TCP_ESTABLISHED, SL_TCP_CLOSED)}));
  out.push_back(seq("dsr_one_sided_windows",
                    "dsr: RST and FIN far from the client's sequence are dropped, data never; a "
                    "near RST or FIN is forwarded unchanged; only the exact one changes the state",
                    v, c, s, [](Env& env) {
                      EXPECT_EQ(env.ct_stat(SL_CT_STAT_OOW_RST), 1u);
                      EXPECT_EQ(env.ct_stat(SL_CT_STAT_OOW_FIN), 1u);
                      EXPECT_EQ(env.ct_stat(SL_CT_STAT_OOW_DATA), 0u);
                      EXPECT_EQ(env.ct_stat(SL_CT_STAT_RST_CHALLENGE), 1u);
                    }));
  return out;
}

// Timeouts the data path applies itself, agent or no agent: an entry idle past its timeout is
// as good as absent to the packet that finds it, and reclaimed there.
std::vector<Seq> ExpiryCases() {
  std::vector<Seq> out;
  const VipSpec v = nat_vip(kVip4);
  ConntrackTimeouts t;
  t.established = 5;
  t.unconfirmed = 30;
  {
    const Conn c = conn(v, kClient4, 42800);
    const sl_flow_key k = flow_key(kClient4, kVip4, 42800, 80);
    std::vector<Seg> s;
    s.push_back(c.syn());
    s.back().before = [t](Env& env) { env.set_ct_timeouts(t); };
    // 40 s idle: within syn_sent's 120 s, past the unconfirmed 30 s.
    s.push_back(c.to_vip("the same SYN, 40 s later", c.c(kS, 1000, 0), SL_TCP_SYN_SENT, {},
                         {c.ev(SL_CT_EV_NEW, SL_TCP_NONE, SL_TCP_SYN_SENT)}));
    s.back().before = [k](Env& env) { env.age_flow(k, 40); };
    s.back().check = [](Env& env, const sl_ct_entry& e) {
      EXPECT_EQ(env.ct_stat(SL_CT_STAT_EXPIRED_ON_LOOKUP), 1u);
      EXPECT_EQ(e.packets[0], 1u) << "a new entry";
    };
    out.push_back({"unconfirmed_entry_expires_at_its_own_timeout",
                   "an unconfirmed entry expires after `unconfirmed`, however long its state's",
                   {v},
                   k,
                   s,
                   nullptr});
  }
  {
    const Conn c = conn(v, kClient4, 42801);
    const sl_flow_key k = flow_key(kClient4, kVip4, 42801, 80);
    std::vector<Seg> s = open_segs(c);
    s.front().before = [t](Env& env) { env.set_ct_timeouts(t); };
    s.push_back(c.to_vip("data after 10 s idle (established: 5 s)", c.c(kA, 1001, 5001, 10),
                         SL_TCP_ESTABLISHED, {},
                         {c.ev(SL_CT_EV_NEW, SL_TCP_NONE, SL_TCP_ESTABLISHED)}));
    s.back().before = [k](Env& env) { env.age_flow(k, 10); };
    s.back().check = [](Env& env, const sl_ct_entry& e) {
      EXPECT_EQ(env.ct_stat(SL_CT_STAT_EXPIRED_ON_LOOKUP), 1u);
      expect_flags(e, SL_CT_F_MIDSTREAM);
    };
    out.push_back({"expired_flow_reclaimed_on_lookup",
                   "a confirmed flow idle past its timeout gives its count back on the next "
                   "packet, which starts over as a mid-stream pickup",
                   {v},
                   k,
                   s,
                   nullptr});
  }
  return out;
}

std::vector<Seq> AllSeqs() {
  std::vector<Seq> all;
  for (auto gen : {OpenAndCloseCases, HandshakeCases, RstCases, ReuseCases, DsrCases, WindowCases,
                   DsrWindowCases, ExpiryCases}) {
    for (Seq& s : gen()) all.push_back(std::move(s));
  }
  return all;
}

// ---------------------------------------------------------------------------------------------
// The runner

class ConntrackTest : public EnvSuite<Seq> {
 protected:
  void RunSeg(const Seq& q, const Seg& s) {
    Env& env = *env_;
    if (s.before) {
      s.before(env);
      if (HasFatalFailure()) return;
    }
    if (s.sleep_before.count() > 0) std::this_thread::sleep_for(s.sleep_before);
    const Bytes in = s.in.build();
    RunResult r = env.run(in, s.ingress);
    ASSERT_EQ(r.err, 0) << "bpf_prog_test_run_opts: " << strerror(-r.err);
    EXPECT_EQ(r.retval, static_cast<uint32_t>(s.verdict))
        << "verdict " << sluice::verdict_name(r.retval) << "\n"
        << describe(in);

    sl_ct_entry e{};
    const bool found = env.ct_lookup(q.key, &e);
    if (!s.state) {
      EXPECT_FALSE(found) << "an entry exists for " << str(q.key) << " in state "
                          << state_name(e.state);
    } else if (!found) {
      ADD_FAILURE() << "no entry for " << str(q.key) << ", expected " << state_name(*s.state);
    } else {
      EXPECT_EQ(state_name(e.state), state_name(*s.state)) << str(q.key);
    }

    for (uint32_t id = 0; id < Env::kMaxBackends; id++) {
      const auto it = s.conns.find(id);
      const uint64_t want = it == s.conns.end() ? 0 : it->second;
      EXPECT_EQ(env.backend_conns(id), want) << "backend_conns[" << id << "]";
    }

    const std::vector<sl_ct_event> got = env.take_ct_events();
    std::string got_s, want_s;
    for (const auto& g : got) got_s += "  " + ev_str(g) + "\n";
    for (const auto& w : s.events) want_s += "  " + ev_str(w) + "\n";
    EXPECT_EQ(got_s, want_s) << "ct_events records";
    for (const sl_ct_event& g : got) {
      // Every record names this flow and mirrors the entry it was taken from.
      EXPECT_EQ(str(g.key), str(q.key));
      EXPECT_EQ(g.pad, 0u);
      if (!found) continue;
      EXPECT_EQ(g.vip_id, e.vip_id);
      if (g.type == SL_CT_EV_ESTABLISHED) {
        EXPECT_EQ(g.rtt_synack_ns, e.rtt_synack_ns);
        EXPECT_EQ(g.rtt_ack_ns, e.rtt_ack_ns);
        EXPECT_GT(g.ts_ns, 0u);
      }
      if (g.type == SL_CT_EV_CLOSED_FIN || g.type == SL_CT_EV_CLOSED_RST) {
        EXPECT_EQ(g.packets[0], e.packets[0]);
        EXPECT_EQ(g.packets[1], e.packets[1]);
        EXPECT_EQ(g.bytes[0], e.bytes[0]);
        EXPECT_EQ(g.bytes[1], e.bytes[1]);
      }
    }
    EXPECT_EQ(env.ct_stat(SL_CT_STAT_EVENTS_LOST), 0u);
    if (found && s.check) s.check(env, e);
  }
};

TEST_P(ConntrackTest, Sequence) {
  const Seq& q = GetParam();
  for (const VipSpec& v : q.vips) {
    env_->add_vip(v, static_cast<uint32_t>(&v - q.vips.data()));
    ASSERT_FALSE(HasFatalFailure()) << "setting up the VIPs";
  }
  for (size_t i = 0; i < q.segs.size(); i++) {
    SCOPED_TRACE("segment " + std::to_string(i + 1) + "/" + std::to_string(q.segs.size()) + ": " +
                 q.segs[i].what);
    RunSeg(q, q.segs[i]);
    if (HasFatalFailure()) return;
  }
  if (q.check) q.check(*env_);
}

INSTANTIATE_TEST_SUITE_P(Seqs, ConntrackTest, ::testing::ValuesIn(AllSeqs()), ParamName());

// When the ring buffer is full, records are counted as lost, never silently missing: what the
// reader got plus what was counted lost is exactly what the data path tried to write.
TEST(ConntrackEvents, FullRingCountsLostEvents) {
  if (auto why = skip_reason()) GTEST_SKIP() << *why;
  std::string err;
  std::unique_ptr<Env> env = Env::Create(&err);
  ASSERT_NE(env, nullptr) << err;
  env->reset();
  const VipSpec v = nat_vip(kVip4);
  env->add_vip(v, 0);
  const Conn c = conn(v, kClient4, 42500);
  // SYN (new) and RST (closed by RST) alternately: each reuse of the CLOSED tuple writes one
  // record, each RST another. 1300 pairs are more than the ring holds (SL_CT_EVENTS_BYTES /
  // 112-byte records). Each new SYN's ISN is past the closed connection's, as a reuse must be.
  constexpr int kPairs = 1300;
  for (uint32_t i = 0; i < kPairs; i++) {
    const Bytes syn = c.c(kS, 1000 + 10 * i, 0).build(), rst = c.c(kR, 1001 + 10 * i, 0).build();
    ASSERT_EQ(env->run(syn, Iface::kTin).retval, static_cast<uint32_t>(XDP_REDIRECT));
    ASSERT_EQ(env->run(rst, Iface::kTin).retval, static_cast<uint32_t>(XDP_REDIRECT));
  }
  const uint64_t lost = env->ct_stat(SL_CT_STAT_EVENTS_LOST);
  const std::vector<sl_ct_event> got = env->take_ct_events();
  EXPECT_GT(lost, 0u);
  EXPECT_LT(got.size() * 112, size_t{SL_CT_EVENTS_BYTES} + 1);
  EXPECT_EQ(got.size() + lost, 2u * kPairs);
  // What was delivered is in order: new, closed_rst, new, ...
  for (size_t i = 0; i < got.size(); i++) {
    EXPECT_EQ(got[i].type, i % 2 == 0 ? SL_CT_EV_NEW : SL_CT_EV_CLOSED_RST) << "record " << i;
  }
  EXPECT_EQ(env->backend_conns(c.be.id), 0u);
  EXPECT_EQ(env->ct_stat(SL_CT_STAT_REUSED), kPairs - 1u);
}

// ---------------------------------------------------------------------------------------------
// A full table. The conntrack map is a preallocated hash: when it is full an insert is refused
// (-E2BIG) instead of evicting a live entry; the policy is in docs/design.md, "When the table is
// full". Each case fills the table (Env::kCtEntries) with filler flows of no VIP.

class ConntrackFullTest : public EnvSuite<int> {
 protected:
  // Runs `in` from the client side and checks the verdict.
  RunResult send(const Packet& in, int verdict) {
    const Bytes b = in.build();
    RunResult r = env_->run(b, Iface::kTin);
    EXPECT_EQ(r.err, 0) << strerror(-r.err);
    EXPECT_EQ(r.retval, static_cast<uint32_t>(verdict))
        << "verdict " << sluice::verdict_name(r.retval) << "\n"
        << describe(b);
    return r;
  }
  // The client segment c.c(flags, seq, ack) as the LB forwards it to c.be (nat).
  static Packet forwarded(const Conn& c, uint8_t flags, uint32_t seq, uint32_t ack,
                          size_t payload = 0) {
    const Hop h = hop_to(c.be.addr);
    Packet p = Packet().eth(h.smac, h.dmac);
    p = is_v6(c.client) ? p.ipv6(c.client, c.be.addr) : p.ipv4(c.client, c.be.addr);
    p.tcp(c.cport, c.be.port, flags, seq, ack);
    return payload ? p.payload(payload) : p;
  }
  static void expect_frame(const Packet& want, const RunResult& r) {
    const Bytes w = want.build();
    EXPECT_EQ(w, r.out) << diff(w, r.out);
  }
  std::optional<sl_ct_entry> entry(const Conn& c) {
    const sl_flow_key k = c.key();
    sl_ct_entry e{};
    if (!env_->ct_lookup(k, &e)) return std::nullopt;
    return e;
  }
  // Every backend's live count is exactly `want` (unlisted ids: 0).
  void expect_conns(const std::map<uint32_t, uint64_t>& want) {
    for (uint32_t id = 0; id < Env::kMaxBackends; id++) {
      const auto it = want.find(id);
      EXPECT_EQ(env_->backend_conns(id), it == want.end() ? 0 : it->second)
          << "backend_conns[" << id << "]";
    }
  }
  uint64_t drops(uint32_t reason) {
    return env_->percpu_sum<sl_counter>(env_->skel()->maps.drops, reason).packets;
  }
  uint64_t vip_new_flows(uint32_t vip_id) {
    return env_->percpu_sum<sl_traffic>(env_->skel()->maps.vip_stats, vip_id).new_flows;
  }
  // A round-robin VIP (a stateful scheduler) with one backend, so that every pick, the
  // round-robin turn and the midstream fallback alike, is the backend conn() expects.
  static VipSpec rr_vip() {
    VipSpec v = nat_vip(kVip4);
    v.backends.resize(1);
    v.sched = SL_SCHED_ROUND_ROBIN;
    return v;
  }
};

// `conntrack` (confirmed flows) full: a new connection still opens, for every scheduler. It is
// born in ct_pending, completes its handshake there, and stays there (uncounted, expendable:
// SL_CT_STAT_CONFIRM_FULL) while there is no room; the first confirming segment after room
// appears moves it, and it counts from then on. Nothing is ever dropped for the full table.
TEST_F(ConntrackFullTest, FullConfirmedTableRefusesNoConnection) {
  for (uint8_t sched : {SL_SCHED_SOURCE_HASH, SL_SCHED_ROUND_ROBIN}) {
    SCOPED_TRACE(sched == SL_SCHED_SOURCE_HASH ? "source-hash" : "round-robin");
    env_->reset();
    VipSpec v = rr_vip();
    v.sched = sched;
    env_->add_vip(v, 0);
    env_->fill_conntrack();
    const Conn c = conn(v, kClient4, 43001);
    expect_frame(forwarded(c, kS, 1000, 0), send(c.c(kS, 1000, 0), XDP_REDIRECT));
    ASSERT_TRUE(entry(c)) << "a new flow always gets a (pending) entry";
    env_->run(c.b(kS | kA, 5000, 1001).build(), hop_to(c.be.addr).egress);
    expect_frame(forwarded(c, kA, 1001, 5001), send(c.c(kA, 1001, 5001), XDP_REDIRECT));
    EXPECT_EQ(env_->ct_stat(SL_CT_STAT_CONFIRM_FULL), 1u);
    EXPECT_EQ(state_name(entry(c)->state), state_name(SL_TCP_ESTABLISHED));
    expect_conns({});
    // Room for one: the backend's next segment confirms the flow, which counts from then on.
    env_->unfill_conntrack(1);
    env_->run(c.b(kA, 5001, 1001, 10).build(), hop_to(c.be.addr).egress);
    bool pending = true;
    sl_ct_entry e{};
    ASSERT_TRUE(env_->ct_lookup(c.key(), &e, &pending));
    EXPECT_FALSE(pending) << "confirmed once there was room";
    EXPECT_EQ(e.live, 1u);
    expect_conns({{c.be.id, 1}});
    EXPECT_EQ(drops(SL_DROP_CT_FULL), 0u);
    EXPECT_EQ(env_->ct_stat(SL_CT_STAT_FULL_UNTRACKED), 0u);
  }
}

// A SYN flood from spoofed sources, three times the size of ct_pending: the LRU evicts the
// flood's entries (and nothing else: confirmed flows live elsewhere), every honest SYN gets
// an entry, and a confirmed connection opened before the flood is untouched and still counted.
TEST_F(ConntrackFullTest, SynFloodEvictsOnlyPendingEntries) {
  const VipSpec v = rr_vip();
  env_->add_vip(v, 0);
  const Conn live = conn(v, kClient4, 43100);
  for (const Seg& s : prefix_to(live, SL_TCP_ESTABLISHED)) env_->run(s.in.build(), s.ingress);
  expect_conns({{live.be.id, 1}});
  for (uint32_t i = 0; i < 3 * Env::kCtEntries; i++) {
    const std::string src = "203.0.113." + std::to_string(1 + i % 250);
    const Packet syn =
        client_eth().ipv4(src, kVip4).tcp(static_cast<uint16_t>(10000 + i / 250), 80, kS, i, 0);
    ASSERT_EQ(env_->run(syn.build(), Iface::kTin).retval, static_cast<uint32_t>(XDP_REDIRECT));
  }
  EXPECT_EQ(drops(SL_DROP_CT_FULL), 0u);
  const size_t pending_n =
      env_->dump<sl_flow_key, sl_ct_entry>(env_->skel()->maps.ct_pending).size();
  EXPECT_LE(pending_n, size_t{Env::kCtEntries});
  // The confirmed flow: there, counted, forwarded.
  bool pending = true;
  sl_ct_entry e{};
  ASSERT_TRUE(env_->ct_lookup(flow_key(live.client, live.vip, live.cport, 80), &e, &pending));
  EXPECT_FALSE(pending);
  expect_frame(forwarded(live, kA, 1001, 5001, 10), send(live.c(kA, 1001, 5001, 10), XDP_REDIRECT));
  // An honest connection opens on its first SYN.
  const Conn c = conn(v, kClient4, 43101);
  for (const Seg& s : open_segs(c)) {
    SCOPED_TRACE(s.what);
    EXPECT_EQ(env_->run(s.in.build(), s.ingress).retval, static_cast<uint32_t>(XDP_REDIRECT));
  }
  expect_conns({{live.be.id, 2}});
}

// Honest churn, three times the table: every closed connection leaves its TIME_WAIT entry in
// ct_pending, where the next connections may evict it; `conntrack` holds only live flows.
TEST_F(ConntrackFullTest, ChurnOfClosedConnectionsNeverFillsTheTable) {
  const VipSpec v = rr_vip();
  env_->add_vip(v, 0);
  for (uint32_t i = 0; i < 3 * Env::kCtEntries; i++) {
    const Conn c = conn(v, kClient4, static_cast<uint16_t>(20000 + i));
    for (const Seg& s : prefix_to(c, SL_TCP_TIME_WAIT)) {
      RunResult r = env_->run(s.in.build(), s.ingress);
      ASSERT_EQ(r.retval, static_cast<uint32_t>(XDP_REDIRECT))
          << "connection " << i << ": " << s.what;
    }
  }
  EXPECT_EQ(env_->conntrack_count(), 0u) << "finished flows are not kept in conntrack";
  expect_conns({});
  EXPECT_EQ(drops(SL_DROP_CT_FULL), 0u);
  EXPECT_EQ(env_->ct_stat(SL_CT_STAT_CONFIRMED), 3u * Env::kCtEntries);
}

// A new SYN on a finished tuple still opens a connection when conntrack is full: finished
// flows wait in ct_pending, and the new one starts there too.
TEST_F(ConntrackFullTest, ReuseWorksInFullTable) {
  const VipSpec v = rr_vip();  // refused SYNs would be dropped: none must be
  env_->add_vip(v, 0);
  const Conn c = conn(v, kClient4, 43200);
  for (const Seg& s : prefix_to(c, SL_TCP_TIME_WAIT)) {
    SCOPED_TRACE(s.what);
    RunResult r = env_->run(s.in.build(), s.ingress);
    ASSERT_EQ(r.retval, static_cast<uint32_t>(XDP_REDIRECT));
  }
  env_->take_ct_events();
  env_->fill_conntrack();
  send(c.c(kS, 90000, 0), XDP_REDIRECT);
  const auto e = entry(c);
  ASSERT_TRUE(e);
  EXPECT_EQ(state_name(e->state), state_name(SL_TCP_SYN_SENT));
  expect_flags(*e, SL_CT_F_REUSED);
  EXPECT_EQ(env_->ct_stat(SL_CT_STAT_REUSED), 1u);
  EXPECT_EQ(env_->ct_stat(SL_CT_STAT_FULL_UNTRACKED), 0u);
  EXPECT_EQ(drops(SL_DROP_CT_FULL), 0u);
  expect_conns({});
  EXPECT_EQ(env_->conntrack_count(), Env::kCtEntries);
}

// ---------------------------------------------------------------------------------------------
// The budget of one-sided flows (docs/design.md, "Trust no packet"). A dsr flow confirms on the
// client's ACK after its SYN, which a blind sender forges with two packets; one-sided flows hold
// at most sl_info.ct_one_sided_max entries of `conntrack` (their count: `ct_one_sided`), so
// that such a flood cannot stop any other VIP's flows from confirming.

class OneSidedBudgetTest : public ConntrackFullTest {
 protected:
  // The dsr handshake of `c` (SYN, then the ACK of the SYN+ACK the LB never sees).
  void open_dsr(const Conn& c) {
    for (const Seg& s : dsr_open_segs(c)) {
      SCOPED_TRACE(s.what);
      send(s.in, XDP_REDIRECT);
    }
  }
  // Where flow `c` is: confirmed (in `conntrack`, holding its count) or not.
  void expect_confirmed(const Conn& c, bool confirmed) {
    bool pending = !confirmed;
    sl_ct_entry e{};
    ASSERT_TRUE(env_->ct_lookup(c.key(), &e, &pending)) << "port " << c.cport;
    EXPECT_EQ(pending, !confirmed) << "port " << c.cport;
    EXPECT_EQ(e.live, confirmed ? 1u : 0u) << "port " << c.cport;
    EXPECT_EQ(state_name(e.state), state_name(SL_TCP_ESTABLISHED)) << "port " << c.cport;
  }
  uint64_t live_total() {
    uint64_t n = 0;
    for (uint32_t id = 0; id < Env::kMaxBackends; id++) n += env_->backend_conns(id);
    return n;
  }
  // A blind sender's 2-packet dsr confirmation of flow `i`: a SYN from a spoofed source with
  // ISN i, then the ACK of a SYN+ACK it never saw, with seq = its own ISN + 1.
  void blind_confirm(uint32_t i) {
    const std::string src = "198.51.100." + std::to_string(1 + i % 250);
    const uint16_t port = static_cast<uint16_t>(20000 + i / 250);
    const Packet syn = client_eth().ipv4(src, kVip4).tcp(port, 80, kS, i, 0);
    const Packet ack = client_eth().ipv4(src, kVip4).tcp(port, 80, kA, i + 1, 77777);
    ASSERT_EQ(env_->run(syn.build(), Iface::kTin).retval, static_cast<uint32_t>(XDP_REDIRECT));
    ASSERT_EQ(env_->run(ack.build(), Iface::kTin).retval, static_cast<uint32_t>(XDP_REDIRECT));
  }
  // A nat round-robin VIP on kVip4:8081 (vip_id 1), one backend of its own (id 3): its flows
  // confirm on the backend's SYN+ACK being acknowledged.
  static VipSpec nat_rr_vip() {
    VipSpec v = nat_vip(kVip4, 8081);
    v.backends.resize(1);
    v.backends[0].id = 3;
    v.sched = SL_SCHED_ROUND_ROBIN;
    return v;
  }
};

// Up to the budget, one-sided flows confirm; the next one completes its handshake, is
// forwarded, and stays in ct_pending, uncounted (ct_stats[one_sided_budget]), exactly as when
// the table is full.
TEST_F(OneSidedBudgetTest, OneSidedFlowsConfirmUpToTheBudget) {
  const VipSpec v = dsr_vip(kVip4);
  env_->add_vip(v, 0);
  env_->set_one_sided_max(3);
  std::vector<Conn> in;
  for (uint16_t i = 0; i < 3; i++) {
    in.push_back(conn(v, kClient4, static_cast<uint16_t>(44000 + i)));
    open_dsr(in.back());
    expect_confirmed(in.back(), true);
  }
  EXPECT_EQ(env_->one_sided_count(), 3u);
  EXPECT_EQ(env_->ct_stat(SL_CT_STAT_ONE_SIDED_BUDGET), 0u);
  const Conn over = conn(v, kClient4, 44010);
  open_dsr(over);
  expect_confirmed(over, false);
  EXPECT_EQ(env_->ct_stat(SL_CT_STAT_ONE_SIDED_BUDGET), 1u);
  EXPECT_EQ(env_->ct_stat(SL_CT_STAT_CONFIRM_FULL), 0u) << "the table has room: not full";
  EXPECT_EQ(env_->ct_stat(SL_CT_STAT_CONFIRMED), 3u);
  EXPECT_EQ(env_->one_sided_count(), 3u) << "a refused flow takes no place";
  EXPECT_EQ(live_total(), 3u) << "only the confirmed flows count";
  EXPECT_EQ(env_->conntrack_count(), 3u);
  // Still forwarded, to the backend its SYN was sent to; never dropped.
  send(over.c(kA, 1001, 5001, 100), XDP_REDIRECT);
  expect_confirmed(over, false);
  EXPECT_EQ(drops(SL_DROP_CT_FULL), 0u);
}

// Once a confirmed one-sided flow is finished (closed by an exact RST, retired to ct_pending by
// its close, or reclaimed idle past its timeout), its place is free again, once: the next
// one-sided flow confirms, and the one after is refused again. The budget is 1, so each place
// is visible.
TEST_F(OneSidedBudgetTest, FinishedFlowGivesItsPlaceBackOnce) {
  enum class Finish { kExactRst, kFinClose, kReclaimed };
  for (const Finish how : {Finish::kExactRst, Finish::kFinClose, Finish::kReclaimed}) {
    SCOPED_TRACE(how == Finish::kExactRst   ? "closed by an exact RST"
                 : how == Finish::kFinClose ? "closed by FINs, retired"
                                            : "reclaimed idle");
    env_->reset();
    const VipSpec v = dsr_vip(kVip4);
    env_->add_vip(v, 0);
    env_->set_one_sided_max(1);
    const Conn a = conn(v, kClient4, 44100), b = conn(v, kClient4, 44101),
               c = conn(v, kClient4, 44102), d = conn(v, kClient4, 44103);
    open_dsr(a);
    expect_confirmed(a, true);
    open_dsr(b);
    expect_confirmed(b, false);
    EXPECT_EQ(env_->ct_stat(SL_CT_STAT_ONE_SIDED_BUDGET), 1u);
    switch (how) {
      case Finish::kExactRst:
        send(a.c(kR, 1001, 0), XDP_REDIRECT);
        send(a.c(kR, 1001, 0), XDP_REDIRECT);  // a second RST releases nothing more
        break;
      case Finish::kFinClose:
        send(a.c(kF | kA, 1001, 5001), XDP_REDIRECT);
        send(a.c(kA, 1002, 5002), XDP_REDIRECT);
        send(a.c(kA, 1002, 5002), XDP_REDIRECT);  // its retransmit, in TIME_WAIT
        break;
      case Finish::kReclaimed: {
        ConntrackTimeouts t;
        t.established = 60;
        env_->set_ct_timeouts(t);
        env_->age_flow(a.key(), 120);
        send(a.c(kA, 1001, 5001, 10), XDP_REDIRECT);  // finds it expired, as if absent
        EXPECT_EQ(env_->ct_stat(SL_CT_STAT_EXPIRED_ON_LOOKUP), 1u);
        break;
      }
    }
    bool pending = false;
    sl_ct_entry e{};
    if (env_->ct_lookup(a.key(), &e, &pending)) {
      EXPECT_TRUE(pending) << "a finished flow is not in conntrack";
      EXPECT_EQ(e.live, 0u);
    }
    EXPECT_EQ(env_->one_sided_count(), 0u);
    EXPECT_EQ(live_total(), 0u);
    // The place is free: the next one-sided flow confirms, and it is the only one again.
    open_dsr(c);
    expect_confirmed(c, true);
    EXPECT_EQ(env_->one_sided_count(), 1u);
    EXPECT_EQ(env_->ct_stat(SL_CT_STAT_ONE_SIDED_BUDGET), 1u);
    EXPECT_EQ(env_->ct_stat(SL_CT_STAT_CONNS_UNDERFLOW), 0u);
    // Spent again: the next one is refused.
    open_dsr(d);
    expect_confirmed(d, false);
    EXPECT_EQ(env_->ct_stat(SL_CT_STAT_ONE_SIDED_BUDGET), 2u);
  }
}

// The attack of finding H4: a blind sender confirms dsr flows two packets each, three times
// the budget. Without the budget (0, the control) the flood fills `conntrack` and a nat flow
// of another VIP can no longer confirm; with it, one-sided flows stop at the budget and nat
// flows confirm, counted, as always.
TEST_F(OneSidedBudgetTest, DsrFloodCannotStopNatFlowsFromConfirming) {
  constexpr uint32_t kBudget = Env::kCtEntries / 2;  // the default: half of max_entries
  for (const bool budget : {false, true}) {
    SCOPED_TRACE(budget ? "with the budget" : "without a budget (control)");
    env_->reset();
    const VipSpec d = dsr_vip(kVip4), n = nat_rr_vip();
    env_->add_vip(d, 0);
    env_->add_vip(n, 1);
    env_->set_one_sided_max(budget ? kBudget : 0);
    for (uint32_t i = 0; i < 3 * kBudget; i++) {
      blind_confirm(i);
      if (HasFatalFailure()) return;
    }
    if (!budget) {
      EXPECT_EQ(env_->conntrack_count(), Env::kCtEntries) << "the flood filled conntrack";
      const Conn c = conn(n, kClient4, 44200);
      for (const Seg& s : open_segs(c)) env_->run(s.in.build(), s.ingress);
      bool pending = false;
      sl_ct_entry e{};
      ASSERT_TRUE(env_->ct_lookup(c.key(), &e, &pending));
      EXPECT_TRUE(pending) << "the control: conntrack is full, the nat flow cannot confirm";
      continue;
    }
    EXPECT_EQ(env_->conntrack_count(), kBudget);
    EXPECT_EQ(env_->one_sided_count(), kBudget);
    EXPECT_EQ(env_->ct_stat(SL_CT_STAT_ONE_SIDED_BUDGET), 2u * kBudget);
    EXPECT_EQ(env_->ct_stat(SL_CT_STAT_CONFIRM_FULL), 0u);
    // nat flows confirm, and count on their backend.
    for (uint16_t i = 0; i < 4; i++) {
      const Conn c = conn(n, kClient4, static_cast<uint16_t>(44200 + i));
      for (const Seg& s : open_segs(c)) {
        SCOPED_TRACE(s.what);
        EXPECT_EQ(env_->run(s.in.build(), s.ingress).retval, static_cast<uint32_t>(XDP_REDIRECT));
      }
      bool pending = true;
      sl_ct_entry e{};
      ASSERT_TRUE(env_->ct_lookup(c.key(), &e, &pending));
      EXPECT_FALSE(pending) << "nat flow " << i << " confirmed";
      EXPECT_EQ(e.live, 1u);
    }
    EXPECT_EQ(env_->backend_conns(3), 4u);
    EXPECT_EQ(env_->one_sided_count(), kBudget) << "nat flows take no one-sided place";
  }
}

// ---------------------------------------------------------------------------------------------
// on_backend_down: reset. A backend that is down with SL_BACKEND_F_RESET (written here the
// way the agent writes it) makes every client packet of an open flow delete the entry and be
// answered with a TCP RST (RFC 793 reset generation), rewritten in place and sent back out by
// XDP_TX. Each case: a bystander flow and the flow under test on the same backend; the ring
// moved to the other backend and the flag set (the agent's order); then the trigger segment.

// A client segment of `c`, optionally VLAN-tagged and with IPv4 options / an IPv6 hop-by-hop
// header; `payload` bytes.
struct Seg4 {
  uint8_t flags;
  uint32_t seq, ack;
  size_t payload = 0;
};

struct ResetCase {
  std::string name;
  VipSpec vip;
  std::string client;
  uint8_t state;  // the flow's state when its backend goes down
  Seg4 in;
  std::optional<uint16_t> vlan;
  bool ip_extras = false;  // IPv4 options / an IPv6 hop-by-hop header on the trigger
  // The RST expected back (flags, seq, ack); nullopt: the trigger is a RST, passed on.
  std::optional<Seg4> rst;
};

void PrintTo(const ResetCase& c, std::ostream* os) { *os << c.name; }

Packet client_segment(const Conn& c, const Seg4& g, std::optional<uint16_t> vlan, bool extras) {
  Packet p = client_eth();
  if (vlan) p.vlan(*vlan);
  if (is_v6(c.client)) {
    p.ipv6(c.client, c.vip);
    if (extras) p.hop_by_hop(8);
  } else {
    p.ipv4(c.client, c.vip);
    if (extras) p.ip_options({0x01, 0x01, 0x01, 0x01});  // four NOPs
  }
  p.tcp(c.cport, c.vport, g.flags, g.seq, g.ack);
  return g.payload ? p.payload(g.payload) : p;
}

// The reset the LB sends back for `c`: from the VIP to the client, MACs swapped, the tags kept.
Packet reset_frame(const Conn& c, const Seg4& r, std::optional<uint16_t> vlan) {
  Packet p = Packet().eth(kTinMac, kClientMac);
  if (vlan) p.vlan(*vlan);
  if (is_v6(c.client)) {
    p.ipv6(c.vip, c.client);
  } else {
    p.ipv4(c.vip, c.client).ip_id(0).df();
  }
  return p.tcp(c.vport, c.cport, r.flags, r.seq, r.ack).window(0);
}

// The segments that bring a fresh flow to `state` (client side only in dsr).
std::vector<Seg> prefix_for(const VipSpec& v, const Conn& c, uint8_t state) {
  if (v.mode == SL_MODE_DSR) {
    std::vector<Seg> s{c.to_vip("SYN", c.c(kS, 1000, 0), SL_TCP_SYN_SENT, {})};
    if (state != SL_TCP_SYN_SENT)
      s.push_back(c.to_vip("ACK", c.c(kA, 1001, 5001), SL_TCP_ESTABLISHED, c.live()));
    return s;
  }
  return prefix_to(c, state);
}

std::vector<ResetCase> ResetCases() {
  const VipSpec v4 = nat_vip(kVip4), v6 = nat_vip(kVip6), d4 = dsr_vip(kVip4);
  const uint8_t kP = tcpf::kPsh;
  // One case per line or two reads better than one field per line.
  // clang-format off
  return {
      {"v4_ack_data", v4, kClient4, SL_TCP_ESTABLISHED, {kA, 1001, 5001, 20}, {}, false,
       Seg4{kR, 5001, 0}},
      {"v4_vlan_ack", v4, kClient4, SL_TCP_ESTABLISHED, {kA, 1001, 5001, 20}, 100, false,
       Seg4{kR, 5001, 0}},
      {"v6_ack_data", v6, kClient6, SL_TCP_ESTABLISHED, {kA, 1001, 5001, 20}, {}, false,
       Seg4{kR, 5001, 0}},
      {"v6_vlan_ack", v6, kClient6, SL_TCP_ESTABLISHED, {kA, 1001, 5001}, 42, false,
       Seg4{kR, 5001, 0}},
      // No ACK on the segment: sequence 0, ACK of everything it occupied.
      {"v4_syn_retransmit_in_syn_sent", v4, kClient4, SL_TCP_SYN_SENT, {kS, 1000, 0}, {}, false,
       Seg4{kR | kA, 0, 1001}},
      {"v4_data_without_ack", v4, kClient4, SL_TCP_ESTABLISHED, {kP, 1001, 0, 30}, {}, false,
       Seg4{kR | kA, 0, 1031}},
      {"v4_vlan_data_without_ack", v4, kClient4, SL_TCP_ESTABLISHED, {kP, 1001, 0, 7}, 7, false,
       Seg4{kR | kA, 0, 1008}},
      {"v6_fin_without_ack", v6, kClient6, SL_TCP_ESTABLISHED, {kF, 1001, 0, 10}, {}, false,
       Seg4{kR | kA, 0, 1012}},
      {"v6_vlan_syn_in_syn_sent", v6, kClient6, SL_TCP_SYN_SENT, {kS, 1000, 0}, 3000, false,
       Seg4{kR | kA, 0, 1001}},
      {"v4_fin_wait_fin_retransmit", v4, kClient4, SL_TCP_FIN_WAIT, {kF | kA, 1001, 5001}, {},
       false, Seg4{kR, 5001, 0}},
      {"v4_dsr_ack", d4, kClient4, SL_TCP_ESTABLISHED, {kA, 1001, 5001, 20}, {}, false,
       Seg4{kR, 5001, 0}},
      // The reset has plain headers, whatever the segment carried.
      {"v4_ip_options", v4, kClient4, SL_TCP_ESTABLISHED, {kA, 1001, 5001, 5}, {}, true,
       Seg4{kR, 5001, 0}},
      {"v6_hop_by_hop", v6, kClient6, SL_TCP_ESTABLISHED, {kA, 1001, 5001, 5}, {}, true,
       Seg4{kR, 5001, 0}},
      // A RST is not answered: the entry goes, the RST goes on to the backend.
      {"v4_client_rst_not_answered", v4, kClient4, SL_TCP_ESTABLISHED, {kR | kA, 1001, 5001},
       {}, false, std::nullopt},
      {"v6_vlan_client_rst_not_answered", v6, kClient6, SL_TCP_ESTABLISHED, {kR, 1001, 0}, 9,
       false, std::nullopt},
  };
  // clang-format on
}

class ConntrackResetTest : public EnvSuite<ResetCase> {
 protected:
  void set_backend_flag(uint32_t id, uint8_t flag, bool on) {
    sl_backend be{};
    const int fd = env_->fd(env_->skel()->maps.backends);
    ASSERT_EQ(bpf_map_lookup_elem(fd, &id, &be), 0);
    be.flags = static_cast<uint8_t>(on ? be.flags | flag : be.flags & ~flag);
    ASSERT_EQ(bpf_map_update_elem(fd, &id, &be, BPF_ANY), 0) << strerror(errno);
  }
  void run_segs(const std::vector<Seg>& segs) {
    for (const Seg& s : segs) {
      RunResult r = env_->run(s.in.build(), s.ingress);
      ASSERT_EQ(r.retval, static_cast<uint32_t>(XDP_REDIRECT)) << s.what;
    }
  }
  std::optional<sl_ct_entry> entry(const Conn& c) {
    const sl_flow_key k = c.key();
    sl_ct_entry e{};
    if (!env_->ct_lookup(k, &e)) return std::nullopt;
    return e;
  }
  // The agent's order for a backend going down under on_backend_down: reset: the ring
  // without it goes live, then the flag.
  void backend_down_reset(const VipSpec& v, uint32_t id) {
    env_->switch_ring(0, other_backend(v, id).id);
    set_backend_flag(id, SL_BACKEND_F_RESET, true);
  }
};

TEST_P(ConntrackResetTest, AnswersWithReset) {
  const ResetCase& rc = GetParam();
  env_->add_vip(rc.vip, 0);
  const Conn by = conn(rc.vip, rc.client, 44000);  // a bystander on the same backend
  const Conn c = conn(rc.vip, rc.client, 44001);
  ASSERT_EQ(by.be.id, c.be.id) << "the pick depends on the client address only";
  run_segs(prefix_for(rc.vip, by, SL_TCP_ESTABLISHED));
  run_segs(prefix_for(rc.vip, c, rc.state));
  ASSERT_FALSE(HasFatalFailure());
  // A flow is counted once confirmed (its handshake completed), not during it.
  ASSERT_EQ(env_->backend_conns(c.be.id), rc.state >= SL_TCP_ESTABLISHED ? 2u : 1u);
  env_->take_ct_events();
  const uint64_t transitions_before = env_->ct_transitions(rc.state, SL_TCP_CLOSED);
  backend_down_reset(rc.vip, c.be.id);
  if (rc.vlan) env_->add_vlan(Iface::kTin, *rc.vlan);  // tin carries the case's VLAN

  const Bytes in = client_segment(c, rc.in, rc.vlan, rc.ip_extras).build();
  RunResult r = env_->run(in, Iface::kTin);
  ASSERT_EQ(r.err, 0) << strerror(-r.err);
  if (rc.rst) {
    EXPECT_EQ(r.retval, static_cast<uint32_t>(XDP_TX)) << sluice::verdict_name(r.retval);
    const Bytes want = reset_frame(c, *rc.rst, rc.vlan).build();
    EXPECT_EQ(want, r.out) << diff(want, r.out);
    EXPECT_EQ(env_->ct_stat(SL_CT_STAT_RESET_SENT), 1u);
  } else {
    // Passed on to the backend like any segment of the flow (nat: rewritten to it).
    EXPECT_EQ(r.retval, static_cast<uint32_t>(XDP_REDIRECT)) << sluice::verdict_name(r.retval);
    Packet fwd = hop_eth(c.be.addr);
    if (rc.vlan) fwd.vlan(*rc.vlan);
    fwd = is_v6(c.client) ? fwd.ipv6(c.client, c.be.addr) : fwd.ipv4(c.client, c.be.addr);
    const Bytes want = fwd.tcp(c.cport, c.be.port, rc.in.flags, rc.in.seq, rc.in.ack).build();
    EXPECT_EQ(want, r.out) << diff(want, r.out);
    EXPECT_EQ(env_->ct_stat(SL_CT_STAT_RESET_SENT), 0u);
  }
  for (const std::string& problem : verify_checksums(r.out)) ADD_FAILURE() << problem;

  // The flow is gone, its count released exactly once; the bystander is untouched.
  EXPECT_FALSE(entry(c)) << "the reset flow's entry is still there";
  EXPECT_EQ(env_->backend_conns(c.be.id), 1u);
  const auto b = entry(by);
  ASSERT_TRUE(b);
  EXPECT_EQ(state_name(b->state), state_name(SL_TCP_ESTABLISHED));
  EXPECT_EQ(b->live, 1u);
  const std::vector<sl_ct_event> ev = env_->take_ct_events();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].type, SL_CT_EV_BACKEND_RESET);
  EXPECT_EQ(str(ev[0].key), str(c.key()));
  EXPECT_EQ(state_name(ev[0].old_state), state_name(rc.state));
  EXPECT_EQ(state_name(ev[0].new_state), state_name(SL_TCP_CLOSED));
  EXPECT_EQ(ev[0].backend_id, c.be.id);
  EXPECT_EQ(env_->ct_transitions(rc.state, SL_TCP_CLOSED), transitions_before + 1);
  EXPECT_EQ(env_->ct_stat(SL_CT_STAT_CONNS_UNDERFLOW), 0u);
  // Not traffic of the VIP or the backend: nothing went there.
  if (rc.rst) {
    EXPECT_EQ(env_->percpu_sum<sl_counter>(env_->skel()->maps.verdicts, XDP_TX).packets, 1u);
  }

  // The bystander's next packet is reset too; the count goes to 0 and stays there.
  const Seg4 ack{kA, 1001, 5001};
  EXPECT_EQ(env_->run(client_segment(by, ack, {}, false).build(), Iface::kTin).retval,
            static_cast<uint32_t>(XDP_TX));
  EXPECT_FALSE(entry(by));
  EXPECT_EQ(env_->backend_conns(c.be.id), 0u);
  // The reset flow's tuple is a miss now: its next segment starts over on the live ring, as a
  // mid-stream pickup, unconfirmed (uncounted) until the backend answers.
  const BackendSpec& other = other_backend(rc.vip, c.be.id);
  RunResult again = env_->run(client_segment(c, ack, {}, false).build(), Iface::kTin);
  EXPECT_EQ(again.retval, static_cast<uint32_t>(XDP_REDIRECT));
  const auto e = entry(c);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->backend_id, other.id);
  EXPECT_EQ(env_->backend_conns(other.id), 0u);
  EXPECT_EQ(env_->backend_conns(c.be.id), 0u);
}

INSTANTIATE_TEST_SUITE_P(Cases, ConntrackResetTest, ::testing::ValuesIn(ResetCases()), ParamName());

// The flag cleared again (the backend came back): its flows are forwarded as if nothing
// happened.
TEST_F(ConntrackResetTest, FlagClearedForwardsNormally) {
  const VipSpec v = nat_vip(kVip4);
  env_->add_vip(v, 0);
  const Conn c = conn(v, kClient4, 44100);
  run_segs(open_segs(c));
  set_backend_flag(c.be.id, SL_BACKEND_F_RESET, true);
  set_backend_flag(c.be.id, SL_BACKEND_F_RESET, false);
  env_->take_ct_events();
  RunResult r = env_->run(c.c(kA, 1001, 5001, 20).build(), Iface::kTin);
  EXPECT_EQ(r.retval, static_cast<uint32_t>(XDP_REDIRECT));
  const Hop h = hop_to(c.be.addr);
  const Bytes want = Packet()
                         .eth(h.smac, h.dmac)
                         .ipv4(c.client, c.be.addr)
                         .tcp(c.cport, c.be.port, kA, 1001, 5001)
                         .payload(20)
                         .build();
  EXPECT_EQ(want, r.out) << diff(want, r.out);
  const auto e = entry(c);
  ASSERT_TRUE(e);
  EXPECT_EQ(state_name(e->state), state_name(SL_TCP_ESTABLISHED));
  EXPECT_EQ(e->packets[0], 3u);
  EXPECT_EQ(env_->backend_conns(c.be.id), 1u);
  EXPECT_TRUE(env_->take_ct_events().empty());
  EXPECT_EQ(env_->ct_stat(SL_CT_STAT_RESET_SENT), 0u);
}

// A finished flow is not reset: a new SYN on its TIME_WAIT tuple is a reuse, picked anew on
// the live ring, and a leftover ACK is forwarded as before.
TEST_F(ConntrackResetTest, FinishedFlowIsReusedNotReset) {
  const VipSpec v = nat_vip(kVip4);
  env_->add_vip(v, 0);
  const Conn c = conn(v, kClient4, 44200);
  run_segs(prefix_to(c, SL_TCP_TIME_WAIT));
  ASSERT_FALSE(HasFatalFailure());
  backend_down_reset(v, c.be.id);
  env_->take_ct_events();
  EXPECT_EQ(env_->run(c.c(kA, 1002, 5002).build(), Iface::kTin).retval,
            static_cast<uint32_t>(XDP_REDIRECT))
      << "a leftover ACK";
  EXPECT_EQ(env_->run(c.c(kS, 90000, 0).build(), Iface::kTin).retval,
            static_cast<uint32_t>(XDP_REDIRECT));
  const auto e = entry(c);
  ASSERT_TRUE(e);
  EXPECT_EQ(state_name(e->state), state_name(SL_TCP_SYN_SENT));
  EXPECT_EQ(e->backend_id, other_backend(v, c.be.id).id);
  EXPECT_EQ(env_->ct_stat(SL_CT_STAT_RESET_SENT), 0u);
  EXPECT_EQ(env_->ct_stat(SL_CT_STAT_REUSED), 1u);
}

}  // namespace
}  // namespace sluice::test
