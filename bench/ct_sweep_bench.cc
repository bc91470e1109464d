// Cost of one conntrack expiry pass (ConntrackManager::sweep_now) over a real, loaded
// `conntrack` map holding 1k, 100k and 1M synthetic entries:
//  - scan:   no entry is due (bpf_map_lookup_batch only): the steady-state cost;
//  - expire: every entry is due (plus one bpf_map_lookup_and_delete_elem each): the worst
//            case, a table full of dead flows.
//  - loop:   half the entries due, the pass run by the agent's loop in slices beside a 1 ms
//            timer: how long the whole pass takes, and the longest the loop was held.
// Prints ms per pass and ms per 100k entries. Needs root.
//
//   build/bench/ct_sweep_bench [--sizes 1000,100000,1000000] [--rounds R] [--batch B]
//                              [--capacity C]
//
// --capacity sizes the table (conntrack.max_entries) instead of fitting it to each size: a
// pass also walks the empty hash buckets of a mostly empty table.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <sluice/bpf/datapath.h>
#include <sluice/conntrack/conntrack.h>
#include <sluice/core/event_loop.h>
#include "loaded_datapath.h"
#include "netns.h"

namespace {

constexpr uint64_t kSec = 1000000000ull;
constexpr uint64_t kT0 = 1000000 * kSec;  // the fake clock when the manager starts
constexpr uint64_t kNow = 2 * kT0;        // ... and while it sweeps
constexpr uint32_t kFillBatch = 65536;

sl_flow_key flow(uint32_t i) {
  sl_flow_key k{};
  k.src.w[0] = htonl(0x0a000000u | (i >> 8));
  k.dst.w[0] = htonl(0xc6130001u);  // 198.19.0.1
  k.sport = htons(static_cast<uint16_t>(1024 + (i & 0xff)));
  k.dport = htons(80);
  k.proto = IPPROTO_TCP;
  k.family = SL_AF_INET;
  return k;
}

// Writes flows [from, to), all in `state`, idle `idle_s`. The table is a preallocated hash:
// every element is usable from any CPU, and an insert beyond max_entries fails (E2BIG).
bool fill_from(int fd, uint32_t from, uint32_t to, uint8_t state, uint64_t idle_s) {
  std::vector<sl_flow_key> keys(kFillBatch);
  std::vector<sl_ct_entry> values(kFillBatch);
  for (uint32_t base = from; base < to; base += kFillBatch) {
    const uint32_t count = std::min(kFillBatch, to - base);
    for (uint32_t i = 0; i < count; ++i) {
      keys[i] = flow(base + i);
      values[i] = {};
      values[i].state = state;
      values[i].backend_id = (base + i) % 16;
      values[i].first_seen_ns = values[i].last_seen_ns = kNow - idle_s * kSec;
    }
    uint32_t c = count;
    if (bpf_map_update_batch(fd, keys.data(), values.data(), &c, nullptr) != 0) {
      std::fprintf(stderr, "fill: %s\n", std::strerror(errno));
      return false;
    }
  }
  return true;
}

bool fill(int fd, uint32_t n, uint8_t state, uint64_t idle_s) {
  return fill_from(fd, 0, n, state, idle_s);
}

uint64_t count_entries(int fd) {
  std::vector<sl_flow_key> keys(kFillBatch);
  std::vector<sl_ct_entry> values(kFillBatch);
  uint64_t total = 0, cursor = 0, next = 0;
  for (bool first = true;; first = false) {
    uint32_t c = kFillBatch;
    int err = bpf_map_lookup_batch(fd, first ? nullptr : &cursor, &next, keys.data(), values.data(),
                                   &c, nullptr);
    total += c;
    if (err != 0) return total;
    cursor = next;
  }
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<uint32_t> sizes = {1000, 100000, 1000000};
  int rounds = 3;
  uint32_t batch = sluice::ConntrackOptions{}.batch_entries;
  uint32_t capacity = 0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--rounds" && i + 1 < argc) {
      rounds = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--batch" && i + 1 < argc) {
      batch = static_cast<uint32_t>(std::max(1, std::atoi(argv[++i])));
    } else if (a == "--capacity" && i + 1 < argc) {
      capacity = static_cast<uint32_t>(std::strtoul(argv[++i], nullptr, 10));
    } else if (a == "--sizes" && i + 1 < argc) {
      sizes.clear();
      for (char* s = std::strtok(argv[++i], ","); s; s = std::strtok(nullptr, ","))
        sizes.push_back(static_cast<uint32_t>(std::strtoul(s, nullptr, 10)));
    } else {
      std::fprintf(stderr, "usage: %s [--sizes N,N,...] [--rounds R] [--batch B] [--capacity C]\n",
                   argv[0]);
      return 2;
    }
  }
  if (auto why = sluice::test::skip_reason()) {
    std::fprintf(stderr, "ct_sweep_bench: cannot run: %s\n", why->c_str());
    return 1;
  }
  // One CPU for the whole run: steadier timings on a shared machine.
  cpu_set_t cpu0;
  CPU_ZERO(&cpu0);
  CPU_SET(0, &cpu0);
  sched_setaffinity(0, sizeof(cpu0), &cpu0);

  std::printf("%-9s %-7s %10s %14s %12s\n", "entries", "pass", "ms/pass", "ms/100k", "entries/s");
  for (uint32_t n : sizes) {
    sluice::Limits limits;
    limits.max_vips = 1;
    limits.max_backends = 16;
    limits.conntrack_entries = capacity ? capacity : n + 1024;
    std::string error;
    std::unique_ptr<sluice::Datapath> dp = sluice::test::load_datapath(limits, &error);
    if (!dp) {
      std::fprintf(stderr, "load: %s\n", error.c_str());
      return 1;
    }
    const int fd = dp->fds().conntrack;
    auto loop = sluice::EventLoop::create();
    if (!loop) return 1;
    uint64_t now = kT0;
    sluice::ConntrackOptions opts;
    opts.clock = [&now] { return now; };
    opts.batch_entries = batch;
    sluice::ConntrackManager m(dp->fds(), sluice::ConntrackTimeouts{}, **loop, opts);
    now = kNow;

    for (const char* kind : {"scan", "expire"}) {
      const bool expire = kind[0] == 'e';
      std::vector<double> ms;
      for (int r = 0; r < rounds; ++r) {
        // scan: established, idle 10 s (timeout 5 days). expire: closed, idle 100 s (10 s).
        if ((r == 0 || expire) &&
            !fill(fd, n, expire ? SL_TCP_CLOSED : SL_TCP_ESTABLISHED, expire ? 100 : 10)) {
          return 1;
        }
        if (r == 0 && count_entries(fd) != n) {
          std::fprintf(stderr, "the table holds %lu entries, not %u\n",
                       static_cast<unsigned long>(count_entries(fd)), n);
          return 1;
        }
        const auto t0 = std::chrono::steady_clock::now();
        auto res = m.sweep_now();
        const double t =
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                .count();
        if (!res || res->scanned != n || res->expired != (expire ? n : 0)) {
          std::fprintf(stderr, "unexpected pass: %s\n",
                       res ? "wrong counts" : res.error().to_string().c_str());
          return 1;
        }
        ms.push_back(t);
      }
      const double med = median(ms);
      std::printf("%-9u %-7s %10.2f %14.2f %12.0f\n", n, kind, med, med * 100000.0 / n,
                  n / (med / 1000.0));
    }

    // On the loop, as sluiced runs it: half the table due, a 1 ms timer beside the sweep. The
    // longest gap between its ticks is the longest the sweep held the loop.
    if (!fill(fd, n / 2, SL_TCP_ESTABLISHED, 10) || !fill_from(fd, n / 2, n, SL_TCP_CLOSED, 100)) {
      return 1;
    }
    sluice::ConntrackOptions lopts = opts;
    lopts.sweep_interval = std::chrono::milliseconds(1);
    now = kT0;  // entries stamped after the manager started: no restart grace
    sluice::ConntrackManager lm(dp->fds(), sluice::ConntrackTimeouts{}, **loop, lopts);
    now = kNow;
    if (!lm.start()) return 1;
    auto last = std::chrono::steady_clock::now();
    const auto begin = last;
    double longest = 0;
    (*loop)->add_timer(std::chrono::milliseconds(1), std::chrono::milliseconds(1), [&] {
      const auto t = std::chrono::steady_clock::now();
      longest = std::max(longest, std::chrono::duration<double, std::milli>(t - last).count());
      last = t;
      if (lm.snapshot().passes > 0) (*loop)->stop();
    });
    if (!(*loop)->run()) return 1;
    if (lm.snapshot().expired[SL_TCP_CLOSED] != n - n / 2) {
      std::fprintf(stderr, "loop pass expired %lu entries, not %u\n",
                   static_cast<unsigned long>(lm.snapshot().expired[SL_TCP_CLOSED]), n - n / 2);
      return 1;
    }
    const double total =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - begin).count();
    std::printf("%-9u %-7s %10.2f %14s %12s  longest loop stall %.2f ms (1 ms timer)\n", n, "loop",
                total, "-", "-", longest);
  }
  return 0;
}
