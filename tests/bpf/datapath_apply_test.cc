// Datapath::apply under the conditions a review found mishandled: retired NAT backends and
// the pre-filter, an apply that stops half-way (the agent's view is read back from the maps),
// a rebuilt VIP keeping drain/down, a retired id reused in the same apply as its endpoint's
// return; and ApiServer::start never removing a file it did not create. Needs root and BPF
// (no namespace, nothing attached); skips with the reason otherwise.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include <sluice/abi/abi.h>
#include <sluice/abi/hash.h>
#include <sluice/api/api_server.h>
#include <sluice/bpf/datapath.h>
#include <sluice/config/config.h>
#include <sluice/core/event_loop.h>
#include <sluice/core/net.h>

#include "config_util.h"
#include "loaded_datapath.h"
#include "netns.h"

namespace sluice {
namespace {

using test::lo_config_yaml;
using test::must_parse;
using test::nat_config;
using test::skip_reason;
using test::tcp80_vip_yaml;
using test::tcp_endpoint;
using test::too_big_least_conn;
using test::v4;

bool filter_bit(int fd, uint32_t kind, const sl_addr& a) {
  uint32_t slot = sl_addr_filter_slot(&a);
  uint32_t key = kind * SL_ADDR_FILTER_WORDS + (slot >> 6);
  uint64_t w = 0;
  EXPECT_EQ(bpf_map_lookup_elem(fd, &key, &w), 0);
  return w & (1ull << (slot & 63));
}

// A fresh data path (nothing attached, nothing pinned) with room for 4 VIPs.
std::unique_ptr<Datapath> load(uint32_t max_backends) {
  Limits l = test::small_limits();
  l.max_backends = max_backends;
  std::string error;
  std::unique_ptr<Datapath> d = test::load_datapath(l, &error);
  EXPECT_TRUE(d) << error;
  return d;
}

TEST(ApplyEdges, RetiredNatBackendKeepsItsPrefilterBitThroughApplies) {
  if (auto why = skip_reason()) GTEST_SKIP() << *why;
  std::unique_ptr<Datapath> owned = load(2048);
  ASSERT_TRUE(owned);
  Datapath& dp = *owned;
  ASSERT_TRUE(dp.apply(nat_config({2, 3})));
  ASSERT_TRUE(dp.apply(nat_config({2})));  // .3 retired
  const sl_addr retired = v4("198.18.1.3");
  EXPECT_TRUE(filter_bit(dp.fds().addr_filter, SL_FILTER_NAT_BACKEND_SRC, retired))
      << "retired NAT backend keeps its bit after apply";

  // Same config + a least-conn VIP with 1025 backends (API-style, not via the parser): its
  // ring build fails after the 'both' filter was written.
  Config c = nat_config({2});
  VipConfig lc = too_big_least_conn(c.vips[0], &retired);
  ASSERT_GT(lc.backends.size(), 1024u);
  c.vips.push_back(lc);
  auto r = dp.apply(c);
  ASSERT_FALSE(r);
  EXPECT_TRUE(filter_bit(dp.fds().addr_filter, SL_FILTER_NAT_BACKEND_SRC, retired))
      << "the 'both' pre-filter dropped the retired NAT backend (replies not reverse-NATed "
         "while an apply runs)";

  // Leak: the failed apply left ACTIVE backends that no VIP owns and that are not retired.
  ASSERT_TRUE(dp.apply(nat_config({2})));
  int orphans = 0;
  for (uint32_t id = 0; id < dp.limits().max_backends; ++id) {
    sl_backend be{};
    if (bpf_map_lookup_elem(dp.fds().backends, &id, &be) != 0) continue;
    if (!(be.flags & SL_BACKEND_F_ACTIVE) || (be.flags & SL_BACKEND_F_RETIRED)) continue;
    if (!dp.backend_state(id)) ++orphans;
  }
  EXPECT_EQ(orphans, 0) << "backend ids leaked by the failed apply";
  // Second attempt at the big config now fails on capacity even though nothing uses the ids.
  Config c2 = nat_config({2});
  VipConfig sh = lc;
  sh.sched = SL_SCHED_SOURCE_HASH;
  c2.vips.push_back(sh);
  auto r2 = dp.apply(c2);
  EXPECT_TRUE(r2) << "" << r2.error().to_string();
}

TEST(ApplyEdges, RebuiltVipKeepsDrainAndDown) {
  if (auto why = skip_reason()) GTEST_SKIP() << *why;
  std::unique_ptr<Datapath> owned = load(16);
  ASSERT_TRUE(owned);
  Datapath& dp = *owned;
  Config c = nat_config({2, 3});
  ASSERT_TRUE(dp.apply(c));
  const uint32_t id0 = *dp.backend_id(0, 0);
  ASSERT_TRUE(dp.set_backend_drained(id0, true));
  ASSERT_TRUE(dp.set_backend_up(*dp.backend_id(0, 1), false));
  c.vips[0].sched = SL_SCHED_ROUND_ROBIN;  // rebuild under a new id
  auto s = dp.apply(c);
  ASSERT_TRUE(s) << s.error().to_string();
  auto st0 = dp.backend_state(*dp.backend_id(0, 0));
  auto st1 = dp.backend_state(*dp.backend_id(0, 1));
  EXPECT_TRUE(st0->drained) << "drained state lost on rebuild";
  EXPECT_FALSE(st1->up) << "down state lost on rebuild (until sync_health)";
}

TEST(ApplyEdges, FailedApiStartLeavesOtherFilesAlone) {
  auto loop = EventLoop::create();
  ASSERT_TRUE(loop);
  const std::string dir = "/tmp/sl-ut-api-" + std::to_string(getpid());
  mkdir(dir.c_str(), 0700);
  const std::string file = dir + "/notasocket";
  { std::ofstream(file) << "precious\n"; }
  auto a = ApiServer::start(**loop, file, [](const std::string&) { return "{}"; });
  EXPECT_FALSE(a);
  EXPECT_EQ(access(file.c_str(), F_OK), 0) << "a failed start removed a regular file";
  const std::string sock = dir + "/s.sock";
  auto first = ApiServer::start(**loop, sock, [](const std::string&) { return "{}"; });
  ASSERT_TRUE(first);
  auto second = ApiServer::start(**loop, sock, [](const std::string&) { return "{}"; });
  EXPECT_FALSE(second);
  EXPECT_EQ(access(sock.c_str(), F_OK), 0) << "the refused second server unlinked the live socket";
  first->reset();
  unlink(file.c_str());
  unlink(sock.c_str());
  rmdir(dir.c_str());
}

TEST(ApplyEdges, FailedApplyIsReadBackSoRingSwitchesNeverWriteTheLiveRing) {
  if (auto why = skip_reason()) GTEST_SKIP() << *why;
  std::unique_ptr<Datapath> owned = load(2048);
  ASSERT_TRUE(owned);
  Datapath& dp = *owned;
  ASSERT_TRUE(dp.apply(nat_config({2, 3, 4})));
  const uint32_t x = *dp.backend_id(0, 2);
  Config c = nat_config({2, 3, 4});
  c.vips[0].backends.pop_back();                    // retire .4 in the same apply ...
  c.vips.push_back(too_big_least_conn(c.vips[0]));  // ... that then fails
  ASSERT_FALSE(dp.apply(c));
  uint32_t vid = 0;
  sl_vip_entry e{};
  ASSERT_EQ(bpf_map_lookup_elem(dp.fds().vip_table, &vid, &e), 0);
  const uint32_t live_before = e.vip.ring_id;
  sl_backend be{};
  bpf_map_lookup_elem(dp.fds().backends, &x, &be);
  ASSERT_TRUE(dp.set_backend_drained(*dp.backend_id(0, 0), true));
  ASSERT_EQ(bpf_map_lookup_elem(dp.fds().vip_table, &vid, &e), 0);
  EXPECT_NE(e.vip.ring_id, live_before)
      << "the drain rewrote the LIVE ring in place (agent's ring_id is stale)";
}

TEST(ApplyEdges, ReusedRetiredIdKeepsRevNatOfABackendAddedInTheSameApply) {
  if (auto why = skip_reason()) GTEST_SKIP() << *why;
  std::unique_ptr<Datapath> owned = load(4);
  ASSERT_TRUE(owned);
  Datapath& dp = *owned;
  ASSERT_TRUE(dp.apply(nat_config({1, 2})));
  ASSERT_TRUE(dp.apply(nat_config({1})));       // .2 retired (id 1)
  auto r = dp.apply(nat_config({1, 2, 3, 4}));  // .2 back (fresh id), .4 reuses id 1
  ASSERT_TRUE(r) << r.error().to_string();
  const sl_endpoint ep = tcp_endpoint("198.18.1.2", 80);
  sl_rev_nat rn{};
  EXPECT_EQ(bpf_map_lookup_elem(dp.fds().rev_nat, &ep, &rn), 0)
      << "live NAT backend 198.18.1.2:80 (id " << *dp.backend_id(0, 1)
      << ") has no rev_nat entry: its replies are never reverse-NATed";
}

// A retired backend id holds no live connection once its flows have finished, but their
// TIME_WAIT entries (in ct_pending) still name it: a late FIN, or a SYN on the tuple that is
// refused a new incarnation, goes to the stored backend. So the id is not given to a new
// backend until no entry of any state names it.
TEST(ApplyEdges, RetiredIdNamedByAFinishedFlowIsNotReused) {
  if (auto why = skip_reason()) GTEST_SKIP() << *why;
  std::unique_ptr<Datapath> owned = load(4);
  ASSERT_TRUE(owned);
  Datapath& dp = *owned;
  // dsr: no reverse-NAT entries, which would need more room than max_backends mid-apply.
  auto dsr = [](std::initializer_list<int> last) {
    return lo_config_yaml(tcp80_vip_yaml("198.19.0.1", "dsr", last));
  };
  ASSERT_TRUE(dp.apply(must_parse(dsr({1, 2}))));
  const uint32_t retired = *dp.backend_id(0, 1);
  ASSERT_TRUE(dp.apply(must_parse(dsr({1}))));  // .2 retired
  sl_flow_key k{};
  k.src = v4("198.18.0.9");
  k.dst = v4("198.19.0.1");
  k.sport = htons(40000);
  k.dport = htons(80);
  k.proto = IPPROTO_TCP;
  k.family = SL_AF_INET;
  sl_ct_entry e{};
  e.backend_id = retired;
  e.state = SL_TCP_TIME_WAIT;
  ASSERT_EQ(bpf_map_update_elem(dp.fds().ct_pending, &k, &e, BPF_NOEXIST), 0);
  // Four backends of four ids: the retired one is the only id left, and it is named.
  auto r = dp.apply(must_parse(dsr({1, 3, 4, 5})));
  ASSERT_FALSE(r) << "a retired id that a TIME_WAIT entry names was reused";
  EXPECT_NE(r.error().to_string().find("flow still names"), std::string::npos)
      << r.error().to_string();
  // Once the entry is gone (expired), the id is free again.
  ASSERT_EQ(bpf_map_delete_elem(dp.fds().ct_pending, &k), 0);
  ASSERT_TRUE(dp.apply(must_parse(dsr({1}))));  // the failed apply was rolled back by hand
  r = dp.apply(must_parse(dsr({1, 3, 4, 5})));
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(*dp.backend_id(0, 3), retired) << "the id, free again, is the one reused";
}

}  // namespace
}  // namespace sluice
