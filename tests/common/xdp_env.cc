// The world and the program of the XDP packet tests: see xdp_env.h.
#include "xdp_env.h"

#include <arpa/inet.h>
#include <sluice/abi/hash.h>
#include <sluice/apply/sched.h>
#include <sluice/conntrack/conntrack.h>
#include <sys/mman.h>

#include <algorithm>
#include <ctime>
#include <sstream>
#include <stdexcept>

namespace sluice::test {

// Where the FIB sends each backend / client address in this world.
Hop hop_to(const std::string& addr) {
  if (addr == kBe1v4 || addr == kBe1v6) return {kTb1Mac, kB1Mac, Iface::kTb1};
  if (addr == kBe2v4 || addr == kBe2v6) return {kTb2Mac, kB2Mac, Iface::kTb2};
  if (addr == kBeTin4) return {kTinMac, kTinNbMac, Iface::kTin};
  if (addr == kClient4 || addr == kClient6) return {kTinMac, kClientMac, Iface::kTin};
  if (addr.rfind("10.", 0) == 0) return {kTinMac, kClientMac, Iface::kTin};  // via 198.18.0.2
  // fd00:99::/64 is routed via fd00:18::2.
  if (addr.rfind("fd00:99:", 0) == 0) return {kTinMac, kClientMac, Iface::kTin};
  ADD_FAILURE() << "no hop for " << addr;
  return {kTinMac, kClientMac, Iface::kTin};
}

Packet client_eth() { return Packet().eth(kClientMac, kTinMac); }
Packet router_eth() { return Packet().eth(kRouterMac, kTinMac); }
Packet hop_eth(const std::string& addr) {
  Hop h = hop_to(addr);
  return Packet().eth(h.smac, h.dmac);
}
bool is_v6(const std::string& addr) { return addr.find(':') != std::string::npos; }

sl_addr to_sl_addr(const std::string& s) {
  sl_addr a{};
  Bytes b = parse_ip(s);
  std::memcpy(a.w, b.data(), b.size());  // IPv4 in w[0], network order
  return a;
}

uint8_t family_of(const std::string& s) { return is_v6(s) ? SL_AF_INET6 : SL_AF_INET; }

sl_endpoint endpoint(const std::string& addr, uint16_t port, uint8_t proto) {
  sl_endpoint e{};
  e.addr = to_sl_addr(addr);
  e.port = htons(port);
  e.proto = proto;
  e.family = family_of(addr);
  return e;
}

const BackendSpec& pick(const VipSpec& v, const std::string& client, uint16_t sport) {
  sl_addr a = to_sl_addr(client);
  uint32_t h = sl_source_hash(&a, (v.flags & SL_VIP_F_HASH_SPORT) ? htons(sport) : 0);
  return v.backends[sl_maglev_slot(h) % v.backends.size()];
}

const BackendSpec& other_backend(const VipSpec& v, uint32_t id) {
  for (const auto& b : v.backends) {
    if (b.id != id) return b;
  }
  ADD_FAILURE() << "VIP has a single backend";
  return v.backends[0];
}

sl_flow_key flow_key(const std::string& client, const std::string& vip, uint16_t sport,
                     uint16_t dport) {
  sl_flow_key k{};
  k.src = to_sl_addr(client);
  k.dst = to_sl_addr(vip);
  k.sport = htons(sport);
  k.dport = htons(dport);
  k.proto = IPPROTO_TCP;
  k.family = family_of(client);
  return k;
}

std::string str(const sl_flow_key& k) {
  char a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN];
  int af = k.family == SL_AF_INET6 ? AF_INET6 : AF_INET;
  inet_ntop(af, k.src.w, a, sizeof(a));
  inet_ntop(af, k.dst.w, b, sizeof(b));
  std::ostringstream os;
  os << a << ":" << ntohs(k.sport) << " > " << b << ":" << ntohs(k.dport) << " proto "
     << int{k.proto} << " family " << int{k.family};
  return os.str();
}

// ---------------------------------------------------------------------------------------------
// Env

std::unique_ptr<Env> Env::Create(std::string* why) {
  auto env = std::unique_ptr<Env>(new Env());
  try {
    env->world_ = std::make_unique<FibWorld>("xdplb");
  } catch (const std::exception& e) {
    *why = std::string("building the test namespaces failed: ") + e.what();
    return nullptr;
  }
  if (std::string err = env->load(); !err.empty()) {
    *why = err;
    return nullptr;
  }
  return env;
}

