#include "sluice/core/net.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>
#include <netinet/in.h>

#include <set>
#include <string>

namespace sluice {
namespace {

sl_endpoint endpoint(const char* ip, uint16_t port, uint8_t proto) {
  const auto parsed = parse_ip(ip);
  EXPECT_TRUE(parsed.has_value()) << ip;
  sl_endpoint ep{};
  if (parsed) {
    ep.addr = parsed->first;
    ep.family = parsed->second;
  }
  ep.port = htons(port);
  ep.proto = proto;
  return ep;
}

TEST(ParseIp, Ipv4GoesInFirstWordNetworkOrder) {
  const auto parsed = parse_ip("198.19.0.1");
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->second, SL_AF_INET);
  EXPECT_EQ(parsed->first.w[0], htonl(0xc6130001u));
  EXPECT_EQ(parsed->first.w[1], 0u);
  EXPECT_EQ(parsed->first.w[2], 0u);
  EXPECT_EQ(parsed->first.w[3], 0u);
}

TEST(ParseIp, Ipv6NetworkOrder) {
  const auto parsed = parse_ip("fd00:19::1");
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->second, SL_AF_INET6);
  EXPECT_EQ(parsed->first.w[0], htonl(0xfd000019u));
  EXPECT_EQ(parsed->first.w[1], 0u);
  EXPECT_EQ(parsed->first.w[2], 0u);
  EXPECT_EQ(parsed->first.w[3], htonl(1u));
}

TEST(ParseIp, RejectsInvalid) {
  for (const char* bad :
       {"", "10.0.0.300", "10.0.0", "10.0.0.1/24", "fd00::1%eth0", "fd00:::1", "host.example",
        " 10.0.0.1", "10.0.0.1 ", "1111:2222:3333:4444:5555:6666:7777:8888:9999"}) {
    EXPECT_FALSE(parse_ip(bad).has_value()) << bad;
  }
  // An embedded NUL must not truncate the string into something valid.
  EXPECT_FALSE(parse_ip(std::string_view("10.0.0.1\0x", 10)).has_value());
}

TEST(ParseIp, RoundTrip) {
  for (const char* text : {"198.19.0.1", "0.0.0.0", "255.255.255.255", "fd00:19::1", "::1",
                           "::", "2001:db8:1:2:3:4:5:6", "::ffff:10.0.0.1"}) {
    const auto parsed = parse_ip(text);
    ASSERT_TRUE(parsed.has_value()) << text;
    EXPECT_EQ(format_ip(parsed->first, parsed->second), text);
  }
  // Non-canonical input formats canonically.
  const auto parsed = parse_ip("FD00:0019:0000::0001");
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(format_ip(parsed->first, parsed->second), "fd00:19::1");
}

TEST(FormatIp, UnknownFamily) { EXPECT_EQ(format_ip(sl_addr{}, 0), "<family 0>"); }

TEST(FormatEndpoint, Examples) {
  EXPECT_EQ(format_endpoint(endpoint("198.19.0.1", 80, IPPROTO_TCP)), "198.19.0.1:80/tcp");
  EXPECT_EQ(format_endpoint(endpoint("fd00:19::1", 80, IPPROTO_TCP)), "[fd00:19::1]:80/tcp");
  EXPECT_EQ(format_endpoint(endpoint("198.19.0.1", 0, IPPROTO_UDP)), "198.19.0.1:*/udp");
  EXPECT_EQ(format_endpoint(endpoint("fd00:19::1", 0, IPPROTO_UDP)), "[fd00:19::1]:*/udp");
  EXPECT_EQ(format_endpoint(endpoint("198.19.0.1", 65535, IPPROTO_UDP)), "198.19.0.1:65535/udp");
  EXPECT_EQ(format_endpoint(endpoint("198.19.0.1", 1, 132)), "198.19.0.1:1/132");
  EXPECT_EQ(format_host_port(endpoint("fd00::2", 8080, 0).addr, SL_AF_INET6, 8080),
            "[fd00::2]:8080");
}

TEST(Proto, ParseAndName) {
  EXPECT_EQ(parse_proto("tcp"), IPPROTO_TCP);
  EXPECT_EQ(parse_proto("udp"), IPPROTO_UDP);
  EXPECT_FALSE(parse_proto("TCP").has_value());
  EXPECT_FALSE(parse_proto("icmp").has_value());  // a display name, not a VIP protocol
  EXPECT_FALSE(parse_proto("").has_value());
  EXPECT_STREQ(proto_name(IPPROTO_TCP), "tcp");
  EXPECT_STREQ(proto_name(IPPROTO_UDP), "udp");
  EXPECT_STREQ(proto_name(IPPROTO_ICMP), "icmp");
  EXPECT_STREQ(proto_name(IPPROTO_ICMPV6), "icmpv6");
  EXPECT_STREQ(proto_name(132), "unknown");
}

