// "sluice acts only on traffic it owns, and no frame loops" (issue #10), through
// BPF_PROG_TEST_RUN of xdp_lb: VLAN membership, IPv6 routing headers, the fragment table's
// lifetime and per-VIP budget, and dsr backends behind a gateway. Table-driven like
// xdp_lb_test: every case is {VIPs, steps}, every step {input, ingress, verdict, output
// (unchanged / expected bytes / not checked), the one pass or drop reason counted, setup run
// before it, map checks after it}. Every counter of `verdicts`, `passes` and `drops` is
// checked on every step: exactly the expected one moved, by one packet.
//
// The world (namespaces, addresses, routes) is fib_world.h's, the loaded program xdp_env.h's,
// the runner xdp_cases.h's (shared with xdp_lb_test.cc).
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <sluice/abi/abi.h>
#include <sluice/core/net.h>

#include <ctime>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "packet.h"
#include "param_name.h"
#include "xdp_cases.h"
#include "xdp_env.h"

namespace sluice::test {
namespace {

using xdp::Case;
using xdp::drop_step;
using xdp::fwd_step;
using xdp::OutExp;
using xdp::pass_step;
using xdp::Step;

VipSpec udp_vip(const std::string& addr, uint16_t port, uint8_t mode,
                std::vector<BackendSpec> backends) {
  return {addr, port, IPPROTO_UDP, mode, 0, std::move(backends)};
}

// A NAT'd UDP VIP on port 53 with backends on tb1 and tb2 (ids first_id, first_id + 1).
VipSpec nat_udp(const std::string& addr, uint16_t port = 53, uint32_t first_id = 1) {
  const bool v6 = is_v6(addr);
  return udp_vip(
      addr, port, SL_MODE_NAT,
      {{first_id, v6 ? kBe1v6 : kBe1v4, 5353}, {first_id + 1, v6 ? kBe2v6 : kBe2v4, 5353}});
}

size_t frags_size(Env& env) {
  return env.dump<sl_frag_key, sl_frag_ports>(env.skel()->maps.frags).size();
}

// CLOCK_MONOTONIC_COARSE is bpf_ktime_get_coarse_ns()'s clock.
uint64_t coarse_now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// Moves the creation time of every fragment record `ago_ns` into the past.
void age_frags(Env& env, uint64_t ago_ns) {
  const int fd = env.fd(env.skel()->maps.frags);
  for (auto& [k, v] : env.dump<sl_frag_key, sl_frag_ports>(env.skel()->maps.frags)) {
    v.created_ns = coarse_now_ns() - ago_ns;
    ASSERT_EQ(bpf_map_update_elem(fd, &k, &v, BPF_EXIST), 0) << strerror(errno);
  }
}

// ---------------------------------------------------------------------------------------------
// VLAN membership

std::vector<Case> VlanCases() {
  std::vector<Case> cs;
  const VipSpec u = nat_udp(kVip4);
  const BackendSpec& be = pick(u, kClient4, 40000);
  auto to_vip = [](Packet l2) { return l2.ipv4(kClient4, kVip4).udp(40000, 53).payload(20); };
  auto to_be = [&](Packet l2) {
    return l2.ipv4(kClient4, be.addr).udp(40000, be.port).payload(20);
  };
  auto carry = [](Iface i, uint16_t vid) { return [=](Env& env) { env.add_vlan(i, vid); }; };

  {
    Step s = fwd_step("vlan 100 on tin, which carries 100", to_vip(client_eth().vlan(100)),
                      to_be(hop_eth(be.addr).vlan(100)), be.addr);
    s.before = carry(Iface::kTin, 100);
    cs.push_back({"vlan_carried_forwarded", "a tag the interface lists: balanced", {u}, {s}});
  }
  {
    Step s = pass_step("vlan 200 on tin, which carries 100", to_vip(client_eth().vlan(200)),
                       SL_PASS_VLAN_NOT_OURS);
    s.before = carry(Iface::kTin, 100);
    cs.push_back({"vlan_not_carried_passes",
                  "a tag the interface does not list, to a VIP: not ours, untouched",
                  {u},
                  {s}});
  }
  {
    Step s = pass_step("vlan 100 on tin, only tb1 carries 100", to_vip(client_eth().vlan(100)),
                       SL_PASS_VLAN_NOT_OURS);
    s.before = carry(Iface::kTb1, 100);
    cs.push_back({"vlan_carried_by_another_interface_passes",
                  "membership is per interface: tb1's VLAN 100 is not tin's",
                  {u},
                  {s}});
  }
  {
    Step s = pass_step("tagged, no interface lists a VLAN", to_vip(client_eth().vlan(100)),
                       SL_PASS_VLAN_NOT_OURS);
    cs.push_back({"vlan_on_untagged_only_interface_passes",
                  "an interface without vlans carries untagged frames only",
                  {u},
                  {s}});
  }
  {
    Step s = fwd_step("untagged on tin, which carries 100", to_vip(client_eth()),
                      to_be(hop_eth(be.addr)), be.addr);
    s.before = carry(Iface::kTin, 100);
    Step p = fwd_step("priority tag (VID 0, PCP 5)", to_vip(client_eth().vlan(0, kEthP8021Q, 5)),
                      to_be(hop_eth(be.addr).vlan(0, kEthP8021Q, 5)), be.addr);
    cs.push_back({"untagged_and_priority_tagged_carried",
                  "untagged frames (and VID 0, which 802.1Q defines as untagged) are always "
                  "carried",
                  {u},
                  {s, p}});
  }
  {
    auto qinq = [](Packet l2) { return l2.vlan(10, kEthP8021AD).vlan(20); };
    Step inner_only = pass_step("S-tag 10 / C-tag 20, tin carries 20 only",
                                to_vip(qinq(client_eth())), SL_PASS_VLAN_NOT_OURS);
    inner_only.before = carry(Iface::kTin, 20);
    Step outer = fwd_step("S-tag 10 / C-tag 20, tin carries 10", to_vip(qinq(client_eth())),
                          to_be(qinq(hop_eth(be.addr))), be.addr);
    outer.before = carry(Iface::kTin, 10);
    cs.push_back({"qinq_outer_tag_decides",
                  "802.1ad: membership is the outer (service) tag's, the inner one is the "
                  "customer's",
                  {u},
                  {inner_only, outer}});
  }
  cs.push_back({"vlan_not_carried_host_traffic_passes",
                "the host's own tagged traffic on a VLAN sluice does not carry: counted, untouched",
                {u},
                {pass_step("ARP on vlan 7", client_eth().vlan(7).arp_request(kClient4, kHost4),
                           SL_PASS_VLAN_NOT_OURS),
                 pass_step("UDP to the host on vlan 7",
                           client_eth().vlan(7).ipv4(kClient4, kHost4).udp(40000, 53).payload(4),
                           SL_PASS_VLAN_NOT_OURS)}});
  return cs;
}

// ---------------------------------------------------------------------------------------------
// IPv6 routing headers

std::vector<Case> RoutingHeaderCases() {
  std::vector<Case> cs;
  const VipSpec t6 = {kVip6, 80, IPPROTO_TCP, SL_MODE_NAT, 0, {{1, kBe1v6, 8080}}};
  const VipSpec u6 = nat_udp(kVip6);
  // Type 0 with one address: 8 bytes + 16.
  auto rh0 = [](uint8_t left) {
    return client_eth().ipv6(kClient6, kVip6).routing(24, 0, left).tcp(41000, 80, tcpf::kSyn);
  };
  cs.push_back({"ipv6_rh0_segments_left_to_vip_passes",
                "RFC 5095: a type-0 routing header with segments left is never processed, even "
                "to a VIP; the kernel discards it",
                {t6},
                {pass_step("RH0, 1 segment left", rh0(1), SL_PASS_IPV6_RH0)}});
  cs.push_back({"ipv6_rh0_behind_hop_by_hop_passes",
                "the routing header is found wherever it sits in the chain",
                {u6},
                {pass_step("hbh + RH0 (2 left) + UDP",
                           client_eth()
                               .ipv6(kClient6, kVip6)
                               .hop_by_hop()
                               .routing(40, 0, 2)
                               .udp(41000, 53)
                               .payload(8),
                           SL_PASS_IPV6_RH0)}});
  {
    Step s = fwd_step(
        "RH0, 0 segments left", rh0(0),
        hop_eth(kBe1v6).ipv6(kClient6, kBe1v6).routing(24, 0, 0).tcp(41000, 8080, tcpf::kSyn),
        kBe1v6);
    cs.push_back({"ipv6_rh0_segments_left_zero_forwarded",
                  "RFC 8200 4.4: with no segments left the header is ignored, type 0 too",
                  {t6},
                  {s}});
  }
  cs.push_back(
      {"ipv6_srh_segments_left_to_vip_passes",
       "another type (4, SRv6) with segments left: the VIP is a waypoint, not the destination",
       {u6},
       {pass_step("type 4, 1 segment left",
                  client_eth().ipv6(kClient6, kVip6).routing(24, 4, 1).udp(41000, 53).payload(8),
                  SL_PASS_NOT_VIP)}});
  return cs;
}

// ---------------------------------------------------------------------------------------------
// Fragments

constexpr uint16_t kSport = 40100;

// Three fragments of one 8 + 296-byte UDP datagram to dst:dport, id `id`: the first (offset 0,
// MF) carries the UDP header, a middle one (offset 104, MF), the last (offset 208, no MF).
Packet first4(Packet l2, const std::string& dst, uint16_t dport, uint16_t id) {
  return l2.ipv4(kClient4, dst).frag(id, 0, true).udp(kSport, dport).udp_len(304).payload(96);
}
Packet later4(Packet l2, const std::string& dst, uint16_t id, uint16_t off, bool mf) {
  return l2.ipv4(kClient4, dst).frag(id, off, mf).proto(IPPROTO_UDP).payload(off == 208 ? 96 : 104);
}

std::vector<Case> FragmentCases() {
  std::vector<Case> cs;
  const VipSpec u = nat_udp(kVip4);
  const BackendSpec& be = pick(u, kClient4, kSport);
  auto expect_frags = [](size_t n) { return [n](Env& env) { EXPECT_EQ(frags_size(env), n); }; };
  {
    Step first = fwd_step("first", first4(client_eth(), kVip4, 53, 7),
                          first4(hop_eth(be.addr), be.addr, be.port, 7), be.addr);
    first.check = expect_frags(1);
    Step middle = fwd_step("middle (MF)", later4(client_eth(), kVip4, 7, 104, true),
                           later4(hop_eth(be.addr), be.addr, 7, 104, true), be.addr);
    middle.check = expect_frags(1);
    Step last = fwd_step("last (no MF)", later4(client_eth(), kVip4, 7, 208, false),
                         later4(hop_eth(be.addr), be.addr, 7, 208, false), be.addr);
    last.check = expect_frags(0);
    Step again = drop_step("a copy of the middle one after the last",
                           later4(client_eth(), kVip4, 7, 104, true), SL_DROP_FRAG_NO_FIRST);
    cs.push_back({"frag_record_deleted_by_last_fragment",
                  "the datagram's last fragment forwards and deletes the record; nothing of it "
                  "is forwarded after that",
                  {u},
                  {first, middle, last, again}});
  }
  {
    const VipSpec u6 = nat_udp(kVip6);
    const BackendSpec& be6 = pick(u6, kClient6, kSport);
    auto f6 = [](Packet l2, const std::string& dst, uint16_t dport) {
      return l2.ipv6(kClient6, dst)
          .ipv6_frag(99, 0, true)
          .udp(kSport, dport)
          .udp_len(208)
          .payload(96);
    };
    auto l6 = [](Packet l2, const std::string& dst) {
      return l2.ipv6(kClient6, dst).ipv6_frag(99, 104, false).proto(IPPROTO_UDP).payload(104);
    };
    Step first = fwd_step("first", f6(client_eth(), kVip6, 53),
                          f6(hop_eth(be6.addr), be6.addr, be6.port), be6.addr);
    first.check = expect_frags(1);
    Step last = fwd_step("last (M = 0)", l6(client_eth(), kVip6), l6(hop_eth(be6.addr), be6.addr),
                         be6.addr);
    last.check = expect_frags(0);
    Step again = drop_step("the last one again", l6(client_eth(), kVip6), SL_DROP_FRAG_NO_FIRST);
    cs.push_back({"ipv6_frag_record_deleted_by_last_fragment",
                  "the same for the IPv6 fragment header's M flag",
                  {u6},
                  {first, last, again}});
  }
  {
    Step first = fwd_step("first", first4(client_eth(), kVip4, 53, 8),
                          first4(hop_eth(be.addr), be.addr, be.port, 8), be.addr);
    Step young = fwd_step("middle, record 1.5 s old", later4(client_eth(), kVip4, 8, 104, true),
                          later4(hop_eth(be.addr), be.addr, 8, 104, true), be.addr);
    young.before = [](Env& env) { age_frags(env, 1500000000ull); };
    young.check = expect_frags(1);
    Step old = drop_step("last, record 2.5 s old", later4(client_eth(), kVip4, 8, 208, false),
                         SL_DROP_FRAG_NO_FIRST);
    old.before = [](Env& env) { age_frags(env, 2500000000ull); };
    old.check = expect_frags(0);  // the expired record is reclaimed by the packet that found it
    cs.push_back({"frag_record_expires",
                  "a record is good for SL_FRAG_TIMEOUT_NS (2 s) after its first fragment",
                  {u},
                  {first, young, old}});
  }
  {
    // VIP 0 (port 53) has a datagram in flight; VIP 1 (port 54) is flooded with first
    // fragments, more than the whole table holds. Without the budget the LRU would evict VIP
    // 0's record; with it, VIP 1 gets its share and the rest is refused.
    const VipSpec flooded = nat_udp(kVip4, 54, 3);
    Step first = fwd_step("VIP 0: first", first4(client_eth(), kVip4, 53, 9),
                          first4(hop_eth(be.addr), be.addr, be.port, 9), be.addr);
    Step last = fwd_step("VIP 0: last, after the flood", later4(client_eth(), kVip4, 9, 208, false),
                         later4(hop_eth(be.addr), be.addr, 9, 208, false), be.addr);
    last.before = [](Env& env) {
      const uint32_t n = Env::kFragEntries + 64;
      uint32_t forwarded = 0, refused = 0;
      for (uint32_t i = 0; i < n; i++) {
        const Bytes in = first4(client_eth(), kVip4, 54, static_cast<uint16_t>(1000 + i)).build();
        RunResult r = env.run(in, Iface::kTin);
        ASSERT_EQ(r.err, 0) << strerror(-r.err);
        forwarded += r.retval == XDP_REDIRECT;
        refused += r.retval == XDP_DROP;
      }
      // One window's budget, two if the flood straddled a window boundary.
      EXPECT_GE(forwarded, Env::kFragBudget);
      EXPECT_LE(forwarded, 2 * Env::kFragBudget);
      EXPECT_EQ(forwarded + refused, n);
      sl_counter c = env.percpu_sum<sl_counter>(env.skel()->maps.drops, SL_DROP_FRAG_BUDGET);
      EXPECT_EQ(c.packets, refused);
      EXPECT_EQ(frags_size(env), 1 + forwarded);
    };
    last.check = [](Env& env) {  // VIP 0's record went with its last fragment; the flood's stay
      EXPECT_GE(frags_size(env), Env::kFragBudget);
      EXPECT_LE(frags_size(env), 2 * Env::kFragBudget);
    };
    cs.push_back({"frag_flood_to_one_vip_keeps_other_vips_records",
                  "a first-fragment flood to one VIP beyond its budget is refused (frag_budget) "
                  "and cannot evict another VIP's datagram",
                  {u, flooded},
                  {first, last}});
  }
  return cs;
}

// ---------------------------------------------------------------------------------------------
// dsr backends behind a gateway

std::vector<Case> DsrGatewayCases() {
  std::vector<Case> cs;
  constexpr char kBeviaGw4[] = "10.1.2.3";    // 10/8 is routed via the client, 198.18.0.2
  constexpr char kBeviaGw6[] = "fd00:99::3";  // via fd00:18::2
  auto dsr = [](const std::string& vip, const std::string& be) {
    return udp_vip(vip, 53, SL_MODE_DSR, {{1, be, 53}});
  };
  auto to_vip = [](Packet l2, const std::string& vip) {
    return l2.ipv4(kClient4, vip).udp(40200, 53).payload(12);
  };
  auto to_vip6 = [](Packet l2) { return l2.ipv6(kClient6, kVip6).udp(40200, 53).payload(12); };
  cs.push_back(
      {"dsr_backend_behind_gateway_dropped",
       "the next hop is a router: the frame still names the VIP and could come back; "
       "refused, again from the next-hop cache",
       {dsr(kVip4, kBeviaGw4)},
       {drop_step("FIB answers via 198.18.0.2", to_vip(client_eth(), kVip4), SL_DROP_DSR_GATEWAY),
        drop_step("cached next hop", to_vip(client_eth(), kVip4), SL_DROP_DSR_GATEWAY)}});
  cs.push_back(
      {"ipv6_dsr_backend_behind_gateway_dropped",
       "the same for IPv6 (the FIB's ipv6_dst is the gateway)",
       {dsr(kVip6, kBeviaGw6)},
       {drop_step("FIB answers via fd00:18::2", to_vip6(client_eth()), SL_DROP_DSR_GATEWAY)}});
  cs.push_back(
      {"dsr_backend_on_link_forwarded",
       "an on-link dsr backend: only the MACs change",
       {dsr(kVip4, kBe1v4)},
       {fwd_step("on tb1's link", to_vip(client_eth(), kVip4), to_vip(hop_eth(kBe1v4), kVip4),
                 kBe1v4),
        fwd_step("cached", to_vip(client_eth(), kVip4), to_vip(hop_eth(kBe1v4), kVip4), kBe1v4)}});
  cs.push_back(
      {"ipv6_dsr_backend_on_link_forwarded",
       "the same for IPv6",
       {dsr(kVip6, kBe1v6)},
       {fwd_step("on tb1's link", to_vip6(client_eth()), to_vip6(hop_eth(kBe1v6)), kBe1v6)}});
  {
    const VipSpec nat = udp_vip(kVip4, 53, SL_MODE_NAT, {{1, kBeviaGw4, 5353}});
    cs.push_back(
        {"nat_backend_behind_gateway_forwarded",
         "nat rewrites the destination to the backend: routing it through a gateway is fine",
         {nat},
         {fwd_step("via 198.18.0.2", to_vip(client_eth(), kVip4),
                   hop_eth(kBeviaGw4).ipv4(kClient4, kBeviaGw4).udp(40200, 5353).payload(12),
                   kBeviaGw4)}});
  }
  return cs;
}

// This suite checks the verdict, pass and drop counters of every step, not the traffic ones.
std::vector<Case> AllCases() {
  std::vector<Case> all;
  for (auto gen : {VlanCases, RoutingHeaderCases, FragmentCases, DsrGatewayCases}) {
    for (Case& c : gen()) all.push_back(std::move(c));
  }
  for (Case& c : all) {
    for (Step& s : c.steps) s.stats = xdp::StatsExp::kDontCare;
  }
  return all;
}

// ---------------------------------------------------------------------------------------------
// The runner: xdp_cases.h

class OwnedTrafficTest : public xdp::CaseTest {};

TEST_P(OwnedTrafficTest, Packet) { RunCase(GetParam()); }

INSTANTIATE_TEST_SUITE_P(Cases, OwnedTrafficTest, ::testing::ValuesIn(AllCases()), ParamName());

}  // namespace
}  // namespace sluice::test
