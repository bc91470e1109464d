// ConntrackManager's expiry sweep against a real, loaded `conntrack` map: synthetic entries
// with chosen states and ages, one sweep, then exactly which entries are gone. The manager
// runs on a fake clock, so ages are exact to the nanosecond. Needs root (BPF); skips
// otherwise.
#include <gtest/gtest.h>

#include <sluice/conntrack/conntrack.h>
#include <sluice/core/event_loop.h>

#include <chrono>
#include <memory>

#include "conntrack_util.h"

using namespace std::chrono_literals;

namespace sluice::test {
namespace {

// The fake clock starts at kT0; entries are written after the manager exists, at kNow, so
// that the restart grace (entries stamped before the manager count as seen at its start)
// does not apply unless a test asks for it.
constexpr uint64_t kT0 = 1000000 * kSec;
constexpr uint64_t kNow = kT0 + 1000000 * kSec;

// Distinct timeouts per state, so that a state mixed up with another shows.
ConntrackTimeouts distinct_timeouts() {
  ConntrackTimeouts t;
  t.syn_sent = 11;
  t.syn_recv = 12;
  t.established = 13;
  t.fin_wait = 14;
  t.close_wait = 15;
  t.last_ack = 16;
  t.time_wait = 17;
  t.close = 18;
  return t;
}

class ConntrackSweep : public LoadedDatapathTest {
 protected:
  void SetUp() override {
    LoadedDatapathTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    auto loop = EventLoop::create();
    ASSERT_TRUE(loop) << loop.error().to_string();
    loop_ = std::move(*loop);
  }

  std::unique_ptr<ConntrackManager> Manager(const ConntrackTimeouts& t,
                                            ConntrackOptions opts = {}) {
    now_ = kT0;
    opts.clock = [this] { return now_; };
    auto m = std::make_unique<ConntrackManager>(dp_->fds(), t, *loop_, opts);
    now_ = kNow;
    return m;
  }

  // Two entries per state, SYN_SENT to CLOSED (in that order): one idle exactly its timeout in
  // `t`, one idle 1 ns longer; each naming `backend_id` and holding `live`. Appends
  // {key, whether it must expire} to *flows.
  void PutAtAndPastTimeouts(const ConntrackTimeouts& t,
                            std::vector<std::pair<sl_flow_key, bool>>* flows,
                            uint32_t backend_id = 0, uint32_t live = 0) {
    for (uint8_t s = SL_TCP_SYN_SENT; s < SL_TCP_STATE_MAX; ++s) {
      const uint64_t timeout = uint64_t{t.for_state(s)} * kSec;
      for (bool expire : {false, true}) {
        const sl_flow_key k = nth_flow(static_cast<uint32_t>(flows->size()));
        ASSERT_TRUE(ct_put(ct_fd(), k,
                           ct_entry(s, 0, kNow - timeout - (expire ? 1 : 0), backend_id, live)));
        flows->emplace_back(k, expire);
      }
    }
  }

  SweepResult Sweep(ConntrackManager& m) {
    auto r = m.sweep_now();
    EXPECT_TRUE(r) << r.error().to_string();
    return r ? *r : SweepResult{};
  }

