// The apply plan and its executor over the in-memory maps (MemoryMaps): the reconcile
// decisions (ids, retire, reuse, rebuild), the order of the writes, and recovery from an apply
// that stops half-way, without a kernel. tests/bpf/datapath_apply_test.cc covers the same ground on
// the real maps (root).
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <string>

#include <sluice/abi/hash.h>
#include <sluice/apply/execute.h>
#include <sluice/apply/memory_maps.h>
#include <sluice/apply/plan.h>
#include <sluice/config/config.h>

#include "config_util.h"

namespace sluice {
namespace {

using test::lo_config_yaml;
using test::must_parse;
using test::nat_config;
using test::tcp80_vip_yaml;
using test::tcp_endpoint;
using test::too_big_least_conn;
using test::v4;

// The agent's side of an apply, as Datapath does it, over MemoryMaps.
struct Agent {
  explicit Agent(uint32_t max_vips = 4, uint32_t max_backends = 16)
      : maps(max_vips, max_backends), state(AppliedState::empty(max_vips, max_backends)) {}
  Result<ApplySummary> apply(const Config& cfg) {
    maps.log.clear();
    return apply_config(state, cfg, maps, maps, reusable);
  }
  uint32_t id(size_t v, size_t b) const { return state.vips.at(v).backends.at(b).id; }

