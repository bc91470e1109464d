// Configs as the tests write them: parsed as the agent parses them (a test failure if the parser
// refuses one), and those of the apply tests, over the in-memory maps (tests/unit/
// apply_plan_test.cc) and the real ones (tests/bpf/datapath_apply_test.cc): TCP VIPs on port 80
// whose backends are named by their last octet, and the one config the parser refuses but the
// API could build.
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <sluice/abi/abi.h>
#include <sluice/abi/hash.h>
#include <sluice/config/config.h>

#include <initializer_list>
#include <optional>
#include <string>

#include "loaded_datapath.h"

namespace sluice::test {

inline sl_addr v4(const char* s) {
  sl_addr a{};
  inet_pton(AF_INET, s, &a.w[0]);
  return a;
}

// addr:port/tcp as the maps key it (rev_nat, vip ids).
inline sl_endpoint tcp_endpoint(const char* addr, uint16_t port) {
  sl_endpoint ep{};
  ep.addr = v4(addr);
  ep.port = htons(port);
  ep.proto = IPPROTO_TCP;
  ep.family = SL_AF_INET;
  return ep;
}

// The config `yaml` describes; a test failure (and an empty Config) if the parser refuses it.
inline Config must_parse(const std::string& yaml) {
  std::string error;
  std::optional<Config> c = parse_or_error(yaml, &error);
  EXPECT_TRUE(c) << error;
  return c.value_or(Config{});
}

// A VIP block: `addr`:80/tcp with backends 198.18.<net>.<o>:80 for the last octets in `last`.
inline std::string tcp80_vip_yaml(const char* addr, const char* mode,
                                  std::initializer_list<int> last,
                                  const char* sched = "source-hash", int net = 1) {
  std::string y = "  - address: " + std::string(addr) +
                  "\n    port: 80\n    protocol: tcp\n    mode: " + mode +
                  "\n    scheduler: " + sched + "\n    backends: [";
  bool first = true;
  for (int o : last) {
    y += std::string(first ? "" : ", ") + "{address: 198.18." + std::to_string(net) + "." +
         std::to_string(o) + ", port: 80}";
    first = false;
  }
  return y + "]\n";
}

// A config of VIP blocks on interface lo (nothing is attached).
inline std::string lo_config_yaml(const std::string& vips) {
  return "interfaces: [lo]\nvips:\n" + vips;
}

// must_parse() of one nat VIP at 198.19.0.1 (tcp80_vip_yaml()).
inline Config nat_config(std::initializer_list<int> last, const char* sched = "source-hash") {
  return must_parse(lo_config_yaml(tcp80_vip_yaml("198.19.0.1", "nat", last, sched)));
}

// A least-conn VIP at 198.19.0.2 with 1025 backends, one over SL_LC_MAX_BACKENDS, shaped like
// `base`: built as the API would (the parser refuses it), so that its ring build fails in the
// middle of an apply. Backends whose pre-filter slot is `avoid`'s are left out.
inline VipConfig too_big_least_conn(const VipConfig& base, const sl_addr* avoid = nullptr) {
  VipConfig lc = base;
  lc.addr = v4("198.19.0.2");
  lc.sched = SL_SCHED_LEAST_CONN;
  lc.backends.clear();
  for (int i = 0; i < 1025; ++i) {
    BackendConfig b = base.backends[0];
    b.addr = v4(("10.7." + std::to_string(i / 250) + "." + std::to_string(1 + i % 250)).c_str());
    if (avoid && sl_addr_filter_slot(&b.addr) == sl_addr_filter_slot(avoid)) continue;
    lc.backends.push_back(b);
  }
  return lc;
}

}  // namespace sluice::test
