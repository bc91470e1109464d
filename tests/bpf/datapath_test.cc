// The agent's Datapath driving the real XDP program: backends taken out of and put back into
// the selection through the staging ring + ring switch (Datapath::set_backend_up/weight).
// Packets go through BPF_PROG_TEST_RUN; the chosen backend is read from the rewritten packet.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <sluice/apply/maglev.h>
#include <sluice/bpf/datapath.h>
#include <sluice/config/config.h>
#include <sluice/core/net.h>
#include "fib_world.h"
#include "loaded_datapath.h"
#include "netns.h"
#include "packet.h"

namespace sluice {
namespace {

using test::Packet;

// A nat UDP VIP 198.19.0.1:53 over 198.18.1.2 .. 4, port 5353.
const std::string kConfig =
    test::fib_config_yaml({test::fib_vip_yaml("198.19.0.1", 53, "udp", "nat", 3, 5353)});
constexpr int kSources = 400;

class DatapathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = test::skip_reason()) GTEST_SKIP() << *why;
    world_ = std::make_unique<test::FibWorld>("dp", 3);
    tin_ = world_->ifindex(test::Iface::kTin);
    auto cfg = parse_config(kConfig, "<test>");
    ASSERT_TRUE(cfg.config) << cfg.errors.front().to_string();
    std::string error;
    world_->lb().in([&] { dp_ = test::load_attached(test::small_limits(), *cfg.config, &error); });
    ASSERT_TRUE(dp_) << error;
  }
  void TearDown() override {
    if (world_) world_->lb().in([&] { dp_.reset(); });
  }

  // Backend address (last octet) each of kSources clients reaches.
  std::map<int, int> pick_all() {
    std::map<int, int> out;
    world_->lb().in([&] {
      for (int i = 0; i < kSources; ++i) {
        std::string src =
            "10." + std::to_string(1 + i / 250) + "." + std::to_string(i % 250) + ".9";
        auto pkt = Packet()
                       .eth("02:00:00:00:00:02", "02:00:00:00:00:01")
                       .ipv4(src, "198.19.0.1")
                       .udp(40000, 53)
                       .payload(8)
                       .build();
        std::vector<uint8_t> out_buf;
        uint32_t retval = 0;
        run_on_tin(pkt, &retval, &out_buf);
        if (HasFatalFailure()) return;
        if (retval != XDP_REDIRECT) {
          out[i] = -static_cast<int>(retval);  // e.g. -1 = XDP_DROP
          continue;
        }
        out[i] = out_buf[14 + 19];  // last octet of the rewritten IPv4 destination
      }
    });
    return out;
  }

  // One BPF_PROG_TEST_RUN of `pkt` as received on tin (call inside the namespace): the verdict
  // in *retval, and the output frame in *out if given.
  void run_on_tin(const std::vector<uint8_t>& pkt, uint32_t* retval,
                  std::vector<uint8_t>* out = nullptr) {
    test::XdpRun r = test::xdp_test_run(dp_->prog_fd(), pkt, tin_);
    ASSERT_EQ(r.err, 0);
    if (out) *out = std::move(r.out);
    *retval = r.retval;
  }

  std::unique_ptr<test::FibWorld> world_;
  std::unique_ptr<Datapath> dp_;
  unsigned tin_ = 0;
};

// The VLANs each interface carries follow the config, on start and on reload: set_vlans()
// adds the new {ifindex, VLAN} pairs and deletes the ones no longer listed, and the data path
// balances a tagged frame only on a VLAN its interface carries.
TEST_F(DatapathTest, VlansFollowTheConfigOnReload) {
  auto verdict = [&](uint16_t vid) {
    uint32_t retval = 0;
    world_->lb().in([&] {
      auto pkt = Packet()
                     .eth("02:00:00:00:00:02", "02:00:00:00:00:01")
                     .vlan(vid)
                     .ipv4("10.1.0.9", "198.19.0.1")
                     .udp(40000, 53)
                     .payload(8)
                     .build();
      run_on_tin(pkt, &retval);
    });
    return retval;
  };
  auto members = [&] {
    std::vector<std::pair<unsigned, uint16_t>> out;
    sl_vlan_key key{}, next{};
    void* prev = nullptr;
    while (bpf_map_get_next_key(dp_->fds().vlan_members, prev, &next) == 0) {
      out.emplace_back(next.ifindex, next.vid);
      key = next;
      prev = &key;
    }
    std::sort(out.begin(), out.end());
    return out;
  };
  auto apply = [&](const char* interfaces) {
    std::string text = std::string(kConfig);
    text.replace(text.find("interfaces: [tin, tb1]"), 22, interfaces);
    auto cfg = parse_config(text, "<test>");
    ASSERT_TRUE(cfg.config) << cfg.errors.front().to_string();
    world_->lb().in([&] {
      Status s = dp_->set_vlans(cfg.config->interface_configs);
      ASSERT_TRUE(s) << s.error().to_string();
    });
  };
  const unsigned tb1 = world_->ifindex(test::Iface::kTb1);
  using Members = std::vector<std::pair<unsigned, uint16_t>>;

  EXPECT_EQ(members(), Members{}) << "names only: no interface carries a VLAN";
  EXPECT_EQ(verdict(100), static_cast<uint32_t>(XDP_PASS));

  apply("interfaces: [{name: tin, vlans: [200, 100]}, tb1]");
  EXPECT_EQ(members(), (Members{{tin_, 100}, {tin_, 200}}));
  EXPECT_EQ(verdict(100), static_cast<uint32_t>(XDP_REDIRECT));
  EXPECT_EQ(verdict(300), static_cast<uint32_t>(XDP_PASS));

  apply("interfaces: [{name: tin, vlans: [300]}, {name: tb1, vlans: [100]}]");
  Members want{{tin_, 300}, {tb1, 100}};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(members(), want);
  EXPECT_EQ(verdict(100), static_cast<uint32_t>(XDP_PASS)) << "tb1 carries 100, not tin";
  EXPECT_EQ(verdict(300), static_cast<uint32_t>(XDP_REDIRECT));

  apply("interfaces: [tin, tb1]");
  EXPECT_EQ(members(), Members{});
}

