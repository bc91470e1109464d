#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <ctime>
#include <numeric>
#include <tuple>

#include <sluice/bpf/datapath.h>
#include <sluice/abi/hash.h>
#include <sluice/apply/maglev.h>
#include <sluice/core/net.h>
#include <sluice/apply/sched.h>

#include "xdp_lb.skel.h"

namespace sluice {

namespace {

sl_endpoint make_endpoint(const sl_addr& addr, uint16_t port_host, uint8_t proto, uint8_t family) {
  sl_endpoint ep{};
  ep.addr = addr;
  ep.port = htons(port_host);
  ep.proto = proto;
  ep.family = family;
  return ep;
}

Status update(int fd, const void* key, const void* value, const char* map) {
  if (bpf_map_update_elem(fd, key, value, BPF_ANY) != 0)
    return sys_error(std::string("update map '") + map + "'");
  return {};
}

// Makes the array map `fd` (keys 0..n-1) hold `want`. `written` is what it is known to hold:
// only the elements that differ are written, one update each (a reload that changes one VIP
// touches a few slots, not all 65536 of vip_index). Unknown (empty): every element, in one
// batch. `written` becomes `want`, or unknown again if a write fails.
template <typename T>
Status write_array(int fd, const std::vector<T>& want, std::vector<T>& written, const char* map) {
  if (written.size() != want.size()) {
    written.clear();
    std::vector<uint32_t> keys(want.size());
    std::iota(keys.begin(), keys.end(), 0u);
    uint32_t count = static_cast<uint32_t>(keys.size());
    if (bpf_map_update_batch(fd, keys.data(), want.data(), &count, nullptr) != 0)
      return sys_error(std::string("write map '") + map + "'");
  } else {
    for (uint32_t i = 0; i < want.size(); ++i) {
      if (want[i] == written[i]) continue;
      if (bpf_map_update_elem(fd, &i, &want[i], BPF_ANY) != 0) {
        written.clear();
        return sys_error(std::string("update map '") + map + "'");
      }
    }
  }
  written = want;
  return {};
}

// The address pre-filter of the data path (see SL_ADDR_FILTER_BITS): one bitmap of VIP
// addresses, one of NAT-backend addresses.
class AddrFilter {
 public:
  AddrFilter() : words_(SL_FILTER_KINDS * SL_ADDR_FILTER_WORDS, 0) {}
  void add(sl_addr_filter_kind kind, const sl_addr& a) {
    uint32_t slot = sl_addr_filter_slot(&a);
    words_[kind * SL_ADDR_FILTER_WORDS + (slot >> 6)] |= 1ull << (slot & 63);
  }
  Status write(int fd, std::vector<uint64_t>& written) const {
    return write_array(fd, words_, written, "addr_filter");
  }

 private:
  std::vector<uint64_t> words_;
};

// Retired NAT backends keep their pre-filter bit while their reverse-NAT entry stays, so the
// replies of the flows finishing on them are still mapped back to the VIP.
void add_retired_nat(const std::vector<uint32_t>& retired, const MapFds& fds, AddrFilter& f) {
  for (uint32_t id : retired) {
    sl_backend be{};
    sl_rev_nat rn{};
    if (bpf_map_lookup_elem(fds.backends, &id, &be) == 0 &&
        bpf_map_lookup_elem(fds.rev_nat, &be.ep, &rn) == 0)
      f.add(SL_FILTER_NAT_BACKEND_SRC, be.ep.addr);
  }
}

}  // namespace

std::string ApplySummary::to_string() const {
  return "generation " + std::to_string(generation) + ": VIPs +" + std::to_string(vips_added) +
         " -" + std::to_string(vips_removed) + " ~" + std::to_string(vips_changed) + " =" +
         std::to_string(vips_unchanged) + ", backends +" + std::to_string(backends_added) + " -" +
         std::to_string(backends_removed);
}

namespace {

bool same_endpoint(const sl_endpoint& a, const sl_endpoint& b) {
  return std::memcmp(&a, &b, sizeof(a)) == 0;
}

// What a VIP is built from besides its backends: a change of any of these rebuilds it.
bool same_shape(const sl_vip& a, const sl_vip& b) {
  return a.mode == b.mode && a.sched == b.sched && a.flags == b.flags;
}

constexpr const char* kLinkPinPrefix = "link_xdp_";

// `maglev` holds u32 values, which an array map stores 8 bytes apart: its mapping has one
// slot every 2 u32.
constexpr size_t kRingStride = 2;

}  // namespace

Status Datapath::load_into(Datapath& dp, const Limits& limits, const std::string& adopt_dir) {
  dp.limits_ = limits;
  dp.skel_ = xdp_lb_bpf__open();
  if (!dp.skel_) return sys_error("open BPF skeleton xdp_lb");
  auto* m = &dp.skel_->maps;
  const uint32_t rings = limits.max_vips * SL_RINGS_PER_VIP;
  struct {
    bpf_map* map;
    uint32_t n;
  } sizes[] = {{m->vips, limits.max_vips},         {m->vip_addrs, limits.max_vips},
               {m->vip_table, limits.max_vips},    {m->vip_stats, limits.max_vips},
               {m->backends, limits.max_backends}, {m->backend_stats, limits.max_backends},
               {m->nh_cache, limits.max_backends}, {m->backend_conns, limits.max_backends},
               {m->rev_nat, limits.max_backends},  {m->maglev, rings * SL_MAGLEV_SIZE},
               {m->rr_counters, limits.max_vips},  {m->conntrack, limits.conntrack_entries},
               {m->ct_pending, limits.ct_pending_size()},
               {m->frag_budget, limits.max_vips}};
  for (auto& s : sizes) {
    int err = bpf_map__set_max_entries(s.map, s.n);
    if (err) return sys_error(std::string("size map '") + bpf_map__name(s.map) + "'", err);
  }
  if (!adopt_dir.empty()) {
    // Every pinned map takes the place of the skeleton's own: libbpf checks that type, key
    // and value sizes, max_entries and flags match before it loads the program on them.
    for (const char* name : kMapNames) {
      bpf_map* map = bpf_object__find_map_by_name(dp.skel_->obj, name);
      if (!map) return Error{ENOENT, std::string("BPF object has no map '") + name + "'"};
      const std::string path = adopt_dir + "/" + name;
      int fd = bpf_obj_get(path.c_str());
      if (fd < 0) return sys_error("open pinned map " + path);
      dp.reused_.emplace_back(fd);
      if (int err = bpf_map__reuse_fd(map, fd)) return sys_error("reuse pinned map " + path, err);
    }
  }
  if (int err = xdp_lb_bpf__load(dp.skel_))
    return sys_error(adopt_dir.empty()
                         ? std::string("load BPF program xdp_lb (verifier log above)")
                         : "load BPF program xdp_lb on the maps pinned under " + adopt_dir +
                               " (a map that does not match this build is named above)",
                     err);

  MapFds& f = dp.fds_;
  auto slots = map_fd_slots(f);
  for (size_t i = 0; i < kMapNames.size(); ++i)
    *slots[i] = bpf_map__fd(bpf_object__find_map_by_name(dp.skel_->obj, kMapNames[i]));
  dp.backend_used_.assign(limits.max_backends, 0);
  dp.vip_used_.assign(limits.max_vips, 0);
  if (adopt_dir.empty()) {  // fresh maps hold zeros
    dp.index_written_.assign(1u << SL_VIP_INDEX_BITS, 0);
    dp.filter_written_.assign(SL_FILTER_KINDS * SL_ADDR_FILTER_WORDS, 0);
  }
  return dp.map_rings();
}

Status Datapath::map_rings() {
  bpf_map_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fds_.maglev, &info, &len) != 0)
    return sys_error("inspect map 'maglev'");
  if (info.type != BPF_MAP_TYPE_ARRAY || !(info.map_flags & BPF_F_MMAPABLE) ||
      info.value_size != sizeof(uint32_t))
    return Error{EINVAL, "map 'maglev' is not an mmapable array of u32 (bpf/lib/maps.h)"};
  // An array map lays its elements out every round_up(value_size, 8) bytes: a u32 slot takes
  // 8. In size_t: that passes 2^32 bytes from 4096 VIPs on. The mapping covers the whole
  // array, rounded up to a page (the kernel refuses a longer one).
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t bytes =
      (size_t{info.max_entries} * kRingStride * sizeof(uint32_t) + page - 1) / page * page;
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fds_.maglev, 0);
  if (p == MAP_FAILED)
    return sys_error("mmap map 'maglev' (" + std::to_string(bytes >> 20) + " MiB)");
  rings_ = static_cast<uint32_t*>(p);
  rings_bytes_ = bytes;
  ring_slots_ = info.max_entries;
  return {};
}

