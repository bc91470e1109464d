// The congestion-control map readers (include/sluice/cc/cc_maps.h) over real maps created with
// the ABI's types and sizes, pinned as sluiced pins them and filled with known entries
// (tests/common/cc_pin_world.h). Needs root; skips otherwise.
#include <gtest/gtest.h>

#include <sluice/cc/cc_maps.h>

#include <algorithm>
#include <cstring>

#include "cc_pin_world.h"
#include "netns.h"

namespace sluice::test {
namespace {

constexpr uint64_t kNow = 5000 * kCcSec;

class CcMaps : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = skip_reason()) GTEST_SKIP() << *why;
    world_ = std::make_unique<CcPinWorld>();
    ASSERT_TRUE(world_->ok());
    fill_cc_example(*world_, kNow);
  }

  Result<PinnedCcMaps> Open() { return PinnedCcMaps::open(world_->pin_dir()); }

  std::unique_ptr<CcPinWorld> world_;
};

TEST_F(CcMaps, OpensEveryPinAndReadsTheConfig) {
  auto m = Open();
  ASSERT_TRUE(m) << m.error().to_string();
  const CcMapFds& f = m->fds();
  for (int fd : {f.config, f.lpm, f.rules, f.rule_stats, f.rule_info, f.conns, f.algo_users})
    EXPECT_GE(fd, 0);
  auto cfg = read_cc_config(f.config);
  ASSERT_TRUE(cfg) << cfg.error().to_string();
  EXPECT_EQ(cfg->abi_version, static_cast<uint32_t>(SL_CC_ABI_VERSION));
  EXPECT_EQ(cfg->active_slot, 1u);
  EXPECT_EQ(cfg->generation, 3u);
  auto users = read_cc_algo_users(f.algo_users);
  ASSERT_TRUE(users) << users.error().to_string();
  EXPECT_EQ(*users, 1u);
}

TEST_F(CcMaps, ReadsEveryConnectionExactly) {
  // More than one batch of the reader, so that the batch cursor is exercised.
  for (uint64_t i = 0; i < 1500 - 4; ++i) {
    sl_cc_conn c = cc_conn("10.1.0.1", static_cast<uint16_t>(i), "198.18.9.9", 443, 0, "reno");
    world_->put_conn(0x100000 + i, c);
  }
  auto m = Open();
  ASSERT_TRUE(m) << m.error().to_string();
  auto conns = read_cc_conns(m->fds().conns);
  ASSERT_TRUE(conns) << conns.error().to_string();
  ASSERT_EQ(conns->size(), 1500u);
  std::sort(conns->begin(), conns->end(),
            [](const CcConnView& a, const CcConnView& b) { return a.cookie < b.cookie; });
  for (size_t i = 1; i < conns->size(); ++i)
    EXPECT_NE((*conns)[i].cookie, (*conns)[i - 1].cookie) << "no entry read twice";
  // The hand-made ones come back byte for byte.
  for (const CcConnView& v : *conns) {
    if (v.cookie >= 0x100000) continue;
    sl_cc_conn want{};
    ASSERT_EQ(bpf_map_lookup_elem(world_->fd(kCcConnsPin), &v.cookie, &want), 0);
    EXPECT_EQ(std::memcmp(&want, &v.conn, sizeof(want)), 0) << std::hex << v.cookie;
  }
  EXPECT_EQ((*conns)[0].cookie, 0x1001u);
  EXPECT_EQ(cc_name((*conns)[0].conn), "cubic");
  EXPECT_EQ(cc_name((*conns)[1].conn), SL_CC_OURS);
  EXPECT_EQ(cc_name((*conns)[3].conn), "");
}