Env::~Env() {
  if (ct_events_) ring_buffer__free(ct_events_);
  if (conns_map_) munmap(conns_map_, conns_map_len_);
  // The program first (it holds the devmap), then the namespaces and their veths.
  if (skel_) xdp_lb_bpf__destroy(skel_);
}

void Env::reset() {
  clear_hash<sl_endpoint>(fd(skel_->maps.vips));
  clear_hash<sl_addr_key>(fd(skel_->maps.vip_addrs));
  clear_hash<sl_endpoint>(fd(skel_->maps.rev_nat));
  clear_hash<sl_flow_key>(fd(skel_->maps.conntrack));
  clear_hash<sl_flow_key>(fd(skel_->maps.ct_pending));
  // No timeouts published: the data path expires nothing unless a case asks for it.
  {
    sl_info none{};
    uint32_t zero = 0;
    bpf_map_update_elem(fd(skel_->maps.info), &zero, &none, BPF_ANY);
  }
  clear_hash<sl_frag_key>(fd(skel_->maps.frags));
  clear_hash<sl_vlan_key>(fd(skel_->maps.vlan_members));
  fill_array(skel_->maps.frag_budget, kMaxVips, sl_frag_budget{});
  sl_vip_entry unused{};
  for (uint32_t i = 0; i < kMaxVips; i++) update(skel_->maps.vip_table, i, unused);
  fill_array(skel_->maps.vip_index, 1u << SL_VIP_INDEX_BITS, uint32_t{0});
  sl_backend be{};
  for (uint32_t i = 0; i < kMaxBackends; i++) update(skel_->maps.backends, i, be);
  skel_->bss->sl_rev_nat_wildcards = 0;
  skel_->bss->sl_ct_established_ns = 0;
  fill_array(skel_->maps.addr_filter, SL_FILTER_KINDS * SL_ADDR_FILTER_WORDS, uint64_t{0});
  // Cached next hops are keyed by backend id, and ids are reused across cases.
  zero_percpu<sl_nexthop>(fd(skel_->maps.nh_cache), kMaxBackends);
  // Conntrack's own state: live counts, transition and event counters, unread events.
  fill_array(skel_->maps.backend_conns, kMaxBackends, uint64_t{0});
  fill_array(skel_->maps.ct_one_sided, 1, uint64_t{0});
  zero_percpu<uint64_t>(fd(skel_->maps.ct_transitions), SL_CT_TRANSITIONS);
  zero_percpu<uint64_t>(fd(skel_->maps.ct_stats), SL_CT_STAT_MAX);
  fill_array(skel_->maps.rr_counters, kMaxVips, uint64_t{0});
  take_ct_events();
  zero_counters();
}

void Env::add_vlan(Iface i, uint16_t vid) {
  sl_vlan_key k{};
  k.ifindex = ifindex_of(i);
  k.vid = vid;
  update(skel_->maps.vlan_members, k, uint32_t{1});
}

void Env::zero_counters() {
  zero_percpu<sl_counter>(fd(skel_->maps.verdicts), SL_VERDICT_MAX);
  zero_percpu<sl_counter>(fd(skel_->maps.passes), SL_PASS_MAX);
  zero_percpu<sl_counter>(fd(skel_->maps.drops), SL_DROP_MAX);
  zero_percpu<sl_traffic>(fd(skel_->maps.vip_stats), kMaxVips);
  zero_percpu<sl_traffic>(fd(skel_->maps.backend_stats), kMaxBackends);
}

