// ns/packet of the sluice XDP program through BPF_PROG_TEST_RUN, next to an empty XDP program
// measured in the same run (the machine is shared and noisy: only the difference and the
// ratio mean anything). Runs the real agent load path (Datapath::load/apply/attach) in the FIB
// world of the tests (tests/common/fib_world.h), whose routes and permanent neighbours make
// bpf_fib_lookup succeed.
//
//   build/bench/xdp_pkt_bench [--repeat N] [--rounds R] [--new-flows K] [--only sched|basic]
//
// --only sched: only the second table (SYN cost per scheduler, 8 and 100 backends).
// --only basic: only the first table (one packet of each kind), for quick A/B runs.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>

#include <arpa/inet.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <sluice/bpf/datapath.h>
#include <sluice/config/config.h>
#include <sluice/conntrack/conntrack.h>
#include <sluice/core/net.h>
#include "fib_world.h"
#include "loaded_datapath.h"
#include "netns.h"
#include "packet.h"
#include "xdp_empty.skel.h"
#include "xdp_restore.skel.h"

using sluice::test::Packet;

namespace {

using sluice::test::fib_vip_yaml;

// nat UDP and TCP at 198.19.0.1, dsr UDP at 198.19.0.2, each over 198.18.1.2 .. 4.
const std::string kConfig =
    sluice::test::fib_config_yaml({fib_vip_yaml("198.19.0.1", 53, "udp", "nat", 3, 5353),
                                   fib_vip_yaml("198.19.0.1", 80, "tcp", "nat", 3, 8080),
                                   fib_vip_yaml("198.19.0.2", 53, "udp", "dsr", 3, 0)});

// A confirmed, established flow as a completed handshake leaves it in `conntrack`: windows
// known (not liberal) and wide enough for the harness's segment (seq 1000, 10 bytes, ack 0),
// so every hit runs the whole window check of the fast path.
sl_ct_entry confirmed_entry(uint32_t backend_id) {
  sl_ct_entry e{};
  e.backend_id = backend_id;
  e.vip_id = 1;
  e.state = SL_TCP_ESTABLISHED;
  e.first_seen_ns = e.last_seen_ns = sluice::monotonic_ns();
  e.seq[0] = {1010, 1000 + 65535, 65535, 0, 0, SL_CT_SEQ_KNOWN, 0};
  e.seq[1] = {0, 65535, 65535, 1010, 0, SL_CT_SEQ_KNOWN | SL_CT_SEQ_MAXACK, 0};
  return e;
}

// The key of the harness's flow number c (xdp_restore.bpf.c: source port c & 0xffff, last
// source address byte c >> 16) to 198.19.0.1:80.
sl_flow_key harness_flow(uint32_t c, bool vary) {
  sl_flow_key k{};
  k.src.w[0] = htonl(vary ? (0xc6120000u | (c >> 16)) : 0xc6120002u);  // 198.18.0.x
  k.dst.w[0] = htonl(0xc6130001u);                                     // 198.19.0.1
  k.sport = htons(vary ? static_cast<uint16_t>(c) : 40000);
  k.dport = htons(80);
  k.proto = IPPROTO_TCP;
  k.family = SL_AF_INET;
  return k;
}

// Puts n confirmed flows (harness flows 0..n-1, or the one fixed flow) into `conntrack`.
bool prefill(const sluice::Datapath& dp, uint32_t n, bool vary) {
  const auto id = dp.backend_id(1, 0);
  if (!id) return false;
  std::vector<sl_flow_key> keys;
  std::vector<sl_ct_entry> vals(n, confirmed_entry(*id));
  for (uint32_t c = 0; c < n; ++c) keys.push_back(harness_flow(c, vary));
  uint32_t count = n;
  bpf_map_batch_opts opts{};
  opts.sz = sizeof(opts);
  return bpf_map_update_batch(dp.fds().conntrack, keys.data(), vals.data(), &count, &opts) == 0;
}

struct Run {
  double ns = 0;  // average per packet, as the kernel measured it
  uint32_t retval = 0;
};

// One TCP nat VIP, 198.19.0.1:80, with `n` backends 198.18.1.2 .. (n + 1) on port 8080.
std::string sched_config(const char* sched, uint32_t n) {
  return sluice::test::fib_config_yaml(
      {fib_vip_yaml("198.19.0.1", 80, "tcp", "nat", static_cast<int>(n), 8080,
                    std::string("scheduler: ") + sched + ", ")},
      "limits: {max_backends: 128}\n");
}

// The wrapper that restores the packet's first 64 bytes and tail-calls the program in `next`.
struct Harness {
  xdp_restore_bpf* skel = nullptr;
  int fd() const { return bpf_program__fd(skel->progs.xdp_restore); }
  void set(int target_fd, const std::vector<uint8_t>& pkt) {
    uint32_t zero = 0;
    if (bpf_map_update_elem(bpf_map__fd(skel->maps.next), &zero, &target_fd, BPF_ANY) != 0) {
      std::perror("set tail-call target");
      std::exit(1);
    }
    std::memcpy(skel->bss->tmpl, pkt.data(), sizeof(skel->bss->tmpl));
  }
};

Run test_run(int prog_fd, const std::vector<uint8_t>& pkt, uint32_t repeat, unsigned ifindex) {
  const sluice::test::XdpRun r = sluice::test::xdp_test_run(prog_fd, pkt, ifindex, repeat);
  if (r.err) {
    std::fprintf(stderr, "BPF_PROG_TEST_RUN failed: %s\n", std::strerror(-r.err));
    std::exit(1);
  }
  return {static_cast<double>(r.ns), r.retval};
}

// load_attached() inside the world's namespace; prints the error and returns nullptr on failure.
std::unique_ptr<sluice::Datapath> load(const sluice::test::FibWorld& world,
                                       const sluice::Limits& limits, const sluice::Config& cfg) {
  std::string error;
  std::unique_ptr<sluice::Datapath> dp;
  world.lb().in([&] { dp = sluice::test::load_attached(limits, cfg, &error); });
  if (!dp) std::fprintf(stderr, "%s\n", error.c_str());
  return dp;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

const char* action_name(uint32_t a) {
  static const char* names[] = {"ABORTED", "DROP", "PASS", "TX", "REDIRECT"};
  return a < 5 ? names[a] : "?";
}

}  // namespace

int main(int argc, char** argv) {
  uint32_t repeat = 2000000, rounds = 5, new_flows = 200000;
  bool only_sched = false, only_basic = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    uint32_t v = static_cast<uint32_t>(std::strtoul(argv[i + 1], nullptr, 10));
    if (a == "--repeat")
      repeat = v;
    else if (a == "--rounds")
      rounds = v;
    else if (a == "--new-flows")
      new_flows = v;
    else if (a == "--only" && std::string(argv[i + 1]) == "sched")
      only_sched = true;
    else if (a == "--only" && std::string(argv[i + 1]) == "basic")
      only_basic = true;
    else {
      std::fprintf(
          stderr,
          "unknown option %s; valid: --repeat N --rounds R --new-flows K --only sched|basic\n",
          a.c_str());
      return 2;
    }
  }
  if (auto why = sluice::test::skip_reason()) {
    std::fprintf(stderr, "xdp_pkt_bench cannot run here: %s\n", why->c_str());
    return 1;
  }
  spdlog::set_level(spdlog::level::warn);  // the agent's load/attach lines, once per instance
  libbpf_set_print([](libbpf_print_level l, const char* f, va_list a) {
    return l == LIBBPF_WARN ? std::vfprintf(stderr, f, a) : 0;
  });