TEST_F(CcMaps, SumsRuleStatsOverEveryCpu) {
  auto m = Open();
  ASSERT_TRUE(m) << m.error().to_string();
  auto stats = read_cc_rule_stats(m->fds().rule_stats);
  ASSERT_TRUE(stats) << stats.error().to_string();
  ASSERT_EQ(stats->size(), static_cast<size_t>(SL_CC_MAX_RULE_IDS));
  const uint64_t k = CcPinWorld::cpu_weight();
  const sl_cc_rule_stats& web = (*stats)[0];
  EXPECT_EQ(web.matched, 3 * k);
  EXPECT_EQ(web.applied, 2 * k);
  EXPECT_EQ(web.failed, 1 * k);
  EXPECT_EQ(web.failed_by[SL_CC_SET_SNDBUF], 1 * k);
  EXPECT_EQ(web.failed_by[SL_CC_SET_ALGO], 0u);
  EXPECT_EQ(web.untracked, 1 * k);
  EXPECT_EQ(web.closed, 2 * k);
  EXPECT_EQ(web.srtt_us_sum, 3100 * k);
  EXPECT_EQ(web.srtt_hist[1], 1 * k);
  EXPECT_EQ(web.srtt_hist[6], 1 * k);
  EXPECT_EQ(web.retrans_hist[3], 1 * k);
  EXPECT_EQ(web.retrans_sum, 5 * k);
  EXPECT_EQ((*stats)[3].failed_by[SL_CC_SET_RCVBUF], 1 * k);
  EXPECT_EQ((*stats)[5].srtt_hist[SL_CC_SRTT_BUCKETS - 1], 1 * k);
  EXPECT_EQ((*stats)[9].matched, 4 * k);
  // Every other id is all zeros.
  const sl_cc_rule_stats zero{};
  for (uint32_t id : {1u, 2u, 4u, 255u})
    EXPECT_EQ(std::memcmp(&(*stats)[id], &zero, sizeof(zero)), 0) << "id " << id;
}

TEST_F(CcMaps, NamesEveryNamedIdWithWhetherItIsInUse) {
  auto m = Open();
  ASSERT_TRUE(m) << m.error().to_string();
  auto names = read_cc_rule_names(m->fds().rule_info);
  ASSERT_TRUE(names) << names.error().to_string();
  ASSERT_EQ(names->size(), 3u);
  EXPECT_EQ((*names)[0].id, 0);
  EXPECT_EQ((*names)[0].name, "web");
  EXPECT_TRUE((*names)[0].in_use);
  EXPECT_EQ((*names)[1].id, 3);
  EXPECT_EQ((*names)[1].name, "bulk");
  EXPECT_EQ((*names)[2].id, 5);
  EXPECT_EQ((*names)[2].name, "old");
  EXPECT_FALSE((*names)[2].in_use) << "removed by a reload, still named";
}

TEST_F(CcMaps, ANameThatFillsItsArrayIsReadWithoutRunningOver) {
  sl_cc_rule_info info{};
  std::memset(info.name, 'x', sizeof(info.name));  // no NUL
  info.in_use = 1;
  uint32_t id = 7;
  ASSERT_EQ(bpf_map_update_elem(world_->fd(kCcRuleInfoPin), &id, &info, BPF_ANY), 0);
  auto names = read_cc_rule_names(world_->fd(kCcRuleInfoPin));
  ASSERT_TRUE(names) << names.error().to_string();
  ASSERT_EQ(names->size(), 4u);
  EXPECT_EQ((*names)[3].id, 7);
  EXPECT_EQ((*names)[3].name, std::string(SL_CC_RULE_NAME_MAX, 'x'));
}

TEST_F(CcMaps, AlgorithmUsersAreOptional) {
  world_->unpin(kCcAlgoUsersPin);
  auto m = Open();
  ASSERT_TRUE(m) << m.error().to_string();
  EXPECT_EQ(m->fds().algo_users, -1) << "sluice_aimd not registered";
  EXPECT_GE(m->fds().conns, 0);
}

