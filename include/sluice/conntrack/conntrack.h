// Conntrack expiry and events: the agent's half of TCP state tracking.
//
// The data path creates and advances conntrack entries; it removes one only to replace a
// finished flow's (reuse). The table never evicts: when it is full, new flows go untracked
// (docs/design.md), so expiry is what makes room. ConntrackManager, on the agent's event loop:
//  - sweeps the `conntrack` map (or tc_flow's `host_flows`, see CtTable) and deletes every
//    entry that has been idle for longer than the timeout of its state (ConntrackTimeouts,
//    nf_conntrack's defaults);
//  - gives back the live-connection count (`backend_conns`) an expired entry still held, by
//    the contract in abi.h (struct sl_ct_entry): an atomic subtraction on the mmapped array;
//  - consumes the `ct_events` ring buffer (notable transitions) when the data path has one;
//  - keeps gauges and counters for metrics (snapshot()).
//
// The sweep never blocks the loop for long: a pass over the table is cut into slices (about
// ConntrackOptions::slice_entries entries, a few ms), one per loop callback, and the next
// slice runs as soon as the loop has served whatever else is ready.
#pragma once

#include <sluice/abi/abi.h>
#include <sluice/bpf/maps.h>
#include <sluice/config/config.h>
#include <sluice/config/ct_expiry.h>
#include <sluice/core/clock.h>
#include <sluice/core/event_loop.h>
#include <sluice/core/net.h>
#include <sluice/core/result.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

struct ring_buffer;

namespace sluice {

// Index of per-state arrays: an enum sl_tcp_state value, or kCtUnknownState for a value this
// build does not know (a newer data path).
inline constexpr std::size_t kCtUnknownState = SL_TCP_STATE_MAX;
inline constexpr std::size_t kCtStateSlots = SL_TCP_STATE_MAX + 1;
inline std::size_t ct_state_slot(uint8_t state) {
  return state < SL_TCP_STATE_MAX ? state : kCtUnknownState;
}

// Which table a ConntrackManager sweeps. Both hold struct sl_ct_entry and expire alike.
enum class CtTable : uint8_t {
  // xdp_lb's `conntrack` (MapFds::conntrack): an expired entry gives back its live count in
  // `backend_conns`, and `ct_events` is consumed, when the fds have them.
  kVipFlows,
  // tc_flow's `host_flows`, passed as MapFds::conntrack: the host's own flows hold no live
  // count and report no events, so MapFds::backend_conns and ct_events are ignored, whatever
  // they hold. Entries are only expired.
  kHostFlows,
  // xdp_lb's `ct_pending` (MapFds::ct_pending): unconfirmed and finished VIP flows. They hold
  // no live count and report no events (the kVipFlows manager reads ct_events); open ones
  // expire by the unconfirmed timeout when it is shorter than their state's.
  kPendingFlows,
};

struct ConntrackOptions {
  CtTable table = CtTable::kVipFlows;
  std::chrono::milliseconds sweep_interval{1000};  // Config::conntrack_sweep_interval_ms
  // How much one loop callback does before it yields: the bound on how long the sweep holds
  // the loop. Counted in entries read, where an entry deleted counts as 4 (a delete costs
  // about as much as reading 4); a slice may run one batch past it. The default is about
  // 8 ms on the reference VM (bench/ct_sweep_bench).
  uint32_t slice_entries = 16384;
  // Entries per bpf_map_lookup_batch call. Grows by itself when one hash bucket holds more.
  uint32_t batch_entries = 4096;
  // Now, CLOCK_MONOTONIC ns. Tests substitute a fake clock. Entries stamped before the
  // manager was constructed count as seen at construction: a conservative start, so that a
  // restarted agent never expires a flow that the data path itself still keeps (an agent
  // older than ABI 5 stopped the data path's clock while it was down).
  std::function<uint64_t()> clock = monotonic_ns;
};

// One pass over the conntrack table.
struct SweepResult {
  uint64_t scanned = 0;   // entries read
  uint64_t expired = 0;   // entries deleted
  uint64_t restored = 0;  // deleted, found touched since they were read, and put back
  uint64_t errors = 0;    // map calls that failed (logged)
  // Entries left in the table, by state slot (ct_state_slot), as the pass saw them.
  std::array<uint64_t, kCtStateSlots> by_state{};
};

// Gauges and counters for metrics. Counters count from the manager's construction.
struct ConntrackStats {
  // Gauge: entries by state slot, as of the last complete pass.
  std::array<uint64_t, kCtStateSlots> entries{};
  uint64_t entries_total = 0;
  // Counter: entries the sweep deleted, by the state slot they were in.
  std::array<uint64_t, kCtStateSlots> expired{};
  // Counter: transitions reported on `ct_events`, [from slot][to slot]. Only the notable
  // ones are reported (enum sl_ct_event_type); the data path's `ct_transitions` map counts
  // every state change.
  std::array<std::array<uint64_t, kCtStateSlots>, kCtStateSlots> transitions{};
  std::array<uint64_t, SL_CT_EV_MAX> events_by_type{};  // [0]: unknown types
  uint64_t events = 0;                                  // ct_events records consumed
  uint64_t events_malformed = 0;                        // records too short to decode
  uint64_t restored = 0;                                // see SweepResult::restored
  uint64_t errors = 0;                                  // failed map calls
  // Live counts given back for expired entries (backend_conns[backend_id] -= 1), and those
  // that found the count at 0 already and left it there (a double release; should stay 0).
  uint64_t conns_released = 0;
  uint64_t conns_underflow = 0;
  uint64_t passes = 0;  // complete passes over the table
  uint64_t last_pass_scanned = 0;
  uint64_t last_pass_busy_ns = 0;  // time spent in the last pass's slices (not the gaps)
  bool events_enabled = false;     // the data path has `ct_events` and it is consumed
};

class ConntrackManager {
 public:
  // `fds` must outlive the manager (the Datapath's or PinnedMaps' fds). The table swept is
  // fds.conntrack; opts.table says which one it is.
  ConntrackManager(const MapFds& fds, const ConntrackTimeouts& timeouts, EventLoop& loop,
                   ConntrackOptions opts = {});
  ~ConntrackManager();
  ConntrackManager(const ConntrackManager&) = delete;
  ConntrackManager& operator=(const ConntrackManager&) = delete;