Status Datapath::write_ring(uint32_t ring_id, const std::vector<uint32_t>& ring) {
  const uint64_t base = uint64_t{ring_id} * SL_MAGLEV_SIZE;
  if (!rings_ || ring.size() != SL_MAGLEV_SIZE || base + SL_MAGLEV_SIZE > ring_slots_)
    return Error{ERANGE, "ring " + std::to_string(ring_id) + " is outside map 'maglev'"};
  // Aligned 4-byte stores: a reader never sees a torn slot (none should read a staging ring).
  uint32_t* out = rings_ + base * kRingStride;
  for (uint32_t i = 0; i < SL_MAGLEV_SIZE; ++i) out[i * kRingStride] = ring[i];
  // The ring's stores before the vip_table update that switches to it, on any CPU: x86 keeps
  // store order anyway; weaker architectures need the fence.
  std::atomic_thread_fence(std::memory_order_release);
  return {};
}

Result<std::unique_ptr<Datapath>> Datapath::load(const Limits& limits) {
  std::unique_ptr<Datapath> dp(new Datapath());
  if (auto s = load_into(*dp, limits, ""); !s) return s.error();
  return dp;
}

Result<std::unique_ptr<Datapath>> Datapath::open(const Limits& limits, const std::string& dir) {
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    return sys_error("create pin directory " + dir);
  UniqueFd lock(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!lock.valid()) return sys_error("open pin directory " + dir);
  if (flock(lock.get(), LOCK_EX | LOCK_NB) != 0)
    return sys_error("lock pin directory " + dir +
                     (errno == EWOULDBLOCK ? " (another sluiced is running on it)" : ""));

  std::unique_ptr<Datapath> dp(new Datapath());
  const std::string info_path = dir + "/info";
  if (access(info_path.c_str(), F_OK) != 0) {
    // Nothing to adopt. Leftovers without `info` are an interrupted start or stop.
    DIR* d = opendir(dir.c_str());
    bool empty = true;
    if (d) {
      while (dirent* e = readdir(d))
        if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) empty = false;
      closedir(d);
    }
    if (!empty)
      return Error{EEXIST, "pin directory " + dir +
                               " holds pins but no 'info' (a sluiced stopped half-way?); "
                               "remove it to start fresh"};
    if (auto s = load_into(*dp, limits, ""); !s) {
      rmdir(dir.c_str());  // ours, and empty
      return s.error();
    }
    if (auto s = dp->pin(dir); !s) return s.error();
    dp->pin_lock_ = std::move(lock);
    return dp;
  }

  // Adopt. Check what the pins say before loading anything on them.
  UniqueFd info_fd(bpf_obj_get(info_path.c_str()));
  if (!info_fd.valid()) return sys_error("open pinned map " + info_path);
  bpf_map_info mi{};
  uint32_t mi_len = sizeof(mi);
  if (bpf_obj_get_info_by_fd(info_fd.get(), &mi, &mi_len) != 0)
    return sys_error("inspect pinned map " + info_path);
  if (mi.value_size != sizeof(sl_info))
    return Error{0, "the data path pinned under " + dir +
                        " is of another sluice version (its info map holds " +
                        std::to_string(mi.value_size) + "-byte values, this build's " +
                        std::to_string(sizeof(sl_info)) +
                        "): stop it with `sluiced --detach-on-exit` of that version, or remove " +
                        dir + " (this detaches it)"};
  auto info = read_info(info_fd.get());
  if (!info) return info.error();
  if (info->abi_version != SL_ABI_VERSION)
    return Error{0, "the data path pinned under " + dir + " has ABI version " +
                        std::to_string(info->abi_version) + ", this build speaks " +
                        std::to_string(SL_ABI_VERSION) + "; remove " + dir +
                        " to start fresh (this detaches it)"};
  auto limit_error = [&](const char* what, uint32_t pinned, uint32_t wanted) {
    return Error{
        0, std::string("the data path pinned under ") + dir + " was sized for " + what + " = " +
               std::to_string(pinned) + ", the config asks for " + std::to_string(wanted) +
               ": map sizes cannot change while it runs; keep the old value, or remove " + dir +
               " (this detaches the data path and drops its connection table) "
               "and start again"};
  };
  if (info->max_vips != limits.max_vips)
    return limit_error("limits.max_vips", info->max_vips, limits.max_vips);
  if (info->max_backends != limits.max_backends)
    return limit_error("limits.max_backends", info->max_backends, limits.max_backends);
  if (info->ct_max_entries != limits.conntrack_entries)
    return limit_error("conntrack.max_entries", info->ct_max_entries, limits.conntrack_entries);
  if (info->ct_pending_entries != limits.ct_pending_size())
    return limit_error("conntrack.pending_entries", info->ct_pending_entries,
                       limits.ct_pending_size());

  if (auto s = load_into(*dp, limits, dir); !s) return s.error();
  dp->adopted_ = true;
  dp->generation_ = info->generation;
  dp->pin_dir_ = dir;
  dp->pin_lock_ = std::move(lock);
  if (auto s = dp->restore(/*adopting=*/true); !s) return s.error();
  return dp;
}

