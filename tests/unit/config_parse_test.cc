#include "sluice/config/config.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "sluice/core/net.h"

#include "param_name.h"

namespace sluice {
namespace {

std::string vip_text(const VipConfig& v) { return format_endpoint(vip_endpoint(v)); }

std::string backend_text(const BackendConfig& b) {
  return format_host_port(b.addr, b.family, b.port);
}

std::string all_errors(const ConfigResult& r) {
  std::string out;
  for (const ConfigError& e : r.errors) out += "\n  " + e.to_string();
  return out;
}

// ---------------------------------------------------------------------------------------------
// The embedded default is the documented example and must describe the demo topology.

TEST(DefaultConfig, ParsesCleanly) {
  const ConfigResult r = default_config();
  ASSERT_TRUE(r.errors.empty()) << all_errors(r);
  ASSERT_TRUE(r.config.has_value());
}

TEST(DefaultConfig, DescribesTheDemoTopology) {
  const ConfigResult r = default_config();
  ASSERT_TRUE(r.config.has_value()) << all_errors(r);
  const Config& c = *r.config;
  EXPECT_EQ(c.interfaces, (std::vector<std::string>{"lc", "lb1", "lb2", "lb3"}));
  EXPECT_EQ(c.log_level, "info");
  EXPECT_EQ(c.max_vips, uint32_t{SL_DEFAULT_MAX_VIPS});
  EXPECT_EQ(c.max_backends, uint32_t{SL_DEFAULT_MAX_BACKENDS});
  EXPECT_EQ(c.conntrack_max_entries, uint32_t{SL_DEFAULT_CT_ENTRIES});

  struct Expected {
    const char* vip;
    uint8_t mode;
    bool hash_source_port;
    std::vector<std::string> backends;
  };
  const std::vector<Expected> expected = {
      {"198.19.0.1:53/udp",
       SL_MODE_NAT,
       false,
       {"198.18.1.2:5353", "198.18.2.2:5353", "198.18.3.2:5353"}},
      {"198.19.0.1:80/tcp",
       SL_MODE_NAT,
       false,
       {"198.18.1.2:8080", "198.18.2.2:8080", "198.18.3.2:8080"}},
      {"[fd00:19::1]:80/tcp",
       SL_MODE_NAT,
       false,
       {"[fd00:18:1::2]:8080", "[fd00:18:2::2]:8080", "[fd00:18:3::2]:8080"}},
      {"198.19.0.2:80/tcp",
       SL_MODE_DSR,
       false,
       {"198.18.1.2:80", "198.18.2.2:80", "198.18.3.2:80"}},
      {"198.19.0.2:53/udp", SL_MODE_DSR, true, {"198.18.1.2:53", "198.18.2.2:53", "198.18.3.2:53"}},
  };
  ASSERT_EQ(c.vips.size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const VipConfig& v = c.vips[i];
    SCOPED_TRACE(vip_text(v));
    EXPECT_EQ(vip_text(v), expected[i].vip);
    EXPECT_EQ(v.mode, expected[i].mode);
    EXPECT_EQ(v.sched, SL_SCHED_SOURCE_HASH);
    EXPECT_EQ(v.hash_source_port, expected[i].hash_source_port);
    EXPECT_FALSE(v.name.empty());
    std::vector<std::string> got;
    for (const BackendConfig& b : v.backends) {
      got.push_back(backend_text(b));
      EXPECT_EQ(b.weight, 1);
      EXPECT_EQ(b.family, v.family);
      EXPECT_GT(b.line, v.line);
    }
    EXPECT_EQ(got, expected[i].backends);
  }
}

// ---------------------------------------------------------------------------------------------
// Valid configs: defaults and resolved values.

TEST(ParseConfig, MinimalConfigGetsDefaults) {
  const ConfigResult r = parse_config(R"(interfaces: [eth0]
vips:
  - address: 198.19.0.1
    port: 80
    protocol: tcp
    backends:
      - address: 10.0.0.1
      - address: 10.0.0.2
        port: 8080
        weight: 0
)",
                                      "min.yaml");
  ASSERT_TRUE(r.config.has_value()) << all_errors(r);
  const Config& c = *r.config;
  EXPECT_EQ(c.log_level, "info");
  EXPECT_EQ(c.max_vips, uint32_t{SL_DEFAULT_MAX_VIPS});
  ASSERT_EQ(c.vips.size(), 1u);
  const VipConfig& v = c.vips[0];
  EXPECT_EQ(v.line, 3);
  EXPECT_EQ(v.name, "");
  EXPECT_EQ(v.family, SL_AF_INET);
  EXPECT_EQ(v.port, 80);
  EXPECT_EQ(v.proto, IPPROTO_TCP);
  EXPECT_EQ(v.mode, SL_MODE_NAT);
  EXPECT_EQ(v.sched, SL_SCHED_SOURCE_HASH);
  EXPECT_FALSE(v.hash_source_port);
  ASSERT_EQ(v.backends.size(), 2u);
  EXPECT_EQ(backend_text(v.backends[0]), "10.0.0.1:80");  // the VIP's port
  EXPECT_EQ(v.backends[0].weight, 1);
  EXPECT_EQ(v.backends[0].line, 7);
  EXPECT_EQ(backend_text(v.backends[1]), "10.0.0.2:8080");
  EXPECT_EQ(v.backends[1].weight, 0);
}

TEST(ParseConfig, EveryFieldSet) {
  const ConfigResult r = parse_config(R"(interfaces:
  - eth0
  - eth1.100
log_level: debug
limits: {max_vips: 8, max_backends: 100}
conntrack: {max_entries: 1024}
vips:
  - name: web
    address: 2001:db8::10
    port: 443
    protocol: tcp
    scheduler: source-hash
    mode: dsr
    hash_source_port: true
    backends:
      - {address: "2001:db8:1::1", port: 443, weight: 65535}
  # A port-0 VIP: nat keeps the client's destination port.
  - address: 198.19.0.9
    port: 0
    protocol: udp
    backends:
      - address: 10.0.0.1
      - address: 10.0.0.2
        port: 0
)",
                                      "full.yaml");
  ASSERT_TRUE(r.config.has_value()) << all_errors(r);
  const Config& c = *r.config;
  EXPECT_EQ(c.interfaces, (std::vector<std::string>{"eth0", "eth1.100"}));
  EXPECT_EQ(c.log_level, "debug");
  EXPECT_EQ(c.max_vips, 8u);
  EXPECT_EQ(c.max_backends, 100u);
  EXPECT_EQ(c.conntrack_max_entries, 1024u);
  ASSERT_EQ(c.vips.size(), 2u);
  EXPECT_EQ(c.vips[0].name, "web");
  EXPECT_EQ(vip_text(c.vips[0]), "[2001:db8::10]:443/tcp");
  EXPECT_EQ(c.vips[0].mode, SL_MODE_DSR);
  EXPECT_TRUE(c.vips[0].hash_source_port);
  EXPECT_EQ(c.vips[0].backends[0].weight, 65535);
  EXPECT_EQ(vip_text(c.vips[1]), "198.19.0.9:*/udp");
  EXPECT_EQ(c.vips[1].line, 18);
  EXPECT_EQ(backend_text(c.vips[1].backends[0]), "10.0.0.1:*");
  EXPECT_EQ(backend_text(c.vips[1].backends[1]), "10.0.0.2:*");
}

