// ConntrackManager: expiry of the conntrack tables and the ct_events ring, on the agent's
// loop (conntrack.h). The data path never evicts, so a full table leaves new flows untracked
// until this sweep makes room; and it runs in slices because nothing on the loop may block.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <ctime>

#include <sluice/conntrack/conntrack.h>
#include <sluice/core/net.h>

namespace sluice {

namespace {

// What deleting an entry costs against the slice budget, in entries read: one
// bpf_map_lookup_and_delete_elem costs about four entries' share of a batch read
// (bench/ct_sweep_bench on the reference VM: ~0.33 us per entry read, ~1.2 us per entry
// read and deleted).
constexpr uint64_t kDeleteCost = 4;
// Ring-buffer records handled per loop callback; the rest wait for the next one (the ring
// buffer's epoll fd stays readable), so a burst of events cannot hold the loop.
constexpr int kEventsPerCallback = 4096;
// Returned by the sample callback to stop ring_buffer__consume() once the budget is spent.
// libbpf counts the record that returned it as consumed.
constexpr int kEventBudgetSpent = -ECANCELED;

std::string flow_text(const sl_flow_key& k) {
  return format_host_port(k.src, k.family, ntohs(k.sport)) + " -> " +
         format_host_port(k.dst, k.family, ntohs(k.dport)) + "/" + proto_name(k.proto);
}

}  // namespace

ConntrackManager::ConntrackManager(const MapFds& fds, const ConntrackTimeouts& timeouts,
                                   EventLoop& loop, ConntrackOptions opts)
    : fds_(fds),
      table_name_(opts.table == CtTable::kHostFlows      ? "host_flows"
                  : opts.table == CtTable::kPendingFlows ? "ct_pending"
                                                         : "conntrack"),
      timeouts_(timeouts),
      loop_(loop),
      opts_(std::move(opts)) {
  if (opts_.table == CtTable::kPendingFlows) fds_.conntrack = fds_.ct_pending;
  if (opts_.table != CtTable::kVipFlows) {
    // No live counts to give back, no events to read: whatever the caller's fds say.
    fds_.backend_conns = -1;
    fds_.ct_one_sided = -1;
    fds_.ct_events = -1;
  }
  if (!opts_.clock) opts_.clock = monotonic_ns;
  opts_.slice_entries = std::max<uint32_t>(opts_.slice_entries, 1);
  opts_.batch_entries = std::clamp<uint32_t>(opts_.batch_entries, 1, opts_.slice_entries);
  not_before_ns_ = opts_.clock();
}

ConntrackManager::~ConntrackManager() {
  stop();
  if (conns_ != nullptr) munmap(conns_, conns_bytes_);
  if (one_sided_ != nullptr) munmap(one_sided_, one_sided_bytes_);
}

namespace {

// Maps the BPF_F_MMAPABLE array of u64 `fd` (map `name`): *out, *entries and *bytes.
Status map_u64_array(int fd, const char* name, uint64_t** out, std::size_t* entries,
                     std::size_t* bytes) {
  bpf_map_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0)
    return sys_error(std::string("inspect map '") + name + "'");
  if (info.type != BPF_MAP_TYPE_ARRAY || !(info.map_flags & BPF_F_MMAPABLE) ||
      info.value_size != sizeof(uint64_t)) {
    return Error{EINVAL, std::string("map '") + name + "' is not an mmapable array of u64 (abi.h)"};
  }
  const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  const std::size_t n = (std::size_t{info.max_entries} * sizeof(uint64_t) + page - 1) / page * page;
  void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return sys_error(std::string("mmap map '") + name + "'");
  *out = static_cast<uint64_t*>(p);
  *entries = info.max_entries;
  *bytes = n;
  return {};
}

// Subtracts 1 from a count the data path adds to and subtracts from with atomic instructions
// on the same memory: a compare-and-swap never loses one of its updates, and never goes below
// 0. False if the count was 0.
bool atomic_release(uint64_t* count_ptr) {
  std::atomic_ref<uint64_t> count(*count_ptr);
  uint64_t v = count.load(std::memory_order_relaxed);
  do {
    if (v == 0) return false;
  } while (!count.compare_exchange_weak(v, v - 1, std::memory_order_relaxed));
  return true;
}

}  // namespace

