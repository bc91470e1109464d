// The round-robin and least-conn ring builders (agent/apply/sched.cc): the smooth weighted
// round-robin sequence against nginx's textbook loop, its proportions and smoothness, the
// weight reduction (gcd, scaling), and the ring layouts of abi.h (enum sl_sched).
#include "sluice/apply/sched.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace sluice {
namespace {

// nginx's loop (ngx_http_upstream_get_peer), O(W n): the reference the fast builder must match
// slot for slot.
std::vector<uint32_t> nginx_reference(const std::vector<uint32_t>& w) {
  const int64_t total = std::accumulate(w.begin(), w.end(), int64_t{0});
  std::vector<int64_t> current(w.size(), 0);
  std::vector<uint32_t> out;
  for (int64_t step = 0; step < total; ++step) {
    size_t best = 0;
    for (size_t i = 0; i < w.size(); ++i) {
      current[i] += w[i];
      if (current[i] > current[best]) best = i;  // strictly greater: the first max wins
    }
    current[best] -= total;
    out.push_back(static_cast<uint32_t>(best));
  }
  return out;
}

std::vector<uint32_t> random_weights(std::mt19937& rng, size_t n, uint32_t max_weight) {
  std::uniform_int_distribution<uint32_t> d(1, max_weight);
  std::vector<uint32_t> w(n);
  for (uint32_t& x : w) x = d(rng);
  return w;
}

std::vector<MaglevBackend> backends(const std::vector<uint32_t>& weights) {
  std::vector<MaglevBackend> out;
  for (size_t i = 0; i < weights.size(); ++i) {
    out.push_back({static_cast<uint32_t>(100 + i), weights[i],
                   "198.18.1." + std::to_string(i + 2) + ":8080"});
  }
  return out;
}

TEST(SmoothWrr, OneTwoThreeIsTheNginxExample) {
  // Credits (1,2,3) -> C, (2,4,0) -> B, (3,0,3) -> A (first of equals), (-2,2,6) -> C,
  // (-1,4,3) -> B, (0,0,6) -> C.
  EXPECT_EQ(smooth_wrr(std::vector<uint32_t>{1, 2, 3}), (std::vector<uint32_t>{2, 1, 0, 2, 1, 2}));
  EXPECT_EQ(smooth_wrr(std::vector<uint32_t>{5, 1, 1}),
            (std::vector<uint32_t>{0, 0, 1, 0, 2, 0, 0}));
  EXPECT_EQ(smooth_wrr(std::vector<uint32_t>{7}), std::vector<uint32_t>(7, 0));
  EXPECT_TRUE(smooth_wrr(std::vector<uint32_t>{}).empty());
}

TEST(SmoothWrr, MatchesNginxSlotForSlot) {
  std::mt19937 rng(7);
  for (int round = 0; round < 300; ++round) {
    const size_t n = 1 + rng() % 40;
    const uint32_t max_w = round % 3 == 0 ? 3 : round % 3 == 1 ? 20 : 500;
    const auto w = random_weights(rng, n, max_w);
    ASSERT_EQ(smooth_wrr(w), nginx_reference(w)) << "round " << round << ", n " << n;
  }
  // Equal weights and many equal credits: the tie rule (lowest index) decides every step.
  for (size_t n : {2, 3, 17, 64, 100}) {
    const std::vector<uint32_t> w(n, 4);
    ASSERT_EQ(smooth_wrr(w), nginx_reference(w)) << n << " equal weights";
  }
  // One heavy backend among light ones, and the reverse.
  std::vector<uint32_t> w(50, 1);
  w[17] = 1000;
  EXPECT_EQ(smooth_wrr(w), nginx_reference(w));
  std::vector<uint32_t> v(50, 300);
  v[0] = 1;
  EXPECT_EQ(smooth_wrr(v), nginx_reference(v));
}

TEST(SmoothWrr, MatchesNginxAtAThousandBackends) {
  std::mt19937 rng(11);
  const auto w = random_weights(rng, 1000, 127);  // a period of ~64000 slots
  const auto t0 = std::chrono::steady_clock::now();
  const auto fast = smooth_wrr(w);
  const auto t1 = std::chrono::steady_clock::now();
  const auto ref = nginx_reference(w);
  const auto t2 = std::chrono::steady_clock::now();
  EXPECT_EQ(fast, ref);
  using ms = std::chrono::duration<double, std::milli>;
  std::printf("1000 backends, period %zu: %.1f ms (nginx's loop: %.1f ms)\n", fast.size(),
              ms(t1 - t0).count(), ms(t2 - t1).count());
}

// Every index appears exactly its weight times, and in every prefix of k picks index i has
// between floor(k w_i / W) and ceil(k w_i / W) of them: no backend ever runs more than one
// pick ahead of or behind its share (the issue asks for at most ceil(...) + 1).
TEST(SmoothWrr, ExactProportionsAndSmooth) {
  std::mt19937 rng(3);
  for (int round = 0; round < 100; ++round) {
    const auto w = random_weights(rng, 1 + rng() % 30, round % 2 ? 10 : 1000);
    const uint64_t total = std::accumulate(w.begin(), w.end(), uint64_t{0});
    const auto seq = smooth_wrr(w);
    ASSERT_EQ(seq.size(), total);
    std::vector<uint64_t> seen(w.size(), 0);
    for (uint64_t k = 1; k <= seq.size(); ++k) {
      ASSERT_LT(seq[k - 1], w.size());
      ++seen[seq[k - 1]];
      for (size_t i = 0; i < w.size(); ++i) {
        const uint64_t share = k * w[i];
        const uint64_t hi = (share + total - 1) / total, lo = share / total;
        ASSERT_LE(seen[i], hi) << "round " << round << " prefix " << k << " index " << i;
        ASSERT_GE(seen[i], lo) << "round " << round << " prefix " << k << " index " << i;
      }
    }
    for (size_t i = 0; i < w.size(); ++i) EXPECT_EQ(seen[i], w[i]) << "index " << i;
  }
}

TEST(RrWeights, DividesByTheGcd) {
  EXPECT_EQ(rr_weights(std::vector<uint32_t>{2, 4, 6}, 65536), (std::vector<uint32_t>{1, 2, 3}));
  EXPECT_EQ(rr_weights(std::vector<uint32_t>{100, 100}, 65536), (std::vector<uint32_t>{1, 1}));
  EXPECT_EQ(rr_weights(std::vector<uint32_t>{65535}, 65536), (std::vector<uint32_t>{1}));
  EXPECT_EQ(rr_weights(std::vector<uint32_t>{3, 5}, 65536), (std::vector<uint32_t>{3, 5}));
  EXPECT_EQ(rr_weights(std::vector<uint32_t>{}, 65536), std::vector<uint32_t>{});
}

TEST(RrWeights, ScalesDownToTheCapInProportion) {
  // 4001 > 100: floor(w * 100 / 4001), at least 1.
  EXPECT_EQ(rr_weights(std::vector<uint32_t>{1, 1000, 3000}, 100),
            (std::vector<uint32_t>{1, 24, 74}));
  // 65535 + 65535 + 1 > 65536: the light one keeps 1, the heavy ones half the slots each.
  EXPECT_EQ(rr_weights(std::vector<uint32_t>{65535, 1, 65535}, 65536),
            (std::vector<uint32_t>{32767, 1, 32767}));
  // The minimum of 1 overshoots (8 + 9 > 10): the excess comes off the largest.
  EXPECT_EQ(rr_weights(std::vector<uint32_t>{1, 1, 1, 1, 1, 1, 1, 1, 100}, 10),
            (std::vector<uint32_t>{1, 1, 1, 1, 1, 1, 1, 1, 2}));
  // Scaling can leave a common divisor: divided again.
  EXPECT_EQ(rr_weights(std::vector<uint32_t>{300, 300, 600}, 8), (std::vector<uint32_t>{1, 1, 2}));
  // More weights than slots: no sequence holds them all.
  EXPECT_TRUE(rr_weights(std::vector<uint32_t>(11, 1), 10).empty());
  EXPECT_EQ(rr_weights(std::vector<uint32_t>(10, 7), 10), std::vector<uint32_t>(10, 1));
}

TEST(RrWeights, ScaledSharesStayClose) {
  std::mt19937 rng(5);
  const auto w = random_weights(rng, 2000, 65535);  // ~65M: 1000 times the cap
  const auto r = rr_weights(w, 65536);
  ASSERT_EQ(r.size(), w.size());
  const double total_w = std::accumulate(w.begin(), w.end(), 0.0);
  const double total_r = std::accumulate(r.begin(), r.end(), 0.0);
  EXPECT_LE(total_r, 65536);
  EXPECT_GT(total_r, 65536 * 0.95);
  for (size_t i = 0; i < w.size(); ++i) {
    EXPECT_GE(r[i], 1u);
    // Each share is within one slot (plus the rounding of the others) of the exact one.
    EXPECT_NEAR(r[i] / total_r * 65536, w[i] / total_w * 65536, 2.5) << "weight " << w[i];
  }
}

TEST(BuildSelection, RoundRobinRing) {
  auto bs = backends({2, 4, 6, 0});  // the weight-0 backend is drained: not in the ring
  auto ring = build_selection(SL_SCHED_ROUND_ROBIN, bs, SL_MAGLEV_SIZE);
  ASSERT_TRUE(ring) << ring.error().to_string();
  ASSERT_EQ(ring->size(), SL_MAGLEV_SIZE);
  EXPECT_EQ((*ring)[0], 6u);  // 2:4:6 = 1:2:3
  EXPECT_EQ(std::vector<uint32_t>(ring->begin() + 1, ring->begin() + 7),
            (std::vector<uint32_t>{102, 101, 100, 102, 101, 102}));
  for (size_t s = 7; s < ring->size(); ++s) ASSERT_EQ((*ring)[s], SL_BACKEND_NONE) << s;
}

TEST(BuildSelection, RoundRobinOverTheCapIsScaled) {
  auto bs = backends({65535, 1, 65535});
  auto ring = build_selection(SL_SCHED_ROUND_ROBIN, bs, SL_MAGLEV_SIZE);
  ASSERT_TRUE(ring) << ring.error().to_string();
  EXPECT_EQ((*ring)[0], 65535u);
  std::map<uint32_t, size_t> c;
  for (uint32_t s = 1; s <= (*ring)[0]; ++s) ++c[(*ring)[s]];
  EXPECT_EQ(c[100], 32767u);
  EXPECT_EQ(c[101], 1u);
  EXPECT_EQ(c[102], 32767u);
}

TEST(BuildSelection, LeastConnRing) {
  auto bs = backends({3, 0, 1, 65535});
  auto ring = build_selection(SL_SCHED_LEAST_CONN, bs, SL_MAGLEV_SIZE);
  ASSERT_TRUE(ring) << ring.error().to_string();
  ASSERT_EQ(ring->size(), SL_MAGLEV_SIZE);
  EXPECT_EQ(std::vector<uint32_t>(ring->begin(), ring->begin() + 7),
            (std::vector<uint32_t>{3, 100, 102, 103, 3, 1, 65535}));
  for (size_t s = 7; s < ring->size(); ++s) ASSERT_EQ((*ring)[s], SL_BACKEND_NONE) << s;
}

TEST(BuildSelection, LeastConnBound) {
  auto ok = build_selection(SL_SCHED_LEAST_CONN,
                            backends(std::vector<uint32_t>(SL_LC_MAX_BACKENDS, 1)), SL_MAGLEV_SIZE);
  ASSERT_TRUE(ok) << ok.error().to_string();
  EXPECT_EQ((*ok)[0], uint32_t{SL_LC_MAX_BACKENDS});
  auto too_many =
      build_selection(SL_SCHED_LEAST_CONN,
                      backends(std::vector<uint32_t>(SL_LC_MAX_BACKENDS + 1, 1)), SL_MAGLEV_SIZE);
  ASSERT_FALSE(too_many);
  EXPECT_EQ(too_many.error().message, "least-conn: 1025 usable backends, at most 1024 per VIP");
}

TEST(BuildSelection, NoUsableBackendIsAnEmptyRing) {
  for (uint8_t sched : {SL_SCHED_ROUND_ROBIN, SL_SCHED_LEAST_CONN}) {
    auto ring = build_selection(sched, backends({0, 0}), SL_MAGLEV_SIZE);
    ASSERT_TRUE(ring) << ring.error().to_string();
    EXPECT_EQ((*ring)[0], 0u) << int{sched};
    for (size_t s = 1; s < ring->size(); ++s) ASSERT_EQ((*ring)[s], SL_BACKEND_NONE);
  }
}

TEST(BuildSelection, SourceHashIsMaglev) {
  auto bs = backends({1, 2, 3});
  auto ring = build_selection(SL_SCHED_SOURCE_HASH, bs, SL_MAGLEV_SIZE);
  ASSERT_TRUE(ring) << ring.error().to_string();
  EXPECT_EQ(*ring, build_maglev(bs, SL_MAGLEV_SIZE));
  EXPECT_FALSE(build_selection(SL_SCHED_SOURCE_HASH, bs, 65536)) << "not prime";
}

TEST(BuildSelection, Refusals) {
  auto unknown = build_selection(7, backends({1}), SL_MAGLEV_SIZE);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().message, "unknown scheduler 7");
  std::vector<MaglevBackend> bad = backends({1});
  bad[0].id = SL_BACKEND_NONE;
  EXPECT_FALSE(build_selection(SL_SCHED_ROUND_ROBIN, bad, SL_MAGLEV_SIZE));
  EXPECT_FALSE(build_selection(SL_SCHED_ROUND_ROBIN, backends({1, 1, 1}), 3)) << "2 slots";
}

}  // namespace
}  // namespace sluice
