// The real MapWriter and MapReader over the loaded maps (datapath_maps.h). The apply plan
// decides what and in which order; this file only knows how each map is written cheaply:
// rings through one mapping of `maglev`, the big arrays by difference.

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <numeric>

#include <sluice/bpf/datapath_maps.h>

namespace sluice {

namespace {

// `maglev` holds u32 values, which an array map stores 8 bytes apart: its mapping has one
// slot every 2 u32.
constexpr size_t kRingStride = 2;

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

// Zeroes entry `key` of a per-CPU map: one value per possible CPU.
template <typename T>
void zero_percpu(int fd, uint32_t key) {
  const int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return;
  std::vector<T> zeros(ncpu);
  bpf_map_update_elem(fd, &key, zeros.data(), BPF_ANY);
}

}  // namespace

DatapathMaps::~DatapathMaps() {
  if (rings_) munmap(rings_, rings_bytes_);
}

Status DatapathMaps::init(const MapFds& fds, const Limits& limits, DatapathGlobals globals,
                          bool fresh) {
  fds_ = fds;
  limits_ = limits;
  globals_ = globals;
  // Adopted maps: what vip_index and addr_filter hold is unknown, so their first writes are
  // whole (Hitless restart, Apply).
  if (fresh) {  // fresh maps hold zeros
    index_written_.assign(1u << SL_VIP_INDEX_BITS, 0);
    filter_written_.assign(SL_FILTER_KINDS * SL_ADDR_FILTER_WORDS, 0);
  }
  bpf_map_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fds_.maglev, &info, &len) != 0)
    return sys_error("inspect map 'maglev'");
  // The plain stores of write_ring() are only right on this layout.
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

Status DatapathMaps::write_filter(const std::vector<uint64_t>& words) {
  return write_array(fds_.addr_filter, words, filter_written_, "addr_filter");
}

Status DatapathMaps::write_index(const std::vector<uint32_t>& slots) {
  return write_array(fds_.vip_index, slots, index_written_, "vip_index");
}

Status DatapathMaps::write_backend(uint32_t id, const sl_backend& value) {
  return update_map(fds_.backends, &id, &value, "backends");
}

void DatapathMaps::reset_backend_stats(uint32_t id) {
  zero_percpu<sl_nexthop>(fds_.nh_cache, id);
  zero_percpu<sl_traffic>(fds_.backend_stats, id);
}

void DatapathMaps::reset_vip_stats(uint32_t vip_id) {
  zero_percpu<sl_traffic>(fds_.vip_stats, vip_id);
}

Status DatapathMaps::write_rev_nat(const sl_endpoint& backend, const sl_rev_nat& value) {
  return update_map(fds_.rev_nat, &backend, &value, "rev_nat");
}

void DatapathMaps::delete_rev_nat(const sl_endpoint& backend) {
  bpf_map_delete_elem(fds_.rev_nat, &backend);
}

Status DatapathMaps::write_ring(uint32_t ring_id, const std::vector<uint32_t>& ring) {
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

Status DatapathMaps::write_vip_entry(uint32_t vip_id, const sl_vip_entry& entry) {
  return update_map(fds_.vip_table, &vip_id, &entry, "vip_table");
}

Status DatapathMaps::write_vip_addr(const sl_addr_key& addr) {
  const uint32_t one = 1;
  return update_map(fds_.vip_addrs, &addr, &one, "vip_addrs");
}

void DatapathMaps::delete_vip_addr(const sl_addr_key& addr) {
  bpf_map_delete_elem(fds_.vip_addrs, &addr);
}

Status DatapathMaps::write_vip_hash(const sl_endpoint& vip, uint32_t vip_id) {
  return update_map(fds_.vips, &vip, &vip_id, "vips");
}

void DatapathMaps::delete_vip_hash(const sl_endpoint& vip) { bpf_map_delete_elem(fds_.vips, &vip); }

void DatapathMaps::set_rev_nat_wildcards(uint32_t count) { *globals_.rev_nat_wildcards = count; }

// Written last by the plan (Reload): the generation goes up once everything else is in place.
Status DatapathMaps::write_info(uint64_t generation) {
  sl_info info{};
  info.abi_version = SL_ABI_VERSION;
  info.maglev_size = SL_MAGLEV_SIZE;
  info.max_vips = limits_.max_vips;
  info.max_backends = limits_.max_backends;
  info.generation = generation;
  info.ct_max_entries = limits_.conntrack_entries;
  info.ct_pending_entries = limits_.ct_pending_size();
  // The data path expires what it finds idle by these, agent or no agent.
  const auto table = timeouts_.table();
  std::copy(table.begin(), table.end(), info.ct_timeout_s);
  // A value, not a size: a reload may change it. Flows above a lowered budget keep their
  // entries; new one-sided flows confirm again once fewer than it hold one.
  info.ct_one_sided_max = one_sided_max_;
  *globals_.ct_established_ns = uint64_t{timeouts_.established} * 1000000000ull;
  const uint32_t zero = 0;
  return update_map(fds_.info, &zero, &info, "info");
}

Result<std::vector<std::pair<sl_endpoint, uint32_t>>> DatapathMaps::read_vip_hash() const {
  return sluice::read_vip_hash(fds_.vips);
}

Result<sl_vip_entry> DatapathMaps::read_vip_entry(uint32_t vip_id) const {
  sl_vip_entry e{};
  if (bpf_map_lookup_elem(fds_.vip_table, &vip_id, &e) != 0)
    return sys_error("read map 'vip_table'");
  return e;
}

Result<sl_backend> DatapathMaps::read_backend(uint32_t id) const {
  sl_backend be{};
  if (bpf_map_lookup_elem(fds_.backends, &id, &be) != 0) return sys_error("read map 'backends'");
  return be;
}

bool DatapathMaps::has_rev_nat(const sl_endpoint& backend) const {
  sl_rev_nat rn{};
  return bpf_map_lookup_elem(fds_.rev_nat, &backend, &rn) == 0;
}

IdReusable reusable_ids(const MapFds& fds, uint32_t max_backends) {
  // By id: 1 when an entry names it. Read on the first question only: most applies find a
  // fresh id and never ask.
  auto named = std::make_shared<std::vector<uint8_t>>();
  return [fds, max_backends, named](uint32_t id) {
    uint64_t conns = 0;
    if (bpf_map_lookup_elem(fds.backend_conns, &id, &conns) == 0 && conns != 0) return false;
    if (named->empty()) {
      named->assign(max_backends, 0);
      auto mark = [&](const sl_flow_key&, const sl_ct_entry& e) {
        if (e.backend_id < named->size()) (*named)[e.backend_id] = 1;
      };
      for (auto [fd, name] :
           {std::pair{fds.conntrack, "conntrack"}, std::pair{fds.ct_pending, "ct_pending"}}) {
        if (auto s = for_each_ct_entry(fd, name, mark); !s) {
          // Unknown is not free: the id stays retired until a later apply can tell.
          spdlog::warn("backend ids: {}", s.error().to_string());
          named->assign(max_backends, 1);
          break;
        }
      }
    }
    return id >= named->size() || !(*named)[id];
  };
}

}  // namespace sluice