TEST(ParseConfig, TrackSection) {
  const char* vips = R"(
vips:
  - {address: 198.19.0.1, port: 80, protocol: tcp, backends: [{address: 10.0.0.1}]}
)";
  ConfigResult r = parse_config(std::string("interfaces: [eth0]") + vips, "none.yaml");
  ASSERT_TRUE(r.config.has_value()) << all_errors(r);
  EXPECT_TRUE(r.config->track.interfaces.empty()) << "no track section: nothing tracked";
  EXPECT_EQ(r.config->track.max_flows, uint32_t{SL_DEFAULT_HOST_FLOWS});

  r = parse_config(std::string("interfaces: [eth0]\ntrack:\n  interfaces: [eth0, mgmt0]") + vips,
                   "track.yaml");
  ASSERT_TRUE(r.config.has_value()) << all_errors(r);
  EXPECT_EQ(r.config->track.interfaces, (std::vector<std::string>{"eth0", "mgmt0"}));
  EXPECT_EQ(r.config->track.max_flows, uint32_t{SL_DEFAULT_HOST_FLOWS});

  // Any interface, not only the load balancer's; max_flows at both ends of its range.
  for (uint32_t n : {1024u, 16777216u}) {
    r = parse_config("interfaces: [eth0]\ntrack: {interfaces: [lo], max_flows: " +
                         std::to_string(n) + "}" + vips,
                     "track.yaml");
    ASSERT_TRUE(r.config.has_value()) << all_errors(r);
    EXPECT_EQ(r.config->track.interfaces, std::vector<std::string>{"lo"});
    EXPECT_EQ(r.config->track.max_flows, n);
  }
}

TEST(ParseConfig, InterfacesWithVlans) {
  // A name, or a map with the VLANs the interface carries; both forms in one list.
  const ConfigResult r = parse_config(R"(interfaces:
  - eth0
  - name: lc
    vlans: [200, 100]
  - {name: bond0, vlans: []}
  - name: eth2
vips:
  - address: 198.19.0.1
    port: 80
    protocol: tcp
    backends: [{address: 10.0.0.1}]
)",
                                      "vlans.yaml");
  ASSERT_TRUE(r.config.has_value()) << all_errors(r);
  const Config& c = *r.config;
  EXPECT_EQ(c.interfaces, (std::vector<std::string>{"eth0", "lc", "bond0", "eth2"}));
  ASSERT_EQ(c.interface_configs.size(), 4u);
  EXPECT_EQ(c.interface_configs[0], (InterfaceConfig{"eth0", {}, 2}));
  EXPECT_EQ(c.interface_configs[1], (InterfaceConfig{"lc", {100, 200}, 3}));  // sorted
  EXPECT_EQ(c.interface_configs[2], (InterfaceConfig{"bond0", {}, 5}));
  EXPECT_EQ(c.interface_configs[3], (InterfaceConfig{"eth2", {}, 6}));
  // The flow form, as in the default config.
  const ConfigResult flow =
      parse_config("interfaces: [eth0, {name: eth1, vlans: [7]}]\nvips: []\n", "flow.yaml");
  ASSERT_EQ(flow.errors.size(), 1u) << all_errors(flow);  // only the empty VIP list
  EXPECT_EQ(flow.errors[0].field, "vips");
}

TEST(ParseConfig, TrackInterfacesAreNamesOnly) {
  // `track` observes the host's flows on interfaces: VLAN membership means nothing there.
  const ConfigResult r = parse_config(R"(interfaces: [eth0]
track:
  interfaces: [{name: eth0, vlans: [100]}]
vips:
  - address: 198.19.0.1
    port: 80
    protocol: tcp
    backends: [{address: 10.0.0.1}]
)",
                                      "track.yaml");
  ASSERT_EQ(r.errors.size(), 1u) << all_errors(r);
  EXPECT_EQ(r.errors[0].line, 3);
  EXPECT_EQ(r.errors[0].field, "track.interfaces[0]");
  EXPECT_NE(r.errors[0].message.find("expected an interface name"), std::string::npos);
}

TEST(ParseConfig, TrackErrorsComeWithTheRest) {
  // All at once: a bad track section does not hide other errors, nor they it.
  const ConfigResult r = parse_config(R"(interfaces: [eth0, eth0]
track:
  interfaces: [eth1, ""]
  max_flows: 0
vips: []
)",
                                      "all.yaml");
  ASSERT_EQ(r.errors.size(), 4u) << all_errors(r);
  EXPECT_EQ(r.errors[0].field, "interfaces[1]");
  EXPECT_EQ(r.errors[1].field, "track.interfaces[1]");
  EXPECT_EQ(r.errors[2].field, "track.max_flows");
  EXPECT_EQ(r.errors[3].field, "vips");
}

