// build_maglev(): the weighted Maglev table of a source-hash VIP. It depends on the backends
// (their keys, ids and weights), not on the order the caller lists them in: UDP datagrams and
// TCP packets without a conntrack entry are placed by the table alone, so the same backends
// must give the same table after a reload, a restart or on another LB host (docs/design.md,
// "Backend choice").
#include "sluice/apply/maglev.h"

#include <algorithm>
#include <functional>

namespace sluice {
namespace {

// Murmur3's 64-bit finalizer: FNV-1a alone mixes the last bytes poorly, and keys such as
// "198.18.1.2:80" and "198.18.1.3:80" differ only there.
uint64_t fmix64(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

constexpr uint64_t kOffsetSeed = 0x736c756963650001ULL;  // "sluice" + 1
constexpr uint64_t kSkipSeed = 0x736c756963650002ULL;

bool is_prime(uint32_t n) {
  if (n < 2) return false;
  if (n % 2 == 0) return n == 2;
  for (uint32_t d = 3; uint64_t{d} * d <= n; d += 2) {
    if (n % d == 0) return false;
  }
  return true;
}

// One backend's walk through its permutation: slot_j = (offset + j * skip) % size.
struct Walk {
  uint32_t id;
  uint32_t weight;
  uint32_t next_slot;  // slot_j for the next j to try
  uint32_t skip;
  uint64_t claims;  // slots claimed so far

  // Written to never exceed `size`, so it cannot wrap even for sizes near 2^32.
  void advance(uint32_t size) {
    next_slot = next_slot >= size - skip ? next_slot - (size - skip) : next_slot + skip;
  }
};

// When a backend is due to claim its next slot. Katran's weighted Maglev runs rounds; in each
// round every backend adds its weight to a credit and claims a slot whenever the credit
// reaches the largest weight. So the k-th claim of a backend with weight w happens in round
// ceil(k * max_weight / w), and within a round backends go in order. Ordering claims by
// (round, index) in a heap gives the same table in O(size log n), instead of iterating
// through every round: with skewed weights (65535 vs 1) that is ~size rounds of n backends.
// No overflow: k <= size < 2^32 and max_weight < 2^32, so k * max_weight + w - 1 < 2^64.
struct Due {
  uint64_t round;
  uint32_t index;
  bool operator>(const Due& o) const {
    return round != o.round ? round > o.round : index > o.index;
  }
};

uint64_t claim_round(uint64_t k, uint32_t weight, uint32_t max_weight) {
  return (k * max_weight + weight - 1) / weight;
}

}  // namespace

uint64_t maglev_key_hash(std::string_view key, uint64_t seed) {
  uint64_t h = 0xcbf29ce484222325ULL ^ seed;  // FNV-1a offset basis, seeded
  for (unsigned char c : key) {
    h ^= c;
    h *= 0x100000001b3ULL;  // FNV-1a 64-bit prime
  }
  return fmix64(h);
}

std::vector<uint32_t> build_maglev(std::span<const MaglevBackend> backends, uint32_t size) {
  if (!is_prime(size)) return {};
  for (const MaglevBackend& b : backends) {
    if (b.id == SL_BACKEND_NONE) return {};
  }
  std::vector<uint32_t> table(size, SL_BACKEND_NONE);

  // Sort so the table depends on the set of backends, not on the caller's order.
  std::vector<const MaglevBackend*> sorted;
  sorted.reserve(backends.size());
  for (const MaglevBackend& b : backends) {
    if (b.weight > 0) sorted.push_back(&b);
  }
  if (sorted.empty()) return table;
  std::sort(sorted.begin(), sorted.end(), [](const MaglevBackend* a, const MaglevBackend* b) {
    if (a->key != b->key) return a->key < b->key;
    if (a->id != b->id) return a->id < b->id;
    return a->weight < b->weight;
  });

  std::vector<Walk> walks;
  walks.reserve(sorted.size());
  uint32_t max_weight = 0;
  for (const MaglevBackend* b : sorted) {
    const uint32_t offset = static_cast<uint32_t>(maglev_key_hash(b->key, kOffsetSeed) % size);
    // size is prime, so any skip in [1, size-1] is coprime with it and the walk visits every
    // slot exactly once in `size` steps. size == 2 gives size - 1 == 1: skip is always 1.
    const uint32_t skip =
        static_cast<uint32_t>(maglev_key_hash(b->key, kSkipSeed) % (size - 1)) + 1;
    walks.push_back({b->id, b->weight, offset, skip, 0});
    max_weight = std::max(max_weight, b->weight);
  }

  std::vector<Due> heap;
  heap.reserve(walks.size());
  for (uint32_t i = 0; i < walks.size(); ++i) {
    heap.push_back({claim_round(1, walks[i].weight, max_weight), i});
  }
  const auto later = std::greater<Due>();
  std::make_heap(heap.begin(), heap.end(), later);

  for (uint32_t filled = 0; filled < size; ++filled) {
    std::pop_heap(heap.begin(), heap.end(), later);
    Due& due = heap.back();
    Walk& w = walks[due.index];
    // Terminates: the walk covers every slot and at least one is still free.
    while (table[w.next_slot] != SL_BACKEND_NONE) w.advance(size);
    table[w.next_slot] = w.id;
    w.advance(size);
    ++w.claims;
    // claims + 1 <= size whenever a slot is still free, which keeps claim_round in range.
    if (filled + 1 == size) break;
    due.round = claim_round(w.claims + 1, w.weight, max_weight);
    std::push_heap(heap.begin(), heap.end(), later);
  }
  return table;
}

}  // namespace sluice