  std::unique_ptr<EventLoop> loop_;
  uint64_t now_ = kT0;
};

// For every state: an entry idle exactly its timeout stays, one idle 1 ns longer goes.
TEST_F(ConntrackSweep, EachStateExpiresAfterItsOwnTimeout) {
  const ConntrackTimeouts t = distinct_timeouts();
  auto m = Manager(t);
  std::vector<std::pair<sl_flow_key, bool>> flows;  // key, expected to expire
  ASSERT_NO_FATAL_FAILURE(PutAtAndPastTimeouts(t, &flows));
  const SweepResult r = Sweep(*m);
  EXPECT_EQ(r.scanned, flows.size());
  EXPECT_EQ(r.expired, flows.size() / 2);
  EXPECT_EQ(r.errors, 0u);
  for (size_t f = 0; f < flows.size(); ++f) {
    const uint8_t state = static_cast<uint8_t>(SL_TCP_SYN_SENT + f / 2);
    EXPECT_EQ(ct_has(ct_fd(), flows[f].first), !flows[f].second)
        << tcp_state_name(state) << (flows[f].second ? " past" : " at") << " its timeout";
  }
  const ConntrackStats st = m->snapshot();
  EXPECT_EQ(st.passes, 1u);
  EXPECT_EQ(st.entries_total, flows.size() / 2);
  EXPECT_EQ(st.last_pass_scanned, flows.size());
  for (uint8_t s = SL_TCP_SYN_SENT; s < SL_TCP_STATE_MAX; ++s) {
    EXPECT_EQ(st.entries[s], 1u) << tcp_state_name(s);
    EXPECT_EQ(st.expired[s], 1u) << tcp_state_name(s);
  }
  // A second pass finds nothing more to do.
  const SweepResult again = Sweep(*m);
  EXPECT_EQ(again.expired, 0u);
  EXPECT_EQ(again.scanned, flows.size() / 2);
}

TEST_F(ConntrackSweep, NoneCountsAsSynSentAndUnknownStatesGetTheLongestTimeout) {
  const ConntrackTimeouts t = distinct_timeouts();  // longest: close, 18 s
  auto m = Manager(t);
  const sl_flow_key none = nth_flow(1), unknown_kept = nth_flow(2), unknown_gone = nth_flow(3);
  ASSERT_TRUE(ct_put(ct_fd(), none, ct_entry(SL_TCP_NONE, 0, kNow - 12 * kSec)));
  ASSERT_TRUE(ct_put(ct_fd(), unknown_kept, ct_entry(99, 0, kNow - 17 * kSec)));
  ASSERT_TRUE(ct_put(ct_fd(), unknown_gone, ct_entry(99, 0, kNow - 19 * kSec)));
  Sweep(*m);
  EXPECT_FALSE(ct_has(ct_fd(), none));
  EXPECT_TRUE(ct_has(ct_fd(), unknown_kept));
  EXPECT_FALSE(ct_has(ct_fd(), unknown_gone));
  const ConntrackStats st = m->snapshot();
  EXPECT_EQ(st.expired[SL_TCP_NONE], 1u);
  EXPECT_EQ(st.expired[kCtUnknownState], 1u);
  EXPECT_EQ(st.entries[kCtUnknownState], 1u);
}

TEST_F(ConntrackSweep, NewTimeoutsApplyFromTheNextPass) {
  auto m = Manager(ConntrackTimeouts{});
  const sl_flow_key k = nth_flow(7);
  ASSERT_TRUE(ct_put(ct_fd(), k, ct_entry(SL_TCP_ESTABLISHED, 0, kNow - 3600 * kSec)));
  Sweep(*m);
  EXPECT_TRUE(ct_has(ct_fd(), k)) << "an hour is far below the 5-day default";
  ConntrackTimeouts shorter;
  shorter.established = 600;
  m->set_timeouts(shorter);
  Sweep(*m);
  EXPECT_FALSE(ct_has(ct_fd(), k));
}

// The data path's clock stands still while no agent runs: entries stamped before the manager
// started count as seen when it started, and get a full timeout from there.
TEST_F(ConntrackSweep, EntriesStampedBeforeStartGetAFullTimeoutFromStart) {
  ConntrackOptions opts;
  opts.clock = [this] { return now_; };
  now_ = kT0;
  const sl_flow_key k = nth_flow(9);
  ASSERT_TRUE(ct_put(ct_fd(), k, ct_entry(SL_TCP_CLOSED, 0, kT0 - 1000 * kSec)));
  ConntrackManager m(dp_->fds(), ConntrackTimeouts{}, *loop_, opts);  // close: 10 s
  now_ = kT0 + 10 * kSec;
  ASSERT_TRUE(m.sweep_now());
  EXPECT_TRUE(ct_has(ct_fd(), k)) << "expired before a full timeout since the agent started";
  now_ = kT0 + 10 * kSec + 1;
  ASSERT_TRUE(m.sweep_now());
  EXPECT_FALSE(ct_has(ct_fd(), k));
}

// abi.h, struct sl_ct_entry: an expired entry with live == 1 gives its backend_conns count
// back, once; live == 0 (released by the data path already) gives nothing; a count already
// at 0 stays there and is counted as an underflow.
TEST_F(ConntrackSweep, ExpiredLiveEntriesReleaseTheirBackendCountOnce) {
  const int conns = dp_->fds().backend_conns;
  ASSERT_GE(conns, 0);
  auto set = [&](uint32_t id, uint64_t v) {
    ASSERT_EQ(bpf_map_update_elem(conns, &id, &v, BPF_ANY), 0) << strerror(errno);
  };
  auto get = [&](uint32_t id) {
    uint64_t v = 0;
    EXPECT_EQ(bpf_map_lookup_elem(conns, &id, &v), 0) << strerror(errno);
    return v;
  };
  set(3, 5);
  set(4, 0);
  set(5, 2);
  auto m = Manager(ConntrackTimeouts{});
  ASSERT_TRUE(m->start());                 // maps backend_conns
  const uint64_t old = kNow - 200 * kSec;  // past syn_sent's 120 s
  ASSERT_TRUE(ct_put(ct_fd(), nth_flow(1), ct_entry(SL_TCP_SYN_SENT, 0, old, 3, 1)));
  ASSERT_TRUE(ct_put(ct_fd(), nth_flow(2), ct_entry(SL_TCP_SYN_SENT, 0, old, 3, 1)));
  ASSERT_TRUE(ct_put(ct_fd(), nth_flow(3), ct_entry(SL_TCP_TIME_WAIT, 0, old, 3, 0)));
  ASSERT_TRUE(ct_put(ct_fd(), nth_flow(4), ct_entry(SL_TCP_SYN_SENT, 0, old, 4, 1)));
  ASSERT_TRUE(ct_put(ct_fd(), nth_flow(5), ct_entry(SL_TCP_ESTABLISHED, 0, old, 5, 1)));
  const SweepResult r = Sweep(*m);
  EXPECT_EQ(r.expired, 4u);
  EXPECT_EQ(get(3), 3u) << "two live entries expired: 5 - 2";
  EXPECT_EQ(get(4), 0u) << "a release must never wrap below 0";
  EXPECT_EQ(get(5), 2u) << "the established entry is not expired and keeps its count";
  const ConntrackStats st = m->snapshot();
  EXPECT_EQ(st.conns_released, 2u);
  EXPECT_EQ(st.conns_underflow, 1u);
  // The second pass expires nothing and releases nothing.
  Sweep(*m);
  EXPECT_EQ(get(3), 3u);
}

// A one-sided (dsr) entry holds a place in the budget of one-sided flows (`ct_one_sided`) as
// long as it holds its live count: expiring it with live == 1 gives both back, once; with
// live == 0 (released by the data path) neither; a nat entry never touches the budget.
TEST_F(ConntrackSweep, ExpiredOneSidedEntriesGiveBackTheirBudgetPlace) {
  const int os = dp_->fds().ct_one_sided;
  ASSERT_GE(os, 0);
  const uint32_t zero = 0;
  auto count = [&] {
    uint64_t v = 0;
    EXPECT_EQ(bpf_map_lookup_elem(os, &zero, &v), 0) << strerror(errno);
    return v;
  };
  const uint64_t three = 3;
  ASSERT_EQ(bpf_map_update_elem(os, &zero, &three, BPF_ANY), 0) << strerror(errno);
  auto m = Manager(ConntrackTimeouts{});
  ASSERT_TRUE(m->start());                 // maps ct_one_sided
  const uint64_t old = kNow - 200 * kSec;  // past syn_sent's 120 s
  auto one_sided = [](sl_ct_entry e) {
    e.flags |= SL_CT_F_ONE_SIDED;
    return e;
  };
  ASSERT_TRUE(ct_put(ct_fd(), nth_flow(1), one_sided(ct_entry(SL_TCP_SYN_SENT, 0, old, 3, 1))));
  ASSERT_TRUE(ct_put(ct_fd(), nth_flow(2), one_sided(ct_entry(SL_TCP_TIME_WAIT, 0, old, 3, 0))));
  ASSERT_TRUE(ct_put(ct_fd(), nth_flow(3), ct_entry(SL_TCP_SYN_SENT, 0, old, 3, 1)));
  ASSERT_TRUE(ct_put(ct_fd(), nth_flow(4), one_sided(ct_entry(SL_TCP_ESTABLISHED, 0, old, 3, 1))));
  const SweepResult r = Sweep(*m);
  EXPECT_EQ(r.expired, 3u);
  EXPECT_EQ(count(), 2u) << "one live one-sided entry expired: 3 - 1";
  Sweep(*m);
  EXPECT_EQ(count(), 2u) << "the second pass gives nothing back";
}

// CtTable::kHostFlows (tc_flow's host_flows): expiry by the same per-state timeouts, but no
// entry holds a live count and the table reports no events, even when the fds the manager is
// given have both (here: the data path's, with a live count per entry and a ring buffer).
TEST_F(ConntrackSweep, HostFlowsTableExpiresWithoutCountsOrEvents) {
  const int conns = dp_->fds().backend_conns;
  ASSERT_GE(conns, 0);
  ASSERT_GE(dp_->fds().ct_events, 0);
  const uint32_t id = 3;
  const uint64_t five = 5;
  ASSERT_EQ(bpf_map_update_elem(conns, &id, &five, BPF_ANY), 0) << strerror(errno);
  const ConntrackTimeouts t = distinct_timeouts();
  ConntrackOptions opts;
  opts.table = CtTable::kHostFlows;
  auto m = Manager(t, opts);
  ASSERT_TRUE(m->start());
  EXPECT_FALSE(m->snapshot().events_enabled) << "host flows have no ct_events";
  EXPECT_EQ(m->poll_events(), 0);

  std::vector<std::pair<sl_flow_key, bool>> flows;  // key, expected to expire
  ASSERT_NO_FATAL_FAILURE(PutAtAndPastTimeouts(t, &flows, id, 1));
  const SweepResult r = Sweep(*m);
  EXPECT_EQ(r.expired, flows.size() / 2);
  for (const auto& [k, expire] : flows) EXPECT_EQ(ct_has(ct_fd(), k), !expire);
  uint64_t left = 0;
  ASSERT_EQ(bpf_map_lookup_elem(conns, &id, &left), 0);
  EXPECT_EQ(left, 5u) << "no live count is given back for a host flow";
  const ConntrackStats st = m->snapshot();
  EXPECT_EQ(st.conns_released, 0u);
  EXPECT_EQ(st.conns_underflow, 0u);
  EXPECT_EQ(st.entries_total, flows.size() / 2);
}

// On the loop: a pass over a table larger than one slice finishes over several callbacks,
// and other timers keep running while it does.
TEST_F(ConntrackSweep, TheLoopSweepsInSlices) {
  constexpr uint32_t kFlows = 20000;
  ConntrackOptions opts;
  opts.sweep_interval = 5ms;
  opts.slice_entries = 1000;
  opts.batch_entries = 256;
  auto m = Manager(ConntrackTimeouts{}, opts);
  std::vector<sl_flow_key> keys;
  std::vector<sl_ct_entry> values;
  for (uint32_t i = 0; i < kFlows; ++i) {
    keys.push_back(nth_flow(i));
    // Every other flow is a CLOSED entry idle for a minute (timeout 10 s).
    values.push_back(ct_entry(i % 2 ? SL_TCP_CLOSED : SL_TCP_ESTABLISHED, 0, kNow - 60 * kSec));
  }
  uint32_t count = kFlows;
  ASSERT_EQ(bpf_map_update_batch(ct_fd(), keys.data(), values.data(), &count, nullptr), 0)
      << strerror(errno);
  ASSERT_EQ(ct_count(ct_fd()), kFlows) << "the table refused entries while the test filled it";

  ASSERT_TRUE(m->start());
  int ticks = 0;
  loop_->add_timer(1ms, 1ms, [&] {
    ++ticks;
    if (m->snapshot().passes >= 1) loop_->stop();
  });
  loop_->add_timer(10s, 0ns, [&] { loop_->stop(); });  // a bound, should the test fail
  ASSERT_TRUE(loop_->run());
  const ConntrackStats st = m->snapshot();
  ASSERT_EQ(st.passes, 1u) << "no complete pass within 10 s";
  EXPECT_EQ(st.last_pass_scanned, kFlows);
  EXPECT_EQ(st.expired[SL_TCP_CLOSED], kFlows / 2);
  EXPECT_EQ(st.entries[SL_TCP_ESTABLISHED], kFlows / 2);
  EXPECT_EQ(st.entries_total, kFlows / 2);
  EXPECT_EQ(ct_count(ct_fd()), kFlows / 2);
  EXPECT_GT(ticks, 0);
}

// start() without a ring buffer in the maps leaves events off; stop() and the destructor
// take everything off the loop.
TEST_F(ConntrackSweep, StartAndStop) {
  auto m = Manager(ConntrackTimeouts{});
  ASSERT_TRUE(m->start());
  EXPECT_EQ(m->poll_events() >= 0, true);
  m->stop();
  m->stop();  // idempotent
  ASSERT_TRUE(m->start());
  m.reset();
  // Nothing of the manager is left on the loop: a lone timer is the only callback.
  bool fired = false;
  loop_->add_timer(1ms, 0ns, [&] {
    fired = true;
    loop_->stop();
  });
  ASSERT_TRUE(loop_->run());
  EXPECT_TRUE(fired);
}

}  // namespace
}  // namespace sluice::test
