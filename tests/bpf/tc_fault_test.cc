// tc_fault (bpf/tc_fault.bpf.c), the fault injector of the congestion control tests, run by
// BPF_PROG_TEST_RUN: which packets each mode drops (verdict), that it never changes a packet,
// and its counters. Needs root; skips with the reason otherwise.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>

#include <cstring>
#include <ostream>
#include <string>
#include <vector>

#include <sluice/abi/fault.h>
#include "netns.h"
#include "packet.h"
#include "tc_fault.skel.h"

namespace sluice::test {
namespace {

constexpr char kMacA[] = "02:00:00:00:00:01";
constexpr char kMacB[] = "02:00:00:00:00:02";
constexpr int kNext = -1;  // TC_ACT_UNSPEC, TCX_NEXT
constexpr int kDrop = 2;   // TC_ACT_SHOT, TCX_DROP

Bytes tcp4(uint8_t flags, size_t payload) {
  return Packet()
      .eth(kMacA, kMacB)
      .ipv4("198.18.0.1", "198.18.0.2")
      .tcp(40000, 80, flags)
      .payload(payload)
      .build();
}

Bytes tcp6(uint8_t flags, size_t payload) {
  return Packet()
      .eth(kMacA, kMacB)
      .ipv6("2001:db8::1", "2001:db8::2")
      .tcp(40000, 80, flags)
      .payload(payload)
      .build();
}

Bytes udp4(size_t payload) {
  return Packet()
      .eth(kMacA, kMacB)
      .ipv4("198.18.0.1", "198.18.0.2")
      .udp(40000, 53)
      .payload(payload)
      .build();
}

struct Case {
  const char* name;
  sl_fault_config cfg;
  // Packets run in order, and the verdict expected for each.
  std::vector<std::pair<Bytes, int>> packets;
  sl_fault_stats stats;  // after the last packet
};

// The case's name, for GoogleTest's listing (not its bytes).
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class TcFaultTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    if (auto why = skip_reason()) GTEST_SKIP() << *why;
    skel_ = tc_fault_bpf__open_and_load();
    ASSERT_NE(skel_, nullptr) << "load tc_fault: " << strerror(errno);
  }
  void TearDown() override {
    if (skel_) tc_fault_bpf__destroy(skel_);
  }
  tc_fault_bpf* skel_ = nullptr;
};

TEST_P(TcFaultTest, Verdicts) {
  const Case& c = GetParam();
  const uint32_t zero = 0;
  ASSERT_EQ(bpf_map_update_elem(bpf_map__fd(skel_->maps.fault_config), &zero, &c.cfg, BPF_ANY), 0);
  for (size_t i = 0; i < c.packets.size(); i++) {
    const Bytes& in = c.packets[i].first;
    Bytes out(in.size() + 64);
    LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = in.data(), .data_out = out.data(),
                .data_size_in = static_cast<uint32_t>(in.size()),
                .data_size_out = static_cast<uint32_t>(out.size()), .repeat = 1);
    ASSERT_EQ(bpf_prog_test_run_opts(bpf_program__fd(skel_->progs.tc_fault), &o), 0)
        << strerror(errno);
    EXPECT_EQ(static_cast<int>(o.retval), c.packets[i].second) << "packet " << i;
    out.resize(o.data_size_out);
    EXPECT_TRUE(out == in) << "packet " << i << " changed";
  }
  sl_fault_stats st{};
  ASSERT_EQ(bpf_map_lookup_elem(bpf_map__fd(skel_->maps.fault_stats), &zero, &st), 0);
  EXPECT_EQ(st.seen, c.stats.seen);
  EXPECT_EQ(st.eligible, c.stats.eligible);
  EXPECT_EQ(st.dropped, c.stats.dropped);
}

const uint8_t kS = tcpf::kSyn, kA = tcpf::kAck, kSA = tcpf::kSyn | tcpf::kAck,
              kPA = tcpf::kPsh | tcpf::kAck, kFA = tcpf::kFin | tcpf::kAck;

INSTANTIATE_TEST_SUITE_P(
    Modes, TcFaultTest,
    ::testing::Values(
        Case{"off_passes_all",
             {SL_FAULT_OFF, 0, 0, 0},
             {{tcp4(kPA, 100), kNext}, {udp4(10), kNext}},
             {2, 0, 0}},
        Case{"every_nth_payload_only",
             {SL_FAULT_NTH, 0, 2, 1},
             // The handshake, pure ACKs and a bare FIN are never eligible; data segments are,
             // and every second one goes.
             {{tcp4(kS, 0), kNext},
              {tcp4(kSA, 0), kNext},
              {tcp4(kA, 0), kNext},
              {tcp4(kPA, 1), kNext},
              {tcp4(kPA, 1448), kDrop},
              {tcp6(kPA, 500), kNext},
              {tcp6(kPA, 500), kDrop},
              {udp4(100), kNext},
              {tcp4(kFA, 0), kNext},
              {tcp4(kFA, 10), kNext}},
             {10, 5, 2}},
        Case{"every_nth_all_packets",
             {SL_FAULT_NTH, 0, 3, 0},
             {{tcp4(kS, 0), kNext}, {udp4(10), kNext}, {tcp4(kA, 0), kDrop}, {tcp6(kS, 0), kNext}},
             {4, 4, 1}},
        Case{"random_all",
             {SL_FAULT_RANDOM, 1000000, 0, 1},
             {{tcp4(kS, 0), kNext}, {tcp4(kPA, 10), kDrop}, {tcp6(kPA, 10), kDrop}},
             {3, 2, 2}},
        Case{"random_none",
             {SL_FAULT_RANDOM, 0, 0, 1},
             {{tcp4(kPA, 10), kNext}, {tcp6(kPA, 10), kNext}},
             {2, 2, 0}}),
    [](const auto& info) { return std::string(info.param.name); });

// The random mode's share over many packets: 10% +- 1.5% of 20000 (4.5 standard deviations).
TEST_F(TcFaultTest, RandomShare) {
  const uint32_t zero = 0;
  const sl_fault_config cfg{SL_FAULT_RANDOM, 100000, 0, 1};
  ASSERT_EQ(bpf_map_update_elem(bpf_map__fd(skel_->maps.fault_config), &zero, &cfg, BPF_ANY), 0);
  const Bytes in = tcp4(kPA, 1000);
  LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = in.data(),
              .data_size_in = static_cast<uint32_t>(in.size()), .repeat = 20000);
  ASSERT_EQ(bpf_prog_test_run_opts(bpf_program__fd(skel_->progs.tc_fault), &o), 0)
      << strerror(errno);
  sl_fault_stats st{};
  ASSERT_EQ(bpf_map_lookup_elem(bpf_map__fd(skel_->maps.fault_stats), &zero, &st), 0);
  EXPECT_EQ(st.seen, 20000u);
  EXPECT_EQ(st.eligible, 20000u);
  EXPECT_NEAR(static_cast<double>(st.dropped), 2000, 300);
}

}  // namespace
}  // namespace sluice::test
