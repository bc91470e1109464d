// The case runner of the table-driven XDP packet tests (xdp_lb_test, xdp_owned_traffic_test).
// Every case is {name, description, VIP/backend setup, steps}; every step is {input packet
// from the fluent builder, ingress interface, expected verdict, expected output (unchanged /
// a full expected packet / not checked), the one pass or drop reason counted, expected VIP and
// backend counters, setup before it, map checks after it}. Every counter of `verdicts`,
// `passes` and `drops` is checked on every step: exactly the expected one moved, by one packet.
// A failure prints a hex + decoded dump of expected vs actual.
#pragma once

#include <gtest/gtest.h>
#include <linux/bpf.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "packet.h"
#include "xdp_env.h"

namespace sluice::test::xdp {

// What the VIP/backend traffic counters must show after a step.
enum class StatsExp {
  kZero,       // no VIP or backend counter moved
  kForwarded,  // vip_stats[vip] and backend_stats[backend] +1 packet, +len bytes
  kDontCare,   // the contract says nothing (replies, ICMP errors, FIB failures)
};

enum class OutExp {
  kUnchanged,  // the output equals the input
  kPacket,     // the output equals `out`
  kAny,        // not checked (a dropped packet whose bytes no one sees)
};

struct Step {
  std::string what;
  Packet in;
  Iface ingress = Iface::kTin;
  int verdict = XDP_PASS;
  std::optional<uint32_t> pass;  // passes[] reason
  std::optional<uint32_t> drop;  // drops[] reason
  OutExp out_kind = OutExp::kUnchanged;
  Packet out;
  StatsExp stats = StatsExp::kZero;
  uint32_t vip_id = 0, backend_id = 0;
  uint64_t new_flows = 0;
  // The kernel's test-run may refuse this input (-EINVAL): skip the case with the reason.
  bool kernel_may_refuse = false;
  std::function<void(Env&)> before;  // after the VIPs are set up, before counters are zeroed
  std::function<void(Env&)> check;   // map checks after the packet
};

struct Case {
  std::string name;
  std::string description;
  std::vector<VipSpec> vips;  // vip_id = index, ring_id = SL_RINGS_PER_VIP * index
  std::vector<Step> steps;
};

void PrintTo(const Case& c, std::ostream* os);

// The common shapes of a step: passed or dropped untouched for `reason`; and client -> VIP,
// sent on to the backend at `be_addr` as `out` (XDP_TX when the backend is on the ingress link,
// else XDP_REDIRECT).
Step pass_step(std::string what, Packet in, uint32_t reason);
Step drop_step(std::string what, Packet in, uint32_t reason);
Step fwd_step(std::string what, Packet in, Packet out, const std::string& be_addr,
              Iface ingress = Iface::kTin);

// The suite: derive, then TEST_P(Derived, Packet) { RunCase(GetParam()); }.
class CaseTest : public EnvSuite<Case> {
 protected:
  void RunCase(const Case& c);

 private:
  void RunStep(const Step& s);
  void ExpectCounters(const Step& s, uint64_t len);
};

}  // namespace sluice::test::xdp
