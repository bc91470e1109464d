#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ctime>
#include <numeric>

#include "xdp_lb.skel.h"
#include <sluice/datapath.h>
#include <sluice/hash.h>
#include <sluice/maglev.h>
#include <sluice/net.h>
#include <sluice/sched.h>

namespace sluice {

namespace {

sl_endpoint make_endpoint(const sl_addr& addr, uint16_t port_host, uint8_t proto,
                          uint8_t family) {
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

// The address pre-filter of the data path (see SL_ADDR_FILTER_BITS): one bitmap of VIP
// addresses, one of NAT-backend addresses.
class AddrFilter {
 public:
  AddrFilter() : words_(SL_FILTER_KINDS * SL_ADDR_FILTER_WORDS, 0) {}
  void add(sl_addr_filter_kind kind, const sl_addr& a) {
    uint32_t slot = sl_addr_filter_slot(&a);
    words_[kind * SL_ADDR_FILTER_WORDS + (slot >> 6)] |= 1ull << (slot & 63);
  }
  Status write(int fd) const {
    std::vector<uint32_t> keys(words_.size());
    std::iota(keys.begin(), keys.end(), 0u);
    uint32_t count = static_cast<uint32_t>(keys.size());
    if (bpf_map_update_batch(fd, keys.data(), words_.data(), &count, nullptr) != 0)
      return sys_error("write map 'addr_filter'");
    return {};
  }

 private:
  std::vector<uint64_t> words_;
};

}  // namespace

Result<std::unique_ptr<Datapath>> Datapath::load(const Limits& limits) {
  std::unique_ptr<Datapath> dp(new Datapath());
  dp->limits_ = limits;
  dp->skel_ = xdp_lb_bpf__open();
  if (!dp->skel_) return sys_error("open BPF skeleton xdp_lb");
  auto* m = &dp->skel_->maps;
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
               {m->conntrack, limits.conntrack_entries}};
  for (auto& s : sizes) {
    int err = bpf_map__set_max_entries(s.map, s.n);
    if (err) return sys_error(std::string("size map '") + bpf_map__name(s.map) + "'", err);
  }
  if (int err = xdp_lb_bpf__load(dp->skel_))
    return sys_error("load BPF program xdp_lb (verifier log above)", err);

