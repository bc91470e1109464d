// plan_apply(): the reconcile decisions of an apply (which VIPs are kept, rebuilt, added or
// removed; which backend ids are kept, taken, retired or reused), made on data alone. The
// order of the ops it emits is the order documented in plan.h.
#include <arpa/inet.h>

#include <cstring>
#include <string>

#include <sluice/abi/hash.h>
#include <sluice/apply/plan.h>
#include <sluice/core/net.h>

namespace sluice {

namespace {

// What a VIP is built from besides its backends: a change of any of these rebuilds it.
bool same_shape(const sl_vip& a, const sl_vip& b) {
  return a.mode == b.mode && a.sched == b.sched && a.flags == b.flags;
}

// ep.proto mirrors the VIP's protocol (abi.h, struct sl_backend).
sl_endpoint backend_endpoint(const BackendConfig& bc, uint8_t proto) {
  sl_endpoint ep{};
  ep.addr = bc.addr;
  ep.port = htons(bc.port);
  ep.proto = proto;
  ep.family = bc.family;
  return ep;
}

// The address pre-filter of the data path (see SL_ADDR_FILTER_BITS): one bitmap of VIP
// addresses, one of NAT-backend addresses.
class AddrFilter {
 public:
  AddrFilter() : words_(SL_FILTER_KINDS * SL_ADDR_FILTER_WORDS, 0) {}
  void add(sl_addr_filter_kind kind, const sl_addr& a) {
    const uint32_t slot = sl_addr_filter_slot(&a);
    words_[kind * SL_ADDR_FILTER_WORDS + (slot >> 6)] |= 1ull << (slot & 63);
  }
  void add_vip(const sl_addr& vip, uint8_t mode, const std::vector<sl_addr>& backends) {
    add(SL_FILTER_VIP_DST, vip);
    if (mode != SL_MODE_NAT) return;
    for (const sl_addr& a : backends) add(SL_FILTER_NAT_BACKEND_SRC, a);
  }
  // Retired NAT backends keep their bit while their reverse-NAT entry stays, so the replies of
  // the flows finishing on them are still mapped back to the VIP.
  void add_retired(const std::vector<RetiredBackend>& retired) {
    for (const RetiredBackend& r : retired)
      if (r.nat) add(SL_FILTER_NAT_BACKEND_SRC, r.ep.addr);
  }
  op::WriteFilter op() && { return {std::move(words_)}; }

 private:
  std::vector<uint64_t> words_;
};

std::vector<sl_addr> backend_addrs(const VipSlot& v) {
  std::vector<sl_addr> out;
  for (const BackendSlot& b : v.backends) out.push_back(b.ep.addr);
  return out;
}

// A VIP of the config, matched against the applied ones by (address, port, protocol).
struct Match {
  const VipConfig* vc = nullptr;
  sl_endpoint key{};
  sl_vip shape{};
  int old = -1;       // index into cur.vips of the VIP kept (same key and shape)
  int replaced = -1;  // index into cur.vips of a VIP with the same key but another shape
};

class Planner {
 public:
  Planner(const AppliedState& cur, const Config& cfg, const IdReusable& reusable)
      : cur_(cur), cfg_(cfg), reusable_(reusable) {}
  Result<Plan> run();

 private:
  void match();
  Status reserve_ids();
  void write_both_filters();
  void build(const Match& m);
  bool place_backend(const Match& m, const VipSlot& v, bool old_reset, BackendSlot& b,
                     std::vector<uint8_t>& matched);
  uint32_t take_backend_id();
  void retire(const VipSlot& owner, const BackendSlot& b);
  void switch_in(const std::vector<uint8_t>& is_new);
  void remove_gone();
  void finish();
  void emit(PlanOp o) { plan_.ops.push_back(std::move(o)); }

