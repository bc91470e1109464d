// The case runner of the table-driven XDP packet tests: see xdp_cases.h.
#include "xdp_cases.h"

#include <bpf/libbpf.h>
#include <sluice/core/net.h>

#include <cerrno>
#include <cstring>
#include <sstream>

namespace sluice::test::xdp {

void PrintTo(const Case& c, std::ostream* os) { *os << c.name << ": " << c.description; }

Step pass_step(std::string what, Packet in, uint32_t reason) {
  Step s;
  s.what = std::move(what);
  s.in = std::move(in);
  s.verdict = XDP_PASS;
  s.pass = reason;
  return s;
}

Step drop_step(std::string what, Packet in, uint32_t reason) {
  Step s;
  s.what = std::move(what);
  s.in = std::move(in);
  s.verdict = XDP_DROP;
  s.drop = reason;  // nothing is rewritten before a parse/lookup drop: output unchanged
  return s;
}

Step fwd_step(std::string what, Packet in, Packet out, const std::string& be_addr, Iface ingress) {
  Step s;
  s.what = std::move(what);
  s.in = std::move(in);
  s.ingress = ingress;
  s.verdict = hop_to(be_addr).egress == ingress ? XDP_TX : XDP_REDIRECT;
  s.out_kind = OutExp::kPacket;
  s.out = std::move(out);
  return s;
}

void CaseTest::RunCase(const Case& c) {
  for (const VipSpec& v : c.vips) {
    env_->add_vip(v, static_cast<uint32_t>(&v - c.vips.data()));
    ASSERT_FALSE(HasFatalFailure()) << "setting up the VIPs";
  }
  for (size_t i = 0; i < c.steps.size(); i++) {
    SCOPED_TRACE("step " + std::to_string(i + 1) + "/" + std::to_string(c.steps.size()) + ": " +
                 c.steps[i].what);
    RunStep(c.steps[i]);
    if (HasFatalFailure() || IsSkipped()) return;
  }
}

void CaseTest::RunStep(const Step& s) {
  Env& env = *env_;
  if (s.before) {
    s.before(env);
    if (HasFatalFailure()) return;
  }
  env.zero_counters();
  const Bytes in = s.in.build();
  RunResult r = env.run(in, s.ingress);
  if (s.kernel_may_refuse && r.err == -EINVAL) {
    GTEST_SKIP() << "this kernel's BPF_PROG_TEST_RUN refuses a " << in.size()
                 << "-byte XDP frame (shorter than ETH_HLEN, even behind metadata)";
  }
  ASSERT_EQ(r.err, 0) << "bpf_prog_test_run_opts: " << strerror(-r.err);

  EXPECT_EQ(r.retval, static_cast<uint32_t>(s.verdict))
      << "verdict " << verdict_name(r.retval) << ", expected " << verdict_name(s.verdict)
      << "\ninput:\n"
      << describe(in) << hexdump(in);

  if (s.out_kind != OutExp::kAny) {
    const Bytes want = s.out_kind == OutExp::kUnchanged ? in : s.out.build();
    EXPECT_EQ(r.out.size(), want.size()) << "output length";
    EXPECT_TRUE(r.out == want) << (s.out_kind == OutExp::kUnchanged
                                       ? "packet must be left untouched\n"
                                       : "rewritten packet differs\n")
                               << diff(want, r.out);
  }
  // Anything we send (or hand over rewritten) must carry valid checksums, recomputed from
  // scratch; the input must too, or the case itself is wrong.
  if (s.out_kind == OutExp::kPacket) {
    auto in_errs = verify_checksums(in);
    EXPECT_TRUE(in_errs.empty()) << "test bug: input has bad checksums: " << in_errs[0];
    for (const std::string& e : verify_checksums(r.out)) {
      ADD_FAILURE() << "output checksum: " << e << "\n" << describe(r.out);
    }
  }
  ExpectCounters(s, in.size());
  if (s.check) s.check(env);
}

void CaseTest::ExpectCounters(const Step& s, uint64_t len) {
  Env& env = *env_;
  std::ostringstream bad;
  auto check = [&](bpf_map* m, uint32_t n, auto name, std::optional<uint32_t> hot) {
    for (uint32_t i = 0; i < n; i++) {
      sl_counter c = env.percpu_sum<sl_counter>(m, i);
      uint64_t want_p = hot && *hot == i ? 1 : 0;
      if (c.packets != want_p || c.bytes != want_p * len) {
        bad << "  " << bpf_map__name(m) << "[" << name(i) << "] = {" << c.packets << " pkts, "
            << c.bytes << " bytes}, expected {" << want_p << ", " << want_p * len << "}\n";
      }
    }
  };
  // Names come from the agent (net.h), the same ones sluicectl prints.
  check(env.skel()->maps.verdicts, SL_VERDICT_MAX, verdict_name, static_cast<uint32_t>(s.verdict));
  check(env.skel()->maps.passes, SL_PASS_MAX, pass_reason_name, s.pass);
  check(env.skel()->maps.drops, SL_DROP_MAX, drop_reason_name, s.drop);

  if (s.stats != StatsExp::kDontCare) {
    auto traffic = [&](bpf_map* m, uint32_t n, std::optional<uint32_t> hot) {
      for (uint32_t i = 0; i < n; i++) {
        sl_traffic t = env.percpu_sum<sl_traffic>(m, i);
        const bool h = hot && *hot == i;
        const uint64_t p = h ? 1 : 0, nf = h ? s.new_flows : 0;
        if (t.packets != p || t.bytes != p * len || t.new_flows != nf) {
          bad << "  " << bpf_map__name(m) << "[" << i << "] = {" << t.packets << " pkts, "
              << t.bytes << " bytes, " << t.new_flows << " new flows}, expected {" << p << ", "
              << p * len << ", " << nf << "}\n";
        }
      }
    };
    const bool fwd = s.stats == StatsExp::kForwarded;
    traffic(env.skel()->maps.vip_stats, Env::kMaxVips,
            fwd ? std::optional<uint32_t>(s.vip_id) : std::nullopt);
    traffic(env.skel()->maps.backend_stats, Env::kMaxBackends,
            fwd ? std::optional<uint32_t>(s.backend_id) : std::nullopt);
  }
  EXPECT_TRUE(bad.str().empty()) << "counter deltas:\n" << bad.str();
}

}  // namespace sluice::test::xdp