void Env::add_vip(const VipSpec& v, uint32_t vip_id) {
  sl_endpoint key = endpoint(v.addr, v.port, v.proto);
  sl_vip_entry e{};
  e.vip.vip_id = vip_id;
  e.vip.ring_id = ring_of(vip_id);
  e.vip.mode = v.mode;
  e.vip.sched = v.sched;
  e.vip.flags = v.flags;
  e.ep = key;
  e.nbackends = static_cast<uint32_t>(v.backends.size());
  update(skel_->maps.vip_table, vip_id, e);
  update(skel_->maps.vips, key, vip_id);
  const uint32_t slot = sl_vip_index_slot(&key.addr, key.port, key.proto);
  uint32_t idx = 0;
  ASSERT_EQ(bpf_map_lookup_elem(fd(skel_->maps.vip_index), &slot, &idx), 0);
  update(skel_->maps.vip_index, slot, idx ? SL_VIP_INDEX_COLLISION : vip_id + 1);
  sl_addr_key ak{};
  ak.addr = key.addr;
  ak.family = key.family;
  update(skel_->maps.vip_addrs, ak, uint32_t{1});
  set_filter_bit(SL_FILTER_VIP_DST, key.addr);
  std::vector<uint32_t> ids;
  for (const BackendSpec& b : v.backends) {
    sl_backend be{};
    be.ep = endpoint(b.addr, b.port, v.proto);
    be.vip_id = vip_id;
    be.weight = b.weight;
    be.flags = b.active ? SL_BACKEND_F_ACTIVE : 0;
    update(skel_->maps.backends, b.id, be);
    ids.push_back(b.id);
    if (v.mode == SL_MODE_NAT) {
      sl_rev_nat rn{};
      rn.vip = key;
      rn.vip_id = vip_id;
      rn.backend_id = b.id;
      update(skel_->maps.rev_nat, be.ep, rn);
      set_filter_bit(SL_FILTER_NAT_BACKEND_SRC, be.ep.addr);
      if (b.port == 0) skel_->bss->sl_rev_nat_wildcards++;
    }
  }
  if (v.sched != SL_SCHED_SOURCE_HASH) {
    std::vector<MaglevBackend> usable;
    for (const BackendSpec& b : v.backends) {
      if (b.active && !v.empty_ring) usable.push_back({b.id, b.weight, b.addr});
    }
    auto ring = build_selection(v.sched, usable, SL_MAGLEV_SIZE);
    ASSERT_TRUE(ring) << ring.error().to_string();
    fill_ring(e.vip.ring_id, *ring, false);
    return;
  }
  fill_ring(e.vip.ring_id, v.empty_ring ? std::vector<uint32_t>{SL_BACKEND_NONE} : ids);
}

void Env::switch_ring(uint32_t vip_id, uint32_t backend_id) {
  sl_vip_entry e{};
  ASSERT_EQ(bpf_map_lookup_elem(fd(skel_->maps.vip_table), &vip_id, &e), 0);
  const uint32_t active = ring_of(vip_id);
  const uint32_t standby = e.vip.ring_id == active ? active + 1 : active;
  fill_ring(standby, {backend_id});
  e.vip.ring_id = standby;
  update(skel_->maps.vip_table, vip_id, e);
}

void Env::publish_ring(uint32_t vip_id, const std::vector<uint32_t>& slots) {
  sl_vip_entry e{};
  ASSERT_EQ(bpf_map_lookup_elem(fd(skel_->maps.vip_table), &vip_id, &e), 0);
  const uint32_t active = ring_of(vip_id);
  const uint32_t standby = e.vip.ring_id == active ? active + 1 : active;
  fill_ring(standby, slots, false);
  e.vip.ring_id = standby;
  update(skel_->maps.vip_table, vip_id, e);
}

RunResult Env::run(const Bytes& frame, Iface ingress) {
  return world_->run(bpf_program__fd(skel_->progs.xdp_lb), frame, ingress);
}

