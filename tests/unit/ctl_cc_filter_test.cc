// `sluicectl cc` without a kernel: the filter words and their errors, the prefix match of
// --dst over synthetic connections (a CcView built by hand), and the exit code of bad
// arguments, which are refused before any map is opened. Over real pinned maps:
// tests/bpf/ctl_cc_test.cc.
#include <gtest/gtest.h>

#include <sluice/ctl/ctl.h>

#include <string>
#include <vector>

#include "cc_pin_world.h"

namespace sluice {
namespace {

using nlohmann::json;
using test::cc_conn;

std::string filter_error(const std::string& rule, const std::string& dst, const std::string& cc) {
  auto f = parse_cc_filter(rule, dst, cc);
  return f ? std::string("(accepted)") : f.error().message;
}

TEST(CcFilter, BadValuesSayWhatWouldBeRight) {
  const std::string cidr = "; expected ADDR or ADDR/LEN (CIDR), e.g. 198.18.0.0/16 or fd00::/8";
  EXPECT_EQ(filter_error("", "198.18.0.1/16", ""),
            "--dst '198.18.0.1/16': host bits set after /16 (did you mean 198.18.0.0/16?)" + cidr);
  EXPECT_EQ(filter_error("", "fd00::1/64", ""),
            "--dst 'fd00::1/64': host bits set after /64 (did you mean fd00::/64?)" + cidr);
  EXPECT_EQ(filter_error("", "10.0.0.0/33", ""),
            "--dst '10.0.0.0/33': '33' is not a prefix length (0..32)" + cidr);
  EXPECT_EQ(filter_error("", "fd00::/129", ""),
            "--dst 'fd00::/129': '129' is not a prefix length (0..128)" + cidr);
  EXPECT_EQ(filter_error("", "10.0.0.0/", ""),
            "--dst '10.0.0.0/': '' is not a prefix length (0..32)" + cidr);
  EXPECT_EQ(filter_error("", "10.0.0.0/-8", ""),
            "--dst '10.0.0.0/-8': '-8' is not a prefix length (0..32)" + cidr);
  EXPECT_EQ(filter_error("", "web.example", ""),
            "--dst 'web.example': 'web.example' is not an IPv4 or IPv6 address" + cidr);
  EXPECT_EQ(filter_error("", "", "cu bic"),
            "--cc 'cu bic': expected an algorithm name of 1 to 15 letters, digits, '_' or '-', "
            "e.g. cubic, bbr, reno or sluice_aimd");
  EXPECT_EQ(filter_error("", "", "a_name_far_too_long"),
            "--cc 'a_name_far_too_long': expected an algorithm name of 1 to 15 letters, digits, "
            "'_' or '-', e.g. cubic, bbr, reno or sluice_aimd");
  EXPECT_EQ(filter_error(std::string(48, 'r'), "", ""),
            "--rule '" + std::string(48, 'r') + "': rule names are at most 47 characters");
  EXPECT_EQ(filter_error("web", "[fd00::1]", "sluice_aimd"), "(accepted)");
  EXPECT_EQ(filter_error("", "0.0.0.0/0", ""), "(accepted)");
}

TEST(CcFilter, WatchInterval) {
  EXPECT_EQ(parse_watch_interval("0").error().message,
            "--watch '0': expected SECONDS between the redraws, from 0.1 to 86400, e.g. 2 or 0.5");
  for (const char* bad : {"", "2s", "nan", "inf", "-1", "0.05", "86401", " 2"})
    EXPECT_FALSE(parse_watch_interval(bad)) << "'" << bad << "'";
  EXPECT_DOUBLE_EQ(*parse_watch_interval("0.5"), 0.5);
  EXPECT_DOUBLE_EQ(*parse_watch_interval("2"), 2.0);
}

TEST(CcFilter, UnknownRuleListsTheRules) {
  const std::vector<CcRuleName> rules = {{0, "web", true}, {3, "bulk", true}, {5, "old", false}};
  EXPECT_EQ(check_cc_rule(*parse_cc_filter("wbe", "", ""), rules).error().message,
            "--rule 'wbe': no rule of that name; rules: web, bulk, old");
  EXPECT_TRUE(check_cc_rule(*parse_cc_filter("old", "", ""), rules));
  EXPECT_TRUE(check_cc_rule(*parse_cc_filter("", "", ""), {}));
  EXPECT_EQ(check_cc_rule(*parse_cc_filter("web", "", ""), {}).error().message,
            "--rule 'web': no rule of that name; rules: none (the policy has no rules yet)");
}

// --dst against remote addresses around prefix edges that are not byte boundaries.
TEST(CcFilter, DstMatchesTheRemoteAddressByPrefix) {
  CcView view;
  uint64_t cookie = 1;
  for (const char* remote : {"10.127.255.255", "10.128.0.0", "11.0.0.1", "fd00:18:8000::1",
                             "fd00:18:7fff::1", "::ffff:10.128.0.1"}) {
    view.conns.push_back(
        {cookie++,
         cc_conn(std::string(remote).find(':') == std::string::npos ? "192.0.2.1" : "fd00::1", 1000,
                 remote, 443, 0, "cubic")});
  }
  auto remotes = [&](const std::string& dst) {
    std::vector<std::string> out;
    for (const json& c : cc_json(view, *parse_cc_filter("", dst, ""), 0))
      out.push_back(c["remote"].get<std::string>());
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(remotes("10.128.0.0/9"), V{"10.128.0.0:443"});
  EXPECT_EQ(remotes("10.0.0.0/9"), V{"10.127.255.255:443"});
  EXPECT_EQ(remotes("10.0.0.0/7"), (V{"10.127.255.255:443", "10.128.0.0:443", "11.0.0.1:443"}));
  EXPECT_EQ(remotes("0.0.0.0/0").size(), 3u) << "IPv4 only";
  EXPECT_EQ(remotes("fd00:18:8000::/33"), V{"[fd00:18:8000::1]:443"});
  EXPECT_EQ(remotes("fd00:18::/32").size(), 2u);
  EXPECT_EQ(remotes("::/0").size(), 3u) << "IPv6 only, v4-mapped included";
  EXPECT_EQ(remotes("10.128.0.1"), V{}) << "a v4-mapped IPv6 address is not IPv4";
}

TEST(CcFilter, NoConnectionsStillPrintsHeaderAndFooter) {
  EXPECT_EQ(cc_text(json::array()),
            "Local  Remote  Dir  State  CC  Rule  Cwnd  Ssthresh  Srtt(ms)  Rttvar(ms)  Retrans  "
            "Acked  Age  Applied\n0 connections\n");
}

// Bad arguments exit 2 before any map is opened, so this runs anywhere.
TEST(CcCommand, BadArgumentsExitTwo) {
  for (std::vector<std::string> args :
       {std::vector<std::string>{"sluicectl", "cc", "--dst", "not-an-address"},
        {"sluicectl", "cc", "--dst", "10.0.0.1/8"},
        {"sluicectl", "cc", "--cc", "no such"},
        {"sluicectl", "cc", "--watch", "0"},
        {"sluicectl", "cc", "--watch", "soon"},
        {"sluicectl", "cc", "--no-such-option"},
        {"sluicectl", "cc", "extra"},
        {"sluicectl", "cc", "-o", "yaml"}}) {
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    std::string line;
    for (const auto& a : args) line += a + " ";
    EXPECT_EQ(ctl_main(static_cast<int>(argv.size()), argv.data()), 2) << line;
  }
}

}  // namespace
}  // namespace sluice
