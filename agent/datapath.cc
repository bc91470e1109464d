#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <numeric>

#include "xdp_lb.skel.h"
#include <sluice/datapath.h>
#include <sluice/maglev.h>
#include <sluice/net.h>

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
               {m->vip_meta, limits.max_vips},
               {m->vip_stats, limits.max_vips},
               {m->backends, limits.max_backends},
               {m->backend_stats, limits.max_backends},
               {m->rev_nat, limits.max_backends},
               {m->maglev, rings * SL_MAGLEV_SIZE},
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
  f.vip_meta = bpf_map__fd(m->vip_meta);
  f.backends = bpf_map__fd(m->backends);
  f.maglev = bpf_map__fd(m->maglev);
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

Datapath::~Datapath() {
  detach();
  unpin();
  if (skel_) xdp_lb_bpf__destroy(skel_);
}

Status Datapath::apply(const Config& cfg) {
  if (cfg.vips.size() > limits_.max_vips)
    return Error{E2BIG, "config has " + std::to_string(cfg.vips.size()) +
                            " VIPs, the maps were sized for " + std::to_string(limits_.max_vips)};
  std::vector<uint32_t> ring_keys(SL_MAGLEV_SIZE);
  uint32_t next_backend = 0, rev_entries = 0, rev_wildcards = 0;

  for (uint32_t vid = 0; vid < cfg.vips.size(); ++vid) {
    const VipConfig& vc = cfg.vips[vid];
    const sl_endpoint key = make_endpoint(vc.addr, vc.port, vc.proto, vc.family);
    if (next_backend + vc.backends.size() > limits_.max_backends)
      return Error{E2BIG, "config has more backends than limits.max_backends (" +
                              std::to_string(limits_.max_backends) + ")"};

    std::vector<MaglevBackend> mb;
    for (const BackendConfig& bc : vc.backends) {
      const uint32_t id = next_backend++;
      sl_backend be{};
      be.ep = make_endpoint(bc.addr, bc.port, vc.proto, bc.family);
      be.vip_id = vid;
      be.weight = bc.weight;
      be.flags = SL_BACKEND_F_ACTIVE;
      if (auto s = update(fds_.backends, &id, &be, "backends"); !s) return s;
      mb.push_back({id, bc.weight, format_ip(bc.addr, bc.family) + ":" + std::to_string(bc.port)});
      if (vc.mode == SL_MODE_NAT) {
        sl_rev_nat rn{};
        rn.vip = key;
        rn.vip_id = vid;
        if (auto s = update(fds_.rev_nat, &be.ep, &rn, "rev_nat"); !s) return s;
        ++rev_entries;
        if (bc.port == 0) ++rev_wildcards;
      }
    }

    sl_vip vip{};
    vip.vip_id = vid;
    vip.ring_id = vid * SL_RINGS_PER_VIP;
    vip.mode = vc.mode;
    vip.sched = vc.sched;
    vip.flags = vc.hash_source_port ? SL_VIP_F_HASH_SPORT : 0;

    std::vector<uint32_t> ring = build_maglev(mb, SL_MAGLEV_SIZE);
    if (ring.size() != SL_MAGLEV_SIZE) return Error{EINVAL, "Maglev table build failed"};
    std::iota(ring_keys.begin(), ring_keys.end(), vip.ring_id * SL_MAGLEV_SIZE);
    uint32_t count = SL_MAGLEV_SIZE;
    if (bpf_map_update_batch(fds_.maglev, ring_keys.data(), ring.data(), &count, nullptr) != 0)
      return sys_error("write Maglev ring of " + format_endpoint(key));

    sl_vip_meta meta{};
    meta.vip = key;
    meta.flags = 1;
    meta.nbackends = static_cast<uint32_t>(vc.backends.size());
    if (auto s = update(fds_.vip_meta, &vid, &meta, "vip_meta"); !s) return s;
    sl_addr_key ak{};
    ak.addr = vc.addr;
    ak.family = vc.family;
    uint32_t one = 1;
    if (auto s = update(fds_.vip_addrs, &ak, &one, "vip_addrs"); !s) return s;
    // Last: from here on packets to this VIP are load-balanced.
    if (auto s = update(fds_.vips, &key, &vip, "vips"); !s) return s;
    spdlog::info("VIP {} ({}, {}) with {} backends", format_endpoint(key), mode_name(vc.mode),
                 sched_name(vc.sched), vc.backends.size());
  }
  skel_->bss->sl_rev_nat_entries = rev_entries;
  skel_->bss->sl_rev_nat_wildcards = rev_wildcards;

  sl_info info{};
  info.abi_version = SL_ABI_VERSION;
  info.maglev_size = SL_MAGLEV_SIZE;
  info.max_vips = limits_.max_vips;
  info.max_backends = limits_.max_backends;
  info.generation = 1;
  uint32_t zero = 0;
  return update(fds_.info, &zero, &info, "info");
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