// The budget of one-sided flows is a value in `info`, not a map size: every apply publishes
// the config's (default: half of conntrack.max_entries), so a reload may change it.
TEST_F(DatapathTest, OneSidedBudgetIsPublishedOnEveryApply) {
  auto published = [&] {
    auto info = read_info(dp_->fds().info);
    EXPECT_TRUE(info) << info.error().to_string();
    return info ? info->ct_one_sided_max : 0u;
  };
  auto first = parse_config(kConfig, "<test>");
  ASSERT_TRUE(first.config);
  EXPECT_EQ(published(), first.config->conntrack_max_entries / 2);
  for (const uint32_t n : {100u, 7u}) {
    auto cfg =
        parse_config(kConfig + "conntrack:\n  one_sided_max: " + std::to_string(n) + "\n", "<t>");
    ASSERT_TRUE(cfg.config) << cfg.errors.front().to_string();
    world_->lb().in([&] {
      auto sum = dp_->apply(*cfg.config);
      ASSERT_TRUE(sum) << sum.error().to_string();
    });
    EXPECT_EQ(published(), n);
  }
}

TEST_F(DatapathTest, BackendDownLeavesSelectionAndComesBackExactly) {
  auto before = pick_all();
  std::map<int, int> per_backend;
  for (auto& [src, b] : before) ++per_backend[b];
  ASSERT_EQ(per_backend.size(), 3u) << "all three backends should get clients";

  auto id = dp_->backend_id(0, 1);  // 198.18.1.3
  ASSERT_TRUE(id);
  ASSERT_TRUE(dp_->set_backend_up(*id, false));
  auto down = pick_all();
  int moved_from_others = 0, others = 0;
  for (auto& [src, b] : down) {
    EXPECT_NE(b, 3) << "client " << src << " still reaches the down backend";
    EXPECT_GT(b, 0) << "client " << src << " got verdict " << -b;
    if (before[src] != 3) {
      ++others;
      moved_from_others += before[src] != b;
    }
  }
  // Maglev: clients of the remaining backends (almost) never move.
  EXPECT_LE(moved_from_others, others / 50) << moved_from_others << " of " << others << " moved";

  ASSERT_TRUE(dp_->set_backend_up(*id, true));
  EXPECT_EQ(pick_all(), before) << "the ring is deterministic: bringing it back restores it";
}

TEST_F(DatapathTest, DrainByWeightZeroAndAllDownDropsNewFlows) {
  auto before = pick_all();
  auto b0 = dp_->backend_id(0, 0), b1 = dp_->backend_id(0, 1), b2 = dp_->backend_id(0, 2);
  ASSERT_TRUE(b0 && b1 && b2);
  ASSERT_TRUE(dp_->set_backend_weight(*b0, 0));
  for (auto& [src, b] : pick_all())
    EXPECT_NE(b, 2) << "client " << src << " reached a drained backend";

  ASSERT_TRUE(dp_->set_backend_up(*b1, false));
  ASSERT_TRUE(dp_->set_backend_up(*b2, false));
  for (auto& [src, b] : pick_all()) EXPECT_EQ(b, -XDP_DROP) << "client " << src;

  ASSERT_TRUE(dp_->set_backend_up(*b1, true));
  ASSERT_TRUE(dp_->set_backend_up(*b2, true));
  ASSERT_TRUE(dp_->set_backend_weight(*b0, 1));
  EXPECT_EQ(pick_all(), before);
  EXPECT_FALSE(dp_->set_backend_up(999, false)) << "unknown backend id must be an error";
}