// Rebuilds the agent's view (VIPs, backend ids, their state) from adopted maps.
Status Datapath::restore(bool adopting) {
  std::vector<std::pair<sl_endpoint, uint32_t>> keys;
  sl_endpoint cur{}, next{};
  sl_endpoint* prev = nullptr;
  while (bpf_map_get_next_key(fds_.vips, prev, &next) == 0) {
    uint32_t vid = 0;
    if (bpf_map_lookup_elem(fds_.vips, &next, &vid) == 0) keys.push_back({next, vid});
    cur = next;
    prev = &cur;
  }
  if (errno != ENOENT) return sys_error("iterate map 'vips'");
  std::sort(keys.begin(), keys.end(), [](auto& a, auto& b) { return a.second < b.second; });
  for (auto& [ep, vid] : keys) {
    if (vid >= limits_.max_vips) return Error{ERANGE, "map 'vips' holds an out-of-range VIP id"};
    VipSlot v;
    if (bpf_map_lookup_elem(fds_.vip_table, &vid, &v.entry) != 0)
      return sys_error("read map 'vip_table'");
    vip_used_[vid] = 1;
    vips_.push_back(std::move(v));
  }
  for (uint32_t id = 0; id < limits_.max_backends; ++id) {
    sl_backend be{};
    if (bpf_map_lookup_elem(fds_.backends, &id, &be) != 0) return sys_error("read map 'backends'");
    if (!(be.flags & SL_BACKEND_F_ACTIVE)) continue;
    VipSlot* owner = nullptr;
    for (VipSlot& v : vips_)
      if (v.entry.vip.vip_id == be.vip_id) owner = &v;
    if (!owner || (be.flags & SL_BACKEND_F_RETIRED)) {
      // No VIP owns it (an apply stopped half-way, or its VIP went): retired, and marked so.
      if (!(be.flags & SL_BACKEND_F_RETIRED)) {
        be.flags |= SL_BACKEND_F_RETIRED;
        if (auto s = update(fds_.backends, &id, &be, "backends"); !s) return s;
      }
      backend_used_[id] = 2;
      retired_.push_back(id);
      continue;
    }
    BackendSlot b;
    b.id = id;
    b.ep = be.ep;
    b.key = format_host_port(be.ep.addr, be.ep.family, ntohs(be.ep.port));
    b.weight = be.weight;
    b.up = !(be.flags & SL_BACKEND_F_DOWN);
    b.drained = be.flags & SL_BACKEND_F_DRAINED;
    owner->reset_on_down = be.flags & SL_BACKEND_F_RESET;
    owner->backends.push_back(std::move(b));
    backend_used_[id] = 1;
  }
  if (adopting)
    spdlog::info(
        "adopted the data path pinned under {}: generation {}, {} VIPs, {} retired backends",
        pin_dir_, generation_, vips_.size(), retired_.size());
  return {};
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
  links_.clear();
  if (rings_) munmap(rings_, rings_bytes_);
  if (skel_) xdp_lb_bpf__destroy(skel_);
}