Status ConntrackManager::map_backend_conns() {
  // -1: maps without the live counts (PinnedMaps of an older layout, or tests).
  // Mapped rather than updated through the syscall: a lookup + update from userspace would
  // lose the data path's concurrent updates (abi.h, struct sl_ct_entry).
  if (fds_.backend_conns >= 0 && conns_ == nullptr) {
    if (auto s =
            map_u64_array(fds_.backend_conns, "backend_conns", &conns_, &conns_len_, &conns_bytes_);
        !s)
      return s;
  }
  if (fds_.ct_one_sided >= 0 && one_sided_ == nullptr) {
    std::size_t entries = 0;
    if (auto s = map_u64_array(fds_.ct_one_sided, "ct_one_sided", &one_sided_, &entries,
                               &one_sided_bytes_);
        !s)
      return s;
  }
  return {};
}

void ConntrackManager::release_conn(uint32_t backend_id, bool one_sided) {
  // A one-sided flow's place in its budget goes with its live count (abi.h, `ct_one_sided`).
  if (one_sided && one_sided_ != nullptr && !atomic_release(one_sided_)) ++stats_.conns_underflow;
  if (conns_ == nullptr || backend_id >= conns_len_) return;
  if (!atomic_release(&conns_[backend_id])) {
    ++stats_.conns_underflow;
    return;
  }
  ++stats_.conns_released;
}

Status ConntrackManager::start() {
  stop();
  if (auto s = map_backend_conns(); !s) return s;
  const auto interval = std::max(opts_.sweep_interval, std::chrono::milliseconds(1));
  sweep_timer_ = loop_.add_timer(interval, interval, [this] { on_timer(); });
  if (sweep_timer_ == 0) return Error{0, "cannot arm the conntrack sweep timer"};

  if (fds_.ct_events >= 0) {
    rb_ = ring_buffer__new(fds_.ct_events, &ConntrackManager::on_event_thunk, this, nullptr);
    if (rb_ == nullptr) {
      const int err = errno;
      stop();
      return sys_error("open ring buffer 'ct_events'", err);
    }
    rb_epoll_fd_ = ring_buffer__epoll_fd(rb_);
    auto s = loop_.add(rb_epoll_fd_, EPOLLIN, [this](uint32_t) {
      events_budget_ = kEventsPerCallback;
      const int n = ring_buffer__consume(rb_);
      if (n < 0 && n != kEventBudgetSpent) {
        spdlog::warn("{}", sys_error("consume ring buffer 'ct_events'", n).to_string());
      }
    });
    if (!s) {
      stop();
      return s;
    }
    stats_.events_enabled = true;
  }
  spdlog::info("{}: sweeping every {} ms{}", table_name_, interval.count(),
               stats_.events_enabled ? ", consuming ct_events" : "");
  return {};
}

void ConntrackManager::stop() {
  if (sweep_timer_ != 0) loop_.cancel_timer(sweep_timer_);
  if (continue_timer_ != 0) loop_.cancel_timer(continue_timer_);
  sweep_timer_ = continue_timer_ = 0;
  in_pass_ = false;
  if (rb_ != nullptr) {
    loop_.remove(rb_epoll_fd_);
    ring_buffer__free(rb_);
    rb_ = nullptr;
    rb_epoll_fd_ = -1;
  }
  stats_.events_enabled = false;
}

void ConntrackManager::on_timer() {
  if (in_pass_) return;  // the previous pass is still running: its continuation drives it
  in_pass_ = true;
  have_cursor_ = false;
  pass_ = {};
  pass_busy_ns_ = 0;
  schedule_continuation();
}