// The agent writes rings with plain stores through its mapping of `maglev` (an mmapable array,
// whose u32 slots lie 8 bytes apart), fresh and after taking over pinned maps. Read back
// through the syscall, which knows the layout, every slot of the live ring must be the one
// build_maglev gives.
TEST_F(DatapathTest, RingsWrittenThroughTheMappingMatchMaglevAlsoAfterATakeover) {
  namespace fs = std::filesystem;
  const std::string pin = "/sys/fs/bpf/sluice-dptest-" + std::to_string(getpid());
  struct RemovePins {
    std::string dir;
    ~RemovePins() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } guard{pin};
  auto cfg = parse_config(kConfig, "<test>");
  ASSERT_TRUE(cfg.config);
  const Limits limits = test::small_limits();
  const char* keys[] = {"198.18.1.2:5353", "198.18.1.3:5353", "198.18.1.4:5353"};

  // Compares the VIP's live ring, slot by slot, with build_maglev of `weights`.
  auto expect_ring = [&](const std::vector<uint32_t>& weights, const char* when) {
    std::vector<MaglevBackend> mb;
    for (size_t b = 0; b < weights.size(); ++b)
      mb.push_back({*dp_->backend_id(0, b), weights[b], keys[b]});
    const std::vector<uint32_t> want = build_maglev(mb);
    sl_endpoint ep{};
    ep.family = SL_AF_INET;
    inet_pton(AF_INET, "198.19.0.1", &ep.addr);
    ep.port = htons(53);
    ep.proto = IPPROTO_UDP;
    uint32_t vid = 0;
    sl_vip_entry e{};
    ASSERT_EQ(bpf_map_lookup_elem(dp_->fds().vips, &ep, &vid), 0) << when;
    ASSERT_EQ(bpf_map_lookup_elem(dp_->fds().vip_table, &vid, &e), 0) << when;
    int wrong = 0;
    for (uint32_t slot = 0; slot < SL_MAGLEV_SIZE; ++slot) {
      uint32_t key = e.vip.ring_id * SL_MAGLEV_SIZE + slot, id = 0;
      ASSERT_EQ(bpf_map_lookup_elem(dp_->fds().maglev, &key, &id), 0);
      wrong += id != want[slot];
    }
    EXPECT_EQ(wrong, 0) << when << ": slots of ring " << e.vip.ring_id << " differ from Maglev";
  };

  world_->lb().in([&] {
    dp_.reset();  // the fixture's data path: its XDP links go
    auto d = Datapath::open(limits, pin);
    ASSERT_TRUE(d) << d.error().to_string();
    dp_ = std::move(*d);
    ASSERT_FALSE(dp_->adopted());
    ASSERT_TRUE(to_status(dp_->apply(*cfg.config)));
    ASSERT_TRUE(dp_->attach(cfg.config->interfaces));
    ASSERT_TRUE(dp_->publish());
  });
  expect_ring({1, 1, 1}, "fresh apply");
  ASSERT_TRUE(dp_->set_backend_weight(*dp_->backend_id(0, 0), 3));
  expect_ring({3, 1, 1}, "re-weighted");

  // A restart: the first data path stays pinned and attached, the second takes it over.
  dp_->keep_on_exit(true);
  world_->lb().in([&] { dp_.reset(); });
  ASSERT_TRUE(fs::exists(pin + "/info"));
  ASSERT_TRUE(fs::exists(pin + "/link_xdp_tin"));
  world_->lb().in([&] {
    auto d = Datapath::open(limits, pin);
    ASSERT_TRUE(d) << d.error().to_string();
    dp_ = std::move(*d);
    ASSERT_TRUE(dp_->adopted());
    // The config says weight 1: applying it switches the ring back.
    auto sum = dp_->apply(*cfg.config);
    ASSERT_TRUE(sum) << sum.error().to_string();
    EXPECT_EQ(sum->vips_changed, 1u);
    ASSERT_TRUE(dp_->attach(cfg.config->interfaces));
  });
  expect_ring({1, 1, 1}, "after the takeover");
  ASSERT_TRUE(dp_->set_backend_weight(*dp_->backend_id(0, 2), 4));
  expect_ring({1, 1, 4}, "re-weighted after the takeover");
  std::map<int, int> per_backend;
  for (auto& [src, b] : pick_all()) ++per_backend[b];
  EXPECT_EQ(per_backend.size(), 3u) << "packets through the new program reach all three backends";
  EXPECT_GT(per_backend[4], per_backend[2]) << "weight 4 against weight 1";

  dp_->keep_on_exit(false);
  world_->lb().in([&] { dp_.reset(); });
  EXPECT_FALSE(fs::exists(pin)) << "a data path told to tear down leaves no pin";
}

}  // namespace
}  // namespace sluice
