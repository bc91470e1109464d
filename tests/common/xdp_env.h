// The program of the XDP packet tests, shared by xdp_lb_test (table-driven cases),
// xdp_owned_traffic_test, xdp_conntrack_test (TCP state sequences) and xdp_sched_test: the
// xdp_lb skeleton loaded with small maps into the FIB world (fib_world.h), and the map
// helpers that play the agent's part.
#pragma once

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <sluice/abi/abi.h>
#include <sluice/config/config.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "fib_world.h"
#include "netns.h"
#include "packet.h"
#include "xdp_lb.skel.h"

namespace sluice::test {

// ---------------------------------------------------------------------------------------------
// The world's hops

struct Hop {
  const char* smac;  // egress interface
  const char* dmac;  // neighbour
  Iface egress;
};

// Where the FIB sends each backend / client address in this world.
Hop hop_to(const std::string& addr);

Packet client_eth();
Packet router_eth();
// From the LB toward `addr`: the MACs of the egress interface and of the neighbour.
Packet hop_eth(const std::string& addr);

// ---------------------------------------------------------------------------------------------
// Setup descriptions

struct BackendSpec {
  uint32_t id;
  std::string addr;
  uint16_t port;  // host order; 0 = keep the client's port
  bool active = true;
  uint16_t weight = 1;  // round-robin and least-conn rings; source-hash tests ignore it
};

struct VipSpec {
  std::string addr;
  uint16_t port;  // host order; 0 = wildcard
  uint8_t proto;
  uint8_t mode;
  uint16_t flags;
  std::vector<BackendSpec> backends;
  // Ring filled with SL_BACKEND_NONE instead of the backends.
  bool empty_ring = false;
  // Source-hash: the test's ring of pick() (slot s = backends[s % n]). Round-robin and
  // least-conn: the agent's own ring (build_selection) over the active backends.
  uint8_t sched = SL_SCHED_SOURCE_HASH;
};

bool is_v6(const std::string& addr);
sl_addr to_sl_addr(const std::string& s);
uint8_t family_of(const std::string& s);
sl_endpoint endpoint(const std::string& addr, uint16_t port, uint8_t proto);

// The test's ring: slot s holds backends[s % n]. The Maglev builder is unit-tested elsewhere;
// what matters here is that the data path indexes the ring exactly as hash.h says.
const BackendSpec& pick(const VipSpec& v, const std::string& client, uint16_t sport);
// A backend of `v` other than `id`.
const BackendSpec& other_backend(const VipSpec& v, uint32_t id);

// The conntrack key of TCP flow client:sport -> vip:dport.
sl_flow_key flow_key(const std::string& client, const std::string& vip, uint16_t sport,
                     uint16_t dport);
std::string str(const sl_flow_key& k);

// ---------------------------------------------------------------------------------------------
// The environment: namespaces, skeleton, map helpers

using RunResult = XdpRun;

class Env {
 public:
  static constexpr uint32_t kMaxVips = 4;
  static constexpr uint32_t kMaxBackends = 16;
  // The conntrack table's max_entries: small, so that a case can fill it.
  static constexpr uint32_t kCtEntries = 1024;
  // The fragment table's max_entries, and the per-VIP budget of first fragments the loader
  // sets for it (an eighth, as SL_FRAG_VIP_BUDGET is of SL_FRAG_ENTRIES).
  static constexpr uint32_t kFragEntries = 256;
  static constexpr uint32_t kFragBudget = kFragEntries / 8;

  // Builds the world and loads the program; on failure returns nullptr with *why set.
  static std::unique_ptr<Env> Create(std::string* why);
  ~Env();
  Env(const Env&) = delete;
  Env& operator=(const Env&) = delete;

  xdp_lb_bpf* skel() { return skel_; }
  int fd(bpf_map* m) { return bpf_map__fd(m); }
  unsigned ifindex_of(Iface i) const { return world_->ifindex(i); }

  // Removes every VIP, backend, flow, fragment, fragment budget and VLAN membership, zeroes
  // the live connection counts and the conntrack counters and drops unread conntrack events,
  // so cases cannot see each other's state.
  void reset();
  // Zeroes the verdict, pass, drop and traffic counters.
  void zero_counters();

