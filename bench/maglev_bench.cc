// Maglev table build time (userspace), the cost of every backend change and reload:
//   build/bench/maglev_bench
// Issue #4 goal: <= 10 ms for 1000 backends at M = 65537.
// Second table: the round-robin sequence (build_selection), the same cost for round-robin VIPs.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <sluice/apply/maglev.h>
#include <sluice/apply/sched.h>

int main() {
  std::printf("maglev_bench: build_maglev(), M = %u, median of 21 builds\n", SL_MAGLEV_SIZE);
  std::printf("%10s %12s %12s\n", "backends", "weights", "ms/build");
  for (uint32_t n : {10u, 100u, 1000u, 4096u}) {
    for (bool weighted : {false, true}) {
      std::vector<sluice::MaglevBackend> b;
      for (uint32_t i = 0; i < n; ++i)
        b.push_back({i, weighted ? 1 + i % 7 : 1,
                     "10." + std::to_string(i / 65536) + "." + std::to_string((i / 256) % 256) +
                         "." + std::to_string(i % 256) + ":8080"});
      std::vector<double> ms;
      for (int r = 0; r < 21; ++r) {
        auto t0 = std::chrono::steady_clock::now();
        auto ring = sluice::build_maglev(b);
        auto t1 = std::chrono::steady_clock::now();
        if (ring.size() != SL_MAGLEV_SIZE) return 1;
        ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      }
      std::sort(ms.begin(), ms.end());
      std::printf("%10u %12s %12.2f\n", n, weighted ? "1..7" : "equal", ms[ms.size() / 2]);
    }
  }

  std::printf("\nround-robin: build_selection(), smooth WRR period L, median of 21 builds\n");
  std::printf("%10s %12s %8s %12s\n", "backends", "weights", "L", "ms/build");
  for (uint32_t n : {10u, 100u, 1000u, 4096u}) {
    for (uint32_t max_w : {1u, 127u}) {
      std::vector<sluice::MaglevBackend> b;
      for (uint32_t i = 0; i < n; ++i) b.push_back({i, 1 + (i * 37) % max_w, ""});
      std::vector<double> ms;
      uint32_t len = 0;
      for (int r = 0; r < 21; ++r) {
        auto t0 = std::chrono::steady_clock::now();
        auto ring = sluice::build_selection(SL_SCHED_ROUND_ROBIN, b);
        auto t1 = std::chrono::steady_clock::now();
        if (!ring) return 1;
        len = (*ring)[0];
        ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      }
      std::sort(ms.begin(), ms.end());
      std::printf("%10u %12s %8u %12.2f\n", n, max_w == 1 ? "equal" : "1..127", len,
                  ms[ms.size() / 2]);
    }
  }
  return 0;
}
