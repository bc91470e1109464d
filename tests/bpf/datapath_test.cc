// The agent's Datapath driving the real XDP program: backends taken out of and put back into
// the selection through the staging ring + ring switch (Datapath::set_backend_up/weight).
// Packets go through BPF_PROG_TEST_RUN; the chosen backend is read from the rewritten packet.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>

#include <map>
#include <string>
#include <vector>

#include "netns.h"
#include "packet.h"
#include <sluice/config.h>
#include <sluice/datapath.h>

namespace sluice {
namespace {

using test::Packet;

constexpr const char* kConfig = R"(
interfaces: [tin, tb1]
vips:
  - address: 198.19.0.1
    port: 53
    protocol: udp
    mode: nat
    backends: [{address: 198.18.1.2, port: 5353}, {address: 198.18.1.3, port: 5353},
               {address: 198.18.1.4, port: 5353}]
)";
constexpr int kSources = 400;

class DatapathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = test::skip_reason()) GTEST_SKIP() << *why;
    ns_ = std::make_unique<test::NetNs>("dp");
    peer_ = std::make_unique<test::NetNs>("dpp");
    test::make_veth(*ns_, "tin", *peer_, "pin");
    test::make_veth(*ns_, "tb1", *peer_, "pb1");
    ns_->must(
        "sysctl -qw net.ipv4.ip_forward=1 && ip addr add 198.18.0.1/24 dev tin && "
        "ip addr add 198.18.1.1/24 dev tb1 && "
        "for b in 2 3 4; do ip neigh replace 198.18.1.$b lladdr 02:00:00:00:01:0$b "
        "nud permanent dev tb1; done");
    tin_ = test::ifindex(*ns_, "tin");
    auto cfg = parse_config(kConfig, "<test>");
    ASSERT_TRUE(cfg.config) << cfg.errors.front().to_string();
    ns_->in([&] {
      Limits limits;
      limits.max_vips = 4;
      limits.max_backends = 16;
      limits.conntrack_entries = 1024;
      auto d = Datapath::load(limits);
      ASSERT_TRUE(d) << d.error().to_string();
      dp_ = std::move(*d);
      Status s = to_status(dp_->apply(*cfg.config));
      ASSERT_TRUE(s) << s.error().to_string();
      s = dp_->attach(cfg.config->interfaces);
      ASSERT_TRUE(s) << s.error().to_string();
    });
  }
  void TearDown() override {
    if (ns_) ns_->in([&] { dp_.reset(); });
  }

  // Backend address (last octet) each of kSources clients reaches.
  std::map<int, int> pick_all() {
    std::map<int, int> out;
    ns_->in([&] {
      for (int i = 0; i < kSources; ++i) {
        std::string src = "10." + std::to_string(1 + i / 250) + "." + std::to_string(i % 250) + ".9";
        auto pkt = Packet()
                       .eth("02:00:00:00:00:02", "02:00:00:00:00:01")
                       .ipv4(src, "198.19.0.1")
                       .udp(40000, 53)
                       .payload(8)
                       .build();
        std::vector<uint8_t> out_buf(pkt.size() + 64);
        xdp_md ctx{};
        ctx.data_end = static_cast<uint32_t>(pkt.size());
        ctx.ingress_ifindex = tin_;
        LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = pkt.data(), .data_out = out_buf.data(),
                    .data_size_in = static_cast<uint32_t>(pkt.size()),
                    .data_size_out = static_cast<uint32_t>(out_buf.size()), .ctx_in = &ctx,
                    .ctx_size_in = sizeof(ctx), .repeat = 1);
        ASSERT_EQ(bpf_prog_test_run_opts(dp_->prog_fd(), &o), 0);
        if (o.retval != XDP_REDIRECT) {
          out[i] = -static_cast<int>(o.retval);  // e.g. -1 = XDP_DROP
          continue;
        }
        out[i] = out_buf[14 + 19];  // last octet of the rewritten IPv4 destination
      }
    });
    return out;
  }

  std::unique_ptr<test::NetNs> ns_, peer_;
  std::unique_ptr<Datapath> dp_;
  unsigned tin_ = 0;
};

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
  for (auto& [src, b] : pick_all()) EXPECT_NE(b, 2) << "client " << src << " reached a drained backend";

  ASSERT_TRUE(dp_->set_backend_up(*b1, false));
  ASSERT_TRUE(dp_->set_backend_up(*b2, false));
  for (auto& [src, b] : pick_all()) EXPECT_EQ(b, -XDP_DROP) << "client " << src;

  ASSERT_TRUE(dp_->set_backend_up(*b1, true));
  ASSERT_TRUE(dp_->set_backend_up(*b2, true));
  ASSERT_TRUE(dp_->set_backend_weight(*b0, 1));
  EXPECT_EQ(pick_all(), before);
  EXPECT_FALSE(dp_->set_backend_up(999, false)) << "unknown backend id must be an error";
}

}  // namespace
}  // namespace sluice