  const AppliedState& cur_;
  const Config& cfg_;
  const IdReusable& reusable_;
  std::vector<Match> matches_;
  std::vector<uint8_t> old_kept_;
  uint32_t need_vids_ = 0, need_backends_ = 0;
  std::vector<uint32_t> vid_pool_, id_pool_;  // ids the new VIPs and backends take, in order
  size_t vids_taken_ = 0, ids_taken_ = 0;
  std::vector<sl_endpoint> reclaimed_;  // endpoints of retired ids this apply reuses
  Plan plan_;
};

Result<Plan> Planner::run() {
  match();
  if (auto s = reserve_ids(); !s) return s.error();
  plan_.next = cur_;
  plan_.next.vips.clear();
  write_both_filters();
  std::vector<uint8_t> is_new;
  for (const Match& m : matches_) {
    build(m);
    is_new.push_back(m.old < 0);
  }
  switch_in(is_new);
  remove_gone();
  finish();
  return std::move(plan_);
}

// Counts the new VIP and backend ids the config needs, so that reserve_ids() can refuse the
// apply before anything is written.
void Planner::match() {
  old_kept_.assign(cur_.vips.size(), 0);
  for (const VipConfig& vc : cfg_.vips) {
    Match m{&vc, vip_endpoint(vc)};
    m.shape.mode = vc.mode;
    m.shape.sched = vc.sched;
    m.shape.flags = vc.hash_source_port ? SL_VIP_F_HASH_SPORT : 0;
    for (size_t i = 0; i < cur_.vips.size(); ++i) {
      if (!same_endpoint(cur_.vips[i].entry.ep, m.key)) continue;
      (same_shape(cur_.vips[i].entry.vip, m.shape) ? m.old : m.replaced) = static_cast<int>(i);
    }
    if (m.old < 0) {
      ++need_vids_;
      need_backends_ += vc.backends.size();
    } else {
      old_kept_[m.old] = 1;
      for (const BackendConfig& bc : vc.backends) {
        const std::string key = format_host_port(bc.addr, bc.family, bc.port);
        bool found = false;
        for (const BackendSlot& b : cur_.vips[m.old].backends) found |= b.key == key;
        need_backends_ += !found;
      }
    }
    matches_.push_back(m);
  }
}

// Every id the plan hands out is reserved here, before any op: a capacity error leaves the
// maps untouched. Ids freed by this apply (VIPs removed, backends retired) are not counted:
// they are still named by what is live until the switch.
Status Planner::reserve_ids() {
  for (uint32_t vid = 0; vid < cur_.max_vips(); ++vid)
    if (!cur_.vip_ids[vid]) vid_pool_.push_back(vid);
  if (need_vids_ > vid_pool_.size())
    return Error{E2BIG, "config needs " + std::to_string(need_vids_) + " new VIP ids, " +
                            std::to_string(vid_pool_.size()) + " of limits.max_vips (" +
                            std::to_string(cur_.max_vips()) + ") are free"};
  for (uint32_t id = 0; id < cur_.max_backends(); ++id)
    if (cur_.backend_ids[id] == IdUse::kFree) id_pool_.push_back(id);
  // No fresh id left for all: the oldest retired ids that no flow names any more.
  if (need_backends_ > id_pool_.size())
    for (const RetiredBackend& r : cur_.retired)
      if (reusable_(r.id)) id_pool_.push_back(r.id);
  if (need_backends_ > id_pool_.size())
    return Error{E2BIG, "config needs " + std::to_string(need_backends_) + " new backend ids, " +
                            std::to_string(id_pool_.size()) + " of limits.max_backends (" +
                            std::to_string(cur_.max_backends()) +
                            ") are free (removed backends keep theirs while a tracked "
                            "flow still names them)"};
  return {};
}

// First: a kept VIP switches to its new ring in the build, and a new NAT backend there gets
// flows at once, whose replies must find reverse NAT. So the pre-filter passes both sets while
// both are live; a set bit only costs an exact lookup.
void Planner::write_both_filters() {
  AddrFilter both;
  for (const VipSlot& v : cur_.vips)
    both.add_vip(v.entry.ep.addr, v.entry.vip.mode, backend_addrs(v));
  for (const Match& m : matches_) {
    std::vector<sl_addr> addrs;
    for (const BackendConfig& bc : m.vc->backends) addrs.push_back(bc.addr);
    both.add_vip(m.key.addr, m.shape.mode, addrs);
  }
  both.add_retired(cur_.retired);
  emit(std::move(both).op());
}

uint32_t Planner::take_backend_id() {
  const uint32_t id = id_pool_[ids_taken_++];  // reserve_ids() made room for every one
  AppliedState& next = plan_.next;
  if (next.backend_ids[id] == IdUse::kRetired) {
    for (auto it = next.retired.begin(); it != next.retired.end(); ++it) {
      if (it->id != id) continue;
      // Its reverse-NAT entry goes at the end of the apply, unless a backend of the new config
      // (added later in this same apply, maybe) or another retired one has that endpoint.
      reclaimed_.push_back(it->ep);
      next.retired.erase(it);
      break;
    }
    // The id starts clean: no cached next hop, no counters of the backend it was.
    emit(op::ResetBackendStats{id});
  }
  next.backend_ids[id] = IdUse::kLive;
  return id;
}

// A retired backend keeps its `backends` entry (and rev_nat) for the flows that still name
// it; no ring holds it, so it gets no new flow (docs/design.md, "Reload").
void Planner::retire(const VipSlot& owner, const BackendSlot& b) {
  emit(op::RetireBackend{b.id, backend_value(owner, b, SL_BACKEND_F_RETIRED)});
  plan_.next.backend_ids[b.id] = IdUse::kRetired;
  plan_.next.retired.push_back({b.id, b.ep, owner.entry.vip.mode == SL_MODE_NAT});
  ++plan_.summary.backends_removed;
}

// Fills `b` (key, endpoint and weight set) from the VIP's backend it continues, if any, or a
// new id. True when the VIP's selection changes.
bool Planner::place_backend(const Match& m, const VipSlot& v, bool old_reset, BackendSlot& b,
                            std::vector<uint8_t>& matched) {
  if (m.old >= 0) {
    const std::vector<BackendSlot>& olds = cur_.vips[m.old].backends;
    for (size_t i = 0; i < olds.size(); ++i) {
      if (olds[i].key != b.key) continue;
      matched[i] = 1;
      b.id = olds[i].id;
      b.up = olds[i].up;
      b.drained = olds[i].drained;
      // on_backend_down changed: its SL_BACKEND_F_RESET flag is in the entry.
      if (olds[i].weight != b.weight || old_reset != v.reset_on_down)
        emit(op::WriteBackend{b.id, backend_value(v, b)});
      return olds[i].weight != b.weight;
    }
  }
  if (m.replaced >= 0) {
    // A rebuilt VIP's backend keeps what the operator and the health checks said of it.
    for (const BackendSlot& o : cur_.vips[m.replaced].backends) {
      if (o.key != b.key) continue;
      b.up = o.up;
      b.drained = o.drained;
    }
  }
  b.id = take_backend_id();
  ++plan_.summary.backends_added;
  emit(op::WriteBackend{b.id, backend_value(v, b)});
  if (v.entry.vip.mode == SL_MODE_NAT) {
    sl_rev_nat rn{};
    rn.vip = m.key;
    rn.vip_id = v.entry.vip.vip_id;
    rn.backend_id = b.id;
    emit(op::WriteRevNat{b.ep, rn});
  }
  return true;
}

// One VIP of the config: its backends and its ring. A kept VIP switches to its new ring here;
// a new or rebuilt one is not reachable yet.
void Planner::build(const Match& m) {
  const VipConfig& vc = *m.vc;
  const bool is_new = m.old < 0;
  bool changed = false;
  VipSlot v;
  if (!is_new) {
    v = cur_.vips[m.old];
    v.backends.clear();
  } else {
    const uint32_t vid = vid_pool_[vids_taken_++];
    plan_.next.vip_ids[vid] = 1;
    v.entry.vip = m.shape;
    v.entry.vip.vip_id = vid;
    // The switch writes the other ring of the pair, so the first ring used is 2*vid.
    v.entry.vip.ring_id = vid * SL_RINGS_PER_VIP + 1;
    v.entry.ep = m.key;
    emit(op::ResetVipStats{vid});
  }
  const bool old_reset = v.reset_on_down;
  v.reset_on_down = vc.on_backend_down == BackendDownAction::kReset;
  std::vector<uint8_t> matched(is_new ? 0 : cur_.vips[m.old].backends.size(), 0);
  for (const BackendConfig& bc : vc.backends) {
    BackendSlot b;
    b.key = format_host_port(bc.addr, bc.family, bc.port);
    b.ep = backend_endpoint(bc, vc.proto);
    b.weight = bc.weight;
    changed |= place_backend(m, v, old_reset, b, matched);
    v.backends.push_back(std::move(b));
  }
  if (!is_new) {
    const VipSlot& old = cur_.vips[m.old];
    for (size_t i = 0; i < old.backends.size(); ++i) {
      if (matched[i]) continue;
      retire(old, old.backends[i]);
      changed = true;
    }
  }
  v.entry.nbackends = static_cast<uint32_t>(v.backends.size());
  if (is_new || changed) {
    v.entry.vip.ring_id = staging_ring(v.entry);
    emit(op::SwitchRing{v.entry, usable_backends(v)});
  }
  ApplySummary& sum = plan_.summary;
  if (is_new)
    ++(m.replaced >= 0 ? sum.vips_changed : sum.vips_added);
  else
    ++(changed ? sum.vips_changed : sum.vips_unchanged);
  plan_.next.vips.push_back(std::move(v));
}

// The new set becomes reachable: a new VIP only now that its backends and ring are in place.
void Planner::switch_in(const std::vector<uint8_t>& is_new) {
  std::vector<uint32_t> index(1u << SL_VIP_INDEX_BITS, 0);
  for (size_t i = 0; i < plan_.next.vips.size(); ++i) {
    const VipSlot& v = plan_.next.vips[i];
    const sl_vip_entry& e = v.entry;
    if (is_new[i]) emit(op::AddVip{e, v.backends.size()});
    // 0 is an empty slot, so the id is stored plus one; two VIPs on one slot send the data
    // path to the `vips` hash.
    uint32_t& slot = index[sl_vip_index_slot(&e.ep.addr, e.ep.port, e.ep.proto)];
    slot = slot == 0 ? e.vip.vip_id + 1 : SL_VIP_INDEX_COLLISION;
  }
  emit(op::WriteIndex{std::move(index)});
}

// VIPs that are gone, or were rebuilt under a new id: out of the index already.
void Planner::remove_gone() {
  for (size_t i = 0; i < cur_.vips.size(); ++i) {
    if (old_kept_[i]) continue;
    const VipSlot& old = cur_.vips[i];
    bool rebuilt = false;
    for (const VipSlot& v : plan_.next.vips) rebuilt |= same_endpoint(v.entry.ep, old.entry.ep);
    if (!rebuilt) {
      emit(op::RemoveVip{old.entry.ep});
      ++plan_.summary.vips_removed;
    }
    for (const BackendSlot& b : old.backends) retire(old, b);
    emit(op::ClearVipEntry{old.entry.vip.vip_id});
    plan_.next.vip_ids[old.entry.vip.vip_id] = 0;
  }
}

void Planner::finish() {
  AppliedState& next = plan_.next;
  // After the removals, which retire backends too. Counted over what is in rev_nat; only ever
  // an over-count while retired wildcards remain.
  uint32_t wildcards = 0;
  for (const VipSlot& v : next.vips)
    if (v.entry.vip.mode == SL_MODE_NAT)
      for (const BackendSlot& b : v.backends) wildcards += b.ep.port == 0;
  for (const RetiredBackend& r : next.retired) wildcards += r.ep.port == 0;
  emit(op::SetRevNatWildcards{wildcards});
  // Addresses that no longer carry a VIP.
  for (const VipSlot& old : cur_.vips) {
    bool still = false;
    for (const VipSlot& v : next.vips)
      still |= v.entry.ep.family == old.entry.ep.family &&
               std::memcmp(&v.entry.ep.addr, &old.entry.ep.addr, sizeof(sl_addr)) == 0;
    if (still) continue;
    sl_addr_key ak{};
    ak.addr = old.entry.ep.addr;
    ak.family = old.entry.ep.family;
    emit(op::DeleteVipAddr{ak});
  }
  // The pre-filter of the new set alone (and the retired NAT backends).
  AddrFilter exact;
  for (const VipSlot& v : next.vips)
    exact.add_vip(v.entry.ep.addr, v.entry.vip.mode, backend_addrs(v));
  exact.add_retired(next.retired);
  emit(std::move(exact).op());
  for (const sl_endpoint& ep : reclaimed_) {
    bool used = false;
    for (const VipSlot& v : next.vips)
      if (v.entry.vip.mode == SL_MODE_NAT)
        for (const BackendSlot& b : v.backends) used |= same_endpoint(b.ep, ep);
    for (const RetiredBackend& r : next.retired) used |= same_endpoint(r.ep, ep);
    if (!used) emit(op::DeleteRevNat{ep});
  }
  next.generation = cur_.generation + 1;
  plan_.summary.generation = next.generation;
  emit(op::WriteInfo{next.generation});
}

}  // namespace

Result<Plan> plan_apply(const AppliedState& cur, const Config& cfg, const IdReusable& reusable) {
  return Planner(cur, cfg, reusable).run();
}

}  // namespace sluice