  // Permanent neighbours for 100 backends per link (the scheduler table's largest VIP).
  sluice::test::FibWorld world("bench", 100);
  const sluice::test::NetNs& ns = world.lb();
  const unsigned tin = world.ifindex(sluice::test::Iface::kTin);

  std::string error;
  const std::optional<sluice::Config> cfg = sluice::test::parse_or_error(kConfig, &error);
  if (!cfg) {
    std::fprintf(stderr, "%s", error.c_str());
    return 1;
  }
  std::unique_ptr<sluice::Datapath> dp;
  xdp_empty_bpf* empty = xdp_empty_bpf__open_and_load();
  Harness h{xdp_restore_bpf__open_and_load()};
  if (!empty || !h.skel) {
    std::fprintf(stderr, "load xdp_empty/xdp_restore failed\n");
    return 1;
  }
  sluice::Limits limits;
  limits.conntrack_entries = (rounds + 1) * new_flows + 1024;
  dp = load(world, limits, *cfg);
  // The established case's flow, confirmed (a handshake the bench does not replay).
  if (!dp || !prefill(*dp, 1, false)) return 1;
  const int lb = dp->prog_fd(), base = bpf_program__fd(empty->progs.xdp_empty);

  const char* cmac = "02:00:00:00:00:02";
  const char* lmac = "02:00:00:00:00:01";
  // A TCP segment from the client to the nat VIP with the given flags; the harness varies
  // its source per run when a case needs new flows.
  auto vip_tcp = [&](uint8_t flags) {
    return Packet()
        .eth(cmac, lmac)
        .ipv4("198.18.0.2", "198.19.0.1")
        .tcp(1, 80, flags)
        .payload(10)
        .build();
  };
  struct Case {
    const char* name;
    std::vector<uint8_t> pkt;
    uint32_t expect;
    double target;  // ns net, from issue #2
  } cases[] = {
      {"non-VIP pass (TCP to the host)",
       Packet()
           .eth(cmac, lmac)
           .ipv4("198.18.0.2", "198.18.0.1")
           .tcp(40000, 22, 0x10)
           .payload(10)
           .build(),
       XDP_PASS, 25},
      {"UDP fast path, nat",
       Packet().eth(cmac, lmac).ipv4("198.18.0.2", "198.19.0.1").udp(40000, 53).payload(22).build(),
       XDP_REDIRECT, 60},
      {"UDP fast path, dsr",
       Packet().eth(cmac, lmac).ipv4("198.18.0.2", "198.19.0.2").udp(40000, 53).payload(22).build(),
       XDP_REDIRECT, 60},
      {"TCP established (conntrack hit), nat",
       Packet()
           .eth(cmac, lmac)
           .ipv4("198.18.0.2", "198.19.0.1")
           .tcp(40000, 80, 0x10)
           .payload(10)
           .build(),
       XDP_REDIRECT, 80},
  };