TEST(ParseConfig, RoundRobinAndLeastConn) {
  const ConfigResult r = parse_config(R"(interfaces: [eth0]
vips:
  - address: 198.19.0.1
    port: 80
    protocol: tcp
    scheduler: round-robin
    hash_source_port: false
    backends: [{address: 10.0.0.1, weight: 1}, {address: 10.0.0.2, weight: 3}]
  - address: 198.19.0.1
    port: 443
    protocol: tcp
    scheduler: least-conn
    mode: dsr
    backends: [{address: 10.0.0.1}, {address: 10.0.0.2, weight: 0}]
  - {address: 198.19.0.1, port: 53, protocol: udp, scheduler: source-hash,
     backends: [{address: 10.0.0.1}]}
)",
                                      "sched.yaml");
  ASSERT_TRUE(r.config.has_value()) << all_errors(r);
  const Config& c = *r.config;
  ASSERT_EQ(c.vips.size(), 3u);
  EXPECT_EQ(c.vips[0].sched, SL_SCHED_ROUND_ROBIN);
  EXPECT_EQ(c.vips[0].backends[1].weight, 3);
  EXPECT_EQ(c.vips[1].sched, SL_SCHED_LEAST_CONN);
  EXPECT_EQ(c.vips[1].mode, SL_MODE_DSR);
  EXPECT_EQ(c.vips[2].sched, SL_SCHED_SOURCE_HASH);
}

// A least-conn VIP: at most SL_LC_MAX_BACKENDS backends (the SYN scans them all).
std::string least_conn_config(int backends) {
  std::string y =
      "interfaces: [eth0]\nlimits: {max_backends: 2000}\nvips:\n"
      "  - address: 198.19.0.1\n    port: 80\n    protocol: tcp\n    scheduler: least-conn\n"
      "    backends:\n";
  for (int i = 0; i < backends; ++i) {
    y += "      - {address: 10.0." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1) +
         "}\n";
  }
  return y;
}

TEST(ParseConfig, LeastConnBackendBound) {
  const ConfigResult ok = parse_config(least_conn_config(SL_LC_MAX_BACKENDS), "lc.yaml");
  ASSERT_TRUE(ok.config.has_value()) << all_errors(ok);
  EXPECT_EQ(ok.config->vips[0].backends.size(), size_t{SL_LC_MAX_BACKENDS});
  const ConfigResult bad = parse_config(least_conn_config(SL_LC_MAX_BACKENDS + 1), "lc.yaml");
  ASSERT_FALSE(bad.config.has_value());
  ASSERT_EQ(bad.errors.size(), 1u) << all_errors(bad);
  EXPECT_EQ(bad.errors[0].to_string(),
            "lc.yaml:8:5: vips[0].backends: a least-conn VIP takes at most 1024 backends (every "
            "new connection compares them all), this one has 1025; split it into several VIPs, "
            "or use round-robin or source-hash");
  // The bound is least-conn's: round-robin takes as many as the limits allow.
  std::string rr = least_conn_config(SL_LC_MAX_BACKENDS + 1);
  rr.replace(rr.find("least-conn"), 10, "round-robin");
  const ConfigResult many = parse_config(rr, "rr.yaml");
  EXPECT_TRUE(many.config.has_value()) << all_errors(many);
}

TEST(ParseConfig, SameBackendInNatAndDsrVipsIsFine) {
  // DSR replies come from the VIP, not the backend, so they never hit reverse NAT.
  const ConfigResult r = parse_config(R"(interfaces: [eth0]
vips:
  - {address: 198.19.0.1, port: 80, protocol: tcp, backends: [{address: 10.0.0.1}]}
  - {address: 198.19.0.2, port: 80, protocol: tcp, mode: dsr, backends: [{address: 10.0.0.1}]}
  - {address: 198.19.0.1, port: 80, protocol: udp, backends: [{address: 10.0.0.1}]}
)",
                                      "ok.yaml");
  EXPECT_TRUE(r.config.has_value()) << all_errors(r);
}

// ---------------------------------------------------------------------------------------------
// Invalid configs: each reports exactly one error, at the right line and field, saying what
// to change.

struct BadCase {
  const char* name;
  const char* yaml;
  int line;
  const char* field;
  const char* message;  // substring
};

void PrintTo(const BadCase& c, std::ostream* os) { *os << c.name; }

class BadConfig : public testing::TestWithParam<BadCase> {};

TEST_P(BadConfig, ReportsOneErrorWithLineAndField) {
  const BadCase& c = GetParam();
  const ConfigResult r = parse_config(c.yaml, "bad.yaml");
  EXPECT_FALSE(r.config.has_value());
  ASSERT_EQ(r.errors.size(), 1u) << all_errors(r);
  const ConfigError& e = r.errors[0];
  EXPECT_EQ(e.file, "bad.yaml");
  EXPECT_EQ(e.line, c.line) << e.to_string();
  EXPECT_EQ(e.field, c.field) << e.to_string();
  EXPECT_NE(e.message.find(c.message), std::string::npos)
      << e.to_string() << "\n  expected message containing: " << c.message;
}