std::optional<uint32_t> Datapath::alloc_backend_id() {
  for (uint32_t id = 0; id < backend_used_.size(); ++id)
    if (backend_used_[id] == 0) return id;
  // No fresh id: take back the oldest retired one that no flow names any more.
  for (auto it = retired_.begin(); it != retired_.end(); ++it) {
    const uint32_t id = *it;
    if (!retired_id_free(id)) continue;
    retired_.erase(it);
    backend_used_[id] = 0;
    sl_backend old{};
    // Its reverse-NAT entry goes at the end of the apply, unless a backend of the new config
    // (added later in this same apply, maybe) or another retired one has that endpoint.
    if (bpf_map_lookup_elem(fds_.backends, &id, &old) == 0) reclaimed_eps_.push_back(old.ep);
    // The id starts clean: no cached next hop, no counters of the backend it was.
    const int ncpu = libbpf_num_possible_cpus();
    if (ncpu > 0) {
      std::vector<sl_nexthop> nh(ncpu);
      std::vector<sl_traffic> tr(ncpu);
      bpf_map_update_elem(fds_.nh_cache, &id, nh.data(), BPF_ANY);
      bpf_map_update_elem(fds_.backend_stats, &id, tr.data(), BPF_ANY);
    }
    return id;
  }
  return std::nullopt;
}

bool Datapath::retired_id_free(uint32_t id) {
  uint64_t conns = 0;
  if (bpf_map_lookup_elem(fds_.backend_conns, &id, &conns) == 0 && conns != 0) return false;
  if (!named_ids_read_) {
    named_ids_.assign(limits_.max_backends, 0);
    auto mark = [&](const sl_flow_key&, const sl_ct_entry& e) {
      if (e.backend_id < named_ids_.size()) named_ids_[e.backend_id] = 1;
    };
    for (auto [fd, name] : {std::pair{fds_.conntrack, "conntrack"},
                            std::pair{fds_.ct_pending, "ct_pending"}}) {
      if (auto s = for_each_ct_entry(fd, name, mark); !s) {
        // Unknown is not free: the id stays retired until a later apply can tell.
        spdlog::warn("backend ids: {}", s.error().to_string());
        named_ids_.assign(limits_.max_backends, 1);
        break;
      }
    }
    named_ids_read_ = true;
  }
  return id >= named_ids_.size() || !named_ids_[id];
}

std::optional<uint32_t> Datapath::alloc_vip_id() {
  for (uint32_t id = 0; id < vip_used_.size(); ++id)
    if (!vip_used_[id]) return id;
  return std::nullopt;
}

Status Datapath::write_backend(const VipSlot& v, const BackendSlot& b, uint8_t extra_flags) {
  sl_backend be{};
  be.ep = b.ep;
  be.vip_id = v.entry.vip.vip_id;
  be.weight = b.weight;
  be.flags = SL_BACKEND_F_ACTIVE | extra_flags | (b.up ? 0 : SL_BACKEND_F_DOWN) |
             (b.drained ? SL_BACKEND_F_DRAINED : 0) |
             (!b.up && v.reset_on_down ? SL_BACKEND_F_RESET : 0);
  return update(fds_.backends, &b.id, &be, "backends");
}

void Datapath::retire_backend(const VipSlot& v, const BackendSlot& b) {
  // Established flows finish on it: it stays ACTIVE, and reachable by reverse NAT.
  if (auto s = write_backend(v, b, SL_BACKEND_F_RETIRED); !s)
    spdlog::warn("retire backend {}: {}", b.id, s.error().to_string());
  backend_used_[b.id] = 2;
  retired_.push_back(b.id);
}

Result<ApplySummary> Datapath::apply(const Config& cfg) {
  reclaimed_eps_.clear();
  named_ids_read_ = false;
  auto r = apply_changes(cfg);
  if (!r) {
    // Part of the config may be in the maps. Take the agent's view back from them, so that it
    // says what the data path does; the caller may then apply the config it had (rollback).
    spdlog::error("apply stopped half-way ({}); reading the data path's state back",
                  r.error().to_string());
    vips_.clear();
    retired_.clear();
    backend_used_.assign(limits_.max_backends, 0);
    vip_used_.assign(limits_.max_vips, 0);
    index_written_.clear();  // unknown now: the next apply writes them whole
    filter_written_.clear();
    if (auto s = restore(/*adopting=*/false); !s)
      spdlog::error("read back the data path's state: {}", s.error().to_string());
  }
  return r;
}

