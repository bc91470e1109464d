// ConntrackTimeouts without a kernel: the per-state defaults and when an entry counts as
// expired. The sweep that applies them to real maps is tests/bpf/conntrack_sweep_test.cc.
#include <gtest/gtest.h>

#include <sluice/conntrack/conntrack.h>

#include "conntrack_util.h"

namespace sluice::test {
namespace {

TEST(ConntrackTimeoutsTest, DefaultsAreNfConntracks) {
  const ConntrackTimeouts t;
  // SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT, CLOSED.
  EXPECT_EQ(timeouts_by_state(t), (std::vector<uint32_t>{120, 60, 432000, 120, 60, 30, 120, 10}));
  // No state recorded yet: a handshake in flight. A state from a newer data path: never cut
  // short, so the longest timeout.
  EXPECT_EQ(t.for_state(SL_TCP_NONE), 120u);
  EXPECT_EQ(t.for_state(SL_TCP_STATE_MAX), 432000u);
  EXPECT_EQ(t.for_state(200), 432000u);
}

TEST(ConntrackTimeoutsTest, ExpiryIsStrictlyAfterTheTimeout) {
  const ConntrackTimeouts t;
  const sl_ct_entry e = ct_entry(SL_TCP_CLOSED, 0, 100 * kSec);
  EXPECT_FALSE(ct_expired(e, t, 110 * kSec));
  EXPECT_TRUE(ct_expired(e, t, 110 * kSec + 1));
  EXPECT_EQ(ct_expires_in_ns(e, t, 105 * kSec), 5 * kSec);
  EXPECT_EQ(ct_expires_in_ns(e, t, 111 * kSec), 0u);
  // A stamp from the future (the data path's clock ran ahead of ours): idle 0, not negative.
  EXPECT_EQ(ct_expires_in_ns(e, t, 50 * kSec), 10 * kSec);
  // not_before: idle counts from the later of the stamp and not_before.
  EXPECT_FALSE(ct_expired(e, t, 200 * kSec, 195 * kSec));
  EXPECT_TRUE(ct_expired(e, t, 200 * kSec, 189 * kSec));
}

}  // namespace
}  // namespace sluice::test