std::string Env::load() {
  skel_ = xdp_lb_bpf__open();
  if (!skel_) return std::string("xdp_lb_bpf__open: ") + strerror(errno);
  // Small maps: fast to load and to reset. Two rings per VIP (active + standby).
  struct {
    bpf_map* map;
    uint32_t n;
  } sizes[] = {
      {skel_->maps.maglev, SL_RINGS_PER_VIP * kMaxVips * SL_MAGLEV_SIZE},
      {skel_->maps.vips, 2 * kMaxVips},
      {skel_->maps.vip_addrs, kMaxVips},
      {skel_->maps.vip_table, kMaxVips},
      {skel_->maps.vip_stats, kMaxVips},
      {skel_->maps.backends, kMaxBackends},
      {skel_->maps.backend_stats, kMaxBackends},
      {skel_->maps.backend_conns, kMaxBackends},
      {skel_->maps.nh_cache, kMaxBackends},
      {skel_->maps.rev_nat, kMaxBackends},
      {skel_->maps.rr_counters, kMaxVips},
      {skel_->maps.conntrack, kCtEntries},
      {skel_->maps.ct_pending, kCtEntries},
      {skel_->maps.frags, kFragEntries},
      {skel_->maps.frag_budget, kMaxVips},
  };
  for (auto& s : sizes) {
    if (int err = bpf_map__set_max_entries(s.map, s.n)) {
      return std::string("set_max_entries(") + bpf_map__name(s.map) + "): " + strerror(-err);
    }
  }
  // The agent's proportion (abi.h, SL_FRAG_VIP_BUDGET) for the smaller table.
  skel_->rodata->sl_frag_vip_budget = kFragBudget;
  if (int err = xdp_lb_bpf__load(skel_)) {
    return std::string("xdp_lb_bpf__load: ") + strerror(-err);
  }
  ct_events_ = ring_buffer__new(
      fd(skel_->maps.ct_events),
      [](void* ctx, void* data, size_t size) {
        auto* out = static_cast<std::vector<sl_ct_event>*>(ctx);
        if (size < sizeof(sl_ct_event)) return -EINVAL;
        sl_ct_event ev;
        std::memcpy(&ev, data, sizeof(ev));
        out->push_back(ev);
        return 0;
      },
      &pending_events_, nullptr);
  if (!ct_events_) return std::string("ring_buffer__new(ct_events): ") + strerror(errno);
  conns_map_len_ = kMaxBackends * sizeof(uint64_t);
  conns_map_ =
      mmap(nullptr, conns_map_len_, PROT_READ, MAP_SHARED, fd(skel_->maps.backend_conns), 0);
  if (conns_map_ == MAP_FAILED) {
    conns_map_ = nullptr;
    return std::string("mmap(backend_conns): ") + strerror(errno);
  }
  // A devmap entry resolves its ifindex in the updater's namespace: update from inside.
  std::string err;
  world_->lb().in([&] {
    for (Iface i : {Iface::kTin, Iface::kTb1, Iface::kTb2}) {
      const unsigned idx = ifindex_of(i);
      uint32_t k = idx, v = idx;
      if (bpf_map_update_elem(fd(skel_->maps.tx_ports), &k, &v, BPF_ANY) != 0) {
        err = "tx_ports update for ifindex " + std::to_string(idx) + ": " + strerror(errno);
      }
    }
  });
  return err;
}

void Env::set_filter_bit(uint32_t kind, const sl_addr& addr) {
  const uint32_t slot = sl_addr_filter_slot(&addr);
  const uint32_t key = kind * SL_ADDR_FILTER_WORDS + (slot >> 6);
  uint64_t word = 0;
  ASSERT_EQ(bpf_map_lookup_elem(fd(skel_->maps.addr_filter), &key, &word), 0);
  word |= 1ull << (slot & 63);
  update(skel_->maps.addr_filter, key, word);
}

void Env::fill_ring(uint32_t ring, const std::vector<uint32_t>& pattern, bool repeat) {
  ASSERT_LE(pattern.size(), size_t{SL_MAGLEV_SIZE});
  std::vector<uint32_t> keys(SL_MAGLEV_SIZE), vals(SL_MAGLEV_SIZE);
  for (uint32_t s = 0; s < SL_MAGLEV_SIZE; s++) {
    keys[s] = ring * SL_MAGLEV_SIZE + s;
    if (repeat) {
      vals[s] = pattern[s % pattern.size()];
    } else {
      vals[s] = s < pattern.size() ? pattern[s] : SL_BACKEND_NONE;
    }
  }
  uint32_t count = SL_MAGLEV_SIZE;
  bpf_map_batch_opts opts{};
  opts.sz = sizeof(opts);
  ASSERT_EQ(bpf_map_update_batch(fd(skel_->maps.maglev), keys.data(), vals.data(), &count, &opts),
            0)
      << strerror(errno);
  ASSERT_EQ(count, SL_MAGLEV_SIZE);
}

namespace {

sl_flow_key filler_flow(uint32_t i) {
  sl_flow_key k{};
  k.src.w[0] = htonl(0x0aff0000u | (i >> 8));  // 10.255.x.y
  k.dst.w[0] = htonl(0xc0000201u);             // 192.0.2.1: no VIP's
  k.sport = htons(static_cast<uint16_t>(1024 + (i & 0xff)));
  k.dport = htons(80);
  k.proto = IPPROTO_TCP;
  k.family = SL_AF_INET;
  return k;
}

}  // namespace

uint32_t Env::conntrack_count() {
  return static_cast<uint32_t>(dump<sl_flow_key, sl_ct_entry>(skel_->maps.conntrack).size());
}

bool Env::ct_lookup(const sl_flow_key& k, sl_ct_entry* e, bool* pending) {
  if (pending) *pending = false;
  if (bpf_map_lookup_elem(fd(skel_->maps.conntrack), &k, e) == 0) return true;
  if (pending) *pending = true;
  return bpf_map_lookup_elem(fd(skel_->maps.ct_pending), &k, e) == 0;
}

