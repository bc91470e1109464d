// The loaded XDP load balancer: owns the skeleton, the XDP links and the pins.
//
// Two ways to get one:
//  - load(): a fresh program and fresh maps, nothing pinned (tests, benchmarks);
//  - open(): for the daemon. With no pins under the pin directory it loads fresh and pins
//    every map; when a previous sluiced left its pins there (a restart, or a crash) it adopts
//    them: the new program is loaded on the pinned maps (conntrack, counters, rings, live
//    counts all carry on), the agent's view of VIPs and backend ids is read back from them,
//    and attach() swaps the program inside the pinned XDP links, so the interfaces are never
//    without a program. The pin directory is locked (flock) while a Datapath holds it.
//
// Config changes (apply) are reconciled against what is running: see apply(). The decisions
// are the apply component's (apply/plan.h: a plan of map writes, ids assigned up front); this
// class runs them on the real maps (DatapathMaps) and owns what only the kernel has: the
// loaded program, its XDP links (XdpLinks) and the pin directory (PinDir).
#pragma once

#include <sluice/apply/state.h>
#include <sluice/bpf/datapath_maps.h>
#include <sluice/bpf/maps.h>
#include <sluice/bpf/pin_dir.h>
#include <sluice/bpf/xdp_links.h>
#include <sluice/config/config.h>
#include <sluice/core/fd.h>
#include <sluice/core/result.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

struct xdp_lb_bpf;

namespace sluice {

class Datapath {
 public:
  // Opens the skeleton, sizes the maps from `limits` and loads the program (verifier).
  static Result<std::unique_ptr<Datapath>> load(const Limits& limits);
  // The daemon's way in: adopts the data path pinned under `pin_dir` if there is one (its
  // ABI version and limits must match), else loads fresh and pins every map there.
  static Result<std::unique_ptr<Datapath>> open(const Limits& limits, const std::string& pin_dir);
  // Unless keep_on_exit(true) was called: detaches XDP and removes the pins this object made
  // (an adopted data path it did not take over is never torn down).
  ~Datapath();
  Datapath(const Datapath&) = delete;
  Datapath& operator=(const Datapath&) = delete;

  // True when open() found a running data path and adopted it.
  bool adopted() const { return adopted_; }

  // Makes the maps hold `cfg`, changing only what differs from what is applied:
  //  - a VIP is identified by (address, port, protocol). One whose mode, scheduler and
  //    hash_source_port are unchanged keeps its id and its ring; if its backend set or
  //    weights changed, the new ring is written into its staging ring and switched in by one
  //    update (its established flows stay on their backends; Maglev moves only the slots it
  //    must). An unchanged VIP is not touched at all;
  //  - a VIP whose mode, scheduler or hashing changed is built whole under a new id and the
  //    `vips` hash and index flip to it in one update each: a packet sees the old VIP or the
  //    new one, never a mix;
  //  - a backend is identified within its VIP by (address, port) and keeps its id. A removed
  //    backend (or every backend of a removed or rebuilt VIP) is retired: it stays in
  //    `backends` so flows in conntrack finish on it, and its id is reused only when no fresh
  //    id is left and it holds no live connection;
  //  - new VIPs become reachable (index, hash, pre-filter) only after their backends and
  //    rings are in place; removed ones leave the index before their entries go.
  // Capacity (VIP and backend ids) is checked before anything is written. Limits cannot
  // change here (the maps are sized at load). Drained and down backends stay so. If a write
  // fails half-way, the agent's view is read back from the maps, so that it says what the
  // data path does; the caller may then apply the config it had (rollback).
  Result<ApplySummary> apply(const Config& cfg);

  // Takes a backend out of (or back into) the selection for new flows: its VIP's ring is
  // rebuilt without (with) it into the staging ring and switched in. Flows already in
  // conntrack keep their backend, unless the VIP's on_backend_down is reset: then a down
  // backend is flagged SL_BACKEND_F_RESET and the data path answers its flows with RST.
  Status set_backend_up(uint32_t backend_id, bool up);
  // Drain: no new flows, established ones stay. Kept across apply() and restarts.
  Status set_backend_drained(uint32_t backend_id, bool drained);
  // A new weight for the selection (0 acts like a drain). Same ring switch as above.
  Status set_backend_weight(uint32_t backend_id, uint16_t weight);

  // The backend ids of the last applied config: ids[v][b] for cfg.vips[v].backends[b].
  const std::vector<std::vector<uint32_t>>& backend_ids() const { return applied_ids_; }
  std::optional<uint32_t> backend_id(size_t vip_index, size_t backend_index) const;
  struct BackendState {
    bool up = true;
    bool drained = false;
    uint16_t weight = 0;
  };
  std::optional<BackendState> backend_state(uint32_t backend_id) const;
  uint64_t generation() const { return state_.generation; }
  const Limits& limits() const { return limits_; }

  // Attaches XDP in native (driver) mode to each interface of the calling thread's network
  // namespace, pinned in the pin directory if there is one: XdpLinks::attach(). Can be called
  // again with a new list (reload).
  Status attach(const std::vector<std::string>& ifaces);
  // sync_vlans() on `vlan_members`. Call after attach(), on start and on every reload.
  Status set_vlans(const std::vector<InterfaceConfig>& ifaces);
  void detach();
  // Pins every map but `info` under `dir` (created; must not hold pins already).
  Status pin(const std::string& dir);
  // Pins `info`: its pin tells readers (sluicectl, a sluiced that restarts) that the maps
  // hold an applied config and XDP is attached. Call after the first apply() and attach().
  Status publish();
  void unpin();
  // true: the destructor leaves XDP attached and the pins in place (hitless restart);
  // false: it detaches and unpins, whether fresh or adopted.
  void keep_on_exit(bool keep) { teardown_ = keep ? Teardown::kNever : Teardown::kAlways; }

  // The conntrack timeouts published in `info` for readers such as sluicectl.
  void set_conntrack_timeouts(const ConntrackTimeouts& t) { maps_.set_timeouts(t); }

  const MapFds& fds() const { return fds_; }
  // The XDP program, e.g. for BPF_PROG_TEST_RUN.
  int prog_fd() const;

 private:
  Datapath() = default;
  static Status load_into(Datapath& dp, const Limits& limits, const PinDir* adopt);
  static Result<std::unique_ptr<Datapath>> adopt(const Limits& limits, PinDir dir);
  Status pin_maps();
  PinDir* pins() { return pins_ ? &*pins_ : nullptr; }

  xdp_lb_bpf* skel_ = nullptr;
  Limits limits_;
  MapFds fds_;
  std::vector<UniqueFd> reused_;  // pinned maps an adopted data path was loaded on
  DatapathMaps maps_;
  AppliedState state_;
  std::vector<std::vector<uint32_t>> applied_ids_;  // state_.ids() of the last apply
  XdpLinks links_;
  std::optional<PinDir> pins_;
  bool adopted_ = false;
  enum class Teardown { kFreshOnly, kAlways, kNever };
  Teardown teardown_ = Teardown::kFreshOnly;
};

}  // namespace sluice