Result<ApplySummary> Datapath::apply_changes(const Config& cfg) {
  ApplySummary sum;
  // --- Plan, without touching the maps -------------------------------------------------
  struct Plan {
    const VipConfig* vc;
    sl_endpoint key;
    sl_vip shape;
    int old = -1;       // index into vips_ of the VIP kept (same key and shape)
    int replaced = -1;  // index into vips_ of a VIP with the same key but another shape
  };
  std::vector<Plan> plan;
  std::vector<uint8_t> old_kept(vips_.size(), 0);
  uint32_t need_vids = 0, need_backends = 0;
  for (const VipConfig& vc : cfg.vips) {
    Plan p{&vc, vip_endpoint(vc), {}};
    p.shape.mode = vc.mode;
    p.shape.sched = vc.sched;
    p.shape.flags = vc.hash_source_port ? SL_VIP_F_HASH_SPORT : 0;
    for (size_t i = 0; i < vips_.size(); ++i) {
      if (!same_endpoint(vips_[i].entry.ep, p.key)) continue;
      (same_shape(vips_[i].entry.vip, p.shape) ? p.old : p.replaced) = static_cast<int>(i);
    }
    if (p.old < 0) {
      ++need_vids;
      need_backends += vc.backends.size();
    } else {
      old_kept[p.old] = 1;
      for (const BackendConfig& bc : vc.backends) {
        const std::string key = format_host_port(bc.addr, bc.family, bc.port);
        bool found = false;
        for (const BackendSlot& b : vips_[p.old].backends) found |= b.key == key;
        need_backends += !found;
      }
    }
    plan.push_back(p);
  }
  {
    uint32_t free_vids = std::count(vip_used_.begin(), vip_used_.end(), 0);
    if (need_vids > free_vids)
      return Error{E2BIG, "config needs " + std::to_string(need_vids) + " new VIP ids, " +
                              std::to_string(free_vids) + " of limits.max_vips (" +
                              std::to_string(limits_.max_vips) + ") are free"};
    uint32_t free_backends = std::count(backend_used_.begin(), backend_used_.end(), 0);
    if (need_backends > free_backends)
      for (uint32_t id : retired_) free_backends += retired_id_free(id);
    if (need_backends > free_backends)
      return Error{E2BIG, "config needs " + std::to_string(need_backends) + " new backend ids, " +
                              std::to_string(free_backends) + " of limits.max_backends (" +
                              std::to_string(limits_.max_backends) +
                              ") are free (removed backends keep theirs while a tracked "
                              "flow still names them)"};
  }

  // --- The pre-filter passes both sets while both are live ------------------------------
  // First: a kept VIP switches to its new ring in the build below, and a new NAT backend
  // there gets flows at once, whose replies must find reverse NAT. A set bit only costs an
  // exact lookup.
  {
    AddrFilter both;
    auto add_vip = [&](const sl_addr& vip, uint8_t mode, auto&& backend_addrs) {
      both.add(SL_FILTER_VIP_DST, vip);
      if (mode == SL_MODE_NAT)
        for (const sl_addr& a : backend_addrs) both.add(SL_FILTER_NAT_BACKEND_SRC, a);
    };
    for (const VipSlot& v : vips_) {
      std::vector<sl_addr> addrs;
      for (const BackendSlot& b : v.backends) addrs.push_back(b.ep.addr);
      add_vip(v.entry.ep.addr, v.entry.vip.mode, addrs);
    }
    for (const Plan& p : plan) {
      std::vector<sl_addr> addrs;
      for (const BackendConfig& bc : p.vc->backends) addrs.push_back(bc.addr);
      add_vip(p.key.addr, p.shape.mode, addrs);
    }
    add_retired_nat(retired_, fds_, both);
    if (auto s = both.write(fds_.addr_filter, filter_written_); !s) return s.error();
  }

  // --- Build: backends and rings. A kept VIP switches to its new ring here (one update);
  // new and rebuilt VIPs are not reachable yet --------------------------------------------
  std::vector<VipSlot> next;
  std::vector<uint8_t> next_is_new;  // 1: not in the index yet (new or rebuilt VIP)
  for (Plan& p : plan) {
    const VipConfig& vc = *p.vc;
    VipSlot v;
    bool is_new = p.old < 0, changed = false;
    if (!is_new) {
      v = vips_[p.old];
      v.backends.clear();
    } else {
      const uint32_t vid = *alloc_vip_id();  // capacity checked above
      vip_used_[vid] = 1;
      v.entry.vip = p.shape;
      v.entry.vip.vip_id = vid;
      // publish_ring() writes the other ring of the pair, so the first ring used is 2*vid.
      v.entry.vip.ring_id = vid * SL_RINGS_PER_VIP + 1;
      v.entry.ep = p.key;
      // Fresh counters for the id.
      const int ncpu = libbpf_num_possible_cpus();
      if (ncpu > 0) {
        std::vector<sl_traffic> tr(ncpu);
        bpf_map_update_elem(fds_.vip_stats, &vid, tr.data(), BPF_ANY);
      }
    }
    const bool old_reset = v.reset_on_down;
    v.reset_on_down = vc.on_backend_down == BackendDownAction::kReset;
    std::vector<uint8_t> matched(is_new ? 0 : vips_[p.old].backends.size(), 0);
    for (const BackendConfig& bc : vc.backends) {
      BackendSlot b;
      b.key = format_host_port(bc.addr, bc.family, bc.port);
      b.ep = make_endpoint(bc.addr, bc.port, vc.proto, bc.family);
      b.weight = bc.weight;
      bool found = false;
      if (!is_new) {
        auto& olds = vips_[p.old].backends;
        for (size_t i = 0; i < olds.size(); ++i) {
          if (olds[i].key != b.key) continue;
          found = true;
          matched[i] = 1;
          b.id = olds[i].id;
          b.up = olds[i].up;
          b.drained = olds[i].drained;
          if (olds[i].weight != b.weight) changed = true;
          if (olds[i].weight != b.weight || old_reset != v.reset_on_down) {
            if (auto s = write_backend(v, b); !s) return s.error();
          }
        }
      }
      if (!found && p.replaced >= 0) {
        // A rebuilt VIP's backend keeps what the operator and the health checks said of it.
        for (const BackendSlot& o : vips_[p.replaced].backends) {
          if (o.key != b.key) continue;
          b.up = o.up;
          b.drained = o.drained;
        }
      }
      if (!found) {
        b.id = *alloc_backend_id();
        backend_used_[b.id] = 1;
        changed = true;
        ++sum.backends_added;
        if (auto s = write_backend(v, b); !s) return s.error();
        if (vc.mode == SL_MODE_NAT) {
          sl_rev_nat rn{};
          rn.vip = p.key;
          rn.vip_id = v.entry.vip.vip_id;
          rn.backend_id = b.id;
          if (auto s = update(fds_.rev_nat, &b.ep, &rn, "rev_nat"); !s) return s.error();
        }
      }
      v.backends.push_back(std::move(b));
    }
    if (!is_new) {
      const VipSlot& old = vips_[p.old];
      for (size_t i = 0; i < old.backends.size(); ++i) {
        if (matched[i]) continue;
        retire_backend(old, old.backends[i]);
        changed = true;
        ++sum.backends_removed;
      }
    }
    v.entry.nbackends = static_cast<uint32_t>(v.backends.size());
    if (is_new || changed) {
      if (auto s = publish_ring(v); !s) return s.error();
    }
    if (is_new) {
      p.replaced >= 0 ? ++sum.vips_changed : ++sum.vips_added;
    } else {
      changed ? ++sum.vips_changed : ++sum.vips_unchanged;
    }
    next.push_back(std::move(v));
    next_is_new.push_back(is_new);
  }

  // --- Switch: make the new set reachable, then retire what left ------------------------
  std::vector<uint32_t> index(1u << SL_VIP_INDEX_BITS, 0);
  for (size_t i = 0; i < next.size(); ++i) {
    const sl_vip_entry& e = next[i].entry;
    sl_addr_key ak{};
    ak.addr = e.ep.addr;
    ak.family = e.ep.family;
    uint32_t one = 1, vid = e.vip.vip_id;
    if (next_is_new[i]) {
      if (auto s = update(fds_.vip_addrs, &ak, &one, "vip_addrs"); !s) return s.error();
      // A rebuilt VIP flips from its old id to the new one here, in one update.
      if (auto s = update(fds_.vips, &e.ep, &vid, "vips"); !s) return s.error();
      spdlog::info("VIP {} ({}, {}) with {} backends", format_endpoint(e.ep), mode_name(e.vip.mode),
                   sched_name(e.vip.sched), next[i].backends.size());
    }
    uint32_t& idx = index[sl_vip_index_slot(&e.ep.addr, e.ep.port, e.ep.proto)];
    idx = idx == 0 ? vid + 1 : SL_VIP_INDEX_COLLISION;
  }
  if (auto s = write_array(fds_.vip_index, index, index_written_, "vip_index"); !s)
    return s.error();

  // VIPs that are gone, or were rebuilt under a new id.
  for (size_t i = 0; i < vips_.size(); ++i) {
    if (old_kept[i]) continue;
    const VipSlot& old = vips_[i];
    bool rebuilt = false;
    for (const VipSlot& v : next) rebuilt |= same_endpoint(v.entry.ep, old.entry.ep);
    if (!rebuilt) {
      bpf_map_delete_elem(fds_.vips, &old.entry.ep);
      ++sum.vips_removed;
      spdlog::info("VIP {} removed", format_endpoint(old.entry.ep));
    }
    for (const BackendSlot& b : old.backends) {
      retire_backend(old, b);
      ++sum.backends_removed;
    }
    const uint32_t vid = old.entry.vip.vip_id;
    sl_vip_entry none{};
    if (auto s = update(fds_.vip_table, &vid, &none, "vip_table"); !s) return s.error();
    vip_used_[vid] = 0;
  }
  // After the removals above, which retire backends too.
  uint32_t rev_wildcards = 0;
  for (const VipSlot& v : next)
    if (v.entry.vip.mode == SL_MODE_NAT)
      for (const BackendSlot& b : v.backends) rev_wildcards += b.ep.port == 0;
  for (uint32_t id : retired_) {
    sl_backend be{};
    if (bpf_map_lookup_elem(fds_.backends, &id, &be) == 0 && be.ep.port == 0) ++rev_wildcards;
  }
  // Counted over what is in rev_nat; only ever an over-count while retired wildcards remain.
  skel_->bss->sl_rev_nat_wildcards = rev_wildcards;
  // Addresses that no longer carry a VIP.
  for (const VipSlot& old : vips_) {
    bool still = false;
    for (const VipSlot& v : next)
      still |= v.entry.ep.family == old.entry.ep.family &&
               std::memcmp(&v.entry.ep.addr, &old.entry.ep.addr, sizeof(sl_addr)) == 0;
    if (still) continue;
    sl_addr_key ak{};
    ak.addr = old.entry.ep.addr;
    ak.family = old.entry.ep.family;
    bpf_map_delete_elem(fds_.vip_addrs, &ak);
  }
  // The pre-filter of the new set alone. Retired NAT backends keep their bit, so the replies
  // of their last flows still find reverse NAT.
  AddrFilter exact;
  for (const VipSlot& v : next) {
    exact.add(SL_FILTER_VIP_DST, v.entry.ep.addr);
    if (v.entry.vip.mode != SL_MODE_NAT) continue;
    for (const BackendSlot& b : v.backends) exact.add(SL_FILTER_NAT_BACKEND_SRC, b.ep.addr);
  }
  add_retired_nat(retired_, fds_, exact);
  if (auto s = exact.write(fds_.addr_filter, filter_written_); !s) return s.error();

  vips_ = std::move(next);
  for (const sl_endpoint& ep : reclaimed_eps_) {
    bool used = false;
    for (const VipSlot& v : vips_)
      if (v.entry.vip.mode == SL_MODE_NAT)
        for (const BackendSlot& b : v.backends) used |= same_endpoint(b.ep, ep);
    for (uint32_t id : retired_) {
      sl_backend be{};
      used |= bpf_map_lookup_elem(fds_.backends, &id, &be) == 0 && same_endpoint(be.ep, ep);
    }
    if (!used) bpf_map_delete_elem(fds_.rev_nat, &ep);
  }
  reclaimed_eps_.clear();
  applied_ids_.clear();
  for (const VipSlot& v : vips_) {
    std::vector<uint32_t> ids;
    for (const BackendSlot& b : v.backends) ids.push_back(b.id);
    applied_ids_.push_back(std::move(ids));
  }
  ++generation_;
  sum.generation = generation_;
  if (auto s = write_info(); !s) return s.error();
  return sum;
}