void ConntrackManager::schedule_continuation() {
  // A one-shot timer that is due at once: the loop serves every other ready fd first.
  continue_timer_ =
      loop_.add_timer(std::chrono::nanoseconds(0), std::chrono::nanoseconds(0), [this] {
        continue_timer_ = 0;
        bool done = false;
        auto s = slice(opts_.slice_entries, done);
        if (!s) {
          spdlog::warn("{} sweep abandoned: {}", table_name_, s.error().to_string());
          ++stats_.errors;
          in_pass_ = false;
        } else if (done) {
          finish_pass();
        } else {
          schedule_continuation();
        }
      });
  if (continue_timer_ == 0) in_pass_ = false;  // logged by add_timer; retried next interval
}

Result<SweepResult> ConntrackManager::sweep_now() {
  if (continue_timer_ != 0) loop_.cancel_timer(continue_timer_);
  continue_timer_ = 0;
  in_pass_ = true;
  have_cursor_ = false;
  pass_ = {};
  pass_busy_ns_ = 0;
  for (bool done = false; !done;) {
    if (auto s = slice(opts_.slice_entries, done); !s) {
      in_pass_ = false;
      return s.error();
    }
  }
  SweepResult r = pass_;
  finish_pass();
  return r;
}

Status ConntrackManager::slice(uint32_t budget, bool& done) {
  const uint64_t t0 = monotonic_ns();
  const uint64_t now = opts_.clock();
  done = false;
  // Whole batches: the kernel returns whole hash buckets, so a request cut to the budget
  // left could be smaller than the next bucket. A slice reads at most one batch past it.
  while (budget > 0 && !done) {
    uint32_t count = opts_.batch_entries;
    if (keys_.size() < count) {
      keys_.resize(count);
      values_.resize(count);
    }
    uint64_t next = 0;
    LIBBPF_OPTS(bpf_map_batch_opts, bopts);
    const int err = bpf_map_lookup_batch(fds_.conntrack, have_cursor_ ? &cursor_ : nullptr, &next,
                                         keys_.data(), values_.data(), &count, &bopts);
    if (err != 0) {
      if (errno == ENOENT) {
        done = true;  // the end of the table; `count` holds its last entries
      } else if (errno == ENOSPC && count == 0 && opts_.batch_entries < (1u << 20)) {
        // One hash bucket holds more entries than a batch: read it with a bigger one.
        opts_.batch_entries *= 2;
        continue;
      } else {
        pass_busy_ns_ += monotonic_ns() - t0;
        return sys_error(std::string("read map '") + table_name_ + "' (batch)");
      }
    }
    cursor_ = next;
    have_cursor_ = true;
    uint64_t cost = std::max<uint32_t>(count, 1);
    for (uint32_t i = 0; i < count; ++i) {
      ++pass_.scanned;
      if (ct_expired(values_[i], timeouts_, now, not_before_ns_, pending())) {
        expire(keys_[i], now);
        cost += kDeleteCost - 1;
      } else {
        ++pass_.by_state[ct_state_slot(values_[i].state)];
      }
    }
    budget -= static_cast<uint32_t>(std::min<uint64_t>(budget, cost));
  }
  pass_busy_ns_ += monotonic_ns() - t0;
  return {};
}

