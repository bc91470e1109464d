// The rings of every scheduler (layouts in abi.h, at enum sl_sched): Maglev for source-hash,
// one period of nginx's smooth weighted round-robin for round-robin, ids and weights for
// least-conn. A ring is built whole and written into the staging ring before the VIP switches
// to it, so the data path never reads one half-written (docs/design.md, "Backend choice").
#include "sluice/apply/sched.h"

#include <algorithm>
#include <limits>
#include <numeric>
#include <queue>
#include <string>

namespace sluice {
namespace {

constexpr int64_t kNever = std::numeric_limits<int64_t>::max();

// nginx's smooth weighted round-robin, step by step: before step t (1-based) index i holds
// the credit t * w_i - W * c_i (c_i: its picks so far); the largest credit wins, the lowest
// index among equals. The textbook loop adds every weight at every step: O(W n), 0.1-0.2 s
// for 1000 backends with a 65536-slot period on the reference VM. Here each credit is a line
// in t, b_i + t * w_i with b_i = -W * c_i, and a tournament tree keeps the winner of every
// subtree together with the first step at which its loser overtakes it (a kinetic tournament
// tree): a step refreshes only the nodes whose certificate expired, and the path of the
// index it picked (whose line dropped by W).
class SmoothWrr {
 public:
  explicit SmoothWrr(std::span<const uint32_t> w) : w_(w.begin(), w.end()), b_(w.size(), 0) {
    total_ = std::accumulate(w_.begin(), w_.end(), int64_t{0});
    while (leaves_ < w_.size()) leaves_ <<= 1;
    win_.assign(2 * leaves_, -1);
    cert_.assign(2 * leaves_, kNever);
    due_.assign(2 * leaves_, kNever);
    for (size_t i = 0; i < w_.size(); ++i) win_[leaves_ + i] = static_cast<int32_t>(i);
    for (size_t x = leaves_ - 1; x >= 1; --x) recompute(x, 1);
  }

  std::vector<uint32_t> run() {
    std::vector<uint32_t> out;
    out.reserve(static_cast<size_t>(total_));
    for (int64_t t = 1; t <= total_; ++t) {
      refresh(1, t);
      const int32_t j = win_[1];
      out.push_back(static_cast<uint32_t>(j));
      b_[j] -= total_;
      for (size_t x = (leaves_ + j) / 2; x >= 1; x /= 2) recompute(x, t);
    }
    return out;
  }

 private:
  int64_t credit(int32_t i, int64_t t) const { return b_[i] + t * w_[i]; }

  // Whether index a wins against index c at step t.
  bool beats(int32_t a, int32_t c, int64_t t) const {
    const int64_t va = credit(a, t), vc = credit(c, t);
    return va > vc || (va == vc && a < c);
  }

  // Node x from its children's winners at step t, and the first step after t at which the
  // loser beats the winner (never, when it does not gain on it).
  void recompute(size_t x, int64_t t) {
    const int32_t l = win_[2 * x], r = win_[2 * x + 1];
    if (l < 0 || r < 0) {
      win_[x] = l < 0 ? r : l;
      cert_[x] = kNever;
    } else {
      const int32_t a = beats(l, r, t) ? l : r;
      const int32_t z = a == l ? r : l;
      win_[x] = a;
      const int64_t gain = static_cast<int64_t>(w_[z]) - w_[a];
      if (gain <= 0) {
        cert_[x] = kNever;
      } else {
        // z beats a at step s when s * gain > lead, or == with z the lower index. a wins at
        // t, so lead >= t * gain >= 0.
        const int64_t lead = b_[a] - b_[z];
        const int64_t s = z < a ? (lead + gain - 1) / gain : lead / gain + 1;
        cert_[x] = std::max(s, t + 1);
      }
    }
    due_[x] = std::min({cert_[x], due_[2 * x], due_[2 * x + 1]});
  }

  // Brings every node whose certificate expired by step t up to date, children first.
  void refresh(size_t x, int64_t t) {
    if (x >= leaves_ || due_[x] > t) return;
    refresh(2 * x, t);
    refresh(2 * x + 1, t);
    recompute(x, t);
  }

