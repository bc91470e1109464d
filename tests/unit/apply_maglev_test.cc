#include "sluice/apply/maglev.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace sluice {
namespace {

// Backends keyed the way the agent keys them ("addr:port"), with ids unrelated to key order.
std::vector<MaglevBackend> backends(std::size_t n, uint32_t weight = 1) {
  std::vector<MaglevBackend> out;
  for (std::size_t i = 0; i < n; ++i) {
    out.push_back(
        {static_cast<uint32_t>(100 + i), weight,
         "198.18." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 2) + ":8080"});
  }
  return out;
}

std::map<uint32_t, std::size_t> counts(const std::vector<uint32_t>& table) {
  std::map<uint32_t, std::size_t> out;
  for (uint32_t id : table) ++out[id];
  return out;
}

TEST(Maglev, EqualWeightsShareEvenly) {
  for (std::size_t n : {3, 5, 10}) {
    const auto bs = backends(n);
    const auto table = build_maglev(bs);
    ASSERT_EQ(table.size(), SL_MAGLEV_SIZE);
    const auto c = counts(table);
    EXPECT_EQ(c.count(SL_BACKEND_NONE), 0u);
    for (const MaglevBackend& b : bs) {
      const double share = double(c.count(b.id) ? c.at(b.id) : 0) / SL_MAGLEV_SIZE;
      EXPECT_NEAR(share, 1.0 / n, 0.01) << "n=" << n << " backend " << b.key;
    }
  }
}

TEST(Maglev, WeightsAreProportional) {
  auto bs = backends(4);
  const uint32_t weights[] = {1, 2, 3, 4};
  for (std::size_t i = 0; i < bs.size(); ++i) bs[i].weight = weights[i];
  const auto c = counts(build_maglev(bs));
  for (std::size_t i = 0; i < bs.size(); ++i) {
    EXPECT_NEAR(double(c.at(bs[i].id)) / SL_MAGLEV_SIZE, weights[i] / 10.0, 0.02) << bs[i].key;
  }
}

TEST(Maglev, SkewedWeights) {
  auto bs = backends(3);
  bs[0].weight = 65535;
  bs[1].weight = 1;
  bs[2].weight = 65535;
  const auto c = counts(build_maglev(bs));
  EXPECT_NEAR(double(c.at(bs[0].id)) / SL_MAGLEV_SIZE, 0.5, 0.01);
  EXPECT_NEAR(double(c.at(bs[2].id)) / SL_MAGLEV_SIZE, 0.5, 0.01);
  // Its share is 1/131071 of the table, half a slot: it may own one slot or none.
  EXPECT_LE(c.count(bs[1].id) ? c.at(bs[1].id) : 0, 1u);
}

// Maglev's point: when one of N backends leaves, flows on the others mostly stay put.
TEST(Maglev, RemovingOneBackendMovesFewSlots) {
  for (std::size_t n : {3, 5, 10}) {
    const auto all = backends(n);
    const auto before = build_maglev(all);
    for (std::size_t gone = 0; gone < n; ++gone) {
      auto rest = all;
      rest.erase(rest.begin() + gone);
      const auto after = build_maglev(rest);
      std::size_t kept_owner = 0, moved = 0;
      for (std::size_t s = 0; s < before.size(); ++s) {
        if (before[s] == all[gone].id) continue;
        ++kept_owner;
        moved += before[s] != after[s];
      }
      EXPECT_LE(double(moved) / kept_owner, 1.0 / n + 0.01) << "n=" << n << " removed " << gone;
      // And the removed backend's slots all went to the others.
      EXPECT_EQ(counts(after).count(all[gone].id), 0u);
    }
  }
}

