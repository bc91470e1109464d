// Backend selection tables for every scheduler (enum sl_sched): what the agent writes into a
// VIP's staging ring before it switches the VIP to it. The layouts are in abi.h, at enum
// sl_sched; the data path that reads them is bpf/lib/lb.h.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "sluice/abi/abi.h"
#include "sluice/apply/maglev.h"
#include "sluice/core/result.h"

namespace sluice {

// The ring of `size` slots for scheduler `sched` over `backends`, the VIP's usable backends
// (entries with weight 0 are left out as well):
//  - source-hash: the Maglev table (build_maglev);
//  - round-robin: slot 0 = L, slots 1..L = one period of smooth_wrr(rr_weights(...)), in the
//    order of `backends`, as backend ids;
//  - least-conn: slot 0 = L, slots 1..L = the ids, slots L+1..2L = their weights.
// Every other slot holds SL_BACKEND_NONE. With no usable backend L is 0 (the data path drops
// new flows: no_backend). Errors: an unknown scheduler, an id equal to SL_BACKEND_NONE, more
// least-conn backends than SL_LC_MAX_BACKENDS, more round-robin backends than size - 1, and
// whatever build_maglev refuses (a size that is not prime).
Result<std::vector<uint32_t>> build_selection(uint8_t sched,
                                              std::span<const MaglevBackend> backends,
                                              uint32_t size = SL_MAGLEV_SIZE);

// The weights round-robin schedules with: divided by their greatest common divisor; then, if
// they still add up to more than `cap`, scaled down in proportion (each floor(w * cap / sum),
// but at least 1) and, where the minimum of 1 overshoots, the largest reduced one at a time
// until the sum fits, and divided by their gcd again. Every weight must be above 0. Empty
// when there are more weights than `cap` (no sequence of `cap` slots holds them all).
std::vector<uint32_t> rr_weights(std::span<const uint32_t> weights, uint32_t cap);

// One period of nginx's smooth weighted round-robin over `weights` (all above 0), as indexes
// into `weights`: the sum of the weights long, index i appearing weights[i] times. At each
// step every index adds its weight to its credit, the largest credit wins (the lowest index
// among equals) and gives back the sum. Picks of one index are spread over the period: in any
// prefix of k picks, index i has at most ceil(k * w_i / W) of them (W: the sum).
// O(W log n) (a kinetic tournament tree), where the textbook loop is O(W n).
std::vector<uint32_t> smooth_wrr(std::span<const uint32_t> weights);

}  // namespace sluice
