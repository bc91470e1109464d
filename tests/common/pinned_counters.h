// The data path's counters read straight from its pinned maps with libbpf, the way sluicectl
// reads them, but by index: a test can name a counter (enum sl_drop_reason, sl_pass_reason,
// sl_ct_stat) before sluicectl's JSON has a name for it, and still reads it while no agent
// runs. Link PkgConfig::LIBBPF.
#pragma once

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sluice/abi/abi.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace sluice::test {

class PinnedMaps {
 public:
  explicit PinnedMaps(std::filesystem::path pin_dir) : dir_(std::move(pin_dir)) {}

  // drops[reason].packets and passes[reason].packets, summed over CPUs.
  uint64_t drop(uint32_t reason) const { return percpu_sum("drops", reason, sizeof(sl_counter)); }
  uint64_t pass(uint32_t reason) const { return percpu_sum("passes", reason, sizeof(sl_counter)); }
  // Every verdict's packets (verdicts[XDP_*]): all that the XDP program saw.
  uint64_t seen() const {
    uint64_t sum = 0;
    for (uint32_t a = 0; a < SL_VERDICT_MAX; ++a)
      sum += percpu_sum("verdicts", a, sizeof(sl_counter));
    return sum;
  }
  // ct_stats[stat], summed over CPUs.
  uint64_t ct_stat(uint32_t stat) const { return percpu_sum("ct_stats", stat, sizeof(uint64_t)); }

  // The sum of a plain u64 array (`backend_conns`: the live connections of every backend).
  uint64_t array_sum(const std::string& map) const {
    const std::filesystem::path pin = dir_ / map;
    Obj fd(pin);
    bpf_map_info info{};
    uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd.fd, &info, &len) != 0) fail("map info", pin);
    uint64_t sum = 0;
    for (uint32_t k = 0; k < info.max_entries; ++k) {
      uint64_t v = 0;
      if (bpf_map_lookup_elem(fd.fd, &k, &v) != 0) fail("lookup", pin);
      sum += v;
    }
    return sum;
  }

  // Entries of a pinned hash map (`conntrack`, `ct_pending`); -1 when it is not pinned.
  int64_t entries(const std::string& map) const {
    const std::filesystem::path pin = dir_ / map;
    if (!std::filesystem::exists(pin)) return -1;
    Obj fd(pin);
    bpf_map_info info{};
    uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd.fd, &info, &len) != 0) fail("map info", pin);
    std::vector<uint8_t> key(info.key_size), next(info.key_size);
    int64_t n = 0;
    const void* prev = nullptr;
    while (bpf_map_get_next_key(fd.fd, prev, next.data()) == 0) {
      ++n;
      key.swap(next);
      prev = key.data();
    }
    return n;
  }

 private:
  struct Obj {
    explicit Obj(const std::filesystem::path& pin) : fd(bpf_obj_get(pin.c_str())) {
      if (fd < 0) fail("bpf_obj_get", pin);
    }
    ~Obj() { close(fd); }
    int fd;
  };

  [[noreturn]] static void fail(const std::string& what, const std::filesystem::path& pin) {
    throw std::runtime_error(what + " " + pin.string() + ": " + strerror(errno));
  }

  // The first u64 (`packets` of an sl_counter, or the u64 itself) of every CPU's value.
  uint64_t percpu_sum(const std::string& map, uint32_t key, size_t value_size) const {
    const std::filesystem::path pin = dir_ / map;
    Obj fd(pin);
    const int cpus = libbpf_num_possible_cpus();
    if (cpus <= 0) throw std::runtime_error("libbpf_num_possible_cpus failed");
    // Per-CPU values are laid out at 8-byte strides.
    const size_t stride = (value_size + 7) & ~size_t{7};
    std::vector<uint8_t> buf(stride * static_cast<size_t>(cpus));
    if (bpf_map_lookup_elem(fd.fd, &key, buf.data()) != 0) {
      // ENOENT: the array is shorter than the ABI this test was built with (an older data path).
      fail("no counter " + std::to_string(key) + " in", pin);
    }
    uint64_t sum = 0;
    for (int c = 0; c < cpus; ++c) {
      uint64_t v;
      memcpy(&v, buf.data() + stride * static_cast<size_t>(c), sizeof(v));
      sum += v;
    }
    return sum;
  }

  std::filesystem::path dir_;
};

}  // namespace sluice::test