  MemoryMaps maps;
  AppliedState state;
  IdReusable reusable = [](uint32_t) { return true; };
};

// Index of `line` in the log; fails the test when it is missing.
int at(const Agent& a, const std::string& line) {
  const int i = a.maps.find(line);
  EXPECT_GE(i, 0) << "no write '" << line << "'";
  return i;
}

TEST(ApplyPlan, IdsAreStableAcrossApplies) {
  Agent a;
  auto s = a.apply(nat_config({2, 3}));
  ASSERT_TRUE(s) << s.error().to_string();
  EXPECT_EQ(s->vips_added, 1u);
  EXPECT_EQ(s->backends_added, 2u);
  EXPECT_EQ(a.state.ids(), (std::vector<std::vector<uint32_t>>{{0, 1}}));
  EXPECT_EQ(a.state.vips[0].entry.vip.ring_id, 0u) << "a new VIP starts on ring 2*vid";

  s = a.apply(nat_config({4, 2, 3}));
  ASSERT_TRUE(s) << s.error().to_string();
  EXPECT_EQ(a.state.ids(), (std::vector<std::vector<uint32_t>>{{2, 0, 1}}));
  EXPECT_EQ(s->vips_changed, 1u);
  EXPECT_EQ(s->backends_added, 1u);
  EXPECT_EQ(a.state.vips[0].entry.vip.ring_id, 1u) << "switched to the staging ring";

  s = a.apply(nat_config({4, 2, 3}));
  ASSERT_TRUE(s) << s.error().to_string();
  EXPECT_EQ(s->vips_unchanged, 1u);
  EXPECT_EQ(s->generation, 3u);
  for (const std::string& line : a.maps.log) {
    EXPECT_EQ(line.find("backends"), std::string::npos) << "unchanged VIP touched: " << line;
    EXPECT_EQ(line.find("ring "), std::string::npos) << "unchanged VIP touched: " << line;
    EXPECT_EQ(line.find("vip_table"), std::string::npos) << "unchanged VIP touched: " << line;
  }
}

TEST(ApplyPlan, CapacityErrorsComeBeforeAnyWrite) {
  Agent a(/*max_vips=*/1, /*max_backends=*/2);
  ASSERT_TRUE(a.apply(nat_config({2})));
  const AppliedState before = a.state;

  auto r = a.apply(nat_config({2, 3, 4}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, E2BIG);
  EXPECT_NE(r.error().message.find("2 new backend ids, 1 of limits.max_backends (2)"),
            std::string::npos)
      << r.error().message;
  EXPECT_TRUE(a.maps.log.empty()) << "written before the capacity error: " << a.maps.log[0];
  EXPECT_EQ(a.state.ids(), before.ids());

  r = a.apply(must_parse(lo_config_yaml(tcp80_vip_yaml("198.19.0.1", "nat", {2}) +
                                        tcp80_vip_yaml("198.19.0.2", "nat", {3}))));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("new VIP ids"), std::string::npos) << r.error().message;
  EXPECT_TRUE(a.maps.log.empty());
}

TEST(ApplyPlan, NewVipIsReachableOnlyAfterItsBackendsAndRing) {
  Agent a;
  ASSERT_TRUE(a.apply(nat_config({2, 3})));
  const int filter = at(a, "addr_filter");
  const int be0 = at(a, "backends 0"), be1 = at(a, "backends 1");
  const int rev = at(a, "rev_nat 198.18.1.2:80/tcp");
  const int ring = at(a, "ring 0"), entry = at(a, "vip_table 0");
  const int addr = at(a, "vip_addrs 198.19.0.1"), hash = at(a, "vips 198.19.0.1:80/tcp=0");
  const int index = at(a, "vip_index");
  EXPECT_LT(filter, be0) << "the pre-filter passes the new backends before they get flows";
  EXPECT_LT(be0, ring);
  EXPECT_LT(be1, ring);
  EXPECT_LT(rev, ring);
  EXPECT_LT(ring, entry) << "the ring is written before the VIP switches to it";
  EXPECT_LT(entry, addr);
  EXPECT_LT(addr, hash);
  EXPECT_LT(hash, index);
  EXPECT_EQ(a.maps.vip_id(tcp_endpoint("198.19.0.1", 80)), 0u);
  EXPECT_EQ(a.maps.rev_nat(tcp_endpoint("198.18.1.3", 80))->backend_id, 1u);
  EXPECT_TRUE(a.maps.filter_bit(SL_FILTER_VIP_DST, v4("198.19.0.1")));
  EXPECT_TRUE(a.maps.filter_bit(SL_FILTER_NAT_BACKEND_SRC, v4("198.18.1.2")));
  EXPECT_EQ(a.maps.generation, 1u);
  EXPECT_EQ(a.maps.log.back(), "info 1");
}

TEST(ApplyPlan, RemovedVipLeavesTheIndexBeforeItsEntriesGo) {
  Agent a;
  ASSERT_TRUE(a.apply(
      must_parse(lo_config_yaml(tcp80_vip_yaml("198.19.0.1", "nat", {2}) +
                                tcp80_vip_yaml("198.19.0.2", "dsr", {3}, "source-hash", 2)))));
  ASSERT_EQ(a.state.ids(), (std::vector<std::vector<uint32_t>>{{0}, {1}}));
  auto s = a.apply(nat_config({2}));
  ASSERT_TRUE(s) << s.error().to_string();
  EXPECT_EQ(s->vips_removed, 1u);
  EXPECT_EQ(s->backends_removed, 1u);
  const int index = at(a, "vip_index"), unhash = at(a, "-vips 198.19.0.2:80/tcp");
  const int retire = at(a, "backends 1"), clear = at(a, "vip_table 1");
  EXPECT_LT(index, unhash);
  EXPECT_LT(unhash, retire);
  EXPECT_LT(retire, clear);
  EXPECT_LT(clear, at(a, "-vip_addrs 198.19.0.2"));
  EXPECT_TRUE(a.maps.backends[1].flags & SL_BACKEND_F_RETIRED);
  EXPECT_TRUE(a.maps.backends[1].flags & SL_BACKEND_F_ACTIVE) << "its flows finish on it";
  EXPECT_EQ(a.maps.vip_table[1].ep.family, 0) << "the VIP id's entry is cleared";
  EXPECT_FALSE(a.maps.vip_id(tcp_endpoint("198.19.0.2", 80)));
  EXPECT_FALSE(a.maps.has_vip_addr(v4("198.19.0.2"), SL_AF_INET));
  EXPECT_EQ(a.state.vip_ids[1], 0) << "the VIP id is free again";
  EXPECT_EQ(a.state.backend_ids[1], IdUse::kRetired);
}

TEST(ApplyPlan, RebuiltVipFlipsInOneUpdate) {
  Agent a;
  ASSERT_TRUE(a.apply(nat_config({2, 3})));
  auto s = a.apply(nat_config({2, 3}, "round-robin"));
  ASSERT_TRUE(s) << s.error().to_string();
  EXPECT_EQ(s->vips_changed, 1u);
  EXPECT_EQ(s->vips_removed, 0u);
  EXPECT_EQ(a.state.vips[0].entry.vip.vip_id, 1u) << "rebuilt under a new id";
  EXPECT_EQ(a.state.ids(), (std::vector<std::vector<uint32_t>>{{2, 3}}));
  int hashes = 0;
  for (const std::string& line : a.maps.log) {
    hashes += line.rfind("vips 198.19.0.1:80/tcp", 0) == 0;
    EXPECT_NE(line, "-vips 198.19.0.1:80/tcp") << "the VIP key is never missing";
  }
  EXPECT_EQ(hashes, 1);
  const int entry = at(a, "vip_table 1"), flip = at(a, "vips 198.19.0.1:80/tcp=1");
  EXPECT_LT(at(a, "ring 2"), entry);
  EXPECT_LT(entry, flip);
  EXPECT_LT(flip, at(a, "vip_index"));
  EXPECT_LT(at(a, "vip_index"), at(a, "backends 0")) << "old backends retired after the flip";
  EXPECT_LT(at(a, "backends 1"), at(a, "vip_table 0"));
  EXPECT_EQ(a.maps.vip_id(tcp_endpoint("198.19.0.1", 80)), 1u);
  EXPECT_EQ(a.maps.rev_nat(tcp_endpoint("198.18.1.2", 80))->backend_id, 2u);
}

TEST(ApplyPlan, RebuiltVipKeepsDrainAndDown) {
  Agent a;
  ASSERT_TRUE(a.apply(nat_config({2, 3})));
  ASSERT_TRUE(set_backend_drained(a.state, a.maps, a.id(0, 0), true));
  ASSERT_TRUE(set_backend_up(a.state, a.maps, a.id(0, 1), false));
  ASSERT_TRUE(a.apply(nat_config({2, 3}, "round-robin")));
  EXPECT_TRUE(a.state.vips[0].backends[0].drained) << "drained state lost on rebuild";
  EXPECT_FALSE(a.state.vips[0].backends[1].up) << "down state lost on rebuild";
  EXPECT_TRUE(a.maps.backends[a.id(0, 0)].flags & SL_BACKEND_F_DRAINED);
  EXPECT_TRUE(a.maps.backends[a.id(0, 1)].flags & SL_BACKEND_F_DOWN);
}

TEST(ApplyPlan, RetiredNatBackendKeepsItsPrefilterBitThroughApplies) {
  Agent a(4, 2048);
  ASSERT_TRUE(a.apply(nat_config({2, 3})));
  ASSERT_TRUE(a.apply(nat_config({2})));  // .3 retired
  const sl_addr retired = v4("198.18.1.3");
  EXPECT_TRUE(a.maps.filter_bit(SL_FILTER_NAT_BACKEND_SRC, retired))
      << "retired NAT backend keeps its bit after apply";

  // The ring build of the least-conn VIP fails after the 'both' filter was written.
  Config c = nat_config({2});
  VipConfig lc = too_big_least_conn(c.vips[0], &retired);
  ASSERT_GT(lc.backends.size(), 1024u);
  c.vips.push_back(lc);
  auto r = a.apply(c);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("build the ring of 198.19.0.2:80/tcp"), std::string::npos)
      << r.error().message;
  EXPECT_GE(a.maps.find("addr_filter"), 0);
  EXPECT_TRUE(a.maps.filter_bit(SL_FILTER_NAT_BACKEND_SRC, retired))
      << "the 'both' pre-filter dropped the retired NAT backend";