TEST(ModeSched, ParseAndName) {
  EXPECT_STREQ(mode_name(SL_MODE_NAT), "nat");
  EXPECT_STREQ(mode_name(SL_MODE_DSR), "dsr");
  EXPECT_STREQ(mode_name(7), "unknown");
  EXPECT_STREQ(sched_name(SL_SCHED_SOURCE_HASH), "source-hash");
  EXPECT_STREQ(sched_name(SL_SCHED_ROUND_ROBIN), "round-robin");
  EXPECT_STREQ(sched_name(SL_SCHED_LEAST_CONN), "least-conn");
  EXPECT_STREQ(sched_name(9), "unknown");
  for (uint8_t m : {SL_MODE_NAT, SL_MODE_DSR}) EXPECT_EQ(parse_mode(mode_name(m)), m);
  for (uint8_t s : {SL_SCHED_SOURCE_HASH, SL_SCHED_ROUND_ROBIN, SL_SCHED_LEAST_CONN}) {
    EXPECT_EQ(parse_sched(sched_name(s)), s);
  }
  EXPECT_FALSE(parse_mode("NAT").has_value());
  EXPECT_FALSE(parse_sched("maglev").has_value());
}

bool snake_case(const std::string& s) {
  if (s.empty() || s.front() == '_' || s.back() == '_') return false;
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

// Names index metrics and CLI output: every code has one, distinct and snake_case.
void expect_named(const char* (*name)(uint32_t), uint32_t max, const char* what) {
  std::set<std::string> seen;
  for (uint32_t i = 0; i < max; ++i) {
    const std::string n = name(i);
    EXPECT_TRUE(snake_case(n)) << what << " " << i << ": '" << n << "'";
    EXPECT_NE(n, "unknown") << what << " " << i;
    EXPECT_TRUE(seen.insert(n).second) << what << " " << i << ": duplicate name '" << n << "'";
  }
  EXPECT_STREQ(name(max), "unknown") << what;
  EXPECT_STREQ(name(0xffffffffu), "unknown") << what;
}

TEST(EnumNames, EveryDropReasonNamed) {
  expect_named(drop_reason_name, SL_DROP_MAX, "drop reason");
  EXPECT_STREQ(drop_reason_name(SL_DROP_BAD_IHL), "bad_ihl");
  EXPECT_STREQ(drop_reason_name(SL_DROP_NO_BACKEND), "no_backend");
}

TEST(EnumNames, EveryPassReasonNamed) {
  expect_named(pass_reason_name, SL_PASS_MAX, "pass reason");
  EXPECT_STREQ(pass_reason_name(SL_PASS_NOT_VIP), "not_vip");
}

TEST(EnumNames, EveryVerdictNamed) {
  expect_named(verdict_name, SL_VERDICT_MAX, "verdict");
  EXPECT_STREQ(verdict_name(XDP_ABORTED), "aborted");
  EXPECT_STREQ(verdict_name(XDP_DROP), "drop");
  EXPECT_STREQ(verdict_name(XDP_PASS), "pass");
  EXPECT_STREQ(verdict_name(XDP_TX), "tx");
  EXPECT_STREQ(verdict_name(XDP_REDIRECT), "redirect");
}

TEST(EnumNames, EveryConntrackStatNamed) {
  expect_named(ct_stat_name, SL_CT_STAT_MAX, "ct stat");
  EXPECT_STREQ(ct_stat_name(SL_CT_STAT_INSERT_RACE), "insert_race");
  EXPECT_STREQ(ct_stat_name(SL_CT_STAT_FULL_UNTRACKED), "full_untracked");
  EXPECT_STREQ(ct_stat_name(SL_CT_STAT_RESET_SENT), "reset_sent");
}

TEST(EnumNames, EveryTcpStateNamed) {
  expect_named([](uint32_t s) { return s > 0xff ? "unknown" : tcp_state_name(uint8_t(s)); },
               SL_TCP_STATE_MAX, "tcp state");
  EXPECT_STREQ(tcp_state_name(SL_TCP_SYN_SENT), "syn_sent");
  EXPECT_STREQ(tcp_state_name(SL_TCP_TIME_WAIT), "time_wait");
}

}  // namespace
}  // namespace sluice
