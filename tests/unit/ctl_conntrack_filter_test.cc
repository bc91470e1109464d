// `sluicectl conntrack` before any map is opened: the filter words and their errors, and the
// exit status 2 of bad arguments. The listing against real maps is
// tests/bpf/ctl_conntrack_test.cc.
#include <gtest/gtest.h>

#include <sluice/conntrack/conntrack.h>
#include <sluice/ctl/ctl.h>

#include <string>
#include <vector>

namespace sluice {
namespace {

// ---- filter words ----------------------------------------------------------------------------

std::string filter_error(const std::string& state, const std::string& vip,
                         const std::string& backend, const std::string& older) {
  auto f = parse_conntrack_filter(state, vip, backend, older);
  return f ? "" : f.error().to_string();
}

TEST(ConntrackFilterParse, AcceptsTheDocumentedForms) {
  auto f = parse_conntrack_filter("ESTABLISHED", "[fd00:19::1]:80", "198.18.1.2", "300");
  ASSERT_TRUE(f) << f.error().to_string();
  EXPECT_EQ(f->state, std::optional<uint8_t>(SL_TCP_ESTABLISHED));
  ASSERT_TRUE(f->vip);
  EXPECT_EQ(f->vip->family, SL_AF_INET6);
  EXPECT_EQ(f->vip->port, 80);
  ASSERT_TRUE(f->backend);
  EXPECT_EQ(f->backend->family, SL_AF_INET);
  EXPECT_EQ(f->backend->port, 0) << "no port: any port";
  EXPECT_EQ(f->older_than_s, std::optional<uint64_t>(300));

  auto bare6 = parse_conntrack_filter("", "fd00:19::1", "198.18.1.2:8080", "");
  ASSERT_TRUE(bare6) << bare6.error().to_string();
  EXPECT_EQ(bare6->vip->port, 0);
  EXPECT_EQ(bare6->backend->port, 8080);
  EXPECT_FALSE(bare6->state);
  EXPECT_FALSE(bare6->older_than_s);

  auto none = parse_conntrack_filter("", "", "", "");
  ASSERT_TRUE(none);
  EXPECT_FALSE(none->vip || none->backend || none->state || none->older_than_s);
}

TEST(ConntrackFilterParse, ErrorsNameTheOptionAndWhatIsValid) {
  EXPECT_EQ(filter_error("estab", "", "", ""),
            "--state 'estab': unknown state; valid states: none, syn_sent, syn_recv, "
            "established, fin_wait, close_wait, last_ack, time_wait, closed");
  const std::string endpoint_hint =
      "; expected ADDR or ADDR:PORT (IPv6 with a port: [ADDR]:PORT), PORT in 1..65535";
  EXPECT_EQ(filter_error("", "198.19.0.300", "", ""),
            "--vip '198.19.0.300': '198.19.0.300' is not an IPv4 or IPv6 address" + endpoint_hint);
  EXPECT_EQ(filter_error("", "198.19.0.1:0", "", ""),
            "--vip '198.19.0.1:0': '0' is not a port" + endpoint_hint);
  EXPECT_EQ(filter_error("", "198.19.0.1:", "", ""),
            "--vip '198.19.0.1:': empty port" + endpoint_hint);
  EXPECT_EQ(filter_error("", "", "[fd00::1", ""),
            "--backend '[fd00::1': no closing ']'" + endpoint_hint);
  EXPECT_EQ(filter_error("", "", "[fd00::1]80", ""),
            "--backend '[fd00::1]80': unexpected '80' after ']'" + endpoint_hint);
  EXPECT_EQ(filter_error("", "", "10.0.0.1:http", ""),
            "--backend '10.0.0.1:http': 'http' is not a port" + endpoint_hint);
  for (const char* bad : {"-5", "1.5", "5s", "", " 5"}) {
    if (*bad == '\0') continue;
    EXPECT_EQ(filter_error("", "", "", bad),
              std::string("--older-than '") + bad +
                  "': expected a whole number of seconds (0 or more), e.g. 300");
  }
}

// Bad arguments exit 2 before any map is opened, so this runs anywhere.
TEST(ConntrackCommand, BadFilterExitsTwo) {
  for (std::vector<std::string> args :
       {std::vector<std::string>{"sluicectl", "conntrack", "--state", "bogus"},
        {"sluicectl", "conntrack", "--vip", "not-an-address"},
        {"sluicectl", "conntrack", "--older-than", "soon"},
        {"sluicectl", "conntrack", "--no-such-option"},
        {"sluicectl", "conntrack", "-o", "yaml"},
        {"sluicectl", "conntrack", "--timeouts-from", "/nonexistent/sluice.yaml"},
        {"sluicectl", "conntrack", "--host", "--vip", "198.19.0.1"},
        {"sluicectl", "conntrack", "--host", "--backend", "198.18.1.2:80"},
        {"sluicectl", "conntrack", "--host", "--state", "bogus"}}) {
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    std::string line;
    for (const auto& a : args) line += a + " ";
    EXPECT_EQ(ctl_main(static_cast<int>(argv.size()), argv.data()), 2) << line;
  }
}

}  // namespace
}  // namespace sluice