Status Datapath::write_info() {
  sl_info info{};
  info.abi_version = SL_ABI_VERSION;
  info.maglev_size = SL_MAGLEV_SIZE;
  info.max_vips = limits_.max_vips;
  info.max_backends = limits_.max_backends;
  info.generation = generation_;
  info.ct_max_entries = limits_.conntrack_entries;
  info.ct_pending_entries = limits_.ct_pending_size();
  // The data path expires what it finds idle by these, agent or no agent.
  for (uint8_t st = 0; st < SL_TCP_STATE_MAX; ++st) info.ct_timeout_s[st] = timeouts_.for_state(st);
  info.ct_timeout_s[SL_CT_TIMEOUT_UNCONFIRMED] = timeouts_.unconfirmed;
  skel_->bss->sl_ct_established_ns = uint64_t{timeouts_.established} * 1000000000ull;
  uint32_t zero = 0;
  return update(fds_.info, &zero, &info, "info");
}

Status Datapath::publish_ring(VipSlot& v) {
  std::vector<MaglevBackend> mb;
  for (const BackendSlot& b : v.backends)
    if (b.up && !b.drained && b.weight > 0) mb.push_back({b.id, b.weight, b.key});
  auto built = build_selection(v.entry.vip.sched, mb, SL_MAGLEV_SIZE);
  if (!built) {
    return Error{built.error().code,
                 "build the ring of " + format_endpoint(v.entry.ep) + ": " + built.error().message};
  }
  std::vector<uint32_t> ring = std::move(*built);
  const uint32_t vid = v.entry.vip.vip_id;
  const uint32_t staging = v.entry.vip.ring_id == vid * SL_RINGS_PER_VIP
                               ? vid * SL_RINGS_PER_VIP + 1
                               : vid * SL_RINGS_PER_VIP;
  if (auto s = write_ring(staging, ring); !s)
    return Error{s.error().code,
                 "write the ring of " + format_endpoint(v.entry.ep) + ": " + s.error().message};
  // The switch: ring_id shares an aligned 8-byte word with vip_id, which does not change, so
  // a concurrent reader sees either the old or the new ring, never a mix.
  sl_vip_entry next = v.entry;
  next.vip.ring_id = staging;
  if (auto s = update(fds_.vip_table, &vid, &next, "vip_table"); !s) return s;
  v.entry = next;
  return {};
}