  // SYN cost per scheduler: each case loads its own instance (one VIP, n backends), sized like
  // the SYN case below, and every run is a new flow. Least-conn's counts only grow here (no
  // flow closes), so every SYN scans all n candidates: its worst case.
  auto sched_table = [&]() -> bool {
    auto syn = vip_tcp(0x02);
    std::printf("\nTCP SYN (new flow) per scheduler: %u new flows per round, median of %u rounds\n",
                new_flows, rounds);
    std::printf("%-14s %8s %9s %9s %9s %8s %12s\n", "scheduler", "backends", "ns/pkt", "empty",
                "net ns", "x empty", "vs src-hash");
    for (uint32_t n : {8u, 100u}) {
      double sh_net = 0;
      for (const char* sched : {"source-hash", "round-robin", "least-conn"}) {
        std::string error;
        const auto c = sluice::test::parse_or_error(sched_config(sched, n), &error);
        if (!c) {
          std::fprintf(stderr, "%s", error.c_str());
          return false;
        }
        sluice::Limits limits;
        limits.max_backends = 128;
        limits.conntrack_entries = (rounds + 1) * new_flows + 1024;
        std::unique_ptr<sluice::Datapath> d = load(world, limits, *c);
        if (!d) return false;
        std::vector<double> lbs, bases;
        uint32_t rv = 0;
        h.skel->bss->vary_sport = 1;
        h.skel->bss->counter = 0;
        ns.in([&] {
          for (uint32_t r = 0; r < rounds; ++r) {
            h.set(base, syn);
            bases.push_back(test_run(h.fd(), syn, new_flows, tin).ns);
            h.set(d->prog_fd(), syn);
            Run x = test_run(h.fd(), syn, new_flows, tin);
            lbs.push_back(x.ns);
            rv = x.retval;
          }
        });
        h.skel->bss->vary_sport = 0;
        // Every run must have been a new flow on this VIP.
        auto vt = sluice::read_traffic(d->fds().vip_stats, 1);
        const uint64_t flows = vt ? (*vt)[0].new_flows : 0;
        const double l = median(lbs), b = median(bases), net = l - b;
        if (std::string(sched) == "source-hash") sh_net = net;
        std::printf("%-14s %8u %9.1f %9.1f %9.1f %8.2f %+11.1f%s%s\n", sched, n, l, b, net, l / b,
                    net - sh_net, rv == XDP_REDIRECT ? "" : "   UNEXPECTED VERDICT",
                    flows == uint64_t{rounds} * new_flows ? "" : "   NOT ALL NEW FLOWS");
        ns.in([&] { d.reset(); });
      }
    }
    return true;
  };
  const auto finish = [&](bool ok) {
    ns.in([&] { dp.reset(); });
    xdp_empty_bpf__destroy(empty);
    xdp_restore_bpf__destroy(h.skel);
    return ok ? 0 : 1;
  };
  if (only_sched) {
    ns.in([&] { dp.reset(); });
    return finish(sched_table());
  }

