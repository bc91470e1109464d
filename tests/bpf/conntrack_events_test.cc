// ConntrackManager with the real data path end to end, without a network: a SYN to a VIP run
// through xdp_lb (BPF_PROG_TEST_RUN) creates an entry, counts it live in backend_conns and
// reports it on ct_events; the manager consumes the event, and its sweep expires the entry
// and gives the count back. Needs root (BPF); skips otherwise.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>

#include <sluice/config/config.h>
#include <sluice/conntrack/conntrack.h>
#include <sluice/core/event_loop.h>

#include <array>
#include <cstring>
#include <vector>

#include "conntrack_util.h"

namespace sluice::test {
namespace {

constexpr char kConfig[] = R"(interfaces: [lo]
vips:
  - address: 198.19.0.1
    port: 80
    protocol: tcp
    backends:
      - {address: 198.18.1.2, port: 8080}
)";

uint16_t ip_checksum(const uint8_t* p, size_t n) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < n; i += 2) sum += static_cast<uint32_t>(p[i] << 8 | p[i + 1]);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

// Ethernet + IPv4 + TCP with only SYN set: 198.18.0.100:40000 -> 198.19.0.1:80. The data
// path does not verify the TCP checksum, so it is left 0.
std::vector<uint8_t> syn_packet() {
  std::vector<uint8_t> p(14 + 20 + 20, 0);
  const uint8_t macs[12] = {2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2};
  std::memcpy(p.data(), macs, sizeof(macs));
  p[12] = 0x08;  // ETH_P_IP
  uint8_t* ip = p.data() + 14;
  ip[0] = 0x45;
  ip[3] = 40;    // total length
  ip[6] = 0x40;  // DF
  ip[8] = 64;    // TTL
  ip[9] = IPPROTO_TCP;
  const uint8_t src[4] = {198, 18, 0, 100}, dst[4] = {198, 19, 0, 1};
  std::memcpy(ip + 12, src, 4);
  std::memcpy(ip + 16, dst, 4);
  const uint16_t csum = ip_checksum(ip, 20);
  ip[10] = static_cast<uint8_t>(csum >> 8);
  ip[11] = static_cast<uint8_t>(csum);
  uint8_t* tcp = ip + 20;
  const uint16_t sport = htons(40000), dport = htons(80);
  std::memcpy(tcp, &sport, 2);
  std::memcpy(tcp + 2, &dport, 2);
  tcp[7] = 1;        // seq 1
  tcp[12] = 5 << 4;  // doff
  tcp[13] = 0x02;    // SYN
  tcp[14] = 0xff;    // window
  tcp[15] = 0xff;
  return p;
}

class ConntrackEvents : public LoadedDatapathTest {
 protected:
  void SetUp() override {
    LoadedDatapathTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    ASSERT_NO_FATAL_FAILURE(Apply(kConfig));
    auto loop = EventLoop::create();
    ASSERT_TRUE(loop) << loop.error().to_string();
    loop_ = std::move(*loop);
  }

  int RunPacket(const std::vector<uint8_t>& pkt) {
    std::array<uint8_t, 256> out{};
    LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = pkt.data(), .data_out = out.data(),
                .data_size_in = static_cast<uint32_t>(pkt.size()),
                .data_size_out = static_cast<uint32_t>(out.size()), .repeat = 1);
    EXPECT_EQ(bpf_prog_test_run_opts(dp_->prog_fd(), &opts), 0) << strerror(errno);
    return static_cast<int>(opts.retval);
  }

  uint64_t LiveCount(uint32_t backend_id) {
    uint64_t v = 0;
    EXPECT_EQ(bpf_map_lookup_elem(dp_->fds().backend_conns, &backend_id, &v), 0) << strerror(errno);
    return v;
  }

  std::unique_ptr<EventLoop> loop_;
};

// A SYN makes a pending entry (unconfirmed: no live count); its `new` event is consumed by the
// conntrack manager, and the ct_pending manager expires it by the unconfirmed timeout, which
// is shorter than syn_sent's.
TEST_F(ConntrackEvents, ANewFlowIsReportedAndExpiresUnconfirmed) {
  uint64_t now = monotonic_ns();  // the data path stamps entries with the same clock
  ConntrackOptions opts;
  opts.clock = [&now] { return now; };
  ConntrackManager m(dp_->fds(), ConntrackTimeouts{}, *loop_, opts);
  opts.table = CtTable::kPendingFlows;
  ConntrackManager pending(dp_->fds(), ConntrackTimeouts{}, *loop_, opts);
  ASSERT_TRUE(m.start());
  ASSERT_TRUE(pending.start());
  ASSERT_TRUE(m.snapshot().events_enabled);
  ASSERT_FALSE(pending.snapshot().events_enabled) << "one reader of ct_events";

  RunPacket(syn_packet());
  const sl_flow_key key = flow_key("198.18.0.100", 40000, "198.19.0.1", 80);
  sl_ct_entry e{};
  ASSERT_EQ(bpf_map_lookup_elem(dp_->fds().ct_pending, &key, &e), 0) << "the SYN made no entry";
  EXPECT_FALSE(ct_has(ct_fd(), key)) << "an unconfirmed flow in the confirmed table";
  EXPECT_EQ(e.state, SL_TCP_SYN_SENT);
  EXPECT_EQ(e.live, 0u);
  EXPECT_EQ(LiveCount(e.backend_id), 0u);

  // The event: consumed from the ring buffer, counted by type and transition.
  EXPECT_GE(m.poll_events(), 1);
  ConntrackStats st = m.snapshot();
  EXPECT_EQ(st.events_by_type[SL_CT_EV_NEW], 1u);
  EXPECT_EQ(st.transitions[SL_TCP_NONE][SL_TCP_SYN_SENT], 1u);
  EXPECT_EQ(st.events_malformed, 0u);

  // Within the unconfirmed 30 s the entry stays; past it (though within syn_sent's 120 s),
  // the ct_pending sweep deletes it; there is no count to give back.
  now += uint64_t{SL_DEFAULT_CT_UNCONFIRMED_S} * kSec;
  ASSERT_TRUE(pending.sweep_now());
  EXPECT_TRUE(ct_has(dp_->fds().ct_pending, key));
  EXPECT_EQ(pending.snapshot().entries[SL_TCP_SYN_SENT], 1u);
  now += 1 * kSec;
  auto r = pending.sweep_now();
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->expired, 1u);
  EXPECT_FALSE(ct_has(dp_->fds().ct_pending, key));
  EXPECT_EQ(LiveCount(e.backend_id), 0u);
  st = pending.snapshot();
  EXPECT_EQ(st.expired[SL_TCP_SYN_SENT], 1u);
  EXPECT_EQ(st.conns_released, 0u);
  EXPECT_EQ(st.entries_total, 0u);
}

// Events reach the manager through the loop too (the ring buffer's epoll fd).
TEST_F(ConntrackEvents, TheLoopConsumesEvents) {
  ConntrackManager m(dp_->fds(), ConntrackTimeouts{}, *loop_);
  ASSERT_TRUE(m.start());
  RunPacket(syn_packet());
  loop_->add_timer(std::chrono::milliseconds(1), std::chrono::milliseconds(1), [&] {
    if (m.snapshot().events > 0) loop_->stop();
  });
  loop_->add_timer(std::chrono::seconds(5), std::chrono::nanoseconds(0), [&] { loop_->stop(); });
  ASSERT_TRUE(loop_->run());
  EXPECT_EQ(m.snapshot().events_by_type[SL_CT_EV_NEW], 1u);
}

}  // namespace
}  // namespace sluice::test