  // The failed apply's backends are retired by the read back, not leaked.
  ASSERT_TRUE(a.apply(nat_config({2})));
  int orphans = 0;
  for (uint32_t id = 0; id < a.state.max_backends(); ++id) {
    const sl_backend& be = a.maps.backends[id];
    if (!(be.flags & SL_BACKEND_F_ACTIVE) || (be.flags & SL_BACKEND_F_RETIRED)) continue;
    orphans += !a.state.find_backend(id).second;
  }
  EXPECT_EQ(orphans, 0) << "backend ids leaked by the failed apply";
  // The same VIP by source-hash fits: the failed apply's ids are reusable.
  Config c2 = nat_config({2});
  VipConfig sh = lc;
  sh.sched = SL_SCHED_SOURCE_HASH;
  c2.vips.push_back(sh);
  auto r2 = a.apply(c2);
  EXPECT_TRUE(r2) << r2.error().to_string();
}

TEST(ApplyPlan, FailedApplyIsReadBackSoRingSwitchesNeverWriteTheLiveRing) {
  Agent a(4, 2048);
  ASSERT_TRUE(a.apply(nat_config({2, 3, 4})));
  Config c = nat_config({2, 3});                    // retire .4 in the same apply ...
  c.vips.push_back(too_big_least_conn(c.vips[0]));  // ... that then fails
  ASSERT_FALSE(a.apply(c));
  const uint32_t live = a.maps.vip_table[0].vip.ring_id;
  EXPECT_EQ(a.state.vips[0].entry.vip.ring_id, live) << "the agent's ring_id is stale";
  EXPECT_EQ(a.state.vips.size(), 1u);
  EXPECT_EQ(a.state.backend_ids[2], IdUse::kRetired);

  a.maps.log.clear();
  ASSERT_TRUE(set_backend_drained(a.state, a.maps, a.id(0, 0), true));
  const int ring = at(a, "ring " + std::to_string(live ^ 1));
  EXPECT_EQ(a.maps.find("ring " + std::to_string(live)), -1) << "the drain rewrote the LIVE ring";
  EXPECT_LT(ring, at(a, "vip_table 0"));
  EXPECT_EQ(a.maps.vip_table[0].vip.ring_id, live ^ 1);
}

TEST(ApplyPlan, AFailedWriteIsReadBackAndTheNextApplyCompletes) {
  Agent a;
  ASSERT_TRUE(a.apply(nat_config({2})));
  const std::string vip2 = tcp80_vip_yaml("198.19.0.2", "nat", {3}, "source-hash", 2);
  const Config two = must_parse(lo_config_yaml(tcp80_vip_yaml("198.19.0.1", "nat", {2}) + vip2));
  a.maps.fail_on = [](const std::string& line) -> std::optional<Error> {
    if (line == "vips 198.19.0.2:80/tcp=1") return Error{ENOMEM, "update map 'vips'"};
    return std::nullopt;
  };
  auto r = a.apply(two);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ENOMEM);
  EXPECT_EQ(a.state.vips.size(), 1u) << "the VIP that never became reachable is not applied";
  EXPECT_EQ(a.state.backend_ids[1], IdUse::kRetired) << "its backend no VIP owns is retired";
  EXPECT_EQ(a.state.generation, 1u);
  a.maps.fail_on = nullptr;
  auto s = a.apply(two);
  ASSERT_TRUE(s) << s.error().to_string();
  EXPECT_EQ(a.maps.vip_id(tcp_endpoint("198.19.0.2", 80)), 1u);
  EXPECT_EQ(a.state.ids(), (std::vector<std::vector<uint32_t>>{{0}, {2}}));
}