TEST(Maglev, IndependentOfInputOrder) {
  auto bs = backends(20);
  for (std::size_t i = 0; i < bs.size(); ++i) bs[i].weight = 1 + i % 4;
  const auto reference = build_maglev(bs);
  std::mt19937 rng(42);
  for (int round = 0; round < 5; ++round) {
    std::shuffle(bs.begin(), bs.end(), rng);
    EXPECT_EQ(build_maglev(bs), reference) << "shuffle " << round;
  }
  std::reverse(bs.begin(), bs.end());
  EXPECT_EQ(build_maglev(bs), reference);
}

TEST(Maglev, ZeroWeightGetsNothing) {
  auto bs = backends(4);
  bs[2].weight = 0;
  const auto c = counts(build_maglev(bs));
  EXPECT_EQ(c.count(bs[2].id), 0u);
  EXPECT_EQ(c.count(SL_BACKEND_NONE), 0u);
  EXPECT_EQ(c.size(), 3u);
}

TEST(Maglev, NoUsableBackendFillsNone) {
  for (const auto& bs : {backends(0), backends(3, /*weight=*/0)}) {
    const auto table = build_maglev(bs);
    ASSERT_EQ(table.size(), SL_MAGLEV_SIZE);
    EXPECT_TRUE(
        std::all_of(table.begin(), table.end(), [](uint32_t id) { return id == SL_BACKEND_NONE; }));
  }
}

TEST(Maglev, SingleBackendOwnsEverySlot) {
  const auto bs = backends(1);
  const auto table = build_maglev(bs);
  EXPECT_EQ(counts(table).at(bs[0].id), SL_MAGLEV_SIZE);
}

TEST(Maglev, RejectsNonPrimeSize) {
  const auto bs = backends(3);
  for (uint32_t size : {0u, 1u, 4u, 65536u, 65535u, 7u * 13u}) {
    EXPECT_TRUE(build_maglev(bs, size).empty()) << size;
  }
  for (uint32_t size : {2u, 3u, 251u, 65537u}) {
    EXPECT_EQ(build_maglev(bs, size).size(), size) << size;
  }
}

TEST(Maglev, RejectsReservedId) {
  auto bs = backends(2);
  bs[1].id = SL_BACKEND_NONE;
  EXPECT_TRUE(build_maglev(bs).empty());
}

TEST(Maglev, SmallPrimeTableIsFull) {
  const auto bs = backends(5);
  const auto c = counts(build_maglev(bs, 251));
  EXPECT_EQ(c.count(SL_BACKEND_NONE), 0u);
  for (const MaglevBackend& b : bs) {
    EXPECT_GE(c.at(b.id), 50u);
    EXPECT_LE(c.at(b.id), 51u);
  }
}

// The table must not change across versions: LB hosts behind ECMP, or an upgraded agent,
// have to send a flow to the same backend as before.
TEST(Maglev, PinnedTable) {
  EXPECT_EQ(maglev_key_hash("198.18.1.2:8080", 1), 0x933ed63e722eb1c4ULL);
  EXPECT_EQ(maglev_key_hash("", 0), 0xefd01f60ba992926ULL);
  auto bs = backends(5);
  bs[3].weight = 3;
  const auto table = build_maglev(bs);
  const std::vector<uint32_t> head(table.begin(), table.begin() + 8);
  EXPECT_EQ(head, (std::vector<uint32_t>{103, 103, 100, 102, 101, 101, 104, 102}));
  uint64_t digest = 0;
  for (std::size_t s = 0; s < table.size(); ++s) digest = digest * 31 + table[s];
  EXPECT_EQ(digest, 0x919d987e12309098ULL);
}

TEST(Maglev, ThousandBackendsBuildQuickly) {
  const auto bs = backends(1000);
  const auto start = std::chrono::steady_clock::now();
  const auto table = build_maglev(bs);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  // Typically ~3 ms at -O2; the bound is generous so a loaded CI machine cannot flake.
  EXPECT_LT(elapsed, std::chrono::milliseconds(100));
  const auto c = counts(table);
  EXPECT_EQ(c.size(), 1000u);
  EXPECT_EQ(c.count(SL_BACKEND_NONE), 0u);
}

}  // namespace
}  // namespace sluice