void ConntrackManager::expire(const sl_flow_key& key, uint64_t now) {
  // Read and delete in one step: the value we act on is exactly the one removed.
  sl_ct_entry v{};
  if (bpf_map_lookup_and_delete_elem(fds_.conntrack, &key, &v) != 0) {
    if (errno == ENOENT) return;  // gone since the read: the data path replaced it (reuse)
    if (pass_.errors++ == 0) {
      spdlog::warn(
          "{}",
          sys_error(std::string("delete ") + table_name_ + " entry " + flow_text(key)).to_string());
    }
    ++stats_.errors;
    return;
  }
  if (!ct_expired(v, timeouts_, now, not_before_ns_, pending())) {
    // A packet refreshed the flow between the batch read and the delete: put it back. If
    // the data path re-created the flow in between (NOEXIST fails), its entry wins.
    if (bpf_map_update_elem(fds_.conntrack, &key, &v, BPF_NOEXIST) == 0) {
      ++pass_.restored;
      ++stats_.restored;
      ++pass_.by_state[ct_state_slot(v.state)];
      return;
    }
  }
  // The count this entry held (abi.h, struct sl_ct_entry): released exactly once, here,
  // because the data path releases only entries it still finds in the table.
  if (v.live == 1) release_conn(v.backend_id, v.flags & SL_CT_F_ONE_SIDED);
  const std::size_t slot = ct_state_slot(v.state);
  ++pass_.expired;
  ++stats_.expired[slot];
  if (spdlog::should_log(spdlog::level::debug)) {
    spdlog::debug(
        "{}: expired {}{} in {}{} after {:.1f} s idle",
        // One name for VIP flows, whichever table held them: operators grep for it.
        pending() ? "conntrack" : table_name_, flow_text(key),
        opts_.table == CtTable::kHostFlows ? "" : fmt::format(" (backend {})", v.backend_id),
        tcp_state_name(v.state), pending() && v.state < SL_TCP_TIME_WAIT ? " (unconfirmed)" : "",
        static_cast<double>(ct_idle_ns(v, now, not_before_ns_)) / kNsPerSec);
  }
}

void ConntrackManager::finish_pass() {
  in_pass_ = false;
  stats_.entries = pass_.by_state;
  stats_.entries_total = 0;
  for (uint64_t n : pass_.by_state) stats_.entries_total += n;
  ++stats_.passes;
  stats_.last_pass_scanned = pass_.scanned;
  stats_.last_pass_busy_ns = pass_busy_ns_;
  if (pass_.expired > 0 || pass_.errors > 0) {
    spdlog::debug("{} sweep: {} entries read, {} expired, {} errors, {:.2f} ms", table_name_,
                  pass_.scanned, pass_.expired, pass_.errors,
                  static_cast<double>(pass_busy_ns_) / 1e6);
  }
}

int ConntrackManager::poll_events() {
  if (rb_ == nullptr) return 0;
  events_budget_ = INT_MAX;
  return ring_buffer__consume(rb_);
}

int ConntrackManager::on_event_thunk(void* ctx, void* data, std::size_t size) {
  return static_cast<ConntrackManager*>(ctx)->on_event(data, size);
}

int ConntrackManager::on_event(const void* data, std::size_t size) {
  ++stats_.events;
  if (size < sizeof(sl_ct_event)) {
    ++stats_.events_malformed;
  } else {
    sl_ct_event ev;
    std::memcpy(&ev, data, sizeof(ev));  // the ring buffer guarantees 8-byte alignment only
    ++stats_.events_by_type[ev.type < SL_CT_EV_MAX ? ev.type : 0];
    ++stats_.transitions[ct_state_slot(ev.old_state)][ct_state_slot(ev.new_state)];
    if (spdlog::should_log(spdlog::level::debug)) {
      std::string rtt;
      if (ev.rtt_synack_ns != 0 || ev.rtt_ack_ns != 0) {
        rtt = fmt::format(", handshake rtt syn->synack {:.3f} ms, synack->ack {:.3f} ms",
                          ev.rtt_synack_ns / 1e6, ev.rtt_ack_ns / 1e6);
      }
      spdlog::debug("conntrack: {} {} (backend {}) {} -> {}{}", ct_event_name(ev.type),
                    flow_text(ev.key), ev.backend_id, tcp_state_name(ev.old_state),
                    tcp_state_name(ev.new_state), rtt);
    }
  }
  return --events_budget_ > 0 ? 0 : kEventBudgetSpent;
}

}  // namespace sluice
