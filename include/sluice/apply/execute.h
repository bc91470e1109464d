// Running an apply plan, and the changes between applies (a backend down, drained or
// re-weighted), through a MapWriter. Both keep the AppliedState in step with what they wrote.
#pragma once

#include <sluice/apply/map_io.h>
#include <sluice/apply/plan.h>
#include <sluice/apply/state.h>
#include <sluice/core/result.h>

#include <cstdint>
#include <span>

namespace sluice {

// Writes the ops of a plan in order, and stops at the first write that fails. The maps then
// hold part of the plan: the caller reads the state back (read_state()), so that the agent's
// view says what the data path does.
Status execute(const std::vector<PlanOp>& ops, MapWriter& w);

// An apply: plan_apply(), then execute(). On success `state` becomes the plan's. When a write
// fails half-way, `state` is read back from the maps (read_state(), the generation kept), so
// that it says what the data path does: which ring is live, which ids are taken. A capacity
// error leaves both untouched.
Result<ApplySummary> apply_config(AppliedState& state, const Config& cfg, MapWriter& w,
                                  const MapReader& r, const IdReusable& reusable);

// Builds the ring of `entry`'s scheduler over `usable` into ring entry.vip.ring_id (a staging
// ring: see staging_ring()), then points the VIP at it with one vip_table update.
Status switch_ring(MapWriter& w, const sl_vip_entry& entry, std::span<const MaglevBackend> usable);

// Takes a backend out of (or back into) the selection for new flows: its VIP's ring is rebuilt
// without (with) it and switched in. A down backend of a VIP whose on_backend_down is reset
// gets SL_BACKEND_F_RESET, only once the live ring no longer holds it.
Status set_backend_up(AppliedState& s, MapWriter& w, uint32_t backend_id, bool up);
Status set_backend_drained(AppliedState& s, MapWriter& w, uint32_t backend_id, bool drained);
Status set_backend_weight(AppliedState& s, MapWriter& w, uint32_t backend_id, uint16_t weight);

}  // namespace sluice
