// Time to apply a config of many VIPs through the agent's own path (Datapath::load + apply),
// in a private network namespace, and to reload it:
//   - a fresh apply of N VIPs (default 1000) with 2..4 backends each, into empty maps;
//   - a reload that changes a weight in every VIP (every ring is rebuilt and switched);
//   - a reload that changes one VIP of N (the others must not be touched);
//   - a reload of the same config (nothing to do).
// Then where the time of one VIP goes: the Maglev build, and writing one ring into the map
// by the agent's way (stores through the mmapped `maglev` array) and by one
// bpf_map_update_batch of 65537 slots (the way before).
//
//   sudo build/bench/apply_bench [--vips N] [--rounds R]
//
// Issue goal: 1000 VIPs applied in at most 1 s.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include <sluice/apply/maglev.h>
#include <sluice/bpf/datapath.h>
#include <sluice/config/config.h>
#include "netns.h"

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double thread_cpu_ms() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

// Wall time, and this thread's CPU time (user + system, so the syscalls count): the machine is
// shared, and wall time also counts the time other jobs had the core.
struct Step {
  std::vector<double> wall, cpu;
  Clock::time_point t0;
  double c0 = 0;
  void start() {
    c0 = thread_cpu_ms();
    t0 = Clock::now();
  }
  void stop() {
    wall.push_back(ms_since(t0));
    cpu.push_back(thread_cpu_ms() - c0);
  }
};

// Backend b of VIP i.
std::string backend_addr(uint32_t i, uint32_t b) {
  return "10." + std::to_string(b + 1) + "." + std::to_string(i / 250) + "." +
         std::to_string(1 + i % 250);
}

// N nat VIPs 198.19.x.y:80/tcp; VIP i has 2 + i % 3 backends (backend_addr):8080, each backend
// weight base + b (so every reload that bumps `base` changes the ratios of every VIP) except in
// the VIP `bump_only`, when given: then only that VIP's first backend moves.
std::string make_config(uint32_t n, uint32_t base, int bump_only = -1) {
  std::string y = "interfaces: [bd0]\nlimits: {max_vips: " + std::to_string(n + 1) +
                  ", max_backends: " + std::to_string(4 * n) + "}\nvips:\n";
  for (uint32_t i = 0; i < n; ++i) {
    const std::string hi = std::to_string(i / 250), lo = std::to_string(1 + i % 250);
    y += "  - {address: 198.19." + hi + "." + lo + ", port: 80, protocol: tcp, backends: [";
    const uint32_t nb = 2 + i % 3;
    for (uint32_t b = 0; b < nb; ++b) {
      uint32_t w = 1 + b;
      if (bump_only < 0)
        w = base + b;
      else if (static_cast<uint32_t>(bump_only) == i && b == 0)
        w = base + b;
      y += std::string(b ? ", " : "") + "{address: " + backend_addr(i, b) +
           ", port: 8080, weight: " + std::to_string(w) + "}";
    }
    y += "]}\n";
  }
  return y;
}

sluice::Config parse_or_die(const std::string& text) {
  auto r = sluice::parse_config(text, "<bench>");
  if (!r.config) {
    for (auto& e : r.errors) std::fprintf(stderr, "%s\n", e.to_string().c_str());
    std::exit(1);
  }
  return *r.config;
}

void die(const sluice::Error& e) {
  std::fprintf(stderr, "apply_bench: %s\n", e.to_string().c_str());
  std::exit(1);
}

