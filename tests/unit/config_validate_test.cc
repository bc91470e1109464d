// validate(): every cross-field rule of the config, on Configs built in code (no YAML), as the
// control API builds them. tests/unit/config_parse_test.cc covers the same rules through the
// parser, with their lines and columns.
#include "sluice/config/validate.h"

#include <gtest/gtest.h>
#include <netinet/in.h>

#include <tuple>

#include <string>
#include <vector>

#include "sluice/config/config.h"
#include "sluice/core/net.h"

namespace sluice {
namespace {

BackendConfig backend(const char* addr, uint16_t port, uint16_t weight = 1, int line = 0) {
  BackendConfig b;
  const auto ip = parse_ip(addr);
  EXPECT_TRUE(ip.has_value()) << addr;
  if (ip) std::tie(b.addr, b.family) = *ip;
  b.port = port;
  b.weight = weight;
  b.line = line;
  return b;
}

VipConfig vip(const char* addr, uint16_t port, std::vector<BackendConfig> backends,
              uint8_t proto = IPPROTO_TCP) {
  VipConfig v;
  const auto ip = parse_ip(addr);
  EXPECT_TRUE(ip.has_value()) << addr;
  if (ip) std::tie(v.addr, v.family) = *ip;
  v.port = port;
  v.proto = proto;
  v.backends = std::move(backends);
  return v;
}

Config config(std::vector<VipConfig> vips) {
  Config c;
  c.interfaces = {"eth0"};
  c.interface_configs = {InterfaceConfig{"eth0", {}, 0}};
  c.vips = std::move(vips);
  return c;
}

// "FIELD: MESSAGE" of each error.
std::vector<std::string> errors_of(const Config& c) {
  std::vector<std::string> out;
  for (const ConfigError& e : validate(c)) out.push_back(e.field + ": " + e.message);
  return out;
}

// The one error of `c`, "FIELD: MESSAGE".
std::string only_error(const Config& c) {
  const auto errors = errors_of(c);
  EXPECT_EQ(errors.size(), 1u) << testing::PrintToString(errors);
  return errors.empty() ? "" : errors[0];
}

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(Validate, AcceptsAValidConfig) {
  Config c = config({vip("198.19.0.1", 80, {backend("10.0.0.1", 8080), backend("10.0.0.2", 8080)}),
                     vip("198.19.0.1", 53, {backend("10.0.0.1", 5353)}, IPPROTO_UDP),
                     vip("fd00:19::1", 0, {backend("fd00:18::2", 0)})});
  c.vips[0].sched = SL_SCHED_LEAST_CONN;
  c.vips[1].hash_source_port = true;
  EXPECT_TRUE(errors_of(c).empty()) << testing::PrintToString(errors_of(c));
}

TEST(Validate, BackendFamilyIsTheVips) {
  EXPECT_EQ(only_error(config({vip("198.19.0.1", 80, {backend("fd00:18::2", 80)})})),
            "vips[0].backends[0].address: backend fd00:18::2 is IPv6 but the VIP 198.19.0.1 is "
            "IPv4; a VIP's backends must use the VIP's address family");
}

TEST(Validate, BackendIsNotTheVipsOwnAddress) {
  EXPECT_EQ(only_error(config({vip("198.19.0.1", 80, {backend("198.19.0.1", 8080)})})),
            "vips[0].backends[0].address: the backend address is the VIP's own address; give the "
            "backend host's address");
}

TEST(Validate, AddressesAreUnicast) {
  EXPECT_EQ(only_error(config({vip("198.19.0.1", 80, {backend("224.0.0.1", 80)})})),
            "vips[0].backends[0].address: 224.0.0.1 is a multicast address and cannot be a "
            "backend; give a unicast address");
  EXPECT_EQ(only_error(config({vip("255.255.255.255", 80, {backend("10.0.0.1", 80)})})),
            "vips[0].address: 255.255.255.255 is the broadcast address and cannot be a VIP; give "
            "a unicast address");
  EXPECT_EQ(only_error(config({vip("::", 80, {backend("fd00::1", 80)})})),
            "vips[0].address: :: is the unspecified address and cannot be a VIP; give a unicast "
            "address");
}

TEST(Validate, BackendPortFollowsTheVips) {
  EXPECT_EQ(only_error(config({vip("198.19.0.1", 0, {backend("10.0.0.1", 80)})})),
            "vips[0].backends[0].port: the VIP's port is 0 (every port), so backends keep the "
            "client's destination port; omit 'port' here");
  EXPECT_TRUE(has(only_error(config({vip("198.19.0.1", 80, {backend("10.0.0.1", 0)})})),
                  "port 0 is only valid under a port-0 VIP"));
  Config dsr = config({vip("198.19.0.2", 80, {backend("10.0.0.1", 8080)})});
  dsr.vips[0].mode = SL_MODE_DSR;
  EXPECT_EQ(only_error(dsr),
            "vips[0].backends[0].port: dsr mode does not rewrite ports, so the backend port must "
            "equal the VIP port 80; omit 'port' or set it to 80");
  dsr.vips[0].backends[0].port = 80;
  EXPECT_TRUE(errors_of(dsr).empty());
}

TEST(Validate, VipHasBackends) {
  EXPECT_EQ(only_error(config({vip("198.19.0.1", 80, {})})),
            "vips[0].backends: VIP has no backends; add at least one under 'backends'");
}

TEST(Validate, SomeBackendHasWeight) {
  const std::string e = only_error(
      config({vip("198.19.0.1", 80, {backend("10.0.0.1", 80, 0), backend("10.0.0.2", 80, 0)})}));
  EXPECT_TRUE(has(e, "vips[0].backends: every backend has weight 0")) << e;
  EXPECT_TRUE(has(e, "would have no backend with a weight above 0")) << e;
}

TEST(Validate, LeastConnBound) {
  std::vector<BackendConfig> many;
  for (int i = 0; i < SL_LC_MAX_BACKENDS + 1; ++i) {
    const std::string a = "10.0." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1);
    many.push_back(backend(a.c_str(), 80));
  }
  Config c = config({vip("198.19.0.1", 80, many)});
  c.max_backends = 2000;
  c.vips[0].sched = SL_SCHED_ROUND_ROBIN;
  EXPECT_TRUE(errors_of(c).empty());
  c.vips[0].sched = SL_SCHED_LEAST_CONN;
  EXPECT_EQ(only_error(c),
            "vips[0].backends: a least-conn VIP takes at most 1024 backends (every new connection "
            "compares them all), this one has 1025; split it into several VIPs, or use "
            "round-robin or source-hash");
}

TEST(Validate, SchedulerFitsTheProtocol) {
  Config c = config({vip("198.19.0.1", 53, {backend("10.0.0.1", 53)}, IPPROTO_UDP)});
  c.vips[0].sched = SL_SCHED_ROUND_ROBIN;
  c.vips[0].hash_source_port = true;  // not reported again: the scheduler is the mistake
  EXPECT_TRUE(has(only_error(c), "vips[0].scheduler: scheduler 'round-robin' needs TCP"));
  Config tcp = config({vip("198.19.0.1", 80, {backend("10.0.0.1", 80)})});
  tcp.vips[0].sched = SL_SCHED_LEAST_CONN;
  tcp.vips[0].hash_source_port = true;
  EXPECT_EQ(only_error(tcp),
            "vips[0].hash_source_port: hash_source_port applies to scheduler source-hash only; "
            "least-conn places every connection by itself: remove hash_source_port");
}

TEST(Validate, HealthCheckFitsTheVip) {
  Config c = config({vip("198.19.0.1", 0, {backend("10.0.0.1", 0)})});
  c.vips[0].health_check = HealthCheckConfig{};
  EXPECT_TRUE(has(only_error(c), "vips[0].health_check.port: the VIP's port is 0"));
  c.vips[0].health_check->port = 80;
  EXPECT_TRUE(errors_of(c).empty());
  c.vips[0].health_check->timeout_ms = 1000;
  EXPECT_EQ(only_error(c),
            "vips[0].health_check.timeout_ms: timeout_ms (1000) must be less than interval_ms "
            "(1000); a check must end before the next one starts");
}

TEST(Validate, Duplicates) {
  Config c = config({vip("198.19.0.1", 80, {backend("10.0.0.1", 80), backend("10.0.0.1", 80)})});
  EXPECT_EQ(only_error(c), "vips[0].backends[1]: duplicate backend 10.0.0.1:80");
  c.vips[0].backends[0].line = 7;
  c.vips[0].backends[1].line = 8;
  const std::vector<ConfigError> lined = validate(c);
  ASSERT_EQ(lined.size(), 1u);
  EXPECT_EQ(lined[0].line, 8);
  EXPECT_EQ(lined[0].message, "duplicate backend 10.0.0.1:80 (first defined at line 7)");

  Config vips = config({vip("198.19.0.1", 80, {backend("10.0.0.1", 80)}),
                        vip("198.19.0.1", 80, {backend("10.0.0.2", 80)})});
  vips.vips[1].mode = SL_MODE_DSR;  // the mode does not make it another VIP
  EXPECT_EQ(only_error(vips), "vips[1]: duplicate VIP 198.19.0.1:80/tcp");
  Config names = config({vip("198.19.0.1", 80, {backend("10.0.0.1", 80)}),
                         vip("198.19.0.1", 81, {backend("10.0.0.2", 81)})});
  names.vips[0].name = names.vips[1].name = "web";
  EXPECT_EQ(only_error(names), "vips[1].name: duplicate VIP name 'web'");
}

TEST(Validate, NatBackendServesOneVip) {
  Config c = config({vip("198.19.0.1", 80, {backend("10.0.0.1", 8080)}),
                     vip("198.19.0.3", 80, {backend("10.0.0.1", 8080)})});
  EXPECT_EQ(only_error(c),
            "vips[1].backends[0]: backend 10.0.0.1:8080/tcp of nat VIP 198.19.0.3:80/tcp is also a "
            "backend of nat VIP 198.19.0.1:80/tcp; its replies could not be mapped back to one "
            "VIP. Use a different backend port in one of them, or dsr mode");
  // Another protocol, another port, or a dsr VIP: the replies are told apart.
  Config udp = c;
  udp.vips[1].proto = IPPROTO_UDP;
  EXPECT_TRUE(errors_of(udp).empty());
  Config port = c;
  port.vips[1].backends[0].port = 8081;
  EXPECT_TRUE(errors_of(port).empty());
  Config dsr = config({vip("198.19.0.1", 80, {backend("10.0.0.1", 8080)}),
                       vip("198.19.0.3", 8080, {backend("10.0.0.1", 8080)})});
  dsr.vips[1].mode = SL_MODE_DSR;
  EXPECT_TRUE(errors_of(dsr).empty());
  // A port-0 backend answers from every port of its address.
  Config wildcard = config({vip("198.19.0.1", 80, {backend("10.0.0.1", 53)}, IPPROTO_UDP),
                            vip("198.19.0.4", 0, {backend("10.0.0.1", 0)}, IPPROTO_UDP)});
  EXPECT_TRUE(has(only_error(wildcard), "backend 10.0.0.1:*/udp of nat VIP 198.19.0.4:*/udp"));
}

TEST(Validate, Limits) {
  Config c = config({vip("198.19.0.1", 80, {backend("10.0.0.1", 80)}),
                     vip("198.19.0.1", 81, {backend("10.0.0.2", 81), backend("10.0.0.3", 81)})});
  c.max_vips = 1;
  c.max_backends = 2;
  const auto errors = errors_of(c);
  ASSERT_EQ(errors.size(), 2u) << testing::PrintToString(errors);
  EXPECT_EQ(errors[0],
            "vips[1]: VIP number 2 exceeds limits.max_vips (1); raise limits.max_vips (at most "
            "1024) or remove VIPs");
  EXPECT_EQ(errors[1],
            "vips[1].backends[1]: backend number 3 (counting all VIPs) exceeds "
            "limits.max_backends (2); raise limits.max_backends (at most 65536) or remove "
            "backends");
}

TEST(Validate, VlansFitTheMap) {
  Config c = config({vip("198.19.0.1", 80, {backend("10.0.0.1", 80)})});
  c.interface_configs.push_back(InterfaceConfig{"eth1", {}, 0});
  for (uint16_t id = 1; id <= SL_VLAN_MEMBER_ENTRIES + 1; ++id) {
    c.interface_configs[id % 2].vlans.push_back(id);
  }
  EXPECT_TRUE(has(only_error(c), "interfaces: " + std::to_string(SL_VLAN_MEMBER_ENTRIES + 1) +
                                     " VLANs listed over all interfaces"));
}

// The Config's lines are the errors' lines; a Config without lines gives none.
TEST(Validate, ErrorsCarryTheConfigsLines) {
  Config c = config({vip("198.19.0.1", 80, {backend("198.19.0.1", 80, 1, 7)})});
  c.vips[0].line = 3;
  const std::vector<ConfigError> errors = validate(c);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].line, 7);
  EXPECT_EQ(errors[0].column, 0);
  EXPECT_EQ(errors[0].field, "vips[0].backends[0].address");
}

// The parser runs validate(): a file breaking one rule gives validate()'s message, placed at
// the field in the file.
TEST(Validate, IsWhatTheParserRuns) {
  const ConfigResult r = parse_config(R"(interfaces: [eth0]
vips:
  - address: 198.19.0.2
    port: 80
    protocol: tcp
    mode: dsr
    backends:
      - address: 10.0.0.1
        port: 8080
)",
                                      "dsr.yaml");
  ASSERT_EQ(r.errors.size(), 1u);
  Config c = config({vip("198.19.0.2", 80, {backend("10.0.0.1", 8080)})});
  c.vips[0].mode = SL_MODE_DSR;
  const std::vector<ConfigError> errors = validate(c);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(r.errors[0].message, errors[0].message);
  EXPECT_EQ(r.errors[0].field, errors[0].field);
  EXPECT_EQ(r.errors[0].to_string(),
            "dsr.yaml:9:15: " + errors[0].field + ": " + errors[0].message);
}

}  // namespace
}  // namespace sluice