void Env::set_ct_timeouts(const ConntrackTimeouts& t) {
  sl_info info{};
  uint32_t zero = 0;
  bpf_map_lookup_elem(fd(skel_->maps.info), &zero, &info);
  const auto table = t.table();
  std::copy(table.begin(), table.end(), info.ct_timeout_s);
  skel_->bss->sl_ct_established_ns = uint64_t{t.established} * 1000000000ull;
  ASSERT_EQ(bpf_map_update_elem(fd(skel_->maps.info), &zero, &info, BPF_ANY), 0);
}

void Env::set_one_sided_max(uint32_t n) {
  sl_info info{};
  uint32_t zero = 0;
  bpf_map_lookup_elem(fd(skel_->maps.info), &zero, &info);
  info.ct_one_sided_max = n;
  ASSERT_EQ(bpf_map_update_elem(fd(skel_->maps.info), &zero, &info, BPF_ANY), 0);
}

uint64_t Env::one_sided_count() {
  uint64_t n = 0;
  uint32_t zero = 0;
  EXPECT_EQ(bpf_map_lookup_elem(fd(skel_->maps.ct_one_sided), &zero, &n), 0) << strerror(errno);
  return n;
}

void Env::age_flow(const sl_flow_key& k, uint64_t seconds) {
  for (bpf_map* m : {skel_->maps.conntrack, skel_->maps.ct_pending}) {
    sl_ct_entry e{};
    if (bpf_map_lookup_elem(fd(m), &k, &e) != 0) continue;
    e.last_seen_ns -= seconds * 1000000000ull;
    ASSERT_EQ(bpf_map_update_elem(fd(m), &k, &e, BPF_EXIST), 0);
    return;
  }
  ADD_FAILURE() << "age_flow: no entry for " << str(k);
}

std::vector<std::pair<sl_flow_key, sl_ct_entry>> Env::ct_all() {
  auto all = dump<sl_flow_key, sl_ct_entry>(skel_->maps.conntrack);
  for (auto& kv : dump<sl_flow_key, sl_ct_entry>(skel_->maps.ct_pending)) all.push_back(kv);
  return all;
}

uint32_t Env::fill_conntrack() {
  const uint32_t have = conntrack_count();
  std::vector<sl_flow_key> keys;
  std::vector<sl_ct_entry> vals;
  for (uint32_t i = 0; have + keys.size() < kCtEntries; i++) {
    sl_flow_key k = filler_flow(i);
    sl_ct_entry v{};
    if (bpf_map_lookup_elem(fd(skel_->maps.conntrack), &k, &v) == 0) continue;
    v.state = SL_TCP_ESTABLISHED;
    v.backend_id = kMaxBackends - 1;
    v.first_seen_ns = v.last_seen_ns = sluice::monotonic_ns();
    keys.push_back(k);
    vals.push_back(v);
  }
  uint32_t count = static_cast<uint32_t>(keys.size());
  if (count > 0) {
    bpf_map_batch_opts opts{};
    opts.sz = sizeof(opts);
    EXPECT_EQ(
        bpf_map_update_batch(fd(skel_->maps.conntrack), keys.data(), vals.data(), &count, &opts), 0)
        << "filling conntrack: " << strerror(errno);
  }
  EXPECT_EQ(conntrack_count(), kCtEntries);
  // Full: the kernel refuses one more (a preallocated hash has no free element left).
  sl_flow_key extra = filler_flow(kCtEntries + 1);
  sl_ct_entry v{};
  EXPECT_NE(bpf_map_update_elem(fd(skel_->maps.conntrack), &extra, &v, BPF_NOEXIST), 0);
  EXPECT_EQ(errno, E2BIG) << strerror(errno);
  return count;
}

void Env::unfill_conntrack(uint32_t n) {
  for (uint32_t i = 0; n > 0 && i < 2 * kCtEntries; i++) {
    sl_flow_key k = filler_flow(i);
    if (bpf_map_delete_elem(fd(skel_->maps.conntrack), &k) == 0) n--;
  }
  EXPECT_EQ(n, 0u) << "filler flows left to delete";
}

std::vector<sl_ct_event> Env::take_ct_events() {
  pending_events_.clear();
  const int n = ring_buffer__consume(ct_events_);
  EXPECT_GE(n, 0) << "ring_buffer__consume(ct_events): " << strerror(-n);
  return std::move(pending_events_);
}

uint64_t Env::backend_conns(uint32_t id) const {
  // The agent's view: a plain load from the shared mapping, no syscall.
  return __atomic_load_n(static_cast<const uint64_t*>(conns_map_) + id, __ATOMIC_RELAXED);
}

}  // namespace sluice::test
