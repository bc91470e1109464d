// Maglev consistent hashing (Eisenbud et al., NSDI'16) with weights, as Katran does it.
// The agent builds one table per VIP and writes it into the VIP's ring; the XDP program reads
// ring[sl_maglev_slot(sl_source_hash(...))].
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/abi/abi.h"

namespace sluice {

struct MaglevBackend {
  uint32_t id;      // value stored in the table (the backend's index in the `backends` map)
  uint32_t weight;  // relative share of slots; 0 = owns no slot (drained)
  // Seeds the backend's permutation. Choose something that identifies the backend and not its
  // position (the agent uses "addr:port"): then adding or removing one backend leaves the
  // others' permutations, and so most of the table, unchanged. It also makes every LB host
  // behind ECMP build the same table.
  std::string key;
};

// Returns `size` slots, each a backend id or SL_BACKEND_NONE (only when no backend has a
// weight above 0). Backends get slots in proportion to their weights (so a backend whose share
// is below one slot, e.g. weight 1 next to weight 65535, may get none). The result depends only
// on the set of backends, not on their order. The result is empty when `size` is not prime
// (a permutation would then miss slots) or an id is SL_BACKEND_NONE (it marks a free slot).
std::vector<uint32_t> build_maglev(std::span<const MaglevBackend> backends,
                                   uint32_t size = SL_MAGLEV_SIZE);

// The 64-bit string hash behind the permutations. Public so the tests can pin it: changing it
// moves flows after an upgrade and makes hosts of different versions disagree.
uint64_t maglev_key_hash(std::string_view key, uint64_t seed);

}  // namespace sluice