TEST(ApplyPlan, ReusedRetiredIdKeepsRevNatOfABackendAddedInTheSameApply) {
  Agent a(4, 4);
  int asked = 0;
  a.reusable = [&](uint32_t) { return ++asked, true; };
  ASSERT_TRUE(a.apply(nat_config({1, 2})));
  ASSERT_TRUE(a.apply(nat_config({1})));  // .2 retired (id 1)
  EXPECT_EQ(asked, 0) << "fresh ids were left: the flows need not be read";
  auto r = a.apply(nat_config({1, 2, 3, 4}));  // .2 back (fresh id 2), .4 reuses id 1
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(a.state.ids(), (std::vector<std::vector<uint32_t>>{{0, 2, 3, 1}}));
  EXPECT_LT(at(a, "reset backend 1"), at(a, "backends 1")) << "a reused id starts clean";
  auto rn = a.maps.rev_nat(tcp_endpoint("198.18.1.2", 80));
  ASSERT_TRUE(rn) << "live NAT backend 198.18.1.2:80 has no rev_nat entry";
  EXPECT_EQ(rn->backend_id, 2u);
  EXPECT_EQ(a.maps.rev_nat(tcp_endpoint("198.18.1.4", 80))->backend_id, 1u);
  EXPECT_EQ(a.maps.find("-rev_nat 198.18.1.2:80/tcp"), -1);
  EXPECT_TRUE(a.state.retired.empty());
}