const BadCase kBadCases[] = {
    {"VlanIdZero", R"(interfaces:
  - name: eth0
    vlans: [100, 0]
vips:
  - address: 198.19.0.1
    port: 80
    protocol: tcp
    backends: [{address: 10.0.0.1}]
)",
     3, "interfaces[0].vlans[1]", "VLAN id 0 is a priority tag"},
    {"VlanIdReserved", R"(interfaces:
  - {name: eth0, vlans: [4095]}
vips:
  - address: 198.19.0.1
    port: 80
    protocol: tcp
    backends: [{address: 10.0.0.1}]
)",
     2, "interfaces[0].vlans[0]", "4095 is reserved"},
    {"VlanIdOutOfRange", R"(interfaces:
  - name: eth0
    vlans:
      - 5000
vips:
  - address: 198.19.0.1
    port: 80
    protocol: tcp
    backends: [{address: 10.0.0.1}]
)",
     4, "interfaces[0].vlans[0]", "1..4094"},
    {"VlanIdNotANumber", R"(interfaces:
  - name: eth0
    vlans: [office]
vips:
  - address: 198.19.0.1
    port: 80
    protocol: tcp
    backends: [{address: 10.0.0.1}]
)",
     3, "interfaces[0].vlans[0]", "1..4094"},
    {"VlanDuplicate", R"(interfaces:
  - name: eth0
    vlans: [100, 200,
            100]
vips:
  - address: 198.19.0.1
    port: 80
    protocol: tcp
    backends: [{address: 10.0.0.1}]
)",
     4, "interfaces[0].vlans[2]", "duplicate VLAN 100 (first listed at line 3)"},
    {"VlansNotAList", R"(interfaces:
  - name: eth0
    vlans: 100
vips:
  - address: 198.19.0.1
    port: 80
    protocol: tcp
    backends: [{address: 10.0.0.1}]
)",
     3, "interfaces[0].vlans", "expected a list of VLAN ids"},
    {"InterfaceMapWithoutName", R"(interfaces:
  - vlans: [100]
vips:
  - address: 198.19.0.1
    port: 80
    protocol: tcp
    backends: [{address: 10.0.0.1}]
)",
     2, "interfaces[0].name", "required field 'name' is missing"},
    {"InterfaceMapUnknownField", R"(interfaces:
  - name: eth0
    vlan: [100]
vips:
  - address: 198.19.0.1
    port: 80
    protocol: tcp
    backends: [{address: 10.0.0.1}]
)",
     3, "interfaces[0].vlan", "unknown field 'vlan'; valid fields: name, vlans"},
    {"InterfaceMapBadName", R"(interfaces:
  - name: eth0
  - name: "eth0:1"
    vlans: [100]
vips:
  - address: 198.19.0.1
    port: 80
    protocol: tcp
    backends: [{address: 10.0.0.1}]
)",
     3, "interfaces[1].name", "cannot contain"},
    {"InterfaceMapDuplicateName", R"(interfaces:
  - eth0
  - name: eth0
    vlans: [100]
vips:
  - address: 198.19.0.1
    port: 80
    protocol: tcp
    backends: [{address: 10.0.0.1}]
)",
     3, "interfaces[1].name", "duplicate interface 'eth0' (first listed at line 2)"},
    {"UnknownVipField", R"(interfaces: [eth0]
vips:
  - address: 198.19.0.1
    port: 80
    protocol: tcp
    shceduler: source-hash
    backends:
      - address: 10.0.0.1
)",
     6, "vips[0].shceduler",
     "unknown field 'shceduler'; valid fields: name, address, port, protocol, scheduler, mode, "
     "hash_source_port, backends"},

    {"UnknownTopLevelField", R"(interfaces: [eth0]
stats: {listen: 127.0.0.1:9100}
vips:
  - {address: 198.19.0.1, port: 80, protocol: tcp, backends: [{address: 10.0.0.1}]}
)",
     2, "stats", "unknown field 'stats'; valid fields: interfaces, log_level, limits"},

    {"UnknownBackendField", R"(interfaces: [eth0]
vips:
  - address: 198.19.0.1
    port: 80
    protocol: tcp
    backends:
      - address: 10.0.0.1
        wieght: 2
)",
     8, "vips[0].backends[0].wieght", "valid fields: address, port, weight"},

    {"BadVipAddress", R"(interfaces: [eth0]
vips:
  - address: 10.0.0.300
    port: 80
    protocol: tcp
    backends:
      - address: 10.0.0.1
)",
     3, "vips[0].address", "'10.0.0.300' is not an IPv4 or IPv6 address"},

    {"PrefixInsteadOfAddress", R"(interfaces: [eth0]
vips:
  - address: 198.19.0.0/24
    port: 80
    protocol: tcp
    backends:
      - address: 10.0.0.1
)",
     3, "vips[0].address", "without a prefix"},

    {"BadBackendAddress", R"(interfaces: [eth0]
vips:
  - address: 198.19.0.1
    port: 80
    protocol: tcp
    backends:
      - address: 10.0.0.1
      - address: backend-2.example
)",
     8, "vips[0].backends[1].address", "'backend-2.example' is not an IPv4 or IPv6 address"},

    {"UnspecifiedVipAddress", R"(interfaces: [eth0]
vips:
  - address: 0.0.0.0
    port: 80
    protocol: tcp
    backends:
      - address: 10.0.0.1
)",
     3, "vips[0].address", "the unspecified address and cannot be a VIP"},

    {"MulticastBackend", R"(interfaces: [eth0]
vips:
  - address: fd00:19::1
    port: 80
    protocol: tcp
    backends:
      - address: ff02::1
)",
     7, "vips[0].backends[0].address", "a multicast address and cannot be a backend"},

    {"BackendIsTheVip", R"(interfaces: [eth0]
vips:
  - address: 198.19.0.1
    port: 80
    protocol: tcp
    backends:
      - address: 198.19.0.1
        port: 8080
)",
     7, "vips[0].backends[0].address", "the VIP's own address"},

    {"MissingVipAddress", R"(interfaces: [eth0]
vips:
  - port: 80
    protocol: tcp
    backends:
      - address: 10.0.0.1
)",
     3, "vips[0].address", "required field 'address' is missing"},

    {"MissingBackendAddress", R"(interfaces: [eth0]
vips:
  - address: 198.19.0.1
    port: 80
    protocol: tcp
    backends:
      - port: 8080
)",
     7, "vips[0].backends[0].address", "required field 'address' is missing"},

    {"DuplicateVip", R"(interfaces: [eth0]
vips:
  - address: 198.19.0.1
    port: 80
    protocol: tcp
    backends:
      - address: 10.0.0.1
  - address: 198.19.0.1
    port: 80
    protocol: tcp
    mode: dsr
    backends:
      - address: 10.0.0.2
)",
     8, "vips[1]", "duplicate VIP 198.19.0.1:80/tcp (first defined at line 3)"},

    {"DuplicateVipName", R"(interfaces: [eth0]
vips:
  - {name: web, address: 198.19.0.1, port: 80, protocol: tcp, backends: [{address: 10.0.0.1}]}
  - {name: web, address: 198.19.0.1, port: 81, protocol: tcp, backends: [{address: 10.0.0.2}]}
)",
     4, "vips[1].name", "duplicate VIP name 'web' (first used at line 3)"},

    {"DuplicateBackend", R"(interfaces: [eth0]
vips:
  - address: 198.19.0.1
    port: 80
    protocol: tcp
    backends:
      - address: 10.0.0.1
      - address: 10.0.0.1
        port: 80
)",
     8, "vips[0].backends[1]", "duplicate backend 10.0.0.1:80 (first defined at line 7)"},

    {"EmptyBackendList", R"(interfaces: [eth0]
vips:
  - address: 198.19.0.1
    port: 80
    protocol: tcp
    backends: []
)",
     6, "vips[0].backends", "VIP has no backends; add at least one under 'backends'"},

    {"MissingBackends", R"(interfaces: [eth0]
vips:
  - address: 198.19.0.1
    port: 80
    protocol: tcp
)",
     3, "vips[0].backends", "VIP has no backends; add at least one under 'backends'"},

    {"PortOutOfRange", R"(interfaces: [eth0]
vips:
  - address: 198.19.0.1
    port: 70000
    protocol: tcp
    backends:
      - address: 10.0.0.1
)",
     4, "vips[0].port", "70000 is out of range; valid ports are 0..65535"},

    {"NegativeBackendPort", R"(interfaces: [eth0]
vips:
  - address: 198.19.0.1
    port: 80
    protocol: tcp
    backends:
      - address: 10.0.0.1
        port: -8080
)",
     8, "vips[0].backends[0].port", "-8080 is out of range"},

    {"PortNotANumber", R"(interfaces: [eth0]
vips:
  - address: 198.19.0.1
    port: http
    protocol: tcp
    backends:
      - address: 10.0.0.1
)",
     4, "vips[0].port", "'http' is not a number; expected an integer in 0..65535"},

    {"QuotedPort", R"(interfaces: [eth0]
vips:
  - address: 198.19.0.1
    port: "80"
    protocol: tcp
    backends:
      - address: 10.0.0.1
)",
     4, "vips[0].port", "got the quoted string \"80\"; remove the quotes"},

    {"MissingPort", R"(interfaces: [eth0]
vips:
  - address: 198.19.0.1
    protocol: tcp
    backends:
      - address: 10.0.0.1
)",
     3, "vips[0].port", "required field 'port' is missing; give a port number, or 0"},

    {"EmptyPortValue", R"(interfaces: [eth0]
vips:
  - address: 198.19.0.1
    port:
    protocol: tcp
    backends:
      - address: 10.0.0.1
)",
     4, "vips[0].port", "expected an integer in 0..65535, got nothing"},

    {"BackendPortZeroUnderPortedVip", R"(interfaces: [eth0]
vips:
  - address: 198.19.0.1
    port: 80
    protocol: tcp
    backends:
      - address: 10.0.0.1
        port: 0
)",
     8, "vips[0].backends[0].port", "port 0 is only valid under a port-0 VIP"},

    {"BackendPortUnderPortZeroVip", R"(interfaces: [eth0]
vips:
  - address: 198.19.0.1
    port: 0
    protocol: tcp
    backends:
      - address: 10.0.0.1
        port: 8080
)",
     8, "vips[0].backends[0].port", "keep the client's destination port; omit 'port' here"},

    {"BadProtocol", R"(interfaces: [eth0]
vips:
  - address: 198.19.0.1
    port: 80
    protocol: sctp
    backends:
      - address: 10.0.0.1
)",
     5, "vips[0].protocol", "unknown protocol 'sctp'; valid protocols: tcp, udp"},

    {"FamilyMismatch", R"(interfaces: [eth0]
vips:
  - address: 198.19.0.1
    port: 80
    protocol: tcp
    backends:
      - address: 10.0.0.1
      - address: fd00:18:1::2
)",
     8, "vips[0].backends[1].address",
     "backend fd00:18:1::2 is IPv6 but the VIP 198.19.0.1 is IPv4"},

    {"DsrPortMismatch", R"(interfaces: [eth0]
vips:
  - address: 198.19.0.2
    port: 80
    protocol: tcp
    mode: dsr
    backends:
      - address: 10.0.0.1
        port: 8080
)",
     9, "vips[0].backends[0].port",
     "dsr mode does not rewrite ports, so the backend port must equal the VIP port 80"},

    {"UnknownMode", R"(interfaces: [eth0]
vips:
  - address: 198.19.0.1
    port: 80
    protocol: tcp
    mode: tunnel
    backends:
      - address: 10.0.0.1
)",
     6, "vips[0].mode", "unknown mode 'tunnel'; valid modes: nat, dsr"},

    {"UnknownScheduler", R"(interfaces: [eth0]
vips:
  - address: 198.19.0.1
    port: 80
    protocol: tcp
    scheduler: maglev
    backends:
      - address: 10.0.0.1
)",
     6, "vips[0].scheduler",
     "unknown scheduler 'maglev'; valid schedulers: source-hash, round-robin, least-conn"},

    {"RoundRobinOnUdp", R"(interfaces: [eth0]
vips:
  - address: 198.19.0.1
    port: 53
    protocol: udp
    scheduler: round-robin
    backends:
      - address: 10.0.0.1
)",
     6, "vips[0].scheduler",
     "scheduler 'round-robin' needs TCP: UDP is forwarded statelessly, datagram by datagram, so "
     "a UDP VIP takes source-hash (with hash_source_port: true to spread one client's flows)"},

    {"LeastConnOnUdp", R"(interfaces: [eth0]
vips:
  - {address: 198.19.0.1, port: 0, protocol: udp, scheduler: least-conn,
     backends: [{address: 10.0.0.1}]}
)",
     3, "vips[0].scheduler", "scheduler 'least-conn' needs TCP"},

    {"HashSourcePortWithRoundRobin", R"(interfaces: [eth0]
vips:
  - address: 198.19.0.1
    port: 80
    protocol: tcp
    scheduler: round-robin
    hash_source_port: true
    backends:
      - address: 10.0.0.1
)",
     7, "vips[0].hash_source_port",
     "hash_source_port applies to scheduler source-hash only; round-robin places every "
     "connection by itself: remove hash_source_port"},

    {"HashSourcePortNotBool", R"(interfaces: [eth0]
vips:
  - address: 198.19.0.1
    port: 80
    protocol: tcp
    hash_source_port: yes
    backends:
      - address: 10.0.0.1
)",
     6, "vips[0].hash_source_port", "expected true or false, got 'yes'"},

    {"WeightOutOfRange", R"(interfaces: [eth0]
vips:
  - address: 198.19.0.1
    port: 80
    protocol: tcp
    backends:
      - address: 10.0.0.1
        weight: 65536
)",
     8, "vips[0].backends[0].weight", "65536 is out of range; valid weights are 0..65535"},

    {"AllWeightsZero", R"(interfaces: [eth0]
vips:
  - address: 198.19.0.1
    port: 80
    protocol: tcp
    backends:
      - address: 10.0.0.1
        weight: 0
      - address: 10.0.0.2
        weight: 0
)",
     6, "vips[0].backends", "every backend has weight 0"},

    {"SameNatBackendInTwoVips", R"(interfaces: [eth0]
vips:
  - address: 198.19.0.1
    port: 80
    protocol: tcp
    backends:
      - address: 10.0.0.1
        port: 8080
  - address: 198.19.0.3
    port: 80
    protocol: tcp
    backends:
      - address: 10.0.0.2
        port: 8080
      - address: 10.0.0.1
        port: 8080
)",
     15, "vips[1].backends[1]",
     "backend 10.0.0.1:8080/tcp of nat VIP 198.19.0.3:80/tcp (line 9) is also a backend of nat "
     "VIP 198.19.0.1:80/tcp (line 3)"},

    {"NatWildcardBackendOverlapsPortedOne", R"(interfaces: [eth0]
vips:
  - {address: 198.19.0.1, port: 80, protocol: udp, backends: [{address: 10.0.0.1, port: 53}]}
  - {address: 198.19.0.4, port: 0, protocol: udp, backends: [{address: 10.0.0.1}]}
)",
     4, "vips[1].backends[0]", "backend 10.0.0.1:*/udp of nat VIP 198.19.0.4:*/udp (line 4)"},

    {"VipsIsAMap", R"(interfaces: [eth0]
vips:
  address: 198.19.0.1
  port: 80
)",
     3, "vips", "expected a list of VIPs, got a map"},

    {"BackendsIsAString", R"(interfaces: [eth0]
vips:
  - address: 198.19.0.1
    port: 80
    protocol: tcp
    backends: 10.0.0.1
)",
     6, "vips[0].backends", "expected a list of backends, got '10.0.0.1'"},

    {"PortIsAList", R"(interfaces: [eth0]
vips:
  - address: 198.19.0.1
    port: [80, 443]
    protocol: tcp
    backends:
      - address: 10.0.0.1
)",
     4, "vips[0].port", "expected an integer in 0..65535, got a list"},

    {"VipIsAScalar", R"(interfaces: [eth0]
vips:
  - 198.19.0.1:80
)",
     3, "vips[0]", "expected a VIP (a map of 'field: value'), got '198.19.0.1:80'"},

    {"TopLevelIsAList", R"(- interfaces: [eth0]
)",
     1, "", "expected the top level of the config (a map of 'field: value'), got a list"},

    {"YamlSyntaxError", R"(interfaces: [eth0]
vips:
  - address: 198.19.0.1
    port: 80
   protocol: tcp
    backends:
      - address: 10.0.0.1
)",
     5, "", "invalid YAML"},

    // yaml-cpp reports where it noticed the problem: the line after the unclosed list.
    {"UnclosedFlowList", R"(interfaces: [eth0, eth1
vips:
  - {address: 198.19.0.1, port: 80, protocol: tcp, backends: [{address: 10.0.0.1}]}
)",
     2, "", "invalid YAML: end of sequence flow not found"},

    {"TabIndentation", "interfaces: [eth0]\nvips:\n\t- address: 198.19.0.1\n", 3, "",
     "invalid YAML"},

    {"DuplicateKey", R"(interfaces: [eth0]
vips:
  - address: 198.19.0.1
    port: 80
    protocol: tcp
    port: 81
    backends:
      - address: 10.0.0.1
)",
     6, "vips[0].port", "field 'port' is set twice (first at line 4)"},

    {"EmptyFile", "# nothing here\n", 1, "", "the config is empty"},

    {"TwoDocuments", R"(interfaces: [eth0]
vips:
  - {address: 198.19.0.1, port: 80, protocol: tcp, backends: [{address: 10.0.0.1}]}
---
interfaces: [eth1]
)",
     4, "", "a second YAML document starts here"},

    {"DocumentEndThenContent", R"(---
interfaces: [eth0]
vips:
  - {address: 198.19.0.1, port: 80, protocol: tcp, backends: [{address: 10.0.0.1}]}
...
# a comment after the end marker is fine, content is not
log_level: debug
)",
     7, "", "a second YAML document starts here"},

    // yaml-cpp 0.7's LoadAll hangs on this input; the parser must not.
    {"LeadingComma", R"(
,# a stray comma
interfaces: [eth0]
)",
     2, "", "expected the top level of the config (a map of 'field: value') to start here"},

    {"MissingInterfaces", R"(log_level: info
vips:
  - address: 198.19.0.1
    port: 80
    protocol: tcp
    backends:
      - address: 10.0.0.1
)",
     1, "interfaces", "required field 'interfaces' is missing"},

    {"EmptyInterfaces", R"(interfaces: []
vips:
  - {address: 198.19.0.1, port: 80, protocol: tcp, backends: [{address: 10.0.0.1}]}
)",
     1, "interfaces", "no interfaces listed"},

    {"DuplicateInterface", R"(interfaces:
  - lc
  - lb1
  - lc
vips:
  - {address: 198.19.0.1, port: 80, protocol: tcp, backends: [{address: 10.0.0.1}]}
)",
     4, "interfaces[2]", "duplicate interface 'lc' (first listed at line 2)"},

    {"InterfaceNameTooLong", R"(interfaces: [eth0, averyveryverylongname]
vips:
  - {address: 198.19.0.1, port: 80, protocol: tcp, backends: [{address: 10.0.0.1}]}
)",
     1, "interfaces[1]", "is 21 characters long; Linux allows at most 15"},

    {"InterfaceNameWithSlash", R"(interfaces: [eth0/1]
vips:
  - {address: 198.19.0.1, port: 80, protocol: tcp, backends: [{address: 10.0.0.1}]}
)",
     1, "interfaces[0]", "contains '/'"},

    {"EmptyVips", R"(interfaces: [eth0]
vips: []
)",
     2, "vips", "no VIPs configured; add at least one VIP under 'vips'"},

    {"MissingVips", R"(interfaces: [eth0]
log_level: info
)",
     1, "vips", "required field 'vips' is missing"},

    {"BadLogLevel", R"(interfaces: [eth0]
log_level: verbose
vips:
  - {address: 198.19.0.1, port: 80, protocol: tcp, backends: [{address: 10.0.0.1}]}
)",
     2, "log_level", "unknown log level 'verbose'; valid levels: trace, debug, info, warn"},

    {"TooManyVipsForLimits", R"(interfaces: [eth0]
vips:
  - {address: 198.19.0.1, port: 80, protocol: tcp, backends: [{address: 10.0.0.1}]}
  - {address: 198.19.0.1, port: 81, protocol: tcp, backends: [{address: 10.0.0.2}]}
  - {address: 198.19.0.1, port: 82, protocol: tcp, backends: [{address: 10.0.0.3}]}
limits:
  max_vips: 2
)",
     5, "vips[2]", "VIP number 3 exceeds limits.max_vips (2); raise limits.max_vips"},

    {"TooManyBackendsForLimits", R"(interfaces: [eth0]
limits: {max_backends: 2}
vips:
  - {address: 198.19.0.1, port: 80, protocol: tcp, backends: [{address: 10.0.0.1}]}
  - address: 198.19.0.1
    port: 81
    protocol: tcp
    backends:
      - address: 10.0.0.2
      - address: 10.0.0.3
)",
     10, "vips[1].backends[1]", "exceeds limits.max_backends (2)"},

    {"MaxVipsOutOfRange", R"(interfaces: [eth0]
limits:
  max_vips: 0
vips:
  - {address: 198.19.0.1, port: 80, protocol: tcp, backends: [{address: 10.0.0.1}]}
)",
     3, "limits.max_vips", "0 is out of range; valid values are 1..1024"},

    {"ConntrackTooSmall", R"(interfaces: [eth0]
conntrack:
  max_entries: 100
vips:
  - {address: 198.19.0.1, port: 80, protocol: tcp, backends: [{address: 10.0.0.1}]}
)",
     3, "conntrack.max_entries", "100 is out of range; valid values are 1024..16777216"},

    // track: host flow tracking.
    {"TrackIsAList", R"(interfaces: [eth0]
track: [eth0]
vips:
  - {address: 198.19.0.1, port: 80, protocol: tcp, backends: [{address: 10.0.0.1}]}
)",
     2, "track", "expected track settings (a map of 'field: value'), got a list"},

    {"TrackInterfacesNotAList", R"(interfaces: [eth0]
track:
  interfaces: eth0
vips:
  - {address: 198.19.0.1, port: 80, protocol: tcp, backends: [{address: 10.0.0.1}]}
)",
     3, "track.interfaces", "expected a list of interface names, got 'eth0'"},

    {"TrackInterfacesMissing", R"(interfaces: [eth0]
track:
  max_flows: 4096
vips:
  - {address: 198.19.0.1, port: 80, protocol: tcp, backends: [{address: 10.0.0.1}]}
)",
     3, "track.interfaces",
     "required field 'interfaces' is missing; list the interfaces whose TCP connections to track"},

    {"TrackEmptySection", R"(interfaces: [eth0]
track:
vips:
  - {address: 198.19.0.1, port: 80, protocol: tcp, backends: [{address: 10.0.0.1}]}
)",
     2, "track.interfaces", "or remove the track section"},

    {"TrackNoInterfaces", R"(interfaces: [eth0]
track: {interfaces: []}
vips:
  - {address: 198.19.0.1, port: 80, protocol: tcp, backends: [{address: 10.0.0.1}]}
)",
     2, "track.interfaces", "no interfaces listed; list the interfaces whose TCP connections"},

    {"TrackEmptyInterfaceName", R"(interfaces: [eth0]
track:
  interfaces:
    - eth0
    - ""
vips:
  - {address: 198.19.0.1, port: 80, protocol: tcp, backends: [{address: 10.0.0.1}]}
)",
     5, "track.interfaces[1]", "an interface name cannot be empty"},

    {"TrackDuplicateInterface", R"(interfaces: [eth0]
track:
  interfaces:
    - eth1
    - eth0
    - eth1
vips:
  - {address: 198.19.0.1, port: 80, protocol: tcp, backends: [{address: 10.0.0.1}]}
)",
     6, "track.interfaces[2]", "duplicate interface 'eth1' (first listed at line 4)"},

    {"TrackInterfaceNameTooLong", R"(interfaces: [eth0]
track: {interfaces: [averyveryverylongname]}
vips:
  - {address: 198.19.0.1, port: 80, protocol: tcp, backends: [{address: 10.0.0.1}]}
)",
     2, "track.interfaces[0]", "is 21 characters long; Linux allows at most 15"},

    {"TrackMaxFlowsZero", R"(interfaces: [eth0]
track:
  interfaces: [eth0]
  max_flows: 0
vips:
  - {address: 198.19.0.1, port: 80, protocol: tcp, backends: [{address: 10.0.0.1}]}
)",
     4, "track.max_flows", "0 is out of range; valid values are 1024..16777216"},

    {"TrackMaxFlowsTooBig", R"(interfaces: [eth0]
track:
  interfaces: [eth0]
  max_flows: 16777217
vips:
  - {address: 198.19.0.1, port: 80, protocol: tcp, backends: [{address: 10.0.0.1}]}
)",
     4, "track.max_flows", "16777217 is out of range; valid values are 1024..16777216"},

    {"TrackMaxFlowsNotANumber", R"(interfaces: [eth0]
track:
  interfaces: [eth0]
  max_flows: lots
vips:
  - {address: 198.19.0.1, port: 80, protocol: tcp, backends: [{address: 10.0.0.1}]}
)",
     4, "track.max_flows", "'lots' is not a number; expected an integer in 1024..16777216"},

    {"TrackUnknownKey", R"(interfaces: [eth0]
track:
  interfaces: [eth0]
  protocols: [tcp]
vips:
  - {address: 198.19.0.1, port: 80, protocol: tcp, backends: [{address: 10.0.0.1}]}
)",
     4, "track.protocols", "unknown field 'protocols'; valid fields: interfaces, max_flows"},

    {"ApiSocketRelative", R"(interfaces: [eth0]
api:
  socket: run/sluiced.sock
vips:
  - {address: 198.19.0.1, port: 80, protocol: tcp, backends: [{address: 10.0.0.1}]}
)",
     3, "api.socket",
     "'run/sluiced.sock' is not an absolute path; give one such as /run/sluice/sluiced.sock"},

    {"ApiSocketTooLong", R"(interfaces: [eth0]
api:
  socket: /run/sluice/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock
vips:
  - {address: 198.19.0.1, port: 80, protocol: tcp, backends: [{address: 10.0.0.1}]}
)",
     3, "api.socket", "the path is 123 bytes; a Unix socket path holds at most 107 (sun_path)"},

    {"ApiEnabledWithoutSocket", R"(interfaces: [eth0]
api:
  enabled: true
  socket: ""
vips:
  - {address: 198.19.0.1, port: 80, protocol: tcp, backends: [{address: 10.0.0.1}]}
)",
     4, "api.socket",
     "socket is empty, which turns the API off, but enabled is true; give a path such as "
     "/run/sluice/sluiced.sock, or set enabled: false"},

    {"ApiUnknownKey", R"(interfaces: [eth0]
api:
  listen: 127.0.0.1:9000
vips:
  - {address: 198.19.0.1, port: 80, protocol: tcp, backends: [{address: 10.0.0.1}]}
)",
     3, "api.listen", "unknown field 'listen'; valid fields: enabled, socket"},

    {"LimitsIsAList", R"(interfaces: [eth0]
limits: [64]
vips:
  - {address: 198.19.0.1, port: 80, protocol: tcp, backends: [{address: 10.0.0.1}]}
)",
     2, "limits", "expected limits (a map of 'field: value'), got a list"},
};