  // What the agent writes for one VIP (see abi.h): vip_table[vip_id], vips[endpoint] = vip_id,
  // the direct-mapped vip_index slot (vip_id + 1, or COLLISION when another VIP holds it),
  // vip_addrs + the destination pre-filter bit, backends, the ring, and for NAT the reverse
  // entries, the backends' source pre-filter bits and the .bss count of port-0 backends.
  void add_vip(const VipSpec& v, uint32_t vip_id);
  // The agent's atomic switch: write the standby ring, then flip ring_id in the VIP entry.
  void switch_ring(uint32_t vip_id, uint32_t backend_id);
  // The same switch to a ring of exactly `slots` (the rest SL_BACKEND_NONE), e.g. a
  // round-robin or least-conn ring from build_selection().
  void publish_ring(uint32_t vip_id, const std::vector<uint32_t>& slots);
  // What the agent writes for an interface that lists `vid` in its vlans: the ingress
  // interface carries frames whose outer tag is `vid`.
  void add_vlan(Iface i, uint16_t vid);
  // The agent's coarse clock (CLOCK_MONOTONIC ns in .bss), which the data path reads instead
  // of calling bpf_ktime_get_coarse_ns().

  RunResult run(const Bytes& frame, Iface ingress);

  // Fills the conntrack table to exactly kCtEntries with filler flows (10.255.x.y:n ->
  // 192.0.2.1:80, no VIP's; ESTABLISHED, not live, so they hold no backend count) and checks
  // that one more insert is refused with E2BIG. Returns how many fillers it added.
  uint32_t fill_conntrack();
  // Deletes `n` filler flows again (room for n new entries).
  void unfill_conntrack(uint32_t n);
  uint32_t conntrack_count();
  // Flow `k` in either table: `conntrack` (confirmed) or `ct_pending`; *pending says which.
  bool ct_lookup(const sl_flow_key& k, sl_ct_entry* e, bool* pending = nullptr);
  // Publishes conntrack timeouts in `info`, as the agent does: the data path expires by them.
  void set_ct_timeouts(const ConntrackTimeouts& t);
  // Publishes the budget of one-sided flows in `conntrack` in `info`, as the agent does (0:
  // none, the state reset() leaves).
  void set_one_sided_max(uint32_t n);
  // ct_one_sided: how many entries of `conntrack` one-sided flows hold, as the data path counts.
  uint64_t one_sided_count();
  // Moves flow `k`'s last_seen_ns `seconds` into the past, in whichever table holds it.
  void age_flow(const sl_flow_key& k, uint64_t seconds);
  // Every entry of both tables.
  std::vector<std::pair<sl_flow_key, sl_ct_entry>> ct_all();

  // Conntrack events the data path has written since the last call, in ring order.
  std::vector<sl_ct_event> take_ct_events();
  // backend_conns[id], read through the mmapped array as the agent and sluicectl would.
  uint64_t backend_conns(uint32_t id) const;
  // ct_stats[stat] and ct_transitions[SL_CT_TRANSITION(from, to)], summed over the CPUs.
  uint64_t ct_stat(uint32_t stat) { return percpu_sum<uint64_t>(skel_->maps.ct_stats, stat); }
  // Packets dropped for `reason`, summed over the CPUs.
  uint64_t drops(uint32_t reason) {
    return percpu_sum<sl_counter>(skel_->maps.drops, reason).packets;
  }
  uint64_t ct_transitions(uint8_t from, uint8_t to) {
    return percpu_sum<uint64_t>(skel_->maps.ct_transitions, SL_CT_TRANSITION(from, to));
  }

  template <class V>
  V percpu_sum(bpf_map* m, uint32_t key) {
    static_assert(sizeof(V) % 8 == 0, "per-CPU values are 8-byte aligned");
    std::vector<V> vals(static_cast<size_t>(libbpf_num_possible_cpus()));
    V sum{};
    if (bpf_map_lookup_elem(fd(m), &key, vals.data()) != 0) {
      ADD_FAILURE() << "lookup in " << bpf_map__name(m) << "[" << key << "]: " << strerror(errno);
      return sum;
    }
    for (const V& v : vals) add_into(sum, v);
    return sum;
  }

