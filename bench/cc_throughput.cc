// Throughput of sluice_aimd against the kernel's reno, cubic and bbr over a veth pair between
// two namespaces, at 0%, 0.1% and 1% of the data segments dropped by the fault injector
// (tests/common/fault.h, on the receiver's ingress). Offloads off, one bulk TCP connection per
// run, the algorithms interleaved (the order rotating each round) so the machine's drift hits
// all alike. Prints MB/s (the mean of the middle 60% of the runs) and the ratio to reno.
// Needs root.
//
// sluice_aimd is registered for the run as sl_aimd_<pid> (a sluiced may hold its own name).
//
//   build/bench/cc_throughput [--rounds R] [--mbytes M] [--algos a,b,...] [--ppm p,q,...]
//                             [--realtime 0|1] [--rto-min MS]
//
// --realtime 1 (default) runs sender and receiver as SCHED_FIFO, so other processes of a shared
// machine do not decide the figures. --rto-min (default 5 ms, 0: the kernel's 200 ms) on the
// sender's route: with a veth's RTT of tens of microseconds a 200 ms RTO stalls a run for
// several times its length, and the figure would count RTOs rather than the algorithm.
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <sluice/abi/cc.h>
#include <sluice/cc/cc_algo.h>
#include "bulk.h"
#include "fault.h"
#include "netns.h"

namespace {

using sluice::test::BulkResult;

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string w; std::getline(in, w, ',');)
    if (!w.empty()) out.push_back(w);
  return out;
}

double trimmed_mean(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t cut = v.size() / 5;
  double sum = 0;
  for (size_t i = cut; i < v.size() - cut; i++) sum += v[i];
  return sum / static_cast<double>(v.size() - 2 * cut);
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = 10;
  uint64_t mbytes = 64;
  // Our algorithm under a name of this process: the name is kernel-wide, and a sluiced on the
  // machine may hold SL_CC_OURS (tests/common/cc_util.h, test_cc_name).
  const std::string ours = "sl_aimd_" + std::to_string(getpid() % 10000000);
  std::vector<std::string> algos = {ours, "reno", "cubic", "bbr"};
  std::vector<uint32_t> ppms = {0, 1000, 10000};
  bool realtime = true;
  int rto_min_ms = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string opt = argv[i], val = argv[i + 1];
    if (opt == "--rounds") {
      rounds = std::atoi(val.c_str());
    } else if (opt == "--mbytes") {
      mbytes = std::strtoull(val.c_str(), nullptr, 10);
    } else if (opt == "--realtime") {
      realtime = val != "0";
    } else if (opt == "--rto-min") {
      rto_min_ms = std::atoi(val.c_str());
    } else if (opt == "--algos") {
      algos = split(val);
    } else if (opt == "--ppm") {
      ppms.clear();
      for (const auto& p : split(val)) ppms.push_back(static_cast<uint32_t>(std::stoul(p)));
    } else {
      std::fprintf(stderr, "unknown option %s\n", opt.c_str());
      return 2;
    }
  }
  if (auto why = sluice::test::skip_reason()) {
    std::fprintf(stderr, "cc_throughput: %s\n", why->c_str());
    return 1;
  }
  try {
    sluice::test::NetNs snd("cbs"), rcv("cbr");
    sluice::test::make_veth(snd, "cbs0", rcv, "cbr0");
    snd.must("ip addr add 198.18.220.1/24 dev cbs0");
    rcv.must("ip addr add 198.18.220.2/24 dev cbr0");
    if (rto_min_ms > 0) {
      snd.must("ip route replace 198.18.220.0/24 dev cbs0 src 198.18.220.1 rto_min " +
               std::to_string(rto_min_ms) + "ms");
    }
    for (auto [ns, dev] : {std::pair{&snd, "cbs0"}, std::pair{&rcv, "cbr0"}})
      ns->must(std::string("ethtool -K ") + dev + " tso off gso off gro off >/dev/null");
    auto algo = sluice::CcAlgorithm::load(nullptr, ours);
    if (!algo) {
      std::fprintf(stderr, "cc_throughput: %s\n", algo.error().to_string().c_str());
      return 1;
    }
    auto fault = rcv.in([] {
      return sluice::test::FaultInjector::attach("cbr0",
                                                 sluice::test::FaultInjector::Hook::kIngress);
    });
    if (!fault) {
      std::fprintf(stderr, "cc_throughput: %s\n", fault.error().to_string().c_str());
      return 1;
    }
    std::printf(
        "%d rounds of %llu MB per algorithm and loss (%s, rto_min %d ms); MB/s (trimmed mean), "
        "ratio to reno\n",
        rounds, static_cast<unsigned long long>(mbytes), realtime ? "SCHED_FIFO" : "SCHED_OTHER",
        rto_min_ms);
    for (uint32_t ppm : ppms) {
      if (auto s = ppm ? (*fault)->drop_random(ppm) : (*fault)->off(); !s) {
        std::fprintf(stderr, "cc_throughput: %s\n", s.error().to_string().c_str());
        return 1;
      }
      std::map<std::string, std::vector<double>> rate;
      std::map<std::string, uint64_t> retrans;
      for (int r = 0; r < rounds; r++) {
        for (size_t k = 0; k < algos.size(); k++) {
          const std::string& cc = algos[(k + static_cast<size_t>(r)) % algos.size()];
          const BulkResult t = sluice::test::bulk_transfer(
              snd, rcv, "198.18.220.2", cc, mbytes << 20, {.trace = false, .realtime = realtime});
          if (!t.error.empty()) {
            std::fprintf(stderr, "cc_throughput: %s: %s\n", cc.c_str(), t.error.c_str());
            return 1;
          }
          rate[cc].push_back(t.mbytes_per_s());
          retrans[cc] += t.retrans;
        }
      }
      const double reno = rate.count("reno") ? trimmed_mean(rate["reno"]) : 0;
      std::printf("loss %.2f%%\n", ppm / 1e4);
      for (const auto& cc : algos) {
        const double m = trimmed_mean(rate[cc]);
        std::printf("  %-12s %8.1f MB/s  x%.3f  (%llu retransmits per run)\n", cc.c_str(), m,
                    reno > 0 ? m / reno : 0.0,
                    static_cast<unsigned long long>(retrans[cc] / static_cast<uint64_t>(rounds)));
      }
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cc_throughput: %s\n", e.what());
    return 1;
  }
  return 0;
}