std::pair<Datapath::VipSlot*, Datapath::BackendSlot*> Datapath::find_backend(uint32_t id) {
  for (VipSlot& v : vips_)
    for (BackendSlot& b : v.backends)
      if (b.id == id) return {&v, &b};
  return {nullptr, nullptr};
}

std::optional<uint32_t> Datapath::backend_id(size_t vip_index, size_t backend_index) const {
  if (vip_index >= applied_ids_.size() || backend_index >= applied_ids_[vip_index].size())
    return std::nullopt;
  return applied_ids_[vip_index][backend_index];
}

std::optional<Datapath::BackendState> Datapath::backend_state(uint32_t id) const {
  for (const VipSlot& v : vips_)
    for (const BackendSlot& b : v.backends)
      if (b.id == id) return BackendState{b.up, b.drained, b.weight};
  return std::nullopt;
}

Status Datapath::set_backend_up(uint32_t backend_id, bool up) {
  auto [v, b] = find_backend(backend_id);
  if (!b) return Error{ENOENT, "no backend with id " + std::to_string(backend_id)};
  if (b->up == up) return {};
  b->up = up;
  // SL_BACKEND_F_RESET is set only once the live ring no longer holds the backend, and
  // cleared before a ring that holds it goes live: no new flow lands on a backend that
  // resets its flows.
  if (up) {
    if (auto s = write_backend(*v, *b); !s) {
      b->up = false;
      return s;
    }
  }
  if (auto s = publish_ring(*v); !s) {
    b->up = !up;
    if (up) (void)write_backend(*v, *b);
    return s;
  }
  return up ? Status() : write_backend(*v, *b);
}

Status Datapath::set_backend_drained(uint32_t backend_id, bool drained) {
  auto [v, b] = find_backend(backend_id);
  if (!b) return Error{ENOENT, "no backend with id " + std::to_string(backend_id)};
  if (b->drained == drained) return {};
  b->drained = drained;
  if (auto s = publish_ring(*v); !s) {
    b->drained = !drained;
    return s;
  }
  return write_backend(*v, *b);
}

Status Datapath::set_backend_weight(uint32_t backend_id, uint16_t weight) {
  auto [v, b] = find_backend(backend_id);
  if (!b) return Error{ENOENT, "no backend with id " + std::to_string(backend_id)};
  if (b->weight == weight) return {};
  const uint16_t old = b->weight;
  b->weight = weight;
  if (auto s = publish_ring(*v); !s) {
    b->weight = old;
    return s;
  }
  return write_backend(*v, *b);
}