  std::printf("xdp_pkt_bench: BPF_PROG_TEST_RUN, repeat %u, median of %u rounds\n", repeat, rounds);
  std::printf(
      "(every run restores the packet header and tail-calls the program; the 'empty'\n"
      " column is the same harness tail-calling an empty XDP program)\n");
  std::printf("%-40s %-9s %9s %9s %9s %8s\n", "case", "verdict", "ns/pkt", "empty", "net ns",
              "target");
  for (auto& c : cases) {
    std::vector<double> lbs, bases;
    uint32_t rv = 0;
    ns.in([&] {
      for (uint32_t r = 0; r < rounds; ++r) {
        h.set(base, c.pkt);
        bases.push_back(test_run(h.fd(), c.pkt, repeat, tin).ns);
        h.set(lb, c.pkt);
        Run x = test_run(h.fd(), c.pkt, repeat, tin);
        lbs.push_back(x.ns);
        rv = x.retval;
      }
    });
    double l = median(lbs), b = median(bases);
    std::printf("%-40s %-9s %9.1f %9.1f %9.1f %8s%s\n", c.name, action_name(rv), l, b, l - b,
                ("<= " + std::to_string(static_cast<int>(c.target))).c_str(),
                rv == c.expect ? "" : "   UNEXPECTED VERDICT");
  }

