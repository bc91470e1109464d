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
// Config changes (apply) are reconciled against what is running: see apply().
#pragma once

#include <sluice/config/config.h>
#include <sluice/core/fd.h>
#include <sluice/bpf/maps.h>
#include <sluice/core/result.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

struct xdp_lb_bpf;

namespace sluice {

struct Limits {
  uint32_t max_vips = SL_DEFAULT_MAX_VIPS;
  uint32_t max_backends = SL_DEFAULT_MAX_BACKENDS;
  uint32_t conntrack_entries = SL_DEFAULT_CT_ENTRIES;
  uint32_t pending_entries = 0;  // ct_pending; 0: as many as conntrack_entries
  uint32_t ct_pending_size() const { return pending_entries ? pending_entries : conntrack_entries; }
  bool operator==(const Limits&) const = default;
};

// What apply() changed, for the log line and the API.
struct ApplySummary {
  uint64_t generation = 0;
  uint32_t vips_added = 0, vips_removed = 0, vips_changed = 0, vips_unchanged = 0;
  uint32_t backends_added = 0, backends_removed = 0;
  std::string to_string() const;
};

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
  // change here (the maps are sized at load). Drained and down backends stay so.
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
  uint64_t generation() const { return generation_; }
  const Limits& limits() const { return limits_; }

  // Attaches XDP in native (driver) mode to each interface of the calling thread's network
  // namespace and adds it to the redirect devmap. With a pin directory the links are pinned
  // there (link_xdp_<ifname>); a link already pinned for an interface is kept and gets this
  // program swapped in atomically, and pinned links of interfaces not in `ifaces` are
  // detached. Can be called again with a new list (reload).
  Status attach(const std::vector<std::string>& ifaces);
  // Makes `vlan_members` hold exactly the VLANs each interface carries (ifindex resolved in
  // the calling thread's network namespace): entries of VLANs and interfaces no longer listed
  // are deleted, new ones added. Call after attach(), on start and on every reload.
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
  void set_conntrack_timeouts(const ConntrackTimeouts& t) { timeouts_ = t; }

  const MapFds& fds() const { return fds_; }
  // The XDP program, e.g. for BPF_PROG_TEST_RUN.
  int prog_fd() const;

 private:
  Datapath() = default;
  struct BackendSlot {
    uint32_t id = 0;
    sl_endpoint ep{};
    std::string key;  // Maglev permutation key: "addr:port"
    uint16_t weight = 0;
    bool up = true;
    bool drained = false;
  };
  struct VipSlot {
    sl_vip_entry entry{};
    std::vector<BackendSlot> backends;
    bool reset_on_down = false;
  };
  static Status load_into(Datapath& dp, const Limits& limits, const std::string& adopt_dir);
  Status restore(bool adopting);
  Result<ApplySummary> apply_changes(const Config& cfg);
  // Maps `maglev` (an mmapable array) for write_ring(); fresh or adopted alike.
  Status map_rings();
  // Copies a built ring into ring `ring_id` of `maglev`, through the mapping.
  Status write_ring(uint32_t ring_id, const std::vector<uint32_t>& ring);
  // Writes the ring of `v` from its usable backends into the ring it does not use now, then
  // points the VIP at it.
  Status publish_ring(VipSlot& v);
  Status write_backend(const VipSlot& v, const BackendSlot& b, uint8_t extra_flags = 0);
  Status write_info();
  std::pair<VipSlot*, BackendSlot*> find_backend(uint32_t id);
  // Whether a retired backend id may be given to a new backend: no live connection and no
  // conntrack entry of any state, in either table, names it. Otherwise a late segment of one
  // of its finished flows (a retransmitted FIN, a SYN on its TIME_WAIT tuple) would reach
  // whichever backend takes the id next. The tables are read once per apply, and only when
  // no fresh id is left.
  bool retired_id_free(uint32_t id);
  std::optional<uint32_t> alloc_backend_id();
  std::optional<uint32_t> alloc_vip_id();
  void retire_backend(const VipSlot& v, const BackendSlot& b);

  std::vector<VipSlot> vips_;  // the applied VIPs, in config order
  std::vector<std::vector<uint32_t>> applied_ids_;
  std::vector<uint8_t> backend_used_;  // by id: 0 free, 1 in a VIP, 2 retired
  std::vector<uint32_t> retired_;   // retired ids, oldest first
  std::vector<uint8_t> named_ids_;  // backend ids entries name; read by retired_id_free()
  bool named_ids_read_ = false;     // ... once per apply
  std::vector<sl_endpoint> reclaimed_eps_;  // endpoints of retired ids reused by this apply
  std::vector<uint8_t> vip_used_;      // by vip id
  uint64_t generation_ = 0;
  ConntrackTimeouts timeouts_;

  struct Attachment {
    std::string ifname;
    unsigned ifindex = 0;
    UniqueFd link;
    std::string pin;  // empty if not pinned
  };
  xdp_lb_bpf* skel_ = nullptr;
  Limits limits_;
  MapFds fds_;
  std::vector<UniqueFd> reused_;  // pinned maps an adopted data path was loaded on
  uint32_t* rings_ = nullptr;     // `maglev`, mmapped (map_rings)
  size_t rings_bytes_ = 0;
  uint64_t ring_slots_ = 0;
  // What `vip_index` and `addr_filter` hold, as this object last wrote them: apply() writes
  // only the slots that differ (a full write of vip_index is 65536 elements). Empty: not known
  // (an adopted data path), the next write is a full one.
  std::vector<uint32_t> index_written_;
  std::vector<uint64_t> filter_written_;
  std::vector<Attachment> links_;
  std::string pin_dir_;
  UniqueFd pin_lock_;
  std::vector<std::string> pinned_;
  bool adopted_ = false;
  enum class Teardown { kFreshOnly, kAlways, kNever };
  Teardown teardown_ = Teardown::kFreshOnly;
};

}  // namespace sluice