// Every configured VIP must be reachable and point at a ring of its own backends: the bench
// measures real applies, not failed ones.
void check_applied(const sluice::Datapath& dp, const sluice::Config& cfg) {
  const auto& ids = dp.backend_ids();
  if (ids.size() != cfg.vips.size()) {
    std::fprintf(stderr, "apply_bench: %zu VIPs applied, %zu configured\n", ids.size(),
                 cfg.vips.size());
    std::exit(1);
  }
  for (size_t v = 0; v < cfg.vips.size(); v += 97) {
    sl_endpoint ep{};
    ep.addr = cfg.vips[v].addr;
    ep.family = cfg.vips[v].family;
    ep.port = htons(cfg.vips[v].port);
    ep.proto = cfg.vips[v].proto;
    uint32_t vid = 0;
    sl_vip_entry e{};
    if (bpf_map_lookup_elem(dp.fds().vips, &ep, &vid) != 0 ||
        bpf_map_lookup_elem(dp.fds().vip_table, &vid, &e) != 0) {
      std::fprintf(stderr, "apply_bench: VIP %zu is not in the maps\n", v);
      std::exit(1);
    }
    for (uint32_t slot : {0u, 1u, 30000u, uint32_t{SL_MAGLEV_SIZE - 1}}) {
      const uint32_t key = e.vip.ring_id * SL_MAGLEV_SIZE + slot;
      uint32_t id = 0;
      bpf_map_lookup_elem(dp.fds().maglev, &key, &id);
      if (std::find(ids[v].begin(), ids[v].end(), id) == ids[v].end()) {
        std::fprintf(stderr,
                     "apply_bench: VIP %zu ring slot %u holds %u, not one of its backends\n", v,
                     slot, id);
        std::exit(1);
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  uint32_t n = 1000, rounds = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    uint32_t v = static_cast<uint32_t>(std::strtoul(argv[i + 1], nullptr, 10));
    if (a == "--vips" && v >= 1 && v <= 1000)
      n = v;
    else if (a == "--rounds" && v >= 1)
      rounds = v;
    else {
      std::fprintf(stderr, "bad option %s %s; valid: --vips 1..1000 --rounds R (R >= 1)\n",
                   a.c_str(), argv[i + 1]);
      return 2;
    }
  }
  if (auto why = sluice::test::skip_reason()) {
    std::fprintf(stderr, "apply_bench cannot run here: %s\n", why->c_str());
    return 1;
  }
  libbpf_set_print([](libbpf_print_level l, const char* f, va_list a) {
    return l == LIBBPF_WARN ? std::vfprintf(stderr, f, a) : 0;
  });
  spdlog::set_level(spdlog::level::warn);  // apply logs one line per new VIP at info

  const sluice::Config fresh = parse_or_die(make_config(n, 1));
  const sluice::Config reweighted = parse_or_die(make_config(n, 2));
  const sluice::Config one_changed = parse_or_die(make_config(n, 5, static_cast<int>(n / 2)));
  uint32_t backends = 0;
  for (const auto& v : fresh.vips) backends += static_cast<uint32_t>(v.backends.size());

  // apply() writes maps only; the namespace keeps anything it might reach off the host's.
  sluice::test::NetNs ns("applyb");

  Step load, fresh_apply, all_changed, one, same;
  std::unique_ptr<sluice::Datapath> dp;
  ns.in([&] {
    for (uint32_t r = 0; r < rounds; ++r) {
      dp.reset();  // the previous round's maps go first: each holds max_vips * 1 MiB of rings
      sluice::Limits limits{fresh.max_vips, fresh.max_backends, 65536};
      load.start();
      auto d = sluice::Datapath::load(limits);
      load.stop();
      if (!d) die(d.error());
      dp = std::move(*d);

      fresh_apply.start();
      auto s = dp->apply(fresh);
      fresh_apply.stop();
      if (!s) die(s.error());
      if (s->vips_added != n) die({0, "fresh apply: " + s->to_string()});
      check_applied(*dp, fresh);

      all_changed.start();
      s = dp->apply(reweighted);
      all_changed.stop();
      if (!s) die(s.error());
      if (s->vips_changed != n) die({0, "reweight all: " + s->to_string()});
      check_applied(*dp, reweighted);

      // Back to the fresh weights (not timed), then one VIP's weight moves.
      s = dp->apply(fresh);
      if (!s) die(s.error());
      one.start();
      s = dp->apply(one_changed);
      one.stop();
      if (!s) die(s.error());
      if (s->vips_changed != 1 || s->vips_unchanged != n - 1)
        die({0, "one VIP changed: " + s->to_string()});
      check_applied(*dp, one_changed);

      same.start();
      s = dp->apply(one_changed);
      same.stop();
      if (!s) die(s.error());
      if (s->vips_unchanged != n) die({0, "same config: " + s->to_string()});
    }
  });

  std::printf(
      "apply_bench: %u VIPs, %u backends (2..4 per VIP), limits.max_vips %u; median of "
      "%u rounds\n",
      n, backends, fresh.max_vips, rounds);
  std::printf("%-52s %10s %10s\n", "step", "wall ms", "CPU ms");
  auto row = [](const char* name, const Step& st, const char* note = "") {
    std::printf("%-52s %10.2f %10.2f%s\n", name, median(st.wall), median(st.cpu), note);
  };
  row("Datapath::load (verifier, map allocation, mmap)", load);
  row("apply, fresh: every VIP new", fresh_apply, "   goal <= 1000");
  row("reload: a weight changed in every VIP", all_changed);
  row("reload: one VIP changed, the others unchanged", one);
  row("reload: the same config", same);

  // Where one VIP's time goes: the ring build, and the ring write both ways.
  Step build, store, batch, map;
  std::vector<uint32_t> ring;
  for (uint32_t i = 0; i < std::min<uint32_t>(n, 300); ++i) {
    const auto& vc = fresh.vips[i];
    std::vector<sluice::MaglevBackend> mb;
    for (uint32_t b = 0; b < vc.backends.size(); ++b)
      mb.push_back({b, vc.backends[b].weight, backend_addr(i, b) + ":8080"});
    build.start();
    ring = sluice::build_maglev(mb, SL_MAGLEV_SIZE);
    build.stop();
  }
  // Into a ring no VIP uses: the maps have room for one VIP more than configured.
  const int fd = dp->fds().maglev;
  bpf_map_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) die(sluice::sys_error("inspect map 'maglev'"));
  const uint32_t spare_ring = fresh.max_vips * SL_RINGS_PER_VIP - 1;
  const uint32_t base_key = spare_ring * SL_MAGLEV_SIZE;
  std::vector<uint32_t> keys(SL_MAGLEV_SIZE);
  std::iota(keys.begin(), keys.end(), base_key);
  const bool mmapable = info.map_flags & BPF_F_MMAPABLE;
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  // Array elements are round_up(value_size, 8) bytes apart: a u32 slot every 8 bytes.
  const size_t bytes = (size_t{info.max_entries} * 8 + page - 1) / page * page;
  for (int r = 0; r < 21; ++r) {
    batch.start();
    uint32_t count = SL_MAGLEV_SIZE;
    if (bpf_map_update_batch(fd, keys.data(), ring.data(), &count, nullptr) != 0)
      die(sluice::sys_error("bpf_map_update_batch 'maglev'"));
    batch.stop();
    if (!mmapable) continue;
    map.start();
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    map.stop();
    if (p == MAP_FAILED) die(sluice::sys_error("mmap map 'maglev'"));
    uint32_t* out = static_cast<uint32_t*>(p) + size_t{base_key} * 2;
    store.start();
    for (uint32_t i = 0; i < SL_MAGLEV_SIZE; ++i) out[i * 2] = ring[i];
    store.stop();
    munmap(p, bytes);
  }
  std::printf("\nper VIP, median\n");
  auto us = [](const char* name, const Step& st) {
    std::printf("%-52s %8.0f us %8.0f us\n", name, median(st.wall) * 1000, median(st.cpu) * 1000);
  };
  us("build_maglev, 2..4 backends", build);
  us("ring write: bpf_map_update_batch of 65537 slots", batch);
  if (mmapable) {
    us("ring write: stores through the mmapped array", store);
    std::printf("%-52s %8.1f ms %8.1f ms\n", "once per load: mmap of the whole maglev array",
                median(map.wall), median(map.cpu));
  } else {
    std::printf("(the maglev map is not mmapable in this build: no figure for the mapping)\n");
  }
  // Kernel memory charged to the rings, as bpftool reports it (fdinfo "memlock").
  std::ifstream in("/proc/self/fdinfo/" + std::to_string(fd));
  for (std::string line; std::getline(in, line);)
    if (line.rfind("memlock:", 0) == 0)
      std::printf("map 'maglev' memlock: %.1f MiB for %u VIPs (%.2f MiB per VIP)\n",
                  std::stod(line.substr(8)) / (1 << 20), fresh.max_vips,
                  std::stod(line.substr(8)) / (1 << 20) / fresh.max_vips);
  dp.reset();
  return 0;
}
