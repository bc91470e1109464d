// Access to the data-path maps, either through a loaded skeleton (the agent) or through the
// pins under the pin directory (sluicectl, which works while the agent is down).
#pragma once

#include <sluice/abi/abi.h>
#include <sluice/core/fd.h>
#include <sluice/core/result.h>

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace sluice {

inline constexpr const char* kDefaultPinDir = "/sys/fs/bpf/sluice";

// Map file descriptors, not owned.
struct MapFds {
  int vips = -1;
  int vip_addrs = -1;
  int vip_table = -1;
  int vip_index = -1;
  int backends = -1;
  int maglev = -1;
  int rev_nat = -1;
  int conntrack = -1;
  int frags = -1;
  int tx_ports = -1;
  int vip_stats = -1;
  int backend_stats = -1;
  int verdicts = -1;
  int drops = -1;
  int passes = -1;
  int addr_filter = -1;
  int nh_cache = -1;
  int backend_conns = -1;   // live connections per backend (mmapable; see abi.h)
  int ct_events = -1;       // ring buffer of conntrack transitions
  int ct_transitions = -1;  // per-CPU counters, SL_CT_TRANSITION(old, new)
  int ct_stats = -1;        // per-CPU counters, enum sl_ct_stat
  int rr_counters = -1;     // round-robin position per VIP
  int ct_pending = -1;      // unconfirmed and finished flows (LRU; see abi.h)
  int vlan_members = -1;    // {ifindex, VLAN id} each interface carries (struct sl_vlan_key)
  int frag_budget = -1;     // first-fragment budget per VIP (struct sl_frag_budget)
  int ct_one_sided = -1;    // one-sided flows holding a conntrack entry (mmapable; see abi.h)
  int info = -1;
};

// Pin names, one per MapFds member, in declaration order. `info` is pinned last: its pin
// appearing means every other map is pinned and the config applied.
inline constexpr std::array<const char*, 27> kMapNames = {
    "vips",        "vip_addrs",      "vip_table", "vip_index",   "backends",   "maglev",
    "rev_nat",     "conntrack",      "frags",     "tx_ports",    "vip_stats",  "backend_stats",
    "verdicts",    "drops",          "passes",    "addr_filter", "nh_cache",   "backend_conns",
    "ct_events",   "ct_transitions", "ct_stats",  "rr_counters", "ct_pending", "vlan_members",
    "frag_budget", "ct_one_sided",   "info"};

// tc_flow's `host_flows` (the host's own TCP flows) is pinned next to the maps above only
// when the config has a `track` section, so it is not one of kMapNames.
inline constexpr const char* kHostFlowsPin = "host_flows";

// MapFds as an array, in kMapNames order.
std::array<int*, kMapNames.size()> map_fd_slots(MapFds& fds);

// Opens every pinned map under `dir` and checks `info` against this build (PinDir::read_info).
class PinnedMaps {
 public:
  static Result<PinnedMaps> open(const std::string& dir);
  const MapFds& fds() const { return fds_; }
  const sl_info& info() const { return info_; }

 private:
  std::vector<UniqueFd> owned_;
  MapFds fds_;
  sl_info info_{};
};

struct BackendView {
  uint32_t id = 0;
  sl_backend be{};
};

struct VipView {
  sl_endpoint key{};
  sl_vip vip{};                       // from vip_table
  std::vector<BackendView> backends;  // by id
};

Result<sl_info> read_info(int info_fd);
// bpf_map_update_elem(BPF_ANY); the error names the map (`map`) and carries the errno.
Status update_map(int fd, const void* key, const void* value, const char* map);
// Opens <dir>/host_flows and checks that its keys and values are this build's (abi.h). The
// error says when the agent does not track host flows.
Result<UniqueFd> open_pinned_host_flows(const std::string& dir);
// All VIPs (sorted by vip_id) with their active backends.
Result<std::vector<VipView>> read_vips(const MapFds& fds, uint32_t max_backends);
// Every (VIP endpoint, VIP id) of the `vips` hash, in the map's order.
Result<std::vector<std::pair<sl_endpoint, uint32_t>>> read_vip_hash(int vips_fd);
// Calls fn(key, value) for every entry of a conntrack map (`conntrack`, `ct_pending` or
// `host_flows`, named `name` in errors), read in batches. Entries that move while it reads
// may be seen twice or not at all.
Status for_each_ct_entry(int fd, const char* name,
                         const std::function<void(const sl_flow_key&, const sl_ct_entry&)>& fn);
// Per-CPU arrays summed over CPUs: entries [0, n).
Result<std::vector<sl_counter>> read_counters(int fd, uint32_t n);
Result<std::vector<sl_traffic>> read_traffic(int fd, uint32_t n);
// Per-CPU __u64 counters (ct_stats, ct_transitions) summed over CPUs: entries [0, n).
Result<std::vector<uint64_t>> read_u64_counters(int fd, uint32_t n);

}  // namespace sluice