Status Datapath::attach(const std::vector<std::string>& ifaces) {
  const int prog_fd = bpf_program__fd(skel_->progs.xdp_lb);
  // Interfaces no longer listed.
  for (auto it = links_.begin(); it != links_.end();) {
    if (std::find(ifaces.begin(), ifaces.end(), it->ifname) != ifaces.end()) {
      ++it;
      continue;
    }
    if (!it->pin.empty()) unlink(it->pin.c_str());
    bpf_map_delete_elem(fds_.tx_ports, &it->ifindex);
    spdlog::info("XDP detached from {}", it->ifname);
    it = links_.erase(it);  // closing the last reference detaches
  }
  if (!pin_dir_.empty()) {
    // Links pinned by an earlier sluiced for interfaces that are not listed any more.
    if (DIR* d = opendir(pin_dir_.c_str())) {
      std::vector<std::string> stale;
      while (dirent* e = readdir(d)) {
        std::string name = e->d_name;
        if (name.rfind(kLinkPinPrefix, 0) != 0) continue;
        std::string ifname = name.substr(std::strlen(kLinkPinPrefix));
        bool listed = std::find(ifaces.begin(), ifaces.end(), ifname) != ifaces.end();
        bool ours = false;
        for (const Attachment& a : links_) ours |= a.ifname == ifname;
        if (!listed && !ours) stale.push_back(name);
      }
      closedir(d);
      for (const std::string& name : stale) {
        unlink((pin_dir_ + "/" + name).c_str());
        spdlog::info("XDP detached from {} (not in the config any more)",
                     name.substr(std::strlen(kLinkPinPrefix)));
      }
    }
  }
  for (const std::string& name : ifaces) {
    bool have = false;
    for (const Attachment& a : links_) have |= a.ifname == name;
    if (have) continue;
    unsigned ifindex = if_nametoindex(name.c_str());
    if (ifindex == 0)
      return sys_error("interface '" + name + "' not found in this network namespace");
    Attachment a{name, ifindex, UniqueFd(), ""};
    const std::string pin = pin_dir_.empty() ? "" : pin_dir_ + "/" + kLinkPinPrefix + name;
    if (!pin.empty()) {
      int fd = bpf_obj_get(pin.c_str());
      if (fd >= 0) {
        // A link left by an earlier sluiced: swap our program in, atomically.
        UniqueFd link(fd);
        if (bpf_link_update(link.get(), prog_fd, nullptr) != 0)
          return sys_error("replace the XDP program in the link pinned at " + pin);
        a.link = std::move(link);
        a.pin = pin;
        spdlog::info("XDP on {} (ifindex {}) taken over, program replaced in place", name, ifindex);
      }
    }
    if (!a.link.valid()) {
      LIBBPF_OPTS(bpf_link_create_opts, opts, .flags = XDP_FLAGS_DRV_MODE);
      int fd = bpf_link_create(prog_fd, static_cast<int>(ifindex), BPF_XDP, &opts);
      if (fd < 0)
        return sys_error("attach XDP (native mode) to '" + name + "'" +
                         (errno == EBUSY ? " (another XDP program is attached)" : ""));
      a.link.reset(fd);
      if (!pin.empty()) {
        if (bpf_obj_pin(fd, pin.c_str()) != 0) return sys_error("pin XDP link at " + pin);
        a.pin = pin;
      }
      spdlog::info("XDP attached to {} (ifindex {}, native mode)", name, ifindex);
    }
    links_.push_back(std::move(a));  // first: a failure below still detaches it on teardown
    // The devmap resolves the ifindex in the updater's network namespace: ours.
    if (auto s = update(fds_.tx_ports, &ifindex, &ifindex, "tx_ports"); !s) return s;
  }
  return {};
}

Status Datapath::set_vlans(const std::vector<InterfaceConfig>& ifaces) {
  auto less = [](const sl_vlan_key& a, const sl_vlan_key& b) {
    return std::tie(a.ifindex, a.vid) < std::tie(b.ifindex, b.vid);
  };
  std::vector<sl_vlan_key> want;
  for (const InterfaceConfig& i : ifaces) {
    if (i.vlans.empty()) continue;
    const unsigned ifindex = if_nametoindex(i.name.c_str());
    if (ifindex == 0)
      return sys_error("interface '" + i.name + "' not found in this network namespace");
    for (uint16_t vid : i.vlans) {
      sl_vlan_key k{};
      k.ifindex = ifindex;
      k.vid = vid;
      want.push_back(k);
    }
  }
  std::sort(want.begin(), want.end(), less);
  // What the map holds: written by this agent, or by the one whose pins were adopted.
  std::vector<sl_vlan_key> have;
  sl_vlan_key key{}, next{};
  void* prev = nullptr;
  while (bpf_map_get_next_key(fds_.vlan_members, prev, &next) == 0) {
    have.push_back(next);
    key = next;
    prev = &key;
  }
  // New VLANs first: a frame of a VLAN that stays carried is never passed by mistake.
  const uint32_t one = 1;
  for (const sl_vlan_key& k : want) {
    if (std::find_if(have.begin(), have.end(), [&](const sl_vlan_key& h) {
          return !less(h, k) && !less(k, h);
        }) != have.end())
      continue;
    if (auto st = update(fds_.vlan_members, &k, &one, "vlan_members"); !st) return st;
  }
  for (const sl_vlan_key& k : have) {
    if (std::binary_search(want.begin(), want.end(), k, less)) continue;
    if (bpf_map_delete_elem(fds_.vlan_members, &k) != 0 && errno != ENOENT)
      return sys_error("delete from map 'vlan_members'");
  }
  return {};
}

void Datapath::detach() {
  for (auto& a : links_) {
    if (!a.pin.empty()) unlink(a.pin.c_str());
    a.link.reset();  // the last reference to an unpinned link: the kernel detaches XDP
    spdlog::info("XDP detached from {}", a.ifname);
  }
  links_.clear();
}

Status Datapath::pin(const std::string& dir) {
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    return sys_error("create pin directory " + dir);
  pin_dir_ = dir;
  auto slots = map_fd_slots(fds_);
  for (size_t i = 0; i + 1 < kMapNames.size(); ++i) {  // kMapNames ends with "info": publish()
    std::string path = dir + "/" + kMapNames[i];
    if (bpf_obj_pin(*slots[i], path.c_str()) != 0)
      return sys_error("pin map at " + path +
                       (errno == EEXIST
                            ? " (pins left by another sluiced? stop it, or remove " + dir + ")"
                            : ""));
    pinned_.push_back(path);
  }
  return {};
}

Status Datapath::publish() {
  if (pin_dir_.empty() || adopted_) return {};
  const std::string path = pin_dir_ + "/info";
  if (std::find(pinned_.begin(), pinned_.end(), path) != pinned_.end()) return {};
  if (bpf_obj_pin(fds_.info, path.c_str()) != 0) return sys_error("pin map at " + path);
  pinned_.push_back(path);
  return {};
}

void Datapath::unpin() {
  if (adopted_ && pinned_.empty() && !pin_dir_.empty()) {
    // Adopted: the pins are the earlier sluiced's, now ours to remove.
    for (const char* name : kMapNames) pinned_.push_back(pin_dir_ + "/" + name);
  }
  // Reverse order: `info` goes first, so readers stop treating the directory as live.
  for (auto it = pinned_.rbegin(); it != pinned_.rend(); ++it) unlink(it->c_str());
  pinned_.clear();
  if (!pin_dir_.empty()) rmdir(pin_dir_.c_str());
  pin_dir_.clear();
}

}  // namespace sluice
