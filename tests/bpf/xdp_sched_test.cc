// Round-robin and least-conn VIPs through xdp_lb (BPF_PROG_TEST_RUN): crafted SYNs and
// midstream segments go through the real program, with the rings written by the agent's own
// builder (build_selection, agent/apply/sched.cc), and the test reads where each flow went from its
// conntrack entry and the per-backend counters. Every case runs for IPv4 and IPv6. The world
// (namespaces, addresses) is the one of xdp_lb_test: xdp_env.h.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sched.h>
#include <sluice/abi/abi.h>
#include <sluice/abi/hash.h>
#include <sluice/apply/sched.h>

#include <map>
#include <string>
#include <thread>
#include <vector>

#include "packet.h"
#include "param_name.h"
#include "xdp_env.h"

namespace sluice::test {
namespace {

constexpr uint8_t kS = tcpf::kSyn, kA = tcpf::kAck, kR = tcpf::kRst;

struct Family {
  const char* name;
  const char* client;
  const char* vip;
  const char* be1;  // two backend hosts; a third backend is be1 on another port
  const char* be2;
};

void PrintTo(const Family& f, std::ostream* os) { *os << f.name; }

class SchedTest : public EnvSuite<Family> {
 protected:
  const Family& fam() const { return GetParam(); }

  // A TCP nat VIP on port 80 with backends 1 (be1:8080), 2 (be2:8080), 3 (be1:8081).
  VipSpec vip(uint8_t sched, uint16_t w1, uint16_t w2, uint16_t w3) const {
    VipSpec v{fam().vip,
              80,
              IPPROTO_TCP,
              SL_MODE_NAT,
              0,
              {{1, fam().be1, 8080, true, w1},
               {2, fam().be2, 8080, true, w2},
               {3, fam().be1, 8081, true, w3}}};
    v.sched = sched;
    return v;
  }

  Packet seg(uint16_t sport, uint8_t flags, uint32_t seq = 1000, uint32_t ack = 0) const {
    Packet p = is_v6(fam().client) ? client_eth().ipv6(fam().client, fam().vip)
                                   : client_eth().ipv4(fam().client, fam().vip);
    return p.tcp(sport, 80, flags, seq, ack);
  }

  sl_flow_key key(uint16_t sport) const { return flow_key(fam().client, fam().vip, sport, 80); }

  // Sends `p` and returns the verdict.
  uint32_t send(const Packet& p) {
    RunResult r = env_->run(p.build(), Iface::kTin);
    EXPECT_EQ(r.err, 0) << strerror(-r.err);
    return r.retval;
  }

  // A connection from client port `sport` (client ISN `isn`, backend ISN 5000): the SYN, the
  // chosen backend's SYN+ACK, the client's ACK, which confirms the flow: it counts in
  // backend_conns from then on. Returns the backend its conntrack entry holds.
  uint32_t connect(uint16_t sport, uint32_t isn = 1000) {
    EXPECT_EQ(send(seg(sport, kS, isn)), uint32_t{XDP_REDIRECT}) << "SYN from port " << sport;
    const uint32_t id = backend_of(sport);
    if (id < 1 || id > 3) return id;
    const char* addr = id == 2 ? fam().be2 : fam().be1;
    const uint16_t port = id == 3 ? 8081 : 8080;
    Packet p = Packet().eth(hop_to(addr).dmac, hop_to(addr).smac);
    p = is_v6(fam().client) ? p.ipv6(addr, fam().client) : p.ipv4(addr, fam().client);
    env_->run(p.tcp(port, sport, kS | kA, 5000, isn + 1).build(), hop_to(addr).egress);
    EXPECT_EQ(send(seg(sport, kA, isn + 1, 5001)), uint32_t{XDP_REDIRECT});
    return backend_of(sport);
  }