  template <class K, class V>
  std::vector<std::pair<K, V>> dump(bpf_map* m) {
    std::vector<std::pair<K, V>> out;
    K key{}, next{};
    void* prev = nullptr;
    while (bpf_map_get_next_key(fd(m), prev, &next) == 0) {
      V v{};
      if (bpf_map_lookup_elem(fd(m), &next, &v) == 0) out.emplace_back(next, v);
      key = next;
      prev = &key;
    }
    return out;
  }

 private:
  Env() = default;

  static uint32_t ring_of(uint32_t vip_id) { return vip_id * SL_RINGS_PER_VIP; }

  std::string load();

  template <class K, class V>
  void update(bpf_map* m, const K& k, const V& v) {
    ASSERT_EQ(bpf_map_update_elem(fd(m), &k, &v, BPF_ANY), 0)
        << bpf_map__name(m) << ": " << strerror(errno);
  }

  void set_filter_bit(uint32_t kind, const sl_addr& addr);

  template <class V>
  void fill_array(bpf_map* m, uint32_t n, const V& v) {
    std::vector<uint32_t> keys(n);
    std::vector<V> vals(n, v);
    for (uint32_t i = 0; i < n; i++) keys[i] = i;
    uint32_t count = n;
    bpf_map_batch_opts opts{};
    opts.sz = sizeof(opts);
    ASSERT_EQ(bpf_map_update_batch(fd(m), keys.data(), vals.data(), &count, &opts), 0)
        << bpf_map__name(m) << ": " << strerror(errno);
  }

  template <class K>
  void clear_hash(int map_fd) {
    std::vector<K> keys;
    K key{}, next{};
    void* prev = nullptr;
    while (bpf_map_get_next_key(map_fd, prev, &next) == 0) {
      keys.push_back(next);
      key = next;
      prev = &key;
    }
    for (const K& k : keys) bpf_map_delete_elem(map_fd, &k);
  }

  template <class V>
  void zero_percpu(int map_fd, uint32_t n) {
    std::vector<V> zeros(static_cast<size_t>(libbpf_num_possible_cpus()));
    for (uint32_t i = 0; i < n; i++) {
      ASSERT_EQ(bpf_map_update_elem(map_fd, &i, zeros.data(), BPF_ANY), 0) << strerror(errno);
    }
  }

  // Ring `ring` <- pattern repeated over all SL_MAGLEV_SIZE slots, in one batch syscall; with
  // `repeat` false, the pattern once and SL_BACKEND_NONE after it.
  void fill_ring(uint32_t ring, const std::vector<uint32_t>& pattern, bool repeat = true);

  static void add_into(uint64_t& a, const uint64_t& b) { a += b; }
  static void add_into(sl_counter& a, const sl_counter& b) {
    a.packets += b.packets;
    a.bytes += b.bytes;
  }
  static void add_into(sl_traffic& a, const sl_traffic& b) {
    a.packets += b.packets;
    a.bytes += b.bytes;
    a.new_flows += b.new_flows;
  }

  std::unique_ptr<FibWorld> world_;
  xdp_lb_bpf* skel_ = nullptr;
  ring_buffer* ct_events_ = nullptr;
  std::vector<sl_ct_event> pending_events_;
  // backend_conns, mmapped read-only (BPF_F_MMAPABLE).
  void* conns_map_ = nullptr;
  size_t conns_map_len_ = 0;
};

// Suite fixture shared by the table-driven packet tests: one Env per test binary (created
// lazily, skipped with the reason when the host cannot run BPF), reset before every case.
template <class Param>
class EnvSuite : public ::testing::TestWithParam<Param> {
 public:
  static void SetUpTestSuite() {
    if (auto why = skip_reason()) {
      skip_ = *why;
      return;
    }
    env_ = Env::Create(&setup_error_).release();
  }
  static void TearDownTestSuite() {
    delete env_;
    env_ = nullptr;
  }

 protected:
  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    ASSERT_NE(env_, nullptr) << setup_error_;
    env_->reset();
  }

  static inline Env* env_ = nullptr;
  static inline std::string skip_;
  static inline std::string setup_error_;
};

}  // namespace sluice::test