  MapFds& f = dp->fds_;
  f.vips = bpf_map__fd(m->vips);
  f.vip_addrs = bpf_map__fd(m->vip_addrs);
  f.addr_filter = bpf_map__fd(m->addr_filter);
  f.nh_cache = bpf_map__fd(m->nh_cache);
  f.backend_conns = bpf_map__fd(m->backend_conns);
  f.ct_events = bpf_map__fd(m->ct_events);
  f.ct_transitions = bpf_map__fd(m->ct_transitions);
  f.ct_stats = bpf_map__fd(m->ct_stats);
  f.vip_table = bpf_map__fd(m->vip_table);
  f.vip_index = bpf_map__fd(m->vip_index);
  f.backends = bpf_map__fd(m->backends);
  f.maglev = bpf_map__fd(m->maglev);
  f.rr_counters = bpf_map__fd(m->rr_counters);
  f.rev_nat = bpf_map__fd(m->rev_nat);
  f.conntrack = bpf_map__fd(m->conntrack);
  f.frags = bpf_map__fd(m->frags);
  f.tx_ports = bpf_map__fd(m->tx_ports);
  f.vip_stats = bpf_map__fd(m->vip_stats);
  f.backend_stats = bpf_map__fd(m->backend_stats);
  f.verdicts = bpf_map__fd(m->verdicts);
  f.drops = bpf_map__fd(m->drops);
  f.passes = bpf_map__fd(m->passes);
  f.info = bpf_map__fd(m->info);
  return dp;
}

int Datapath::prog_fd() const { return bpf_program__fd(skel_->progs.xdp_lb); }

Datapath::~Datapath() {
  detach();
  unpin();
  if (skel_) xdp_lb_bpf__destroy(skel_);
}

Status Datapath::apply(const Config& cfg) {
  if (cfg.vips.size() > limits_.max_vips)
    return Error{E2BIG, "config has " + std::to_string(cfg.vips.size()) +
                            " VIPs, the maps were sized for " + std::to_string(limits_.max_vips)};
  if (!vips_.empty()) return Error{EEXIST, "a config is already applied (reload is not supported yet)"};
  uint32_t next_backend = 0, rev_wildcards = 0;

  // The pre-filter goes first: a set bit only sends packets down the exact-lookup path.
  AddrFilter filter;
  for (const VipConfig& vc : cfg.vips) {
    filter.add(SL_FILTER_VIP_DST, vc.addr);
    if (vc.mode != SL_MODE_NAT) continue;
    for (const BackendConfig& bc : vc.backends) filter.add(SL_FILTER_NAT_BACKEND_SRC, bc.addr);
  }
  if (auto s = filter.write(fds_.addr_filter); !s) return s;
  tick();
  std::vector<uint32_t> index(1u << SL_VIP_INDEX_BITS, 0);

  for (uint32_t vid = 0; vid < cfg.vips.size(); ++vid) {
    const VipConfig& vc = cfg.vips[vid];
    const sl_endpoint key = make_endpoint(vc.addr, vc.port, vc.proto, vc.family);
    if (next_backend + vc.backends.size() > limits_.max_backends)
      return Error{E2BIG, "config has more backends than limits.max_backends (" +
                              std::to_string(limits_.max_backends) + ")"};

    VipSlot vslot;
    for (const BackendConfig& bc : vc.backends) {
      const uint32_t id = next_backend++;
      sl_backend be{};
      be.ep = make_endpoint(bc.addr, bc.port, vc.proto, bc.family);
      be.vip_id = vid;
      be.weight = bc.weight;
      be.flags = SL_BACKEND_F_ACTIVE;
      if (auto s = update(fds_.backends, &id, &be, "backends"); !s) return s;
      vslot.backends.push_back({id, format_host_port(bc.addr, bc.family, bc.port), bc.weight, true});
      if (vc.mode == SL_MODE_NAT) {
        sl_rev_nat rn{};
        rn.vip = key;
        rn.vip_id = vid;
        if (auto s = update(fds_.rev_nat, &be.ep, &rn, "rev_nat"); !s) return s;
        if (bc.port == 0) ++rev_wildcards;
      }
    }

    sl_vip& vip = vslot.entry.vip;
    vip.vip_id = vid;
    // publish_ring() writes the other ring of the pair, so the first ring used is 2*vid.
    vip.ring_id = vid * SL_RINGS_PER_VIP + 1;
    vip.mode = vc.mode;
    vip.sched = vc.sched;
    vip.flags = vc.hash_source_port ? SL_VIP_F_HASH_SPORT : 0;
    vslot.entry.ep = key;
    vslot.entry.nbackends = static_cast<uint32_t>(vc.backends.size());
    vips_.push_back(std::move(vslot));
    if (auto s = publish_ring(vips_.back()); !s) return s;
    sl_addr_key ak{};
    ak.addr = vc.addr;
    ak.family = vc.family;
    uint32_t one = 1;
    if (auto s = update(fds_.vip_addrs, &ak, &one, "vip_addrs"); !s) return s;
    if (auto s = update(fds_.vips, &key, &vid, "vips"); !s) return s;
    uint32_t& idx = index[sl_vip_index_slot(&key.addr, key.port, key.proto)];
    idx = idx == 0 ? vid + 1 : SL_VIP_INDEX_COLLISION;
    spdlog::info("VIP {} ({}, {}) with {} backends", format_endpoint(key), mode_name(vc.mode),
                 sched_name(vc.sched), vc.backends.size());
  }
  skel_->bss->sl_rev_nat_wildcards = rev_wildcards;
  // Last: the index makes the VIPs reachable from the data path.
  {
    std::vector<uint32_t> keys(index.size());
    std::iota(keys.begin(), keys.end(), 0u);
    uint32_t count = static_cast<uint32_t>(keys.size());
    if (bpf_map_update_batch(fds_.vip_index, keys.data(), index.data(), &count, nullptr) != 0)
      return sys_error("write map 'vip_index'");
  }

  sl_info info{};
  info.abi_version = SL_ABI_VERSION;
  info.maglev_size = SL_MAGLEV_SIZE;
  info.max_vips = limits_.max_vips;
  info.max_backends = limits_.max_backends;
  info.generation = 1;
  uint32_t zero = 0;
  return update(fds_.info, &zero, &info, "info");
}

Status Datapath::publish_ring(VipSlot& v) {
  std::vector<MaglevBackend> mb;
  for (const BackendSlot& b : v.backends)
    if (b.up && b.weight > 0) mb.push_back({b.id, b.weight, b.key});
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
  std::vector<uint32_t> keys(SL_MAGLEV_SIZE);
  std::iota(keys.begin(), keys.end(), staging * SL_MAGLEV_SIZE);
  uint32_t count = SL_MAGLEV_SIZE;
  if (bpf_map_update_batch(fds_.maglev, keys.data(), ring.data(), &count, nullptr) != 0)
    return sys_error("write Maglev ring of " + format_endpoint(v.entry.ep));
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
  if (vip_index >= vips_.size() || backend_index >= vips_[vip_index].backends.size())
    return std::nullopt;
  return vips_[vip_index].backends[backend_index].id;
}

Status Datapath::set_backend_up(uint32_t backend_id, bool up) {
  auto [v, b] = find_backend(backend_id);
  if (!b) return Error{ENOENT, "no backend with id " + std::to_string(backend_id)};
  if (b->up == up) return {};
  b->up = up;
  if (auto s = publish_ring(*v); !s) {
    b->up = !up;
    return s;
  }
  return {};
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
  sl_backend be{};
  if (bpf_map_lookup_elem(fds_.backends, &backend_id, &be) == 0) {
    be.weight = weight;  // for the CLI; the data path reads weights only through the ring
    if (auto s = update(fds_.backends, &backend_id, &be, "backends"); !s) return s;
  }
  return {};
}

void Datapath::tick() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);  // the clock of bpf_ktime_get_ns()
  skel_->bss->sl_now_ns = static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + ts.tv_nsec;
}

