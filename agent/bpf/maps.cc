// Reading the data-path maps, for the agent and for sluicectl alike (maps.h). Nothing here
// writes: the order of writes is the apply plan's (MapWriter), in one place.

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sluice/bpf/maps.h>
#include <sluice/bpf/pin_dir.h>

#include <algorithm>

namespace sluice {

// Same order as kMapNames: pinning, opening and adopting the maps walk the two side by side.
std::array<int*, kMapNames.size()> map_fd_slots(MapFds& f) {
  return {&f.vips,         &f.vip_addrs,     &f.vip_table,     &f.vip_index,    &f.backends,
          &f.maglev,       &f.rev_nat,       &f.conntrack,     &f.frags,        &f.tx_ports,
          &f.vip_stats,    &f.backend_stats, &f.verdicts,      &f.drops,        &f.passes,
          &f.addr_filter,  &f.nh_cache,      &f.backend_conns, &f.ct_events,    &f.ct_transitions,
          &f.ct_stats,     &f.rr_counters,   &f.ct_pending,    &f.vlan_members, &f.frag_budget,
          &f.ct_one_sided, &f.info};
}

Result<sl_info> read_info(int info_fd) {
  uint32_t key = 0;
  sl_info info{};
  if (bpf_map_lookup_elem(info_fd, &key, &info) != 0) return sys_error("read map 'info'");
  return info;
}

Result<PinnedMaps> PinnedMaps::open(const std::string& dir) {
  const PinDir pins(dir);
  // sluicectl works from pins alone, so a missing pin means no sluiced ever published a data
  // path under this dir, or one stopped with --detach-on-exit (a plain stop leaves the pins).
  const std::string hint = " (has sluiced run with --pin-dir " + dir +
                           "? only a sluiced stopped with --detach-on-exit removes its pins)";
  PinnedMaps pm;
  auto slots = map_fd_slots(pm.fds_);
  for (size_t i = 0; i < kMapNames.size(); ++i) {
    auto fd = pins.open(kMapNames[i], hint);
    if (!fd) return fd.error();
    *slots[i] = fd->get();
    pm.owned_.push_back(std::move(*fd));
  }
  // Checked before any map is read: another build's entries would be misread.
  auto info = pins.read_info(pm.fds_.info);
  if (!info) return info.error();
  pm.info_ = *info;
  return pm;
}

Result<UniqueFd> open_pinned_host_flows(const std::string& dir) {
  std::string hint = " (host flows are pinned only while sluiced runs with a 'track' section ";
  hint += "in its config, and --pin-dir " + dir + ")";
  return PinDir(dir).open_map(kHostFlowsPin, sizeof(sl_flow_key), sizeof(sl_ct_entry), hint);
}

Result<std::vector<std::pair<sl_endpoint, uint32_t>>> read_vip_hash(int vips_fd) {
  std::vector<std::pair<sl_endpoint, uint32_t>> out;
  sl_endpoint cur{}, next{};
  sl_endpoint* prev = nullptr;
  while (bpf_map_get_next_key(vips_fd, prev, &next) == 0) {
    uint32_t id = 0;
    // The agent may change the map while this reads: a VIP gone since its key was returned is
    // skipped, not an error.
    if (bpf_map_lookup_elem(vips_fd, &next, &id) == 0) out.emplace_back(next, id);
    cur = next;
    prev = &cur;
  }
  // get_next_key ends the walk with ENOENT; anything else is a failed read.
  if (errno != ENOENT) return sys_error("iterate map 'vips'");
  return out;
}

Result<std::vector<VipView>> read_vips(const MapFds& fds, uint32_t max_backends) {
  auto hash = read_vip_hash(fds.vips);
  if (!hash) return hash.error();
  std::vector<VipView> out;
  for (const auto& [key, id] : *hash) {
    sl_vip_entry e{};
    // A VIP whose entry went between the two reads is skipped too.
    if (bpf_map_lookup_elem(fds.vip_table, &id, &e) != 0) continue;
    VipView v;
    v.key = key;
    v.vip = e.vip;
    out.push_back(v);
  }
  std::sort(out.begin(), out.end(),
            [](const VipView& a, const VipView& b) { return a.vip.vip_id < b.vip.vip_id; });
  for (uint32_t id = 0; id < max_backends; ++id) {
    sl_backend be{};
    if (bpf_map_lookup_elem(fds.backends, &id, &be) != 0) return sys_error("read map 'backends'");
    // Retired backends keep ACTIVE (their flows still run), so they are listed too.
    if (!(be.flags & SL_BACKEND_F_ACTIVE)) continue;
    for (auto& v : out)
      if (v.vip.vip_id == be.vip_id) v.backends.push_back({id, be});
  }
  return out;
}

namespace {

// Per-CPU values come back as one value per possible CPU, each padded to 8 bytes.
template <class V, class Add>
Result<std::vector<V>> read_percpu(int fd, uint32_t n, Add add) {
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return sys_error("count possible CPUs", -ncpu);
  static_assert(sizeof(V) % 8 == 0, "per-CPU values must be 8-byte multiples");
  std::vector<V> percpu(ncpu), out(n);
  for (uint32_t i = 0; i < n; ++i) {
    if (bpf_map_lookup_elem(fd, &i, percpu.data()) != 0) return sys_error("read per-CPU map");
    for (const V& v : percpu) add(out[i], v);
  }
  return out;
}

}  // namespace

Result<std::vector<sl_counter>> read_counters(int fd, uint32_t n) {
  return read_percpu<sl_counter>(fd, n, [](sl_counter& a, const sl_counter& b) {
    a.packets += b.packets;
    a.bytes += b.bytes;
  });
}

Result<std::vector<uint64_t>> read_u64_counters(int fd, uint32_t n) {
  return read_percpu<uint64_t>(fd, n, [](uint64_t& a, const uint64_t& b) { a += b; });
}

Result<std::vector<sl_traffic>> read_traffic(int fd, uint32_t n) {
  return read_percpu<sl_traffic>(fd, n, [](sl_traffic& a, const sl_traffic& b) {
    a.packets += b.packets;
    a.bytes += b.bytes;
    a.new_flows += b.new_flows;
  });
}

Status for_each_ct_entry(int fd, const char* name,
                         const std::function<void(const sl_flow_key&, const sl_ct_entry&)>& fn) {
  // Batches: one syscall per kBatch entries, not two per entry (get_next_key, then lookup).
  constexpr uint32_t kBatch = 4096;
  std::vector<sl_flow_key> keys(kBatch);
  std::vector<sl_ct_entry> values(kBatch);
  uint64_t cursor = 0, next = 0;
  for (bool first = true;; first = false) {
    uint32_t count = kBatch;
    const int err = bpf_map_lookup_batch(fd, first ? nullptr : &cursor, &next, keys.data(),
                                         values.data(), &count, nullptr);
    // ENOENT marks the last batch, which may still carry `count` entries.
    const bool end = err != 0 && errno == ENOENT;
    if (err != 0 && !end) return sys_error(std::string("read map '") + name + "'");
    for (uint32_t i = 0; i < count; ++i) fn(keys[i], values[i]);
    if (end) return {};
    cursor = next;
  }
}

Status update_map(int fd, const void* key, const void* value, const char* map) {
  if (bpf_map_update_elem(fd, key, value, BPF_ANY) != 0)
    return sys_error(std::string("update map '") + map + "'");
  return {};
}

}  // namespace sluice
