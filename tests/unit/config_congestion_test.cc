// The `congestion:` section of the config (issue #12): the rules as the model holds them
// (sorted by priority, the default apart), and the errors for every way to get them wrong,
// each naming its line and field.
#include <gtest/gtest.h>
#include <unistd.h>

#include <sluice/config/config.h>
#include <sluice/config/validate.h>
#include <sluice/core/net.h>

#include <cstdio>
#include <string>
#include <vector>

#include "param_name.h"

namespace sluice {
namespace {

// Lines 1-3; the congestion section starts at line 4.
constexpr char kHead[] = R"(interfaces: [eth0]
vips:
  - {address: 198.19.0.1, port: 80, protocol: tcp, backends: [{address: 10.0.0.1}]}
)";

ConfigResult parse_cc(const std::string& section) {
  return parse_config(kHead + section, "sluice.yaml");
}

std::string errors_of(const ConfigResult& r) {
  std::string out;
  for (const ConfigError& e : r.errors) out += e.to_string() + "\n";
  return out;
}

Cidr cidr(const char* addr, uint8_t len) {
  const auto ip = parse_ip(addr);
  EXPECT_TRUE(ip) << addr;
  return ip ? Cidr{ip->first, ip->second, len} : Cidr{};
}

TEST(CongestionConfig, AbsentMeansDisabled) {
  const ConfigResult r = parse_cc("");
  ASSERT_TRUE(r.config) << errors_of(r);
  EXPECT_FALSE(r.config->congestion.enabled);
  EXPECT_EQ(r.config->congestion, CongestionConfig{});
}

TEST(CongestionConfig, AnEmptySectionEnablesAPolicyWithoutRules) {
  for (const char* section : {"congestion: {}\n", "congestion:\n"}) {
    const ConfigResult r = parse_cc(section);
    ASSERT_TRUE(r.config) << errors_of(r);
    const CongestionConfig& cc = r.config->congestion;
    EXPECT_TRUE(cc.enabled);
    EXPECT_EQ(cc.cgroup, "/sys/fs/cgroup/unified");
    EXPECT_EQ(cc.max_connections, uint32_t{SL_CC_DEFAULT_CONNS});
    EXPECT_TRUE(cc.rules.empty());
    EXPECT_FALSE(cc.default_rule);
  }
}

TEST(CongestionConfig, EveryFieldIsReadAndRulesAreSortedByPriority) {
  const ConfigResult r = parse_cc(R"(congestion:
  cgroup: /sys/fs/cgroup/unified/
  max_connections: 1024
  rules:
    - name: backends-a
      destination: 198.18.1.0/24
      port: 5201
      direction: active
      cgroup: /sys/fs/cgroup/unified/batch
      algorithm: sluice_aimd
      initial_cwnd: 32
      sndbuf: 4194304
      rcvbuf: 4096
      cwnd_clamp: 1000
      priority: 10
    - destination: [10.0.0.0/8, fd00:18::/64, 192.0.2.7, 0.0.0.0/0]
      port: "5000-5300"
      direction: passive
      sndbuf: 1073741823
    - {algorithm: reno, priority: 1}
  default:
    algorithm: cubic
    initial_cwnd: 10
)");
  ASSERT_TRUE(r.config) << errors_of(r);
  const CongestionConfig& cc = r.config->congestion;
  EXPECT_TRUE(cc.enabled);
  EXPECT_EQ(cc.cgroup, "/sys/fs/cgroup/unified");  // one cgroup is written one way
  EXPECT_EQ(cc.max_connections, 1024u);
  ASSERT_EQ(cc.rules.size(), 3u);

  // Priority 1 (written), 2 (its place, by default), 10.
  const CcRuleConfig& first = cc.rules[0];
  EXPECT_EQ(first.name, "rule-3");
  EXPECT_EQ(first.priority, 1u);
  EXPECT_TRUE(first.priority_set);
  EXPECT_EQ(first.algorithm, "reno");
  EXPECT_TRUE(first.destinations.empty());
  EXPECT_EQ(first.port_lo, 0);
  EXPECT_EQ(first.port_hi, 65535);
  EXPECT_EQ(first.direction, SL_CC_DIR_ANY);
  EXPECT_EQ(first.line, 23);

  const CcRuleConfig& second = cc.rules[1];
  EXPECT_EQ(second.name, "rule-2");
  EXPECT_EQ(second.priority, 2u);
  EXPECT_FALSE(second.priority_set);
  EXPECT_EQ(second.destinations, (std::vector<Cidr>{cidr("10.0.0.0", 8), cidr("fd00:18::", 64),
                                                    cidr("192.0.2.7", 32), cidr("0.0.0.0", 0)}));
  EXPECT_EQ(second.port_lo, 5000);
  EXPECT_EQ(second.port_hi, 5300);
  EXPECT_EQ(second.direction, SL_CC_DIR_PASSIVE);
  EXPECT_EQ(second.sndbuf, 1073741823u);
  EXPECT_EQ(second.algorithm, "");

  CcRuleConfig want;
  want.name = "backends-a";
  want.destinations = {cidr("198.18.1.0", 24)};
  want.port_lo = want.port_hi = 5201;
  want.direction = SL_CC_DIR_ACTIVE;
  want.cgroup = "/sys/fs/cgroup/unified/batch";
  want.algorithm = "sluice_aimd";
  want.initial_cwnd = 32;
  want.sndbuf = 4194304;
  want.rcvbuf = 4096;
  want.cwnd_clamp = 1000;
  want.priority = 10;
  want.priority_set = true;
  want.line = 8;
  EXPECT_EQ(cc.rules[2], want);

  ASSERT_TRUE(cc.default_rule);
  EXPECT_EQ(cc.default_rule->name, "default");
  EXPECT_EQ(cc.default_rule->algorithm, "cubic");
  EXPECT_EQ(cc.default_rule->initial_cwnd, 10u);
  EXPECT_TRUE(cc.default_rule->destinations.empty());
}

TEST(CongestionConfig, EqualPrioritiesKeepTheFileOrder) {
  const ConfigResult r = parse_cc(R"(congestion:
  rules:
    - {name: b, port: 1, sndbuf: 8192, priority: 5}
    - {name: a, port: 2, sndbuf: 8192, priority: 5}
    - {name: c, port: 3, sndbuf: 8192, priority: 4}
)");
  ASSERT_TRUE(r.config) << errors_of(r);
  std::vector<std::string> names;
  for (const CcRuleConfig& rule : r.config->congestion.rules) names.push_back(rule.name);
  EXPECT_EQ(names, (std::vector<std::string>{"c", "b", "a"}));
}

struct BadCase {
  const char* name;
  const char* section;
  const char* error;  // the first error, whole: FILE:LINE:COL: FIELD: MESSAGE
};

class BadCongestionConfig : public testing::TestWithParam<BadCase> {};

TEST_P(BadCongestionConfig, IsRejectedWithWhereAndWhatIsValid) {
  const ConfigResult r = parse_cc(GetParam().section);
  EXPECT_FALSE(r.config);
  ASSERT_FALSE(r.errors.empty());
  EXPECT_EQ(r.errors[0].to_string(), GetParam().error) << errors_of(r);
}

const BadCase kBadCases[] = {
    {"HostBitsSet", "congestion:\n  rules:\n    - {destination: 198.18.1.5/24, sndbuf: 8192}\n",
     "sluice.yaml:6:21: congestion.rules[0].destination: 198.18.1.5/24: host bits set; did you "
     "mean 198.18.1.0/24? (or 198.18.1.5 alone)"},
    {"HostBitsSetV6InAList",
     "congestion:\n  rules:\n    - destination: [10.0.0.0/8, 'fd00:18::1/64']\n      sndbuf: "
     "8192\n",
     "sluice.yaml:6:33: congestion.rules[0].destination[1]: fd00:18::1/64: host bits set; did "
     "you mean fd00:18::/64? (or fd00:18::1 alone)"},
    {"PrefixTooLong", "congestion:\n  rules:\n    - {destination: 10.0.0.0/33, sndbuf: 8192}\n",
     "sluice.yaml:6:21: congestion.rules[0].destination: '10.0.0.0/33': the prefix length must "
     "be 0..32 for IPv4"},
    {"NotAnAddress", "congestion:\n  rules:\n    - {destination: backends, sndbuf: 8192}\n",
     "sluice.yaml:6:21: congestion.rules[0].destination: 'backends' is not an IPv4 or IPv6 "
     "address or prefix; write e.g. 198.18.1.0/24, fd00:18::/64 or 198.18.1.2"},
    {"EmptyDestinationList", "congestion:\n  rules:\n    - {destination: [], sndbuf: 8192}\n",
     "sluice.yaml:6:21: congestion.rules[0].destination: an empty list matches no address; list "
     "prefixes, or leave destination out to match any address"},
    {"PortRangeBackwards", "congestion:\n  rules:\n    - {port: 5300-5000, sndbuf: 8192}\n",
     "sluice.yaml:6:14: congestion.rules[0].port: port range 5300-5000 runs backwards; write "
     "the lower port first: 5000-5300"},
    {"PortRangeGarbage", "congestion:\n  rules:\n    - {port: 5000-x, sndbuf: 8192}\n",
     "sluice.yaml:6:14: congestion.rules[0].port: '5000-x' is not a port or a port range; "
     "write a port (1..65535) or a range such as 5000-5300"},
    {"PortZero", "congestion:\n  rules:\n    - {port: 0, sndbuf: 8192}\n",
     "sluice.yaml:6:14: congestion.rules[0].port: 0 is out of range; valid ports are 1..65535"},
    {"BadDirection", "congestion:\n  rules:\n    - {direction: outbound, sndbuf: 8192}\n",
     "sluice.yaml:6:19: congestion.rules[0].direction: unknown direction 'outbound'; valid "
     "directions: active, passive, any (active: this host connected; passive: it accepted)"},
    {"RelativeRuleCgroup", "congestion:\n  rules:\n    - {cgroup: batch, sndbuf: 8192}\n",
     "sluice.yaml:6:16: congestion.rules[0].cgroup: 'batch' is not an absolute path; give a "
     "cgroup v2 directory such as /sys/fs/cgroup/unified"},
    {"RelativeCgroup", "congestion:\n  cgroup: sys/fs/cgroup\n",
     "sluice.yaml:5:11: congestion.cgroup: 'sys/fs/cgroup' is not an absolute path; give a "
     "cgroup v2 directory such as /sys/fs/cgroup/unified"},
    {"RuleCgroupOutsideThePolicys",
     "congestion:\n  cgroup: /sys/fs/cgroup/unified/lb\n  rules:\n    - {cgroup: "
     "/sys/fs/cgroup/unified/lbx, sndbuf: 8192}\n",
     "sluice.yaml:7:16: congestion.rules[0].cgroup: /sys/fs/cgroup/unified/lbx is not under "
     "congestion.cgroup (/sys/fs/cgroup/unified/lb), where the policy is attached, so this rule "
     "would match no socket; give a directory under it"},
    {"InitialCwndZero", "congestion:\n  rules:\n    - {initial_cwnd: 0}\n",
     "sluice.yaml:6:22: congestion.rules[0].initial_cwnd: initial_cwnd 0 would stall every "
     "connection it matches: it could send nothing; give 1..1024 segments (Linux starts at 10), "
     "or leave it out"},
    {"InitialCwndTooLarge", "congestion:\n  rules:\n    - {initial_cwnd: 1025}\n",
     "sluice.yaml:6:22: congestion.rules[0].initial_cwnd: 1025 is out of range; valid initial "
     "windows (segments) are 1..1024"},
    {"SndbufTooSmall", "congestion:\n  default: {sndbuf: 100}\n",
     "sluice.yaml:5:21: congestion.default.sndbuf: 100 is out of range; valid buffer sizes "
     "(bytes) are 4096..1073741823"},
    {"CwndClampZero", "congestion:\n  rules:\n    - {cwnd_clamp: 0}\n",
     "sluice.yaml:6:20: congestion.rules[0].cwnd_clamp: 0 is out of range; valid clamps "
     "(segments) are 1..1048576"},
    {"MaxConnectionsTooSmall", "congestion:\n  max_connections: 10\n",
     "sluice.yaml:5:20: congestion.max_connections: 10 is out of range; valid values are "
     "1024..16777216"},
    {"RuleSetsNothing", "congestion:\n  rules:\n    - {destination: 10.0.0.0/8}\n",
     "sluice.yaml:6:7: congestion.rules[0]: this rule sets nothing; give it an algorithm, "
     "initial_cwnd, sndbuf, rcvbuf or cwnd_clamp"},
    {"DefaultSetsNothing", "congestion:\n  default: {}\n",
     "sluice.yaml:5:3: congestion.default: the default sets nothing; give it an algorithm, "
     "initial_cwnd, sndbuf, rcvbuf or cwnd_clamp, or remove it"},
    {"DuplicateName",
     "congestion:\n  rules:\n    - {name: bulk, sndbuf: 8192}\n    - {name: bulk, port: 1, "
     "rcvbuf: 8192}\n",
     "sluice.yaml:7:14: congestion.rules[1].name: duplicate rule name 'bulk' (also rules[0] "
     "(line 6))"},
    {"NameClashesWithADefaultName",
     "congestion:\n  rules:\n    - {name: rule-2, sndbuf: 8192}\n    - {port: 1, rcvbuf: 8192}\n",
     "sluice.yaml:7:7: congestion.rules[1].name: duplicate rule name 'rule-2' (also rules[0] "
     "(line 6)); an unnamed rule is named rule-N after its place in the list"},
    {"NameIsDefault", "congestion:\n  rules:\n    - {name: default, sndbuf: 8192}\n",
     "sluice.yaml:6:14: congestion.rules[0].name: the name 'default' is the default rule's "
     "(congestion.default); choose another"},
    {"NameWithSpace", "congestion:\n  rules:\n    - {name: 'bulk data', sndbuf: 8192}\n",
     "sluice.yaml:6:14: congestion.rules[0].name: name 'bulk data' contains ' '; use letters, "
     "digits, '_', '.' and '-'"},
    {"NameTooLong",
     "congestion:\n  rules:\n    - {name: abcdefghijabcdefghijabcdefghijabcdefghijabcdefgh, "
     "sndbuf: 8192}\n",
     "sluice.yaml:6:14: congestion.rules[0].name: name is 48 characters long; at most 47 are "
     "allowed"},
    {"AlgorithmNameTooLong", "congestion:\n  default: {algorithm: a_very_long_name_x}\n",
     "sluice.yaml:5:24: congestion.default.algorithm: 'a_very_long_name_x' is not an algorithm "
     "name: Linux's are 1..15 characters; e.g. cubic, bbr, sluice_aimd"},
    {"UnknownRuleField", "congestion:\n  rules:\n    - {dest: 10.0.0.0/8, sndbuf: 8192}\n",
     "sluice.yaml:6:8: congestion.rules[0].dest: unknown field 'dest'; valid fields: name, "
     "destination, port, direction, cgroup, algorithm, priority, initial_cwnd, sndbuf, rcvbuf, "
     "cwnd_clamp"},
    {"MatchFieldInDefault", "congestion:\n  default: {port: 80, sndbuf: 8192}\n",
     "sluice.yaml:5:13: congestion.default.port: unknown field 'port'; valid fields: algorithm, "
     "initial_cwnd, sndbuf, rcvbuf, cwnd_clamp"},
    {"UnknownSectionField", "congestion:\n  rule: []\n",
     "sluice.yaml:5:3: congestion.rule: unknown field 'rule'; valid fields: cgroup, "
     "max_connections, rules, default"},
    {"RulesNotAList", "congestion:\n  rules: {sndbuf: 8192}\n",
     "sluice.yaml:5:10: congestion.rules: expected a list of rules, got a map"},
    {"OverlapEqualPriority",
     "congestion:\n  rules:\n    - {destination: 198.18.0.0/16, port: 5201, sndbuf: 8192, "
     "priority: 10}\n    - {destination: 10.0.0.0/8, sndbuf: 8192, priority: 10}\n    - "
     "{destination: 198.18.1.0/24, port: 5000-5300, direction: active, rcvbuf: 8192, priority: "
     "10}\n",
     "sluice.yaml:8:96: congestion.rules[2].priority: rules[0] (line 6) and rules[2] (line 8) "
     "have priority 10 and both match 198.18.1.0/24 port 5201: which applies first is "
     "ambiguous; give them different priorities"},
    {"OverlapOfDefaultPriorityAndAWrittenOne",
     "congestion:\n  rules:\n    - {sndbuf: 8192, priority: 2}\n    - {port: 80, rcvbuf: 8192}\n",
     "sluice.yaml:7:7: congestion.rules[1]: rules[0] (line 6) and rules[1] (line 7) have "
     "priority 2 and both match any address port 80: which applies first is ambiguous; give "
     "them different priorities"},
};

INSTANTIATE_TEST_SUITE_P(Cases, BadCongestionConfig, testing::ValuesIn(kBadCases),
                         test::ParamName());

// Equal priorities are fine as long as no connection can match both rules.
TEST(CongestionConfig, EqualPrioritiesThatCannotOverlapAreAccepted) {
  const ConfigResult r = parse_cc(R"(congestion:
  rules:
    - {destination: 198.18.1.0/24, sndbuf: 8192, priority: 7}
    - {destination: 198.18.2.0/24, sndbuf: 8192, priority: 7}
    - {destination: 'fd00:18::/32', port: 80, sndbuf: 8192, priority: 7}
    - {destination: 'fd00:18::/32', port: 81-90, sndbuf: 8192, priority: 7}
    - {port: 443, direction: active, sndbuf: 8192, priority: 8}
    - {port: 443, direction: passive, sndbuf: 8192, priority: 8}
    - {cgroup: /sys/fs/cgroup/unified/a, sndbuf: 8192, priority: 9}
    - {cgroup: /sys/fs/cgroup/unified/ab, sndbuf: 8192, priority: 9}
)");
  EXPECT_TRUE(r.config) << errors_of(r);
}

TEST(CongestionConfig, OverlapsOfDifferentPrioritiesAreAccepted) {
  const ConfigResult r = parse_cc(R"(congestion:
  rules:
    - {destination: 198.18.1.0/24, port: 5201, algorithm: reno, priority: 1}
    - {destination: 198.18.0.0/16, algorithm: cubic, priority: 2}
    - {sndbuf: 8192}
)");
  EXPECT_TRUE(r.config) << errors_of(r);
}

// A socket of a cgroup's subtree is in both rules, so nested cgroups overlap as equal ones do.
TEST(CongestionConfig, NestedCgroupsOfEqualPriorityOverlap) {
  const ConfigResult r = parse_cc(R"(congestion:
  rules:
    - {cgroup: /sys/fs/cgroup/unified/a, sndbuf: 8192, priority: 9}
    - {cgroup: /sys/fs/cgroup/unified/a/b, sndbuf: 8192, priority: 9}
)");
  EXPECT_FALSE(r.config);
  ASSERT_EQ(r.errors.size(), 1u) << errors_of(r);
  EXPECT_EQ(r.errors[0].field, "congestion.rules[1].priority");
}

TEST(CongestionConfig, UnknownAlgorithmNamesWhatTheHostHas) {
  if (!available_congestion_algorithms()) GTEST_SKIP() << kAvailableCcPath << " is unreadable";
  const ConfigResult r = parse_cc(R"(congestion:
  rules:
    - {algorithm: no_such_cc}
)");
  EXPECT_FALSE(r.config);
  ASSERT_EQ(r.errors.size(), 1u) << errors_of(r);
  const ConfigError& e = r.errors[0];
  EXPECT_EQ(e.line, 6);
  EXPECT_EQ(e.column, 19);
  EXPECT_EQ(e.field, "congestion.rules[0].algorithm");
  EXPECT_TRUE(
      e.message.starts_with("algorithm \"no_such_cc\" is not available on this host; available: "))
      << e.message;
  // reno is built into every kernel; sluice_aimd is ours, listed before it is registered.
  EXPECT_NE(e.message.find("reno"), std::string::npos) << e.message;
  EXPECT_NE(e.message.find("sluice_aimd"), std::string::npos) << e.message;
  EXPECT_TRUE(e.message.ends_with("(load a module with modprobe tcp_<name> to add one)"));
}

TEST(CongestionConfig, SluiceAimdIsAlwaysAvailable) {
  const ConfigResult r = parse_cc("congestion:\n  default: {algorithm: sluice_aimd}\n");
  EXPECT_TRUE(r.config) << errors_of(r);
}

TEST(CongestionConfig, AtMostSixtyThreeRules) {
  std::string section = "congestion:\n  rules:\n";
  for (int i = 0; i < 64; ++i)
    section += "    - {port: " + std::to_string(i + 1) + ", sndbuf: 8192}\n";
  const ConfigResult r = parse_cc(section);
  EXPECT_FALSE(r.config);
  ASSERT_EQ(r.errors.size(), 1u) << errors_of(r);
  EXPECT_EQ(r.errors[0].to_string(),
            "sluice.yaml:5:3: congestion.rules: 64 rules; at most 63 are supported (the policy "
            "map holds 64, one of them the default)");
}

// The rules are validate()'s: a Config built in code (the API's) is held to them too, its rules
// named by their place in the model.
TEST(CongestionConfig, InitialWindowAboveTheClampIsRefused) {
  ConfigResult r = parse_cc("congestion:\n  rules:\n    - {initial_cwnd: 32, cwnd_clamp: 20}\n");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_NE(r.errors[0].to_string().find(
                "congestion.rules[0].initial_cwnd: initial_cwnd 32 is above cwnd_clamp 20"),
            std::string::npos)
      << r.errors[0].to_string();
}

// More distinct prefixes than one slot of the LPM trie holds: refused whole, so that a reload
// (which writes the idle slot while the live one stays) always has room.
TEST(CongestionConfig, MorePrefixesThanTheMapHoldsAreRefused) {
  std::string rules = "congestion:\n  rules:\n";
  for (int r = 0; r < 9; ++r) {
    rules += "    - {algorithm: reno, destination: [";
    for (int i = 0; i < 250; ++i)
      rules += (i ? ", " : "") + std::string("10.") + std::to_string(r) + "." + std::to_string(i) +
               ".0/24";
    rules += "]}\n";
  }
  ConfigResult r = parse_cc(rules);
  ASSERT_FALSE(r.errors.empty());
  EXPECT_NE(r.errors[0].to_string().find("2250 distinct destination prefixes; at most 2046"),
            std::string::npos)
      << r.errors[0].to_string();
}

TEST(CongestionConfig, ValidateRefusesOverlapsInAConfigBuiltInCode) {
  ConfigResult r = parse_cc("congestion: {}\n");
  ASSERT_TRUE(r.config) << errors_of(r);
  Config c = *r.config;
  CcRuleConfig a;
  a.name = "a";
  a.destinations = {cidr("198.18.0.0", 16)};
  a.sndbuf = 8192;
  a.priority = 3;
  CcRuleConfig b = a;
  b.name = "b";
  b.destinations = {cidr("fd00::", 8), cidr("198.18.7.0", 24)};
  c.congestion.rules = {a, b};
  const std::vector<ConfigError> errors = validate(c);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].field, "congestion.rules[1]");
  EXPECT_EQ(errors[0].message,
            "rules[0] and rules[1] have priority 3 and both match 198.18.7.0/24 on any port: "
            "which applies first is ambiguous; give them different priorities");
  c.congestion.rules[1].priority = 4;
  EXPECT_TRUE(validate(c).empty());
}