  // The backend of the flow from `sport`; SL_BACKEND_NONE without an entry.
  uint32_t backend_of(uint16_t sport) {
    sl_flow_key k = key(sport);
    sl_ct_entry e{};
    if (!env_->ct_lookup(k, &e)) return SL_BACKEND_NONE;
    return e.backend_id;
  }

  uint64_t new_flows(uint32_t backend) {
    return env_->percpu_sum<sl_traffic>(env_->skel()->maps.backend_stats, backend).new_flows;
  }

  uint64_t rr_counter(uint32_t vip_id) {
    uint64_t v = 0;
    EXPECT_EQ(bpf_map_lookup_elem(env_->fd(env_->skel()->maps.rr_counters), &vip_id, &v), 0);
    return v;
  }

  void set_conns(uint32_t backend, uint64_t n) {
    ASSERT_EQ(
        bpf_map_update_elem(env_->fd(env_->skel()->maps.backend_conns), &backend, &n, BPF_ANY), 0);
  }

  // The agent's ring for `sched` over `backends` (its usable set), switched in.
  void publish(uint32_t vip_id, uint8_t sched, const std::vector<BackendSpec>& backends) {
    std::vector<MaglevBackend> mb;
    for (const BackendSpec& b : backends) mb.push_back({b.id, b.weight, b.addr});
    auto ring = build_selection(sched, mb, SL_MAGLEV_SIZE);
    ASSERT_TRUE(ring) << ring.error().to_string();
    env_->publish_ring(vip_id, *ring);
  }

