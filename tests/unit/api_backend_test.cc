// The control API's backend changes (`sluicectl backend add|remove|weight|drain|enable`) as the
// daemon makes them: config_with_backend_change() on the running config. A change is refused
// for every reason the config file would be, with the config's own words, checked here by
// writing the same change into the file and parsing it.
#include "sluice/config/backend_change.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "sluice/config/config.h"
#include "sluice/core/net.h"

#include "param_name.h"

namespace sluice {
namespace {

// The running config, one VIP block each; every VIP's backends come last in its block, one a
// line, so a test can add a backend to the file where the API adds it.
struct VipBlock {
  std::string head;  // the lines before the backends
  std::vector<std::string> backends;
};

std::vector<VipBlock> running_blocks() {
  std::vector<VipBlock> blocks = {
      {"  - name: web\n    address: 198.19.0.1\n    port: 80\n    protocol: tcp\n",
       {"{address: 198.18.1.2, port: 8080}", "{address: 198.18.2.2, port: 8080, weight: 0}"}},
      {"  - name: web2\n    address: 198.19.0.3\n    port: 80\n    protocol: tcp\n",
       {"{address: 198.18.3.2, port: 8080}"}},
      {"  - name: dsr\n    address: 198.19.0.2\n    port: 80\n    protocol: tcp\n    mode: dsr\n",
       {"{address: 198.18.1.2}"}},
      {"  - name: v6\n    address: fd00:19::1\n    port: 80\n    protocol: tcp\n",
       {"{address: 'fd00:18:1::2', port: 8080}"}},
      {"  - name: any\n    address: 198.19.0.4\n    port: 0\n    protocol: udp\n",
       {"{address: 198.18.4.2}"}},
      {"  - name: dns\n    address: 198.19.0.1\n    port: 53\n    protocol: udp\n",
       {"{address: 198.18.1.2, port: 5353}"}},
      {"  - name: lc\n    address: 198.19.0.5\n    port: 80\n    protocol: tcp\n"
       "    scheduler: least-conn\n",
       {}},
  };
  for (int i = 0; i < SL_LC_MAX_BACKENDS; ++i) {
    blocks.back().backends.push_back("{address: 10.1." + std::to_string(i / 250) + "." +
                                     std::to_string(i % 250 + 1) + "}");
  }
  return blocks;
}

std::string yaml_of(const std::vector<VipBlock>& blocks) {
  std::string y = "interfaces: [eth0]\nlimits: {max_backends: 2000}\nvips:\n";
  for (const VipBlock& b : blocks) {
    y += b.head;
    y += b.backends.empty() ? "    backends: []\n" : "    backends:\n";
    for (const std::string& line : b.backends) y += "      - " + line + "\n";
  }
  return y;
}

Config running_config() {
  const ConfigResult r = parse_config(yaml_of(running_blocks()), "running.yaml");
  EXPECT_TRUE(r.config.has_value()) << (r.errors.empty() ? "" : r.errors[0].to_string());
  return r.config.value_or(Config{});
}

// The one error the config file gives when `edit` is made to it.
template <class Edit>
std::string config_error(Edit edit) {
  std::vector<VipBlock> blocks = running_blocks();
  edit(blocks);
  const ConfigResult r = parse_config(yaml_of(blocks), "running.yaml");
  EXPECT_EQ(r.errors.size(), 1u);
  return r.errors.empty() ? "(no error)" : r.errors[0].message;
}

// The error of a change the API refuses.
std::string api_error(const BackendChange& change) {
  const Config running = running_config();
  const Result<Config> next = config_with_backend_change(running, change);
  EXPECT_FALSE(next.ok()) << change.action << " " << change.vip << " " << change.backend;
  return next.ok() ? "(accepted)" : next.error().message;
}

// A backend added through the API, and the same backend written into the file, are refused with
// the same message.
struct AddCase {
  const char* name;
  std::size_t vip;       // its block in running_blocks()
  const char* vip_name;  // as the request names the VIP
  const char* backend;   // as the request names the backend
  const char* line;      // the backend as the file writes it
  const char* expected;  // a part of the message
};

void PrintTo(const AddCase& c, std::ostream* os) { *os << c.name; }

class ApiBackendAdd : public testing::TestWithParam<AddCase> {};

TEST_P(ApiBackendAdd, IsRefusedLikeTheConfig) {
  const AddCase& c = GetParam();
  const std::string from_file =
      config_error([&](std::vector<VipBlock>& b) { b[c.vip].backends.push_back(c.line); });
  const std::string from_api = api_error({"add", c.vip_name, c.backend, std::nullopt});
  EXPECT_EQ(from_api, from_file);
  EXPECT_NE(from_api.find(c.expected), std::string::npos) << from_api;
}

const AddCase kAddCases[] = {
    {"TheVipsOwnAddress", 0, "web", "198.19.0.1:8080", "{address: 198.19.0.1, port: 8080}",
     "the backend address is the VIP's own address"},
    {"ADsrPortOtherThanTheVips", 2, "dsr", "198.18.2.2:8080", "{address: 198.18.2.2, port: 8080}",
     "dsr mode does not rewrite ports"},
    {"APortUnderAPortZeroVip", 4, "any", "198.18.5.2:53", "{address: 198.18.5.2, port: 53}",
     "the VIP's port is 0 (every port)"},
    {"LeastConnOverTheBound", 6, "lc", "10.2.0.1", "{address: 10.2.0.1}",
     "a least-conn VIP takes at most 1024 backends"},
    {"ANatEndpointOfAnotherNatVip", 1, "web2", "198.18.1.2:8080",
     "{address: 198.18.1.2, port: 8080}", "is also a backend of nat VIP 198.19.0.1:80/tcp"},
    // The port-0 VIP's backend answers from every port of its address.
    {"ANatEndpointOfAPortZeroNatVip", 5, "dns", "198.18.4.2:5353",
     "{address: 198.18.4.2, port: 5353}", "is also a backend of nat VIP 198.19.0.4:*/udp"},
    {"AnotherFamily", 3, "v6", "198.18.1.2:8080", "{address: 198.18.1.2, port: 8080}",
     "backend 198.18.1.2 is IPv4 but the VIP fd00:19::1 is IPv6"},
    {"ANonUnicastAddress", 0, "web", "224.0.0.9:8080", "{address: 224.0.0.9, port: 8080}",
     "is a multicast address and cannot be a backend"},
    {"ADuplicateAdd", 0, "web", "198.18.1.2:8080", "{address: 198.18.1.2, port: 8080}",
     "duplicate backend 198.18.1.2:8080 (first defined at line"},
};

INSTANTIATE_TEST_SUITE_P(Refuses, ApiBackendAdd, testing::ValuesIn(kAddCases), test::ParamName());

TEST(ApiBackend, RefusesAWeightOutOfRange) {
  for (const char* w : {"65536", "-1", "2.5", "\"2\"", "null", "100000000000000000000"}) {
    EXPECT_EQ(api_error({"add", "web", "198.18.9.2:8080", std::string(w)}),
              "\"weight\" must be an integer 0..65535")
        << w;
    EXPECT_EQ(api_error({"weight", "web", "198.18.1.2:8080", std::string(w)}),
              "\"weight\" must be an integer 0..65535")
        << w;
  }
  EXPECT_EQ(api_error({"weight", "web", "198.18.1.2:8080", std::nullopt}),
            "\"weight\" must be an integer 0..65535");
}

TEST(ApiBackend, RefusesRemovingTheLastBackend) {
  const std::string from_file =
      config_error([](std::vector<VipBlock>& b) { b[2].backends.clear(); });
  EXPECT_EQ(api_error({"remove", "dsr", "198.18.1.2", std::nullopt}), from_file);
  EXPECT_EQ(from_file, "VIP has no backends; add at least one under 'backends'");
}

TEST(ApiBackend, RefusesLeavingNoWeight) {
  const std::string from_file = config_error([](std::vector<VipBlock>& b) {
    b[0].backends[0] = "{address: 198.18.1.2, port: 8080, weight: 0}";
  });
  EXPECT_EQ(api_error({"weight", "web", "198.18.1.2:8080", "0"}), from_file);
  EXPECT_EQ(api_error({"remove", "web", "198.18.1.2:8080", std::nullopt}), from_file);
  // The words sluicectl users know (tests/e2e/agent_ops_test.cc).
  EXPECT_NE(from_file.find("would have no backend with a weight above 0"), std::string::npos);
}

TEST(ApiBackend, RefusesAnUnknownVipOrBackend) {
  const std::string vip = api_error({"drain", "198.19.0.9:80/tcp", "198.18.1.2:8080", {}});
  EXPECT_EQ(vip.rfind("no VIP '198.19.0.9:80/tcp'; VIPs: web (198.19.0.1:80/tcp), web2 ", 0), 0u)
      << vip;
  for (const char* action : {"drain", "enable", "remove", "weight"}) {
    EXPECT_EQ(api_error({action, "web", "198.18.9.2:8080", "1"}),
              "VIP 198.19.0.1:80/tcp has no backend 198.18.9.2:8080")
        << action;
  }
  // A backend of another family is never one of the VIP's.
  EXPECT_EQ(api_error({"remove", "web", "[fd00::2]:8080", {}}),
            "VIP 198.19.0.1:80/tcp has no backend [fd00::2]:8080");
}

TEST(ApiBackend, RefusesMalformedRequests) {
  EXPECT_EQ(api_error({"", "web", "198.18.1.2", {}}),
            "missing \"action\"; one of drain, enable, add, remove, weight");
  EXPECT_EQ(api_error({"add", "", "198.18.1.2", {}}),
            "missing \"vip\": a VIP name or ADDRESS:PORT/PROTOCOL");
  EXPECT_EQ(api_error({"add", "web", "", {}}), "missing \"backend\": ADDRESS:PORT or ADDRESS");
  EXPECT_EQ(api_error({"add", "web", "backend-3", {}}),
            "'backend-3' is not ADDRESS:PORT or ADDRESS (e.g. 198.18.1.2:8080)");
  EXPECT_EQ(api_error({"undrain", "web", "198.18.1.2:8080", {}}),
            "unknown action 'undrain'; one of drain, enable, add, remove, weight");
}

TEST(ApiBackend, MakesTheChange) {
  const Config running = running_config();
  // add: the VIP's port for a bare address, weight 1 unless given.
  Result<Config> next = config_with_backend_change(running, {"add", "web", "198.18.9.2", {}});
  ASSERT_TRUE(next.ok()) << next.error().message;
  ASSERT_EQ(next->vips[0].backends.size(), 3u);
  EXPECT_EQ(format_host_port(next->vips[0].backends[2].addr, next->vips[0].backends[2].family,
                             next->vips[0].backends[2].port),
            "198.18.9.2:80");
  EXPECT_EQ(next->vips[0].backends[2].weight, 1);
  next = config_with_backend_change(running,
                                    {"add", "[fd00:19::1]:80/tcp", "[fd00:18:9::2]:8080", "7"});
  ASSERT_TRUE(next.ok()) << next.error().message;
  EXPECT_EQ(next->vips[3].backends.back().weight, 7);
  // weight and remove.
  next = config_with_backend_change(running, {"weight", "web", "198.18.2.2:8080", "3"});
  ASSERT_TRUE(next.ok()) << next.error().message;
  EXPECT_EQ(next->vips[0].backends[1].weight, 3);
  next = config_with_backend_change(running, {"remove", "web", "198.18.2.2:8080", {}});
  ASSERT_TRUE(next.ok()) << next.error().message;
  EXPECT_EQ(next->vips[0].backends.size(), 1u);
  // drain and enable are states of the backend: the config stays as it is.
  next = config_with_backend_change(running, {"drain", "web", "198.18.1.2:8080", {}});
  ASSERT_TRUE(next.ok()) << next.error().message;
  EXPECT_EQ(next->vips[0].backends.size(), running.vips[0].backends.size());
  Result<BackendTarget> t = find_backend(running, {"drain", "web", "198.18.2.2:8080", {}});
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->vip, 0u);
  EXPECT_EQ(t->backend, std::optional<std::size_t>(1));
  EXPECT_EQ(t->vip_key, "198.19.0.1:80/tcp");
  EXPECT_EQ(t->backend_key, "198.18.2.2:8080");
}

// An operator's sequence on one backend: add, remove, re-add, re-weight. Each step starts
// from the config the previous one made, as the daemon's running config does; a second add of
// the API-added backend is refused like a duplicate in the file.
TEST(ApiBackend, AddRemoveReAddWeightInSequence) {
  Config c = running_config();
  const BackendChange steps[] = {{"add", "web", "198.18.9.2:8080", "2"},
                                 {"remove", "web", "198.18.9.2:8080", {}},
                                 {"add", "web", "198.18.9.2:8080", {}},
                                 {"weight", "web", "198.18.9.2:8080", "5"}};
  for (const BackendChange& step : steps) {
    Result<Config> next = config_with_backend_change(c, step);
    ASSERT_TRUE(next.ok()) << step.action << ": " << next.error().message;
    c = *next;
  }
  ASSERT_EQ(c.vips[0].backends.size(), 3u);
  EXPECT_EQ(format_host_port(c.vips[0].backends[2].addr, c.vips[0].backends[2].family,
                             c.vips[0].backends[2].port),
            "198.18.9.2:8080");
  EXPECT_EQ(c.vips[0].backends[2].weight, 5);
  EXPECT_FALSE(config_with_backend_change(c, {"add", "web", "198.18.9.2:8080", {}}).ok());
}

// The weight's bounds are accepted, not only what lies past them.
TEST(ApiBackend, AcceptsTheWeightBounds) {
  Result<Config> next =
      config_with_backend_change(running_config(), {"weight", "web", "198.18.2.2:8080", "65535"});
  ASSERT_TRUE(next.ok()) << next.error().message;
  EXPECT_EQ(next->vips[0].backends[1].weight, 65535);
  next = config_with_backend_change(running_config(), {"add", "web", "198.18.9.2:8080", "0"});
  ASSERT_TRUE(next.ok()) << next.error().message;
  EXPECT_EQ(next->vips[0].backends.back().weight, 0);
}

}  // namespace
}  // namespace sluice
