// The agent's view of what the maps hold: the applied VIPs with their backends, and which VIP
// and backend ids are free, live or retired. Apply plans from it (plan.h), the executor and the
// backend operations keep it in step with the maps (execute.h), and read_state() rebuilds it
// from the maps when the agent cannot trust it (a restart, an apply stopped half-way).
#pragma once

#include <sluice/abi/abi.h>
#include <sluice/apply/maglev.h>
#include <sluice/core/result.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace sluice {

class MapReader;
class MapWriter;

struct BackendSlot {
  uint32_t id = 0;
  sl_endpoint ep{};
  std::string key;  // Maglev permutation key: "addr:port"
  uint16_t weight = 0;
  bool up = true;
  bool drained = false;
};

struct VipSlot {
  sl_vip_entry entry{};  // as vip_table holds it; entry.vip.ring_id is the live ring
  std::vector<BackendSlot> backends;
  bool reset_on_down = false;
};

// A backend removed from the config whose id stays taken while flows may still name it.
struct RetiredBackend {
  uint32_t id = 0;
  sl_endpoint ep{};
  // Its reverse-NAT entry stays (a NAT backend): the replies of its last flows still need the
  // pre-filter bit of its address.
  bool nat = false;
};

enum class IdUse : uint8_t { kFree, kLive, kRetired };

struct AppliedState {
  std::vector<VipSlot> vips;            // the applied VIPs, in config order
  std::vector<IdUse> backend_ids;       // by backend id; size: limits.max_backends
  std::vector<RetiredBackend> retired;  // oldest first: reused in that order
  std::vector<uint8_t> vip_ids;         // by VIP id, 1: taken; size: limits.max_vips
  uint64_t generation = 0;

  static AppliedState empty(uint32_t max_vips, uint32_t max_backends);
  uint32_t max_vips() const { return static_cast<uint32_t>(vip_ids.size()); }
  uint32_t max_backends() const { return static_cast<uint32_t>(backend_ids.size()); }
  // The backend ids by position: ids[v][b] for vips[v].backends[b].
  std::vector<std::vector<uint32_t>> ids() const;
  std::pair<VipSlot*, BackendSlot*> find_backend(uint32_t id);
  std::pair<const VipSlot*, const BackendSlot*> find_backend(uint32_t id) const;
};

// What apply() changed, for the log line and the API.
struct ApplySummary {
  uint64_t generation = 0;
  uint32_t vips_added = 0, vips_removed = 0, vips_changed = 0, vips_unchanged = 0;
  uint32_t backends_added = 0, backends_removed = 0;
  std::string to_string() const;
};

bool same_endpoint(const sl_endpoint& a, const sl_endpoint& b);

// The `backends` value of `b` in `v`: the one place its flags are derived from the agent's
// view (up, drained, the VIP's on_backend_down), plus `extra_flags` (SL_BACKEND_F_RETIRED).
sl_backend backend_value(const VipSlot& v, const BackendSlot& b, uint8_t extra_flags = 0);

// The ring a VIP switches to next: the one of its pair (SL_RINGS_PER_VIP) it does not use now.
// The data path never reads it, so it can be written in place.
uint32_t staging_ring(const sl_vip_entry& e);
// What the VIP's ring selects among: its backends that are up, not drained, of weight > 0.
std::vector<MaglevBackend> usable_backends(const VipSlot& v);

// Rebuilds the view from the maps: VIPs from `vips` and `vip_table` (by id order), backends
// from `backends`. An ACTIVE backend that no VIP owns (an apply stopped half-way, or its VIP
// went) is retired, and marked so in the map through `w`.
Result<AppliedState> read_state(const MapReader& r, MapWriter& w, uint32_t max_vips,
                                uint32_t max_backends);

}  // namespace sluice
