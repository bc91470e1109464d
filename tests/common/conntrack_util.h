// Shared by the conntrack tests: synthetic conntrack entries with chosen states and timestamps
// (no kernel needed), the map operations on them, and a fixture with a loaded data path (real
// maps, nothing attached).
#pragma once

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <gtest/gtest.h>

#include <sluice/abi/abi.h>
#include <sluice/bpf/datapath.h>
#include <sluice/config/config.h>
#include <sluice/core/net.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "loaded_datapath.h"
#include "netns.h"

namespace sluice::test {

inline constexpr uint64_t kSec = 1000000000ull;

// for_state() of every TCP state from SL_TCP_SYN_SENT to SL_TCP_CLOSED, in that order: one
// comparison names each state's timeout (gtest prints the whole list on a mismatch).
inline std::vector<uint32_t> timeouts_by_state(const ConntrackTimeouts& t) {
  std::vector<uint32_t> out;
  for (uint8_t s = SL_TCP_SYN_SENT; s <= SL_TCP_CLOSED; ++s) out.push_back(t.for_state(s));
  return out;
}

inline sl_flow_key flow_key(const std::string& src, uint16_t sport, const std::string& dst,
                            uint16_t dport) {
  sl_flow_key k{};
  auto s = parse_ip(src);
  auto d = parse_ip(dst);
  EXPECT_TRUE(s && d) << src << " " << dst;
  if (!s || !d) return k;
  k.src = s->first;
  k.dst = d->first;
  k.family = s->second;
  k.sport = htons(sport);
  k.dport = htons(dport);
  k.proto = IPPROTO_TCP;
  return k;
}

// The i-th of many distinct flows: 10.x.y.z:(1024 + i % 50000) -> 198.19.0.1:80.
inline sl_flow_key nth_flow(uint32_t i) {
  sl_flow_key k{};
  k.src.w[0] = htonl(0x0a000000u | (i & 0xffffffu));
  k.dst.w[0] = htonl(0xc6130001u);  // 198.19.0.1
  k.sport = htons(static_cast<uint16_t>(1024 + i % 50000));
  k.dport = htons(80);
  k.proto = IPPROTO_TCP;
  k.family = SL_AF_INET;
  return k;
}

inline sl_ct_entry ct_entry(uint8_t state, uint64_t first_seen_ns, uint64_t last_seen_ns,
                            uint32_t backend_id = 0, uint32_t live = 0) {
  sl_ct_entry e{};
  e.backend_id = backend_id;
  e.state = state;
  e.live = live;
  e.first_seen_ns = first_seen_ns;
  e.last_seen_ns = last_seen_ns;
  return e;
}

inline bool ct_put(int fd, const sl_flow_key& k, const sl_ct_entry& e) {
  const int err = bpf_map_update_elem(fd, &k, &e, BPF_ANY);
  EXPECT_EQ(err, 0) << "update conntrack: " << strerror(errno);
  return err == 0;
}

inline bool ct_has(int fd, const sl_flow_key& k) {
  sl_ct_entry e{};
  return bpf_map_lookup_elem(fd, &k, &e) == 0;
}

inline uint64_t ct_count(int fd) {
  uint64_t n = 0;
  sl_flow_key key{}, next{};
  const sl_flow_key* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    ++n;
    key = next;
    prev = &key;
  }
  return n;
}

// Loads the data path (maps only, nothing attached). Skips without root, BTF or bpffs.
class LoadedDatapathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = skip_reason()) GTEST_SKIP() << *why;
    std::string error;
    dp_ = load_datapath(small_limits(65536), &error);
    ASSERT_TRUE(dp_) << error;
  }
  int ct_fd() const { return dp_->fds().conntrack; }
  // Applies the config `yaml` to the loaded data path.
  void Apply(const std::string& yaml) {
    std::string error;
    const std::optional<Config> cfg = parse_or_error(yaml, &error);
    ASSERT_TRUE(cfg) << error;
    auto s = dp_->apply(*cfg);
    ASSERT_TRUE(s) << s.error().to_string();
  }

  std::unique_ptr<Datapath> dp_;
};

}  // namespace sluice::test
