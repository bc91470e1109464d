// The executor of apply plans, and the ring switch that both an apply and a backend change
// go through. Every decision was made by plan_apply() before the first write; this file only
// writes, in the plan's order, and stops at the first write that fails (docs/design.md,
// "Reload").
#include <spdlog/spdlog.h>

#include <sluice/apply/execute.h>
#include <sluice/apply/sched.h>
#include <sluice/core/net.h>

namespace sluice {

namespace {

// One op, one or two MapWriter calls. Failures of the best-effort ops are not errors: see
// map_io.h.
struct Runner {
  MapWriter& w;

  Status operator()(const op::WriteFilter& o) { return w.write_filter(o.words); }
  Status operator()(const op::ResetVipStats& o) {
    w.reset_vip_stats(o.vip_id);
    return {};
  }
  Status operator()(const op::ResetBackendStats& o) {
    w.reset_backend_stats(o.id);
    return {};
  }
  Status operator()(const op::WriteBackend& o) { return w.write_backend(o.id, o.value); }
  Status operator()(const op::RetireBackend& o) {
    // Not fatal: the agent's view counts the id as retired either way, and the apply goes on.
    if (auto s = w.write_backend(o.id, o.value); !s)
      spdlog::warn("retire backend {}: {}", o.id, s.error().to_string());
    return {};
  }
  Status operator()(const op::WriteRevNat& o) { return w.write_rev_nat(o.backend, o.value); }
  Status operator()(const op::SwitchRing& o) { return switch_ring(w, o.entry, o.usable); }
  Status operator()(const op::AddVip& o) {
    const sl_vip_entry& e = o.entry;
    sl_addr_key ak{};
    ak.addr = e.ep.addr;
    ak.family = e.ep.family;
    if (auto s = w.write_vip_addr(ak); !s) return s;
    if (auto s = w.write_vip_hash(e.ep, e.vip.vip_id); !s) return s;
    spdlog::info("VIP {} ({}, {}) with {} backends", format_endpoint(e.ep), mode_name(e.vip.mode),
                 sched_name(e.vip.sched), o.nbackends);
    return {};
  }
  Status operator()(const op::WriteIndex& o) { return w.write_index(o.slots); }
  Status operator()(const op::RemoveVip& o) {
    w.delete_vip_hash(o.vip);
    spdlog::info("VIP {} removed", format_endpoint(o.vip));
    return {};
  }
  Status operator()(const op::ClearVipEntry& o) { return w.write_vip_entry(o.vip_id, {}); }
  Status operator()(const op::SetRevNatWildcards& o) {
    w.set_rev_nat_wildcards(o.count);
    return {};
  }
  Status operator()(const op::DeleteVipAddr& o) {
    w.delete_vip_addr(o.addr);
    return {};
  }
  Status operator()(const op::DeleteRevNat& o) {
    w.delete_rev_nat(o.backend);
    return {};
  }
  Status operator()(const op::WriteInfo& o) { return w.write_info(o.generation); }
};

// Rewrites the VIP's ring from its usable backends into its staging ring and switches to it.
Status publish_ring(VipSlot& v, MapWriter& w) {
  sl_vip_entry next = v.entry;
  next.vip.ring_id = staging_ring(v.entry);
  if (auto s = switch_ring(w, next, usable_backends(v)); !s) return s;
  v.entry = next;
  return {};
}

Error no_backend(uint32_t id) { return Error{ENOENT, "no backend with id " + std::to_string(id)}; }

}  // namespace

Status execute(const std::vector<PlanOp>& ops, MapWriter& w) {
  Runner run{w};
  for (const PlanOp& o : ops)
    if (auto s = std::visit(run, o); !s) return s;
  return {};
}

Result<ApplySummary> apply_config(AppliedState& state, const Config& cfg, MapWriter& w,
                                  const MapReader& r, const IdReusable& reusable) {
  // A plan that does not fit (ids) is refused here, with no map touched.
  auto plan = plan_apply(state, cfg, reusable);
  if (!plan) return plan.error();
  if (auto s = execute(plan->ops, w); !s) {
    // The caller may then apply the config it had (rollback), from what the maps hold.
    spdlog::error("apply stopped half-way ({}); reading the data path's state back",
                  s.error().to_string());
    // Half an apply is in the maps: the view is rebuilt from them, as a restart adopts them,
    // since `state` no longer describes what the data path holds.
    auto back = read_state(r, w, state.max_vips(), state.max_backends());
    if (back) {
      back->generation = state.generation;
      state = std::move(*back);
    } else {
      spdlog::error("read back the data path's state: {}", back.error().to_string());
    }
    return s.error();
  }
  state = std::move(plan->next);
  return plan->summary;
}

Status switch_ring(MapWriter& w, const sl_vip_entry& entry, std::span<const MaglevBackend> usable) {
  auto built = build_selection(entry.vip.sched, usable, SL_MAGLEV_SIZE);
  if (!built) {
    return Error{built.error().code,
                 "build the ring of " + format_endpoint(entry.ep) + ": " + built.error().message};
  }
  if (auto s = w.write_ring(entry.vip.ring_id, *built); !s)
    return Error{s.error().code,
                 "write the ring of " + format_endpoint(entry.ep) + ": " + s.error().message};
  // The switch: ring_id shares an aligned 8-byte word with vip_id, which does not change, so
  // a concurrent reader sees either the old or the new ring, never a mix.
  return w.write_vip_entry(entry.vip.vip_id, entry);
}

Status set_backend_up(AppliedState& s, MapWriter& w, uint32_t backend_id, bool up) {
  auto [v, b] = s.find_backend(backend_id);
  if (!b) return no_backend(backend_id);
  if (b->up == up) return {};
  b->up = up;
  // SL_BACKEND_F_RESET is set only once the live ring no longer holds the backend, and
  // cleared before a ring that holds it goes live: no new flow lands on a backend that
  // resets its flows.
  if (up) {
    if (auto st = w.write_backend(b->id, backend_value(*v, *b)); !st) {
      b->up = false;
      return st;
    }
  }
  if (auto st = publish_ring(*v, w); !st) {
    b->up = !up;
    if (up) (void)w.write_backend(b->id, backend_value(*v, *b));
    return st;
  }
  return up ? Status() : w.write_backend(b->id, backend_value(*v, *b));
}

Status set_backend_drained(AppliedState& s, MapWriter& w, uint32_t backend_id, bool drained) {
  auto [v, b] = s.find_backend(backend_id);
  if (!b) return no_backend(backend_id);
  if (b->drained == drained) return {};
  b->drained = drained;
  if (auto st = publish_ring(*v, w); !st) {
    b->drained = !drained;
    return st;
  }
  // The flag in `backends` is the agent's record for a restart (the data path reads the
  // ring), so it follows the ring that took effect.
  return w.write_backend(b->id, backend_value(*v, *b));
}

Status set_backend_weight(AppliedState& s, MapWriter& w, uint32_t backend_id, uint16_t weight) {
  auto [v, b] = s.find_backend(backend_id);
  if (!b) return no_backend(backend_id);
  if (b->weight == weight) return {};
  const uint16_t old = b->weight;
  b->weight = weight;
  if (auto st = publish_ring(*v, w); !st) {
    b->weight = old;
    return st;
  }
  return w.write_backend(b->id, backend_value(*v, *b));
}

}  // namespace sluice
