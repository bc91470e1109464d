// Datapath (datapath.h): xdp_lb loaded fresh or on the maps a running data path left pinned
// (Hitless restart), the pins, and the agent's view of what the maps hold.

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <spdlog/spdlog.h>

#include <sluice/apply/execute.h>
#include <sluice/bpf/datapath.h>

#include "xdp_lb.skel.h"

namespace sluice {

namespace {

// The maps of a running data path were sized by the limits it started with; a program loaded
// on them must be sized alike (libbpf refuses it otherwise, with a less helpful message).
Status check_limits(const sl_info& info, const Limits& limits, const std::string& dir) {
  auto limit_error = [&](const char* what, uint32_t pinned, uint32_t wanted) {
    return Error{
        0, std::string("the data path pinned under ") + dir + " was sized for " + what + " = " +
               std::to_string(pinned) + ", the config asks for " + std::to_string(wanted) +
               ": map sizes cannot change while it runs; keep the old value, or remove " + dir +
               " (this detaches the data path and drops its connection table) "
               "and start again"};
  };
  if (info.max_vips != limits.max_vips)
    return limit_error("limits.max_vips", info.max_vips, limits.max_vips);
  if (info.max_backends != limits.max_backends)
    return limit_error("limits.max_backends", info.max_backends, limits.max_backends);
  if (info.ct_max_entries != limits.conntrack_entries)
    return limit_error("conntrack.max_entries", info.ct_max_entries, limits.conntrack_entries);
  if (info.ct_pending_entries != limits.ct_pending_size())
    return limit_error("conntrack.pending_entries", info.ct_pending_entries,
                       limits.ct_pending_size());
  return {};
}

}  // namespace

Status Datapath::load_into(Datapath& dp, const Limits& limits, const PinDir* adopt) {
  dp.limits_ = limits;
  dp.skel_ = xdp_lb_bpf__open();
  if (!dp.skel_) return sys_error("open BPF skeleton xdp_lb");
  auto* m = &dp.skel_->maps;
  // Sizes come from the config's limits and must be set before load: a map cannot be resized
  // after, which is also why a takeover requires the same limits (check_limits).
  const uint32_t rings = limits.max_vips * SL_RINGS_PER_VIP;
  struct {
    bpf_map* map;
    uint32_t n;
  } sizes[] = {{m->vips, limits.max_vips},
               {m->vip_addrs, limits.max_vips},
               {m->vip_table, limits.max_vips},
               {m->vip_stats, limits.max_vips},
               {m->backends, limits.max_backends},
               {m->backend_stats, limits.max_backends},
               {m->nh_cache, limits.max_backends},
               {m->backend_conns, limits.max_backends},
               {m->rev_nat, limits.max_backends},
               {m->maglev, rings * SL_MAGLEV_SIZE},
               {m->rr_counters, limits.max_vips},
               {m->conntrack, limits.conntrack_entries},
               {m->ct_pending, limits.ct_pending_size()},
               {m->frag_budget, limits.max_vips}};
  for (auto& s : sizes) {
    int err = bpf_map__set_max_entries(s.map, s.n);
    if (err) return sys_error(std::string("size map '") + bpf_map__name(s.map) + "'", err);
  }
  // Adopting, every pinned map takes the place of the skeleton's own: libbpf checks that
  // type, key and value sizes, max_entries and flags match before it loads the program on them.
  for (const char* name : kMapNames) {
    if (!adopt) break;
    bpf_map* map = bpf_object__find_map_by_name(dp.skel_->obj, name);
    if (!map) return Error{ENOENT, std::string("BPF object has no map '") + name + "'"};
    auto fd = adopt->open(name);
    if (!fd) return fd.error();
    dp.reused_.push_back(std::move(*fd));
    if (int err = bpf_map__reuse_fd(map, dp.reused_.back().get()))
      return sys_error("reuse pinned map " + adopt->path_of(name), err);
  }
  if (int err = xdp_lb_bpf__load(dp.skel_))
    return sys_error(!adopt ? std::string("load BPF program xdp_lb (verifier log above)")
                            : "load BPF program xdp_lb on the maps pinned under " + adopt->path() +
                                  " (a map that does not match this build is named above)",
                     err);
  // Adopting, these are the pinned maps' fds: the skeleton now uses them.
  auto slots = map_fd_slots(dp.fds_);
  for (size_t i = 0; i < kMapNames.size(); ++i)
    *slots[i] = bpf_map__fd(bpf_object__find_map_by_name(dp.skel_->obj, kMapNames[i]));
  dp.state_ = AppliedState::empty(limits.max_vips, limits.max_backends);
  const DatapathGlobals globals{&dp.skel_->bss->sl_rev_nat_wildcards,
                                &dp.skel_->bss->sl_ct_established_ns};
  return dp.maps_.init(dp.fds_, limits, globals, /*fresh=*/!adopt);
}

Result<std::unique_ptr<Datapath>> Datapath::load(const Limits& limits) {
  std::unique_ptr<Datapath> dp(new Datapath());
  if (auto s = load_into(*dp, limits, nullptr); !s) return s.error();
  return dp;
}

Result<std::unique_ptr<Datapath>> Datapath::open(const Limits& limits, const std::string& path) {
  // Locked before anything is read: two sluiced never adopt or build the same data path.
  auto dir = PinDir::create(path, /*lock=*/true);
  if (!dir) return dir.error();
  if (dir->holds("info")) return adopt(limits, std::move(*dir));
  // Nothing to adopt. Leftovers without `info` are an interrupted start or stop.
  if (!dir->list().empty())
    return Error{EEXIST, "pin directory " + path +
                             " holds pins but no 'info' (a sluiced stopped half-way?); "
                             "remove it to start fresh"};
  std::unique_ptr<Datapath> dp(new Datapath());
  if (auto s = load_into(*dp, limits, nullptr); !s) {
    dir->remove();  // ours, and empty
    return s.error();
  }
  dp->pins_ = std::move(*dir);
  if (auto s = dp->pin_maps(); !s) return s.error();
  return dp;
}

// Loads the program on the maps a previous sluiced left pinned under `dir`: conntrack,
// counters, rings and live counts all carry on. Checks what the pins say first.
Result<std::unique_ptr<Datapath>> Datapath::adopt(const Limits& limits, PinDir dir) {
  auto info_fd = dir.open("info");
  if (!info_fd) return info_fd.error();
  auto info = dir.read_info(info_fd->get());
  if (!info) {
    if (info.error().code != 0) return info.error();
    return Error{0, info.error().message + ": stop it with `sluiced --detach-on-exit` of that " +
                        "version, or remove " + dir.path() + " to start fresh (this detaches it)"};
  }
  if (auto s = check_limits(*info, limits, dir.path()); !s) return s.error();
  std::unique_ptr<Datapath> dp(new Datapath());
  if (auto s = load_into(*dp, limits, &dir); !s) return s.error();
  dp->adopted_ = true;
  dp->pins_ = std::move(dir);
  // The agent's view (VIPs, backend ids, their state), read from the maps.
  auto state = read_state(dp->maps_, dp->maps_, limits.max_vips, limits.max_backends);
  if (!state) return state.error();
  dp->state_ = std::move(*state);
  dp->state_.generation = info->generation;
  spdlog::info("adopted the data path pinned under {}: generation {}, {} VIPs, {} retired backends",
               dp->pins_->path(), info->generation, dp->state_.vips.size(),
               dp->state_.retired.size());
  return dp;
}

int Datapath::prog_fd() const { return bpf_program__fd(skel_->progs.xdp_lb); }

Datapath::~Datapath() {
  const bool teardown =
      teardown_ == Teardown::kAlways || (teardown_ == Teardown::kFreshOnly && !adopted_);
  if (teardown) {
    detach();
    unpin();
  }
  // Otherwise the pinned links and maps stay: closing our fds leaves the data path running.
  links_.release();
  if (skel_) xdp_lb_bpf__destroy(skel_);
}

Result<ApplySummary> Datapath::apply(const Config& cfg) {
  // A value, not a map size: every apply publishes the config's (write_info, last).
  maps_.set_one_sided_max(cfg.one_sided_max());
  // Retired backend ids count as free only when no connection still names them (Reload, Plan).
  auto sum = apply_config(state_, cfg, maps_, maps_, reusable_ids(fds_, limits_.max_backends));
  if (sum) applied_ids_ = state_.ids();
  return sum;
}

std::optional<uint32_t> Datapath::backend_id(size_t vip_index, size_t backend_index) const {
  if (vip_index >= applied_ids_.size() || backend_index >= applied_ids_[vip_index].size())
    return std::nullopt;
  return applied_ids_[vip_index][backend_index];
}

std::optional<Datapath::BackendState> Datapath::backend_state(uint32_t id) const {
  auto [v, b] = state_.find_backend(id);
  if (!b) return std::nullopt;
  return BackendState{b->up, b->drained, b->weight};
}

Status Datapath::set_backend_up(uint32_t backend_id, bool up) {
  return sluice::set_backend_up(state_, maps_, backend_id, up);
}

Status Datapath::set_backend_drained(uint32_t backend_id, bool drained) {
  return sluice::set_backend_drained(state_, maps_, backend_id, drained);
}

Status Datapath::set_backend_weight(uint32_t backend_id, uint16_t weight) {
  return sluice::set_backend_weight(state_, maps_, backend_id, weight);
}

Status Datapath::attach(const std::vector<std::string>& ifaces) {
  return links_.attach(prog_fd(), fds_.tx_ports, ifaces, pins());
}

Status Datapath::set_vlans(const std::vector<InterfaceConfig>& ifaces) {
  return sync_vlans(fds_.vlan_members, ifaces);
}

void Datapath::detach() { links_.detach(pins()); }

Status Datapath::pin(const std::string& dir) {
  auto d = PinDir::create(dir, /*lock=*/false);
  if (!d) return d.error();
  pins_ = std::move(*d);
  return pin_maps();
}

Status Datapath::pin_maps() {
  auto slots = map_fd_slots(fds_);
  for (size_t i = 0; i + 1 < kMapNames.size(); ++i)  // kMapNames ends with "info": publish()
    if (auto s = pins_->pin(*slots[i], kMapNames[i]); !s) return s;
  return {};
}

Status Datapath::publish() {
  // An adopted data path's `info` is pinned already; pinning it again would fail (EEXIST).
  if (!pins_ || adopted_ || pins_->pinned("info")) return {};
  return pins_->pin(fds_.info, "info");
}

void Datapath::unpin() {
  if (!pins_) return;
  // Reverse order: `info` goes first, so readers stop treating the directory as live. An
  // adopted data path's pins are the earlier sluiced's, now ours to remove.
  for (auto it = kMapNames.rbegin(); it != kMapNames.rend(); ++it)
    if (adopted_ || pins_->pinned(*it)) pins_->unpin(*it);
  pins_->remove();
  pins_.reset();
}

}  // namespace sluice