  if (only_basic) return finish(true);
  // A SYN creates a conntrack entry only once per 5-tuple: the harness gives every run its
  // own source port and address byte, so each of the `new_flows` runs of every round is a
  // new flow (the conntrack table is sized above rounds * new_flows: it never fills up).
  {
    auto syn = vip_tcp(0x02);
    std::vector<double> lbs, bases;
    uint32_t rv = 0;
    h.skel->bss->vary_sport = 1;
    ns.in([&] {
      for (uint32_t r = 0; r < rounds; ++r) {
        h.set(base, syn);
        bases.push_back(test_run(h.fd(), syn, new_flows, tin).ns);
        h.set(lb, syn);
        Run x = test_run(h.fd(), syn, new_flows, tin);
        lbs.push_back(x.ns);
        rv = x.retval;  // the harness counter runs on: every round's flows are new too
      }
    });
    h.skel->bss->vary_sport = 0;
    double l = median(lbs), b = median(bases);
    std::printf("%-40s %-9s %9.1f %9.1f %9.1f %8s%s\n", "TCP SYN, new flow", action_name(rv), l, b,
                l - b, "<= 200", rv == XDP_REDIRECT ? "" : "   UNEXPECTED VERDICT");
  }
  // Conntrack at 1k, 100k and 1M established flows. Hits: the harness cycles through n flows
  // (source port = c & 0xffff, last source byte = c >> 16); a warm-up pass creates their
  // entries, then every run is a hit on a different entry. SYNs: then every run is a new flow
  // beyond those n (the counter starts at n and no longer wraps), inserted into the table that
  // holds them: `syn_flows` per round, so the table is sized n + n/4 + rounds * syn_flows.
  ns.in([&] { dp.reset(); });  // the scheduler and scale runs attach their own instances
  if (!sched_table()) return 1;
  constexpr uint32_t syn_flows = 20000;
  std::printf(
      "\nconntrack scale: N prefilled flows; established hits cycling through them, "
      "then SYNs of new flows (%u per round)\n",
      syn_flows);
  std::printf("%-9s %9s %9s %9s %9s %9s %9s %11s %10s %12s\n", "flows", "hit ns", "empty",
              "hit net", "SYN ns", "empty", "SYN net", "max_entries", "memlock*", "per 1M");
  std::printf("(* both tables, conntrack and ct_pending, each of max_entries)\n");
  for (uint32_t n : {1000u, 100000u, 1000000u}) {
    const uint32_t max_entries = n + n / 4 + rounds * syn_flows;
    sluice::Limits limits;
    limits.conntrack_entries = max_entries;
    std::unique_ptr<sluice::Datapath> big = load(world, limits, *cfg);
    if (!big) {
      std::fprintf(stderr, "load for %u flows failed\n", n);
      return 1;
    }
    auto ack = vip_tcp(0x10);
    auto syn = vip_tcp(0x02);
    std::vector<double> lbs, bases, syn_lbs, syn_bases;
    uint64_t misses = ~0ull, syn_missing = ~0ull;
    h.skel->bss->vary_sport = 1;
    h.skel->bss->modulo = n;
    ns.in([&] {
      // The n flows, confirmed (as their handshakes would leave them), straight into
      // `conntrack`: a non-SYN miss would only make an unconfirmed entry in ct_pending.
      if (!prefill(*big, n, true)) std::fprintf(stderr, "prefill of %u flows failed\n", n);
      for (uint32_t r = 0; r < rounds; ++r) {
        h.skel->bss->counter = 0;
        h.set(base, ack);
        bases.push_back(test_run(h.fd(), ack, repeat, tin).ns);
        h.skel->bss->counter = 0;
        h.set(big->prog_fd(), ack);
        lbs.push_back(test_run(h.fd(), ack, repeat, tin).ns);
      }
      // A hit never creates an entry.
      auto vt = sluice::read_traffic(big->fds().vip_stats, 2);
      if (vt) misses = (*vt)[1].new_flows;
      // SYNs of new flows, counter n, n+1, ...: the empty program's runs use up counter
      // values too, so every measured SYN is a flow of its own.
      h.skel->bss->modulo = 0;
      h.skel->bss->counter = n;
      for (uint32_t r = 0; r < rounds; ++r) {
        h.set(base, syn);
        syn_bases.push_back(test_run(h.fd(), syn, syn_flows, tin).ns);
        h.set(big->prog_fd(), syn);
        syn_lbs.push_back(test_run(h.fd(), syn, syn_flows, tin).ns);
      }
      vt = sluice::read_traffic(big->fds().vip_stats, 2);
      if (vt) syn_missing = uint64_t{rounds} * syn_flows - ((*vt)[1].new_flows - misses);
    });
    h.skel->bss->vary_sport = 0;
    h.skel->bss->modulo = 0;
    // Kernel memory charged to the two tables, as bpftool reports it (fdinfo "memlock").
    uint64_t memlock_bytes = 0;
    for (int fd : {big->fds().conntrack, big->fds().ct_pending}) {
      std::ifstream in("/proc/self/fdinfo/" + std::to_string(fd));
      for (std::string line; std::getline(in, line);)
        if (line.rfind("memlock:", 0) == 0) memlock_bytes += std::stoull(line.substr(8));
    }
    const std::string memlock = std::to_string(memlock_bytes);
    double l = median(lbs), b = median(bases), sl = median(syn_lbs), sb = median(syn_bases);
    if (misses)
      std::printf("(%llu packets missed the prefilled flows)\n", (unsigned long long)misses);
    if (syn_missing) std::printf("(%llu SYNs created no entry)\n", (unsigned long long)syn_missing);
    const double mem = static_cast<double>(std::stoull(memlock));
    std::printf("%-9u %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f %11u %6.0f MiB %8.0f MiB\n", n, l, b,
                l - b, sl, sb, sl - sb, max_entries, mem / (1 << 20),
                mem / max_entries * 1e6 / (1 << 20));
    ns.in([&] { big.reset(); });
  }
  return finish(true);
}