  std::vector<int64_t> w_;
  std::vector<int64_t> b_;
  int64_t total_ = 0;
  size_t leaves_ = 1;
  std::vector<int32_t> win_;   // winner of the subtree; -1: no index below
  std::vector<int64_t> cert_;  // first step at which the node's winner may change
  std::vector<int64_t> due_;   // min of cert_ over the subtree
};

uint32_t gcd_of(std::span<const uint32_t> w) {
  uint32_t g = 0;
  for (uint32_t x : w) g = std::gcd(g, x);
  return g;
}

void divide_by_gcd(std::vector<uint32_t>& w) {
  const uint32_t g = gcd_of(w);
  if (g > 1)
    for (uint32_t& x : w) x /= g;
}

}  // namespace

std::vector<uint32_t> rr_weights(std::span<const uint32_t> weights, uint32_t cap) {
  if (weights.size() > cap) return {};
  std::vector<uint32_t> w(weights.begin(), weights.end());
  // The period is the sum of the weights: dividing by their gcd keeps the shares and makes
  // the period, and so the ring, as short as it can be.
  divide_by_gcd(w);
  const uint64_t sum = std::accumulate(w.begin(), w.end(), uint64_t{0});
  if (sum <= cap) return w;
  uint64_t scaled = 0;
  for (uint32_t& x : w) {
    x = static_cast<uint32_t>(std::max<uint64_t>(1, uint64_t{x} * cap / sum));
    scaled += x;
  }
  // The minimum of 1 may overshoot (by at most one per weight): take the excess from the
  // largest, one at a time; the lowest index first among equals. Terminates: n <= cap.
  if (scaled > cap) {
    auto less = [&](size_t a, size_t b) { return w[a] != w[b] ? w[a] < w[b] : a > b; };
    std::priority_queue<size_t, std::vector<size_t>, decltype(less)> largest(less);
    for (size_t i = 0; i < w.size(); ++i)
      if (w[i] > 1) largest.push(i);
    for (; scaled > cap; --scaled) {
      const size_t i = largest.top();
      largest.pop();
      if (--w[i] > 1) largest.push(i);
    }
  }
  divide_by_gcd(w);
  return w;
}

std::vector<uint32_t> smooth_wrr(std::span<const uint32_t> weights) {
  if (weights.empty()) return {};
  return SmoothWrr(weights).run();
}

Result<std::vector<uint32_t>> build_selection(uint8_t sched,
                                              std::span<const MaglevBackend> backends,
                                              uint32_t size) {
  std::vector<const MaglevBackend*> usable;
  for (const MaglevBackend& b : backends) {
    if (b.id == SL_BACKEND_NONE)
      return Error{EINVAL, "backend id " + std::to_string(b.id) + " is reserved (no backend)"};
    if (b.weight > 0) usable.push_back(&b);
  }
  const auto n = static_cast<uint32_t>(usable.size());
  switch (sched) {
    case SL_SCHED_SOURCE_HASH: {
      std::vector<uint32_t> ring = build_maglev(backends, size);
      if (ring.size() != size)
        return Error{EINVAL,
                     "Maglev table build failed (size " + std::to_string(size) + " is not prime)"};
      return ring;
    }
    case SL_SCHED_ROUND_ROBIN: {
      if (size < 2 || n > size - 1)
        return Error{E2BIG, "round-robin: " + std::to_string(n) + " usable backends do not fit a " +
                                "sequence of " + std::to_string(size > 0 ? size - 1 : 0) +
                                " slots"};
      // Slot 0 carries the period L: the data path takes slot 1 + rr_counters[vip] % L.
      std::vector<uint32_t> ring(size, SL_BACKEND_NONE);
      std::vector<uint32_t> w;
      for (const MaglevBackend* b : usable) w.push_back(b->weight);
      const std::vector<uint32_t> seq = smooth_wrr(rr_weights(w, size - 1));
      ring[0] = static_cast<uint32_t>(seq.size());
      for (size_t s = 0; s < seq.size(); ++s) ring[1 + s] = usable[seq[s]]->id;
      return ring;
    }
    case SL_SCHED_LEAST_CONN: {
      if (n > SL_LC_MAX_BACKENDS || 1 + 2 * uint64_t{n} > size)
        return Error{E2BIG, "least-conn: " + std::to_string(n) + " usable backends, at most " +
                                std::to_string(SL_LC_MAX_BACKENDS) + " per VIP"};
      // The weights travel in the ring, not read from `backends`, so that a re-weight
      // switches with the ring like every other change.
      std::vector<uint32_t> ring(size, SL_BACKEND_NONE);
      ring[0] = n;
      for (uint32_t i = 0; i < n; ++i) {
        ring[1 + i] = usable[i]->id;
        ring[1 + n + i] = usable[i]->weight;
      }
      return ring;
    }
  }
  return Error{EINVAL, "unknown scheduler " + std::to_string(sched)};
}

}  // namespace sluice