INSTANTIATE_TEST_SUITE_P(Cases, BadConfig, testing::ValuesIn(kBadCases), test::ParamName());

// ---------------------------------------------------------------------------------------------

TEST(ParseConfig, ReportsEveryErrorInOnePass) {
  const ConfigResult r = parse_config(R"(interfaces: [eth0]
vips:
  - address: 198.19.0.300
    port: 80
    protocol: tcp
    backends:
      - address: 10.0.0.1
        weight: -1
  - address: 198.19.0.2
    port: 80
    protocol: sctp
    backends:
      - address: 10.0.0.2
)",
                                      "three.yaml");
  EXPECT_FALSE(r.config.has_value());
  ASSERT_EQ(r.errors.size(), 3u) << all_errors(r);
  EXPECT_EQ(r.errors[0].to_string(),
            "three.yaml:3:14: vips[0].address: '198.19.0.300' is not an IPv4 or IPv6 address");
  EXPECT_EQ(r.errors[1].line, 8);
  EXPECT_EQ(r.errors[1].field, "vips[0].backends[0].weight");
  EXPECT_EQ(r.errors[2].line, 11);
  EXPECT_EQ(r.errors[2].field, "vips[1].protocol");
}

TEST(ParseConfig, DocumentMarkersAroundOneDocumentAreFine) {
  const ConfigResult r = parse_config(R"(%YAML 1.2
# leading comment
--- # start
interfaces: [eth0]
vips:
  - {address: 198.19.0.1, port: 80, protocol: tcp, backends: [{address: 10.0.0.1}]}
...
# trailing comment
)",
                                      "markers.yaml");
  EXPECT_TRUE(r.config.has_value()) << all_errors(r);
}