  // The backend a packet that is not scheduled takes (abi.h): ring slot 1 + h % L.
  uint32_t hash_slot_backend(const std::vector<uint32_t>& ids, uint16_t sport) const {
    const sl_addr a = to_sl_addr(fam().client);
    const uint32_t slot =
        sl_sched_hash_slot(sl_source_hash(&a, htons(sport)), static_cast<uint32_t>(ids.size()));
    return ids[slot - 1];
  }
};

// Weights 1, 2, 3: 6k SYNs land exactly k, 2k, 3k; the first period follows the smooth
// sequence (3 2 1 3 2 3), and every window of 6 consecutive SYNs holds each backend exactly
// its weight times.
TEST_P(SchedTest, RoundRobinSpreadsExactlyByWeight) {
  env_->add_vip(vip(SL_SCHED_ROUND_ROBIN, 1, 2, 3), 0);
  constexpr int k = 50;
  std::vector<uint32_t> picks;
  for (int i = 0; i < 6 * k; i++) picks.push_back(connect(static_cast<uint16_t>(20000 + i)));
  EXPECT_EQ(std::vector<uint32_t>(picks.begin(), picks.begin() + 6),
            (std::vector<uint32_t>{3, 2, 1, 3, 2, 3}));
  for (int i = 0; i + 6 <= 6 * k; i++) {
    std::map<uint32_t, int> window;
    for (int j = i; j < i + 6; j++) window[picks[j]]++;
    ASSERT_EQ(window, (std::map<uint32_t, int>{{1, 1}, {2, 2}, {3, 3}})) << "SYNs " << i << "..";
  }
  EXPECT_EQ(new_flows(1), uint64_t{k});
  EXPECT_EQ(new_flows(2), uint64_t{2 * k});
  EXPECT_EQ(new_flows(3), uint64_t{3 * k});
  EXPECT_EQ(env_->backend_conns(1), uint64_t{k});
  EXPECT_EQ(env_->backend_conns(3), uint64_t{3 * k});
  EXPECT_EQ(rr_counter(0), uint64_t{6 * k});
}

// The counter is one shared atomic: SYNs from two CPUs at once still split exactly.
TEST_P(SchedTest, RoundRobinIsExactAcrossCpus) {
  if (std::thread::hardware_concurrency() < 2) GTEST_SKIP() << "needs two CPUs";
  env_->add_vip(vip(SL_SCHED_ROUND_ROBIN, 1, 2, 3), 0);
  // 960 = 160 periods of 6, within the test's conntrack table (Env::kCtEntries = 1024):
  // a full table refuses a round-robin SYN.
  constexpr int kPerCpu = 480;
  static_assert(2 * kPerCpu <= Env::kCtEntries);
  auto worker = [&](int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    for (int i = 0; i < kPerCpu; i++) {
      send(seg(static_cast<uint16_t>(30000 + cpu * kPerCpu + i), kS));
    }
  };
  std::thread a(worker, 0), b(worker, 1);
  a.join();
  b.join();
  EXPECT_EQ(new_flows(1), 160u);
  EXPECT_EQ(new_flows(2), 320u);
  EXPECT_EQ(new_flows(3), 480u);
  EXPECT_EQ(rr_counter(0), 960u);
}

// A ring switch takes a backend out at once: the next SYNs follow the new weights only.
TEST_P(SchedTest, RoundRobinBackendTakenDownGetsNoNewFlows) {
  const VipSpec v = vip(SL_SCHED_ROUND_ROBIN, 1, 2, 3);
  env_->add_vip(v, 0);
  for (int i = 0; i < 6; i++) connect(static_cast<uint16_t>(20000 + i));
  publish(0, SL_SCHED_ROUND_ROBIN, {v.backends[0], v.backends[1]});  // 3 down
  env_->zero_counters();
  for (int i = 0; i < 30; i++) EXPECT_NE(connect(static_cast<uint16_t>(21000 + i)), 3u);
  EXPECT_EQ(new_flows(1), 10u);
  EXPECT_EQ(new_flows(2), 20u);
  EXPECT_EQ(new_flows(3), 0u);
  // Its flows stay: a packet of one of them still reaches it.
  EXPECT_EQ(backend_of(20000), 3u);
  EXPECT_EQ(send(seg(20000, kA, 1001, 1)), uint32_t{XDP_REDIRECT});
  EXPECT_EQ(backend_of(20000), 3u);
}

// A new SYN (a higher ISN) on a tuple closed by RST is a new connection on the same backend:
// a CLOSED entry keeps its backend until it expires, so no slot of the sequence is taken.
TEST_P(SchedTest, RoundRobinReuseOfClosedKeepsTheBackend) {
  env_->add_vip(vip(SL_SCHED_ROUND_ROBIN, 1, 1, 1), 0);
  EXPECT_EQ(connect(40000), 1u);
  EXPECT_EQ(send(seg(40000, kR, 1001)), uint32_t{XDP_REDIRECT});  // -> CLOSED
  EXPECT_EQ(env_->backend_conns(1), 0u);
  EXPECT_EQ(connect(40000, 9000), 1u);
  EXPECT_EQ(env_->ct_stat(SL_CT_STAT_REUSED), 1u);
  EXPECT_EQ(rr_counter(0), 1u);
  // A SYN on the live flow is not a new connection: no slot taken, nothing moved.
  EXPECT_EQ(connect(40000, 9000), 1u);
  EXPECT_EQ(rr_counter(0), 1u);
  EXPECT_EQ(env_->backend_conns(1), 1u);
}

// backend_conns as conntrack keeps it: a backend holding many connections gets no new ones
// until the others catch up; the others share the connections evenly (each counts from its
// handshake's ACK).
TEST_P(SchedTest, LeastConnAvoidsTheLoadedBackend) {
  env_->add_vip(vip(SL_SCHED_LEAST_CONN, 1, 1, 1), 0);
  set_conns(1, 100);
  std::map<uint32_t, int> got;
  for (int i = 0; i < 40; i++) got[connect(static_cast<uint16_t>(20000 + i))]++;
  EXPECT_EQ(got, (std::map<uint32_t, int>{{2, 20}, {3, 20}}));
  EXPECT_EQ(env_->backend_conns(1), 100u);
  EXPECT_EQ(env_->backend_conns(2), 20u);
  EXPECT_EQ(env_->backend_conns(3), 20u);
  // Closing flows gives their counts back, and the freed backend is preferred again.
  for (int i = 0; i < 40; i++) {
    if (backend_of(static_cast<uint16_t>(20000 + i)) == 2)
      send(seg(static_cast<uint16_t>(20000 + i), kR, 1001));
  }
  EXPECT_EQ(env_->backend_conns(2), 0u);
  for (int i = 0; i < 10; i++) EXPECT_EQ(connect(static_cast<uint16_t>(21000 + i)), 2u);
}

// Weights 1 and 3 (backend 3 at weight 0 is not in the ring): the counts stay at 1 : 3, so 40
// SYNs from empty end at exactly 10 and 30; a preloaded backend is judged by conns / weight.
TEST_P(SchedTest, LeastConnHonoursWeights) {
  env_->add_vip(vip(SL_SCHED_LEAST_CONN, 1, 3, 0), 0);
  for (int i = 0; i < 40; i++) {
    const uint32_t be = connect(static_cast<uint16_t>(20000 + i));
    ASSERT_NE(be, 3u);
    // conns / weight never drift apart by more than one connection's worth.
    const double r1 = env_->backend_conns(1) / 1.0, r2 = env_->backend_conns(2) / 3.0;
    EXPECT_LE(std::abs(r1 - r2), 1.0) << "after SYN " << i;
  }
  EXPECT_EQ(env_->backend_conns(1), 10u);
  EXPECT_EQ(env_->backend_conns(2), 30u);
  // 10 : 30 is a tie; with 12 on the weight-3 backend (4 per weight) and 5 on the other, the
  // weight-3 one is less loaded, though it holds more connections.
  env_->reset();
  env_->add_vip(vip(SL_SCHED_LEAST_CONN, 1, 3, 0), 0);
  set_conns(1, 5);
  set_conns(2, 12);
  EXPECT_EQ(connect(30000), 2u);
  EXPECT_EQ(connect(30001), 2u);
  EXPECT_EQ(connect(30002), 2u);  // 14 / 3 < 5 / 1; after it, 15 / 3 == 5 / 1: a tie
  EXPECT_EQ(env_->backend_conns(2), 15u);
}

// Equal loads: the scan starts at the candidate the flow hash names (the ring's hash slot),
// and nothing beats it, so ties spread over the backends the way the hash does.
TEST_P(SchedTest, LeastConnTiesFollowTheFlowHash) {
  env_->add_vip(vip(SL_SCHED_LEAST_CONN, 1, 1, 1), 0);
  std::map<uint32_t, int> got;
  for (int i = 0; i < 60; i++) {
    const auto sport = static_cast<uint16_t>(20000 + i);
    const uint32_t be = connect(sport);
    EXPECT_EQ(be, hash_slot_backend({1, 2, 3}, sport)) << "port " << sport;
    got[be]++;
    send(seg(sport, kR, 1001));  // closed: the counts are equal again for the next SYN
  }
  for (uint32_t id : {1u, 2u, 3u}) {
    EXPECT_GE(got[id], 10) << "backend " << id;
    EXPECT_LE(got[id], 30) << "backend " << id;
  }
}

// A ring switch takes a backend out: no new flows even though it is the least loaded.
TEST_P(SchedTest, LeastConnBackendTakenDownGetsNoNewFlows) {
  const VipSpec v = vip(SL_SCHED_LEAST_CONN, 1, 1, 1);
  env_->add_vip(v, 0);
  set_conns(1, 50);
  set_conns(3, 50);
  EXPECT_EQ(connect(20000), 2u);
  publish(0, SL_SCHED_LEAST_CONN, {v.backends[0], v.backends[2]});  // 2 down
  for (int i = 0; i < 20; i++) EXPECT_NE(connect(static_cast<uint16_t>(20001 + i)), 2u);
  EXPECT_EQ(env_->backend_conns(2), 1u);
  EXPECT_EQ(env_->backend_conns(1) + env_->backend_conns(3), 120u);
  publish(0, SL_SCHED_LEAST_CONN, v.backends);  // back up, far below the others
  EXPECT_EQ(connect(21000), 2u);
}

// No usable backend (L = 0): SYNs and midstream packets are dropped as no_backend, and
// nothing is created or counted.
TEST_P(SchedTest, NoUsableBackendDrops) {
  for (uint8_t sched : {SL_SCHED_ROUND_ROBIN, SL_SCHED_LEAST_CONN}) {
    SCOPED_TRACE(sched == SL_SCHED_ROUND_ROBIN ? "round-robin" : "least-conn");
    env_->reset();
    env_->add_vip(vip(sched, 1, 1, 1), 0);
    publish(0, sched, {});
    EXPECT_EQ(send(seg(20000, kS)), uint32_t{XDP_DROP});
    EXPECT_EQ(send(seg(20001, kA, 1001, 1)), uint32_t{XDP_DROP});
    EXPECT_EQ(env_->percpu_sum<sl_counter>(env_->skel()->maps.drops, SL_DROP_NO_BACKEND).packets,
              2u);
    EXPECT_EQ(backend_of(20000), SL_BACKEND_NONE);
    EXPECT_EQ(backend_of(20001), SL_BACKEND_NONE);
    for (uint32_t id : {1u, 2u, 3u}) EXPECT_EQ(env_->backend_conns(id), 0u);
  }
}

// A non-SYN packet with no entry (an evicted flow, a flow from another LB host) is not
// scheduled: it takes the hash slot (1 + hash % L), whatever the counter or the loads say, so
// every such packet of the flow lands on the same backend while the set is unchanged.
TEST_P(SchedTest, MidstreamMissIsConsistent) {
  for (uint8_t sched : {SL_SCHED_ROUND_ROBIN, SL_SCHED_LEAST_CONN}) {
    SCOPED_TRACE(sched == SL_SCHED_ROUND_ROBIN ? "round-robin" : "least-conn");
    env_->reset();
    // Round-robin: weights 1 : 1 : 1 make the sequence 1 2 3, so the hash slot is
    // predictable from the ids. Least-conn: load every backend the hash would name.
    env_->add_vip(vip(sched, 1, 1, 1), 0);
    for (int i = 0; i < 20; i++) {
      const auto sport = static_cast<uint16_t>(20000 + i);
      const uint32_t want = hash_slot_backend({1, 2, 3}, sport);
      if (sched == SL_SCHED_LEAST_CONN) set_conns(want, 1000);
      EXPECT_EQ(send(seg(sport, kA, 5000, 9000)), uint32_t{XDP_REDIRECT});
      EXPECT_EQ(backend_of(sport), want) << "port " << sport;
      sl_flow_key k = key(sport);
      sl_ct_entry e{};
      ASSERT_TRUE(env_->ct_lookup(k, &e));
      EXPECT_EQ(e.flags & SL_CT_F_MIDSTREAM, SL_CT_F_MIDSTREAM);
      // Evicted again: the next packet finds the same backend.
      ASSERT_EQ(bpf_map_delete_elem(env_->fd(env_->skel()->maps.ct_pending), &k),
                0);  // unconfirmed
      EXPECT_EQ(send(seg(sport, kA, 5100, 9000)), uint32_t{XDP_REDIRECT});
      EXPECT_EQ(backend_of(sport), want) << "port " << sport;
      if (sched == SL_SCHED_LEAST_CONN) set_conns(want, 0);
    }
    EXPECT_EQ(rr_counter(0), 0u) << "midstream packets take no round-robin slot";
  }
}

INSTANTIATE_TEST_SUITE_P(Families, SchedTest,
                         ::testing::Values(Family{"ipv4", kClient4, kVip4, kBe1v4, kBe2v4},
                                           Family{"ipv6", kClient6, kVip6, kBe1v6, kBe2v6}),
                         ParamName());

}  // namespace
}  // namespace sluice::test
