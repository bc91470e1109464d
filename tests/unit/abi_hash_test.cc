// The source hash decides which Maglev slot, and so which backend, a flow reaches. The XDP
// program compiles the same header, so the two always agree; what these tests guard is the
// function itself across versions: changing it moves every flow to a new backend on upgrade,
// and during a rolling upgrade two LB hosts behind ECMP would disagree.
#include "sluice/abi/hash.h"

#include <arpa/inet.h>
#include <endian.h>
#include <gtest/gtest.h>

#include "sluice/core/net.h"

namespace sluice {
namespace {

sl_addr addr(const char* text) {
  const auto parsed = parse_ip(text);
  EXPECT_TRUE(parsed.has_value()) << text;
  return parsed ? parsed->first : sl_addr{};
}

TEST(SourceHash, PinnedValues) {
  // The address words are hashed as raw memory, so the values depend on host byte order;
  // these were computed once on x86_64 (little-endian), like the BPF targets we ship.
  if (__BYTE_ORDER != __LITTLE_ENDIAN) GTEST_SKIP() << "values pinned for little-endian hosts";
  const sl_addr v4 = addr("198.51.100.7");
  const sl_addr v6 = addr("2001:db8::1");
  EXPECT_EQ(sl_source_hash(&v4, 0), 0x6b26d855u);
  EXPECT_EQ(sl_source_hash(&v4, htons(40000)), 0x8ee0a596u);
  EXPECT_EQ(sl_source_hash(&v6, 0), 0x3b5424acu);
  EXPECT_EQ(sl_source_hash(&v6, htons(443)), 0x3697717fu);
}

TEST(SourceHash, PortChangesHash) {
  const sl_addr v4 = addr("198.51.100.7");
  EXPECT_NE(sl_source_hash(&v4, htons(1)), sl_source_hash(&v4, htons(2)));
}

TEST(SourceHash, SlotIsInRing) {
  EXPECT_EQ(sl_maglev_slot(SL_MAGLEV_SIZE), 0u);
  EXPECT_EQ(sl_maglev_slot(0xffffffffu), 0xffffffffu % SL_MAGLEV_SIZE);
}

}  // namespace
}  // namespace sluice