TEST(ParseConfig, ErrorsAreInFileOrder) {
  // The duplicate VIP is found after all VIPs are read, but is reported in line order.
  const ConfigResult r = parse_config(R"(interfaces: [eth0]
vips:
  - {address: 198.19.0.1, port: 80, protocol: tcp, backends: [{address: 10.0.0.1}]}
  - {address: 198.19.0.1, port: 80, protocol: tcp, backends: [{address: 10.0.0.2}]}
  - {address: 198.19.0.1, port: 81, protocol: tcp, backends: [{address: 10.0.0.3, weight: x}]}
)",
                                      "order.yaml");
  ASSERT_EQ(r.errors.size(), 2u) << all_errors(r);
  EXPECT_EQ(r.errors[0].line, 4);
  EXPECT_EQ(r.errors[1].line, 5);
}

TEST(ConfigError, ToStringLeavesOutUnknownParts) {
  EXPECT_EQ((ConfigError{"f.yaml", 3, 7, "vips[0].port", "bad"}).to_string(),
            "f.yaml:3:7: vips[0].port: bad");
  EXPECT_EQ((ConfigError{"f.yaml", 3, 7, "", "invalid YAML: x"}).to_string(),
            "f.yaml:3:7: invalid YAML: x");
  EXPECT_EQ((ConfigError{"f.yaml", 0, 0, "", "cannot read"}).to_string(), "f.yaml: cannot read");
}

TEST(LoadConfigFile, MissingFileNamesFileAndErrno) {
  const ConfigResult r = load_config_file("/nonexistent/sluice.yaml");
  EXPECT_FALSE(r.config.has_value());
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].file, "/nonexistent/sluice.yaml");
  EXPECT_NE(r.errors[0].message.find("No such file or directory"), std::string::npos)
      << r.errors[0].to_string();
}

TEST(LoadConfigFile, DirectoryIsAnError) {
  const ConfigResult r = load_config_file("/");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_NE(r.errors[0].message.find("Is a directory"), std::string::npos);
}

TEST(LoadConfigFile, ReadsAndNamesTheFile) {
  char path[] = "/tmp/sluice_config_test_XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  {
    std::ofstream out(path);
    out << std::string_view(kDefaultConfigYaml, kDefaultConfigYamlSize);
  }
  ConfigResult r = load_config_file(path);
  EXPECT_TRUE(r.config.has_value()) << all_errors(r);
  {
    std::ofstream out(path);
    out << "interfaces: [eth0]\nvips: []\n";
  }
  r = load_config_file(path);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].file, path);
  EXPECT_EQ(r.errors[0].line, 2);
  std::remove(path);
}

}  // namespace
}  // namespace sluice