TEST_F(CcMaps, NoCcDirectorySaysThereIsNoCongestionSection) {
  const std::string dir = world_->pin_dir();
  world_.reset();  // unpins everything, removes the directories
  ASSERT_EQ(mkdir(dir.c_str(), 0700), 0);
  auto m = PinnedCcMaps::open(dir);
  rmdir(dir.c_str());
  ASSERT_FALSE(m);
  EXPECT_NE(m.error().message.find("no `congestion` section"), std::string::npos)
      << m.error().message;
  EXPECT_NE(m.error().message.find(dir + "/cc"), std::string::npos) << m.error().message;

  auto none = PinnedCcMaps::open(dir + "-absent");
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().message.find("no pin directory " + dir + "-absent"), std::string::npos)
      << none.error().message;
}

TEST_F(CcMaps, AMissingPinIsNamed) {
  world_->unpin(kCcConnsPin);
  auto m = Open();
  ASSERT_FALSE(m);
  EXPECT_NE(m.error().message.find(world_->path(kCcConnsPin)), std::string::npos)
      << m.error().message;
  EXPECT_EQ(m.error().code, ENOENT);
}

TEST_F(CcMaps, RefusesAnotherBuildsSizesAndVersion) {
  world_->repin_with_sizes(kCcRuleInfoPin, 4, 64);
  auto sizes = Open();
  ASSERT_FALSE(sizes);
  EXPECT_NE(sizes.error().message.find("4-byte keys and 64-byte values; this build reads 4 and " +
                                       std::to_string(sizeof(sl_cc_rule_info))),
            std::string::npos)
      << sizes.error().message;

  world_ = std::make_unique<CcPinWorld>();
  ASSERT_TRUE(world_->ok());
  world_->set_config({SL_CC_ABI_VERSION + 1, 0, {0, 0}, 1});
  auto version = Open();
  ASSERT_FALSE(version);
  EXPECT_NE(
      version.error().message.find("have ABI version " + std::to_string(SL_CC_ABI_VERSION + 1) +
                                   ", this build speaks " + std::to_string(SL_CC_ABI_VERSION)),
      std::string::npos)
      << version.error().message;
}

TEST_F(CcMaps, APolicyNotYetWrittenIsNotAnotherBuild) {
  const sl_cc_config zero{};
  uint32_t key = 0;
  ASSERT_EQ(bpf_map_update_elem(world_->fd(kCcConfigPin), &key, &zero, BPF_ANY), 0);
  auto m = Open();
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().message, "no congestion policy written under " + world_->cc_dir() +
                                   " yet (is sluiced starting?)");
}

TEST(CcNames, SettingsDirectionsAndStates) {
  EXPECT_STREQ(cc_setting_name(SL_CC_SET_ALGO), "algorithm");
  EXPECT_STREQ(cc_setting_name(SL_CC_SET_IW), "initial_cwnd");
  EXPECT_STREQ(cc_setting_name(SL_CC_SET_SNDBUF), "sndbuf");
  EXPECT_STREQ(cc_setting_name(SL_CC_SET_RCVBUF), "rcvbuf");
  EXPECT_STREQ(cc_setting_name(SL_CC_SET_CLAMP), "cwnd_clamp");
  EXPECT_STREQ(cc_setting_name(SL_CC_SET_MAX), "unknown");
  EXPECT_STREQ(cc_direction_name(SL_CC_DIR_ACTIVE), "active");
  EXPECT_STREQ(cc_direction_name(SL_CC_DIR_PASSIVE), "passive");
  EXPECT_STREQ(cc_direction_name(9), "unknown");
  EXPECT_STREQ(cc_tcp_state_name(1), "established");
  EXPECT_STREQ(cc_tcp_state_name(8), "close_wait");
  EXPECT_STREQ(cc_tcp_state_name(11), "closing");
  EXPECT_STREQ(cc_tcp_state_name(0), "unknown");
  EXPECT_STREQ(cc_tcp_state_name(200), "unknown");
}

}  // namespace
}  // namespace sluice::test