TEST(Cidr, ContainsAndFormat) {
  EXPECT_TRUE(cidr_contains(cidr("198.18.0.0", 16), cidr("198.18.1.0", 24)));
  EXPECT_TRUE(cidr_contains(cidr("198.18.1.0", 24), cidr("198.18.1.0", 24)));
  EXPECT_FALSE(cidr_contains(cidr("198.18.1.0", 24), cidr("198.18.0.0", 16)));
  EXPECT_FALSE(cidr_contains(cidr("198.18.1.0", 24), cidr("198.18.2.0", 24)));
  EXPECT_TRUE(cidr_contains(cidr("198.16.0.0", 13), cidr("198.23.0.0", 16)));
  EXPECT_FALSE(cidr_contains(cidr("198.16.0.0", 13), cidr("198.24.0.0", 16)));
  EXPECT_TRUE(cidr_contains(cidr("0.0.0.0", 0), cidr("10.0.0.1", 32)));
  EXPECT_FALSE(cidr_contains(cidr("0.0.0.0", 0), cidr("fd00::", 8)));  // families differ
  EXPECT_EQ(format_cidr(cidr("fd00:18::", 64)), "fd00:18::/64");
  EXPECT_EQ(format_cidr(cidr("10.0.0.0", 8)), "10.0.0.0/8");
}

class AvailableAlgorithms : public testing::Test {
 protected:
  void TearDown() override { std::remove(path_.c_str()); }
  std::string write(const char* text) {
    std::FILE* f = std::fopen(path_.c_str(), "w");
    EXPECT_NE(f, nullptr);
    std::fputs(text, f);
    std::fclose(f);
    return path_;
  }
  std::string path_ = testing::TempDir() + "sluice_cc_avail_" + std::to_string(getpid());
};

TEST_F(AvailableAlgorithms, ReadsTheHostListAndAddsOurs) {
  EXPECT_EQ(available_congestion_algorithms(write("reno bbr cubic\n").c_str()),
            (std::vector<std::string>{"reno", "bbr", "cubic", "sluice_aimd"}));
  // Once registered, sluice_aimd is in the kernel's list: named once.
  EXPECT_EQ(available_congestion_algorithms(write("reno sluice_aimd cubic\n").c_str()),
            (std::vector<std::string>{"reno", "sluice_aimd", "cubic"}));
}

TEST_F(AvailableAlgorithms, AnUnreadableListIsNone) {
  EXPECT_FALSE(available_congestion_algorithms("/nonexistent/tcp_available_congestion_control"));
}

}  // namespace
}  // namespace sluice
