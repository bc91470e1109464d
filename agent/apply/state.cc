// The agent's view of the applied config: its helpers, and its rebuild from the maps.
#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

#include <sluice/apply/map_io.h>
#include <sluice/apply/state.h>
#include <sluice/core/net.h>

namespace sluice {

AppliedState AppliedState::empty(uint32_t max_vips, uint32_t max_backends) {
  AppliedState s;
  s.backend_ids.assign(max_backends, IdUse::kFree);
  s.vip_ids.assign(max_vips, 0);
  return s;
}

std::vector<std::vector<uint32_t>> AppliedState::ids() const {
  std::vector<std::vector<uint32_t>> out;
  for (const VipSlot& v : vips) {
    std::vector<uint32_t> ids;
    for (const BackendSlot& b : v.backends) ids.push_back(b.id);
    out.push_back(std::move(ids));
  }
  return out;
}

std::pair<VipSlot*, BackendSlot*> AppliedState::find_backend(uint32_t id) {
  for (VipSlot& v : vips)
    for (BackendSlot& b : v.backends)
      if (b.id == id) return {&v, &b};
  return {nullptr, nullptr};
}

std::pair<const VipSlot*, const BackendSlot*> AppliedState::find_backend(uint32_t id) const {
  auto [v, b] = const_cast<AppliedState*>(this)->find_backend(id);
  return {v, b};
}

std::string ApplySummary::to_string() const {
  return "generation " + std::to_string(generation) + ": VIPs +" + std::to_string(vips_added) +
         " -" + std::to_string(vips_removed) + " ~" + std::to_string(vips_changed) + " =" +
         std::to_string(vips_unchanged) + ", backends +" + std::to_string(backends_added) + " -" +
         std::to_string(backends_removed);
}

bool same_endpoint(const sl_endpoint& a, const sl_endpoint& b) {
  return std::memcmp(&a, &b, sizeof(a)) == 0;
}

// DOWN and DRAINED are written although the data path reads neither: they are how a takeover
// restores the agent's view from the maps (Hitless restart, Restore). RESET asks the data path
// to break off the flows of a down backend whose VIP resets (abi.h).
sl_backend backend_value(const VipSlot& v, const BackendSlot& b, uint8_t extra_flags) {
  sl_backend be{};
  be.ep = b.ep;
  be.vip_id = v.entry.vip.vip_id;
  be.weight = b.weight;
  be.flags = SL_BACKEND_F_ACTIVE | extra_flags | (b.up ? 0 : SL_BACKEND_F_DOWN) |
             (b.drained ? SL_BACKEND_F_DRAINED : 0) |
             (!b.up && v.reset_on_down ? SL_BACKEND_F_RESET : 0);
  return be;
}

// Two rings per VIP: the one not live is where the next ring is built, so the switch is one
// vip_table update and a packet never sees a half-written ring (Reload, Build aside).
uint32_t staging_ring(const sl_vip_entry& e) {
  const uint32_t first = e.vip.vip_id * SL_RINGS_PER_VIP;
  return e.vip.ring_id == first ? first + 1 : first;
}

std::vector<MaglevBackend> usable_backends(const VipSlot& v) {
  std::vector<MaglevBackend> out;
  for (const BackendSlot& b : v.backends)
    if (b.up && !b.drained && b.weight > 0) out.push_back({b.id, b.weight, b.key});
  return out;
}

namespace {

// The VIPs of `vips`, in id order (the order they were applied in, for a fresh data path).
Status read_vips(const MapReader& r, AppliedState& s) {
  auto keys = r.read_vip_hash();
  if (!keys) return keys.error();
  std::sort(keys->begin(), keys->end(), [](auto& a, auto& b) { return a.second < b.second; });
  for (auto& [ep, vid] : *keys) {
    if (vid >= s.max_vips()) return Error{ERANGE, "map 'vips' holds an out-of-range VIP id"};
    auto entry = r.read_vip_entry(vid);
    if (!entry) return entry.error();
    VipSlot v;
    v.entry = *entry;
    s.vip_ids[vid] = 1;
    s.vips.push_back(std::move(v));
  }
  return {};
}

}  // namespace

Result<AppliedState> read_state(const MapReader& r, MapWriter& w, uint32_t max_vips,
                                uint32_t max_backends) {
  AppliedState s = AppliedState::empty(max_vips, max_backends);
  if (auto st = read_vips(r, s); !st) return st.error();
  // Backend ids and their VIP come from `backends` alone (Hitless restart, Restore).
  for (uint32_t id = 0; id < max_backends; ++id) {
    auto be = r.read_backend(id);
    if (!be) return be.error();
    if (!(be->flags & SL_BACKEND_F_ACTIVE)) continue;
    VipSlot* owner = nullptr;
    for (VipSlot& v : s.vips)
      if (v.entry.vip.vip_id == be->vip_id) owner = &v;
    if (!owner || (be->flags & SL_BACKEND_F_RETIRED)) {
      // No VIP owns it (an apply stopped half-way, or its VIP went): retired, and marked so.
      if (!(be->flags & SL_BACKEND_F_RETIRED)) {
        be->flags |= SL_BACKEND_F_RETIRED;
        if (auto st = w.write_backend(id, *be); !st) return st.error();
      }
      s.backend_ids[id] = IdUse::kRetired;
      s.retired.push_back({id, be->ep, r.has_rev_nat(be->ep)});
      continue;
    }
    BackendSlot b;
    b.id = id;
    b.ep = be->ep;
    b.key = format_host_port(be->ep.addr, be->ep.family, ntohs(be->ep.port));
    b.weight = be->weight;
    b.up = !(be->flags & SL_BACKEND_F_DOWN);
    b.drained = be->flags & SL_BACKEND_F_DRAINED;
    owner->reset_on_down = be->flags & SL_BACKEND_F_RESET;
    owner->backends.push_back(std::move(b));
    s.backend_ids[id] = IdUse::kLive;
  }
  return s;
}

}  // namespace sluice