TEST(ApplyPlan, ReusedIdsEndpointLosesItsRevNatWhenNothingHasIt) {
  Agent a(4, 2);
  ASSERT_TRUE(a.apply(nat_config({1, 2})));
  ASSERT_TRUE(a.apply(nat_config({1})));     // .2 retired (id 1)
  ASSERT_TRUE(a.apply(nat_config({1, 3})));  // .3 takes id 1
  EXPECT_GT(at(a, "-rev_nat 198.18.1.2:80/tcp"), at(a, "vip_index"));
  EXPECT_FALSE(a.maps.rev_nat(tcp_endpoint("198.18.1.2", 80)));
  EXPECT_FALSE(a.maps.filter_bit(SL_FILTER_NAT_BACKEND_SRC, v4("198.18.1.2")));
}

// A retired id is given to a new backend only when no fresh id is left and no flow names it
// (Datapath asks conntrack and ct_pending, through `reusable`).
TEST(ApplyPlan, RetiredIdNamedByAFinishedFlowIsNotReused) {
  Agent a(4, 4);
  auto dsr = [](std::initializer_list<int> last) {
    return must_parse(lo_config_yaml(tcp80_vip_yaml("198.19.0.1", "dsr", last)));
  };
  ASSERT_TRUE(a.apply(dsr({1, 2})));
  const uint32_t retired = a.id(0, 1);
  ASSERT_TRUE(a.apply(dsr({1})));
  a.reusable = [&](uint32_t id) { return id != retired; };
  auto r = a.apply(dsr({1, 3, 4, 5}));
  ASSERT_FALSE(r) << "a retired id that a flow names was reused";
  EXPECT_NE(r.error().to_string().find("flow still names"), std::string::npos)
      << r.error().to_string();
  EXPECT_TRUE(a.maps.log.empty());
  a.reusable = [](uint32_t) { return true; };  // the entry expired
  r = a.apply(dsr({1, 3, 4, 5}));
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(a.id(0, 3), retired) << "the id, free again, is the one reused";
}

TEST(ApplyPlan, ReadStateRebuildsTheViewFromTheMaps) {
  Agent a;
  ASSERT_TRUE(
      a.apply(must_parse(lo_config_yaml(tcp80_vip_yaml("198.19.0.1", "nat", {2, 3}) +
                                        tcp80_vip_yaml("198.19.0.2", "dsr", {4}, "round-robin")))));
  ASSERT_TRUE(
      a.apply(must_parse(lo_config_yaml(tcp80_vip_yaml("198.19.0.1", "nat", {2}) +
                                        tcp80_vip_yaml("198.19.0.2", "dsr", {4}, "round-robin")))));
  ASSERT_TRUE(set_backend_drained(a.state, a.maps, a.id(1, 0), true));
  auto back = read_state(a.maps, a.maps, 4, 16);
  ASSERT_TRUE(back) << back.error().to_string();
  EXPECT_EQ(back->ids(), a.state.ids());
  ASSERT_EQ(back->retired.size(), 1u);
  EXPECT_EQ(back->retired[0].id, 1u);
  EXPECT_TRUE(back->retired[0].nat);
  EXPECT_TRUE(back->vips[1].backends[0].drained);
  EXPECT_EQ(back->vips[0].entry.vip.ring_id, a.state.vips[0].entry.vip.ring_id);
  EXPECT_EQ(back->backend_ids, a.state.backend_ids);
  EXPECT_EQ(back->vip_ids, a.state.vip_ids);
}

}  // namespace
}  // namespace sluice