Status Datapath::attach(const std::vector<std::string>& ifaces) {
  const int prog_fd = bpf_program__fd(skel_->progs.xdp_lb);
  for (const std::string& name : ifaces) {
    unsigned ifindex = if_nametoindex(name.c_str());
    if (ifindex == 0) return sys_error("interface '" + name + "' not found in this network namespace");
    LIBBPF_OPTS(bpf_link_create_opts, opts, .flags = XDP_FLAGS_DRV_MODE);
    int fd = bpf_link_create(prog_fd, static_cast<int>(ifindex), BPF_XDP, &opts);
    if (fd < 0)
      return sys_error("attach XDP (native mode) to '" + name + "'" +
                       (errno == EBUSY ? " (another XDP program is attached)" : ""));
    links_.push_back({name, ifindex, UniqueFd(fd)});
    // The devmap resolves the ifindex in the updater's network namespace: ours.
    if (auto s = update(fds_.tx_ports, &ifindex, &ifindex, "tx_ports"); !s) return s;
    spdlog::info("XDP attached to {} (ifindex {}, native mode)", name, ifindex);
  }
  return {};
}

void Datapath::detach() {
  for (auto& a : links_) {
    a.link.reset();  // the last reference to an unpinned link: the kernel detaches XDP
    spdlog::info("XDP detached from {}", a.ifname);
  }
  links_.clear();
}

Status Datapath::pin(const std::string& dir) {
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return sys_error("create pin directory " + dir);
  pin_dir_ = dir;
  auto slots = map_fd_slots(fds_);
  for (size_t i = 0; i < kMapNames.size(); ++i) {  // kMapNames ends with "info"
    std::string path = dir + "/" + kMapNames[i];
    if (bpf_obj_pin(*slots[i], path.c_str()) != 0)
      return sys_error("pin map at " + path +
                       (errno == EEXIST ? " (pins left by another sluiced? stop it, or remove " +
                                              dir + ")"
                                        : ""));
    pinned_.push_back(path);
  }
  return {};
}

void Datapath::unpin() {
  // Reverse order: `info` goes first, so readers stop treating the directory as live.
  for (auto it = pinned_.rbegin(); it != pinned_.rend(); ++it) unlink(it->c_str());
  pinned_.clear();
  if (!pin_dir_.empty()) rmdir(pin_dir_.c_str());
  pin_dir_.clear();
}

}  // namespace sluice