  // Arms the periodic sweep on the loop and, when the data path has a `ct_events` ring
  // buffer, starts consuming it. The first pass starts after one sweep interval.
  Status start();
  // Cancels the timers and unregisters the ring buffer; a pass in progress is abandoned
  // (the next start() begins a new one). Also done by the destructor.
  void stop();

  // New timeouts (config reload); they apply from the next slice on.
  void set_timeouts(const ConntrackTimeouts& timeouts) { timeouts_ = timeouts; }
  const ConntrackTimeouts& timeouts() const { return timeouts_; }

  // One complete pass, now, without yielding to the loop (tests, benchmarks). Abandons a
  // pass the loop had in progress.
  Result<SweepResult> sweep_now();

  // Consumes whatever the ring buffer holds now (tests). 0 when events are not enabled.
  int poll_events();

  ConntrackStats snapshot() const { return stats_; }

 private:
  // One slice of the current pass: reads entries and expires what is due until `budget` (in
  // entries read, see ConntrackOptions::slice_entries) is spent.
  // Sets `done` when the pass reached the end of the table.
  Status slice(uint32_t budget, bool& done);
  void expire(const sl_flow_key& key, uint64_t now);
  void finish_pass();
  void on_timer();
  void schedule_continuation();
  int on_event(const void* data, std::size_t size);
  static int on_event_thunk(void* ctx, void* data, std::size_t size);

  Status map_backend_conns();
  bool pending() const { return opts_.table == CtTable::kPendingFlows; }
  void release_conn(uint32_t backend_id, bool one_sided);

  MapFds fds_;
  const char* table_name_;  // the map's name, for messages
  ConntrackTimeouts timeouts_;
  EventLoop& loop_;
  ConntrackOptions opts_;
  uint64_t not_before_ns_ = 0;

  EventLoop::TimerId sweep_timer_ = 0;
  EventLoop::TimerId continue_timer_ = 0;
  // backend_conns, mmapped (BPF_F_MMAPABLE array of u64): nullptr when the data path has none.
  uint64_t* conns_ = nullptr;
  std::size_t conns_len_ = 0;    // entries
  std::size_t conns_bytes_ = 0;  // mapping length
  // ct_one_sided, mmapped the same way (one u64): nullptr when the data path has none.
  uint64_t* one_sided_ = nullptr;
  std::size_t one_sided_bytes_ = 0;
  ring_buffer* rb_ = nullptr;
  int rb_epoll_fd_ = -1;
  int events_budget_ = 0;

  // The pass in progress.
  bool in_pass_ = false;
  bool have_cursor_ = false;
  uint64_t cursor_ = 0;  // bpf_map_lookup_batch's position (a bucket index for hash maps)
  SweepResult pass_;
  uint64_t pass_busy_ns_ = 0;
  std::vector<sl_flow_key> keys_;
  std::vector<sl_ct_entry> values_;

  ConntrackStats stats_;
};

}  // namespace sluice
