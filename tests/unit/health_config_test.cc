// Health checks without sockets: the health_check / on_backend_down config (defaults, every
// validation error), Config -> HealthTarget mapping, and the latency histogram. The checker
// itself runs against real sockets in tests/unit/health_checker_test.cc.
#include <gtest/gtest.h>

#include <sluice/config/config.h>
#include <sluice/core/net.h>
#include <sluice/health/health.h>

#include <string>
#include <vector>

namespace sluice {
namespace {

std::string all_errors(const ConfigResult& r) {
  std::string out;
  for (const ConfigError& e : r.errors) out += "\n  " + e.to_string();
  return out;
}

// One tcp VIP on port 80 (or `vip_port`) with two backends; `extra` is appended to the VIP at
// its indentation (4 spaces), e.g. "health_check:\n  type: tcp".
std::string vip_yaml(const std::string& extra, int vip_port = 80) {
  std::string out =
      "interfaces: [eth0]\n"
      "vips:\n"
      "  - address: 198.19.0.1\n"
      "    port: " +
      std::to_string(vip_port) +
      "\n"
      "    protocol: tcp\n"
      "    backends:\n"
      "      - address: 10.0.0.1\n" +
      std::string(vip_port == 0 ? "" : "        port: 8080\n") + "      - address: 10.0.0.2\n";
  std::size_t pos = 0;
  while (pos < extra.size()) {
    std::size_t eol = extra.find('\n', pos);
    if (eol == std::string::npos) eol = extra.size();
    out += "    " + extra.substr(pos, eol - pos) + "\n";
    pos = eol + 1;
  }
  return out;
}

ConfigResult parse(const std::string& yaml) { return parse_config(yaml, "t.yaml"); }

// The config must be rejected with exactly one error, whose text contains `want`.
void expect_one_error(const std::string& yaml, const std::string& want) {
  const ConfigResult r = parse(yaml);
  ASSERT_FALSE(r.config.has_value()) << "accepted:\n" << yaml;
  ASSERT_EQ(r.errors.size(), 1u) << all_errors(r);
  EXPECT_NE(r.errors[0].to_string().find(want), std::string::npos)
      << "want: " << want << "\ngot:" << all_errors(r);
}

TEST(HealthConfig, NoHealthCheckMeansNoneAndKeep) {
  const ConfigResult r = parse(vip_yaml(""));
  ASSERT_TRUE(r.config) << all_errors(r);
  EXPECT_FALSE(r.config->vips[0].health_check.has_value());
  EXPECT_EQ(r.config->vips[0].on_backend_down, BackendDownAction::kKeep);
  EXPECT_TRUE(health_targets(*r.config).empty());
}

TEST(HealthConfig, Defaults) {
  const ConfigResult r = parse(vip_yaml("health_check:\n  type: tcp"));
  ASSERT_TRUE(r.config) << all_errors(r);
  const HealthCheckConfig& hc = *r.config->vips[0].health_check;
  EXPECT_EQ(hc.type, HealthCheckType::kTcp);
  EXPECT_EQ(hc.port, 0);
  EXPECT_EQ(hc.interval_ms, 1000u);
  EXPECT_EQ(hc.timeout_ms, 500u);
  EXPECT_EQ(hc.rise, 2u);
  EXPECT_EQ(hc.fall, 3u);
  EXPECT_EQ(hc.path, "/healthz");
  EXPECT_EQ(hc.expect_status, (std::vector<StatusRange>{{200, 200}}));
  EXPECT_EQ(hc.send, "ping");
  EXPECT_EQ(hc.expect, "");
}

TEST(HealthConfig, HttpWithEveryField) {
  const ConfigResult r =
      parse(vip_yaml("on_backend_down: reset\n"
                     "health_check:\n"
                     "  type: http\n"
                     "  port: 9000\n"
                     "  interval_ms: 250\n"
                     "  timeout_ms: 100\n"
                     "  rise: 1\n"
                     "  fall: 5\n"
                     "  path: /status?full=1\n"
                     "  expect_status: [200, 204, 300-399]"));
  ASSERT_TRUE(r.config) << all_errors(r);
  const VipConfig& vip = r.config->vips[0];
  EXPECT_EQ(vip.on_backend_down, BackendDownAction::kReset);
  const HealthCheckConfig& hc = *vip.health_check;
  EXPECT_EQ(hc.type, HealthCheckType::kHttp);
  EXPECT_EQ(hc.port, 9000);
  EXPECT_EQ(hc.interval_ms, 250u);
  EXPECT_EQ(hc.timeout_ms, 100u);
  EXPECT_EQ(hc.rise, 1u);
  EXPECT_EQ(hc.fall, 5u);
  EXPECT_EQ(hc.path, "/status?full=1");
  EXPECT_EQ(hc.expect_status, (std::vector<StatusRange>{{200, 200}, {204, 204}, {300, 399}}));
}

TEST(HealthConfig, ExpectStatusForms) {
  struct Case {
    const char* yaml;
    std::vector<StatusRange> want;
  };
  const Case cases[] = {
      {"204", {{204, 204}}},
      {"200-299", {{200, 299}}},
      {"\"200-299\"", {{200, 299}}},
      {"[200-299, 404]", {{200, 299}, {404, 404}}},
      {"\n    - 301\n    - 302", {{301, 301}, {302, 302}}},
  };
  for (const Case& c : cases) {
    const ConfigResult r =
        parse(vip_yaml("health_check:\n  type: http\n  expect_status: " + std::string(c.yaml)));
    ASSERT_TRUE(r.config) << c.yaml << all_errors(r);
    EXPECT_EQ(r.config->vips[0].health_check->expect_status, c.want) << c.yaml;
  }
}

TEST(HealthConfig, UdpPayloadMayHoldAnyBytes) {
  const ConfigResult r =
      parse(vip_yaml("health_check:\n  type: udp\n  send: \"\\x00\\x01hi\"\n  expect: pong"));
  ASSERT_TRUE(r.config) << all_errors(r);
  const HealthCheckConfig& hc = *r.config->vips[0].health_check;
  EXPECT_EQ(hc.send, std::string("\0\x01hi", 4));
  EXPECT_EQ(hc.expect, "pong");
}

TEST(HealthConfig, Errors) {
  struct Case {
    std::string extra;
    std::string want;  // a part of the one error expected
  };
  const std::vector<Case> cases = {
      {"health_check:\n  port: 80",
       "t.yaml:11:7: vips[0].health_check.type: required field "
       "'type' is missing; valid types: tcp, http, udp"},
      {"health_check:", "vips[0].health_check.type: required field 'type' is missing"},
      {"health_check: tcp",
       "vips[0].health_check: expected a health check (a map of 'field: "
       "value'), got 'tcp'"},
      {"health_check:\n  type: icmp",
       "t.yaml:11:13: vips[0].health_check.type: unknown check type 'icmp'; valid types: tcp, "
       "http, udp"},
      {"health_check:\n  type: tcp\n  intreval_ms: 10",
       "vips[0].health_check.intreval_ms: unknown field 'intreval_ms'; valid fields: type, port, "
       "interval_ms, timeout_ms, rise, fall, path, expect_status, send, expect"},
      {"health_check:\n  type: tcp\n  port: 0",
       "vips[0].health_check.port: 0 is out of range; valid ports are 1..65535"},
      {"health_check:\n  type: tcp\n  interval_ms: 5",
       "vips[0].health_check.interval_ms: 5 is out of range; valid intervals are 10..3600000"},
      {"health_check:\n  type: tcp\n  interval_ms: 100\n  timeout_ms: 100",
       "t.yaml:13:19: vips[0].health_check.timeout_ms: timeout_ms (100) must be less than "
       "interval_ms (100); a check must end before the next one starts"},
      {"health_check:\n  type: tcp\n  timeout_ms: 1000",
       "timeout_ms (1000) must be less than interval_ms (1000, the default)"},
      {"health_check:\n  type: tcp\n  interval_ms: 200",
       "t.yaml:12:20: vips[0].health_check.interval_ms: interval_ms (200) must be more than "
       "timeout_ms (500, the default); a check must end before the next one starts; lower "
       "timeout_ms too"},
      {"health_check:\n  type: tcp\n  rise: 0",
       "vips[0].health_check.rise: 0 is out of range; valid values are 1..1000"},
      {"health_check:\n  type: tcp\n  fall: \"3\"",
       "vips[0].health_check.fall: expected an "
       "integer in 1..1000, got the quoted string"},
      {"health_check:\n  type: tcp\n  path: /x",
       "t.yaml:12:7: vips[0].health_check.path: 'path' applies only to http checks, and this "
       "check's type is tcp; remove it, or set type: http"},
      {"health_check:\n  type: udp\n  expect_status: 200",
       "vips[0].health_check.expect_status: 'expect_status' applies only to http checks, and "
       "this check's type is udp"},
      {"health_check:\n  type: http\n  send: hello",
       "vips[0].health_check.send: 'send' applies only to udp checks, and this check's type is "
       "http; remove it, or set type: udp"},
      {"health_check:\n  type: tcp\n  expect: pong",
       "vips[0].health_check.expect: 'expect' applies only to udp checks"},
      {"health_check:\n  type: http\n  path: healthz",
       "vips[0].health_check.path: path 'healthz' must start with '/'"},
      {"health_check:\n  type: http\n  path: \"/a b\"",
       "path contains a space or a control character; percent-encode it (%20)"},
      {"health_check:\n  type: http\n  path: \"/a\\r\\nX: y\"",
       "path contains a space or a control character"},
      {"health_check:\n  type: http\n  expect_status: 99",
       "vips[0].health_check.expect_status: 99 is out of range; valid status codes are 100..599"},
      {"health_check:\n  type: http\n  expect_status: 299-200",
       "range 299-200 is empty (its start is above its end); write it as 200-299"},
      {"health_check:\n  type: http\n  expect_status: 2xx",
       "'2xx' is not a number; expected an integer in 100..599"},
      {"health_check:\n  type: http\n  expect_status: 200-2999",
       "'200-2999' is not a status range; expected a status code (200), a range (200-299), or "
       "a list of them, with codes in 100..599"},
      {"health_check:\n  type: http\n  expect_status: [200, 700]",
       "vips[0].health_check.expect_status[1]: 700 is out of range"},
      {"health_check:\n  type: http\n  expect_status: []",
       "vips[0].health_check.expect_status: the list is empty"},
      {"health_check:\n  type: udp\n  send: [1, 2]",
       "vips[0].health_check.send: expected a string (the UDP payload), got a list"},
      {"on_backend_down: drop",
       "t.yaml:10:22: vips[0].on_backend_down: unknown value 'drop'; valid values: keep, reset"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.extra);
    expect_one_error(vip_yaml(c.extra), c.want);
  }
}

TEST(HealthConfig, TypeErrorAndWrongTypeFieldsAreAllReported) {
  // An unknown type cannot say which fields fit; the other fields are still checked.
  const ConfigResult r =
      parse(vip_yaml("health_check:\n  type: smtp\n  path: nope\n  rise: 0\n  send: x"));
  ASSERT_FALSE(r.config);
  ASSERT_EQ(r.errors.size(), 3u) << all_errors(r);
  EXPECT_NE(r.errors[0].message.find("unknown check type 'smtp'"), std::string::npos);
  EXPECT_NE(r.errors[1].message.find("must start with '/'"), std::string::npos);
  EXPECT_EQ(r.errors[2].field, "vips[0].health_check.rise") << all_errors(r);
}

TEST(HealthConfig, PortZeroVipNeedsACheckPort) {
  expect_one_error(vip_yaml("health_check:\n  type: tcp", 0),
                   "vips[0].health_check.port: the VIP's port is 0 (every port), so its backends "
                   "have no port of their own to check; give the health check a 'port'");
  const ConfigResult r = parse(vip_yaml("health_check:\n  type: tcp\n  port: 22", 0));
  ASSERT_TRUE(r.config) << all_errors(r);
  const auto targets = health_targets(*r.config);
  ASSERT_EQ(targets.size(), 2u);
  EXPECT_EQ(targets[0].port, 22);
}

TEST(HealthTargets, IdsFollowTheDataPathNumbering) {
  // Backend ids count over all VIPs in config order, checked or not (Datapath::apply).
  const std::string yaml =
      "interfaces: [eth0]\n"
      "vips:\n"
      "  - address: 198.19.0.1\n"
      "    port: 53\n"
      "    protocol: udp\n"
      "    backends: [{address: 10.0.0.1}, {address: 10.0.0.2}]\n"
      "  - address: 198.19.0.1\n"
      "    port: 80\n"
      "    protocol: tcp\n"
      "    health_check: {type: http, port: 8081, path: /up}\n"
      "    backends: [{address: 10.0.0.3, port: 8080}, {address: 10.0.0.4, port: 8080}]\n"
      "  - address: fd00:19::1\n"
      "    port: 443\n"
      "    protocol: tcp\n"
      "    health_check: {type: tcp}\n"
      "    backends: [{address: 'fd00:18::2'}]\n";
  const ConfigResult r = parse(yaml);
  ASSERT_TRUE(r.config) << all_errors(r);
  const std::vector<HealthTarget> t = health_targets(*r.config);
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[0].backend_id, 2u);
  EXPECT_EQ(format_host_port(t[0].addr, t[0].family, t[0].port), "10.0.0.3:8081");
  EXPECT_EQ(t[0].check.type, HealthCheckType::kHttp);
  EXPECT_EQ(t[0].check.path, "/up");
  EXPECT_EQ(t[1].backend_id, 3u);
  EXPECT_EQ(format_host_port(t[1].addr, t[1].family, t[1].port), "10.0.0.4:8081");
  EXPECT_EQ(t[2].backend_id, 4u);
  EXPECT_EQ(format_host_port(t[2].addr, t[2].family, t[2].port), "[fd00:18::2]:443");
  EXPECT_EQ(t[2].family, SL_AF_INET6);
}

TEST(HealthNames, TypeNamesAreTheConfigWords) {
  EXPECT_STREQ(health_check_type_name(HealthCheckType::kTcp), "tcp");
  EXPECT_STREQ(health_check_type_name(HealthCheckType::kHttp), "http");
  EXPECT_STREQ(health_check_type_name(HealthCheckType::kUdp), "udp");
  EXPECT_STREQ(health_check_type_name(static_cast<HealthCheckType>(9)), "unknown");
}

TEST(LatencyHistogram, BucketsAreCumulative) {
  LatencyHistogram h;
  h.observe(0.0002);  // <= every bound
  h.observe(0.003);   // <= 0.005 and up
  h.observe(0.5);     // exactly on a bound counts in it
  h.observe(60);      // only in +Inf
  EXPECT_EQ(h.count, 4u);
  EXPECT_DOUBLE_EQ(h.sum_seconds, 60.5032);
  const auto& b = LatencyHistogram::kBoundsSeconds;
  for (std::size_t i = 0; i < b.size(); ++i) {
    const uint64_t want = (b[i] >= 0.0002) + (b[i] >= 0.003) + (b[i] >= 0.5);
    EXPECT_EQ(h.cumulative[i], want) << "le=" << b[i];
  }
  for (std::size_t i = 1; i < b.size(); ++i) EXPECT_LT(b[i - 1], b[i]);
}

}  // namespace
}  // namespace sluice
