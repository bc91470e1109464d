// The `conntrack:` section of the config: timeouts per state, the sweep interval, and the
// errors for every way to get them wrong.
#include <gtest/gtest.h>

#include <sluice/config/config.h>
#include <sluice/config/validate.h>

#include <string>
#include <vector>

#include "conntrack_util.h"
#include "param_name.h"

namespace sluice {
namespace {

constexpr char kVips[] = R"(vips:
  - {address: 198.19.0.1, port: 80, protocol: tcp, backends: [{address: 10.0.0.1}]}
)";

ConfigResult parse_ct(const std::string& conntrack_section) {
  return parse_config("interfaces: [eth0]\n" + conntrack_section + kVips, "sluice.yaml");
}

std::string errors_of(const ConfigResult& r) {
  std::string out;
  for (const ConfigError& e : r.errors) out += e.to_string() + "\n";
  return out;
}

TEST(ConntrackConfig, DefaultsWithoutASection) {
  const ConfigResult r = parse_ct("");
  ASSERT_TRUE(r.config) << errors_of(r);
  EXPECT_EQ(r.config->conntrack_timeouts, ConntrackTimeouts{});
  EXPECT_EQ(r.config->conntrack_sweep_interval_ms, 1000u);
  EXPECT_EQ(r.config->conntrack_max_entries, uint32_t{SL_DEFAULT_CT_ENTRIES});
}

TEST(ConntrackConfig, EveryFieldSet) {
  const ConfigResult r = parse_ct(R"(conntrack:
  max_entries: 4096
  pending_entries: 2048
  sweep_interval_ms: 250
  timeouts:
    unconfirmed: 300
    syn_sent: 1
    syn_recv: 2
    established: 3
    fin_wait: 4
    close_wait: 5
    last_ack: 6
    time_wait: 7
    close: 31536000
)");
  ASSERT_TRUE(r.config) << errors_of(r);
  const Config& c = *r.config;
  EXPECT_EQ(c.conntrack_max_entries, 4096u);
  EXPECT_EQ(c.conntrack_pending_entries, 2048u);
  EXPECT_EQ(c.conntrack_sweep_interval_ms, 250u);
  const ConntrackTimeouts& t = c.conntrack_timeouts;
  EXPECT_EQ(t.unconfirmed, 300u);
  // In ct_pending an open state's timeout is capped by `unconfirmed`; a finished one's not.
  EXPECT_EQ(t.for_entry(SL_TCP_CLOSED, true), 31536000u);
  EXPECT_EQ(test::timeouts_by_state(t), (std::vector<uint32_t>{1, 2, 3, 4, 5, 6, 7, 31536000}));
}

TEST(ConntrackConfig, OmittedTimeoutsKeepTheirDefaults) {
  const ConfigResult r = parse_ct("conntrack:\n  timeouts: {established: 3600}\n");
  ASSERT_TRUE(r.config) << errors_of(r);
  ConntrackTimeouts want;
  want.established = 3600;
  EXPECT_EQ(r.config->conntrack_timeouts, want);
  // An empty map means all defaults, as everywhere in the config.
  const ConfigResult empty = parse_ct("conntrack:\n  timeouts:\n");
  ASSERT_TRUE(empty.config) << errors_of(empty);
  EXPECT_EQ(empty.config->conntrack_timeouts, ConntrackTimeouts{});
}

// conntrack.one_sided_max: the share of `conntrack` one-sided (dsr) flows may hold. Unset, it
// is half of max_entries, whatever max_entries is; set, anything from 1 to max_entries.
TEST(ConntrackConfig, OneSidedMaxDefaultsToHalfOfMaxEntries) {
  const ConfigResult none = parse_ct("");
  ASSERT_TRUE(none.config) << errors_of(none);
  EXPECT_FALSE(none.config->conntrack_one_sided_max);
  EXPECT_EQ(none.config->one_sided_max(), uint32_t{SL_DEFAULT_CT_ENTRIES} / 2);
  const ConfigResult sized = parse_ct("conntrack:\n  max_entries: 4096\n");
  ASSERT_TRUE(sized.config) << errors_of(sized);
  EXPECT_EQ(sized.config->one_sided_max(), 2048u);
  for (const uint32_t n : {1u, 1000u, 4096u}) {
    const ConfigResult r =
        parse_ct("conntrack:\n  max_entries: 4096\n  one_sided_max: " + std::to_string(n) + "\n");
    ASSERT_TRUE(r.config) << errors_of(r);
    EXPECT_EQ(r.config->one_sided_max(), n);
  }
}

// The rule is validate()'s: a Config built in code (the API's) is held to it too.
TEST(ConntrackConfig, ValidateRefusesAnOneSidedMaxOutsideTheTable) {
  const ConfigResult r = parse_ct("conntrack:\n  max_entries: 4096\n");
  ASSERT_TRUE(r.config) << errors_of(r);
  for (const uint32_t bad : {0u, 4097u}) {
    Config c = *r.config;
    c.conntrack_one_sided_max = bad;
    const std::vector<ConfigError> errors = validate(c);
    ASSERT_EQ(errors.size(), 1u) << bad;
    EXPECT_EQ(errors[0].field, "conntrack.one_sided_max");
    EXPECT_EQ(errors[0].message,
              std::to_string(bad) +
                  " is out of range; valid values are 1..4096 (conntrack.max_entries: it is a "
                  "share of that table), or leave it out for half of it");
  }
  Config ok = *r.config;
  ok.conntrack_one_sided_max = 4096;
  EXPECT_TRUE(validate(ok).empty());
}

struct BadCase {
  const char* name;
  const char* section;
  const char* error;  // the whole first line, FILE:LINE:COL: FIELD: MESSAGE
};

class BadConntrackConfig : public testing::TestWithParam<BadCase> {};

TEST_P(BadConntrackConfig, IsRejectedWithWhereAndWhatIsValid) {
  const ConfigResult r = parse_ct(GetParam().section);
  EXPECT_FALSE(r.config);
  ASSERT_FALSE(r.errors.empty());
  EXPECT_EQ(r.errors[0].to_string(), GetParam().error) << errors_of(r);
}

const BadCase kBadCases[] = {
    {"ZeroTimeout", "conntrack:\n  timeouts:\n    established: 0\n",
     "sluice.yaml:4:18: conntrack.timeouts.established: 0 is out of range; valid timeouts "
     "(seconds) are 1..31536000"},
    {"TimeoutAboveAYear", "conntrack:\n  timeouts: {time_wait: 31536001}\n",
     "sluice.yaml:3:25: conntrack.timeouts.time_wait: 31536001 is out of range; valid timeouts "
     "(seconds) are 1..31536000"},
    {"NegativeTimeout", "conntrack:\n  timeouts: {close: -1}\n",
     "sluice.yaml:3:21: conntrack.timeouts.close: -1 is out of range; valid timeouts (seconds) "
     "are 1..31536000"},
    {"TimeoutWithUnit", "conntrack:\n  timeouts: {syn_sent: 2m}\n",
     "sluice.yaml:3:24: conntrack.timeouts.syn_sent: '2m' is not a number; expected an integer "
     "in 1..31536000"},
    {"QuotedTimeout", "conntrack:\n  timeouts: {syn_recv: \"60\"}\n",
     "sluice.yaml:3:24: conntrack.timeouts.syn_recv: expected an integer in 1..31536000, got "
     "the quoted string \"60\"; remove the quotes"},
    {"UnknownState", "conntrack:\n  timeouts:\n    closed: 10\n",
     "sluice.yaml:4:5: conntrack.timeouts.closed: unknown field 'closed'; valid fields: "
     "syn_sent, syn_recv, established, fin_wait, close_wait, last_ack, time_wait, close, "
     "unconfirmed"},
    {"TimeoutsIsAList", "conntrack:\n  timeouts: [120, 60]\n",
     "sluice.yaml:3:13: conntrack.timeouts: expected conntrack timeouts (a map of 'field: "
     "value'), got a list"},
    {"DuplicateTimeout", "conntrack:\n  timeouts:\n    close: 10\n    close: 20\n",
     "sluice.yaml:5:5: conntrack.timeouts.close: field 'close' is set twice (first at line 4); "
     "remove one"},
    {"SweepTooFast", "conntrack:\n  sweep_interval_ms: 1\n",
     "sluice.yaml:3:22: conntrack.sweep_interval_ms: 1 is out of range; valid intervals are "
     "10..60000"},
    {"SweepTooSlow", "conntrack:\n  sweep_interval_ms: 3600000\n",
     "sluice.yaml:3:22: conntrack.sweep_interval_ms: 3600000 is out of range; valid intervals "
     "are 10..60000"},
    {"UnknownConntrackField", "conntrack:\n  timeout: {close: 10}\n",
     "sluice.yaml:3:3: conntrack.timeout: unknown field 'timeout'; valid fields: max_entries, "
     "pending_entries, one_sided_max, timeouts, sweep_interval_ms"},
    // A blind sender's entries live `unconfirmed` seconds at most: nf_conntrack's ceiling.
    {"UnconfirmedAboveNfCeiling", "conntrack:\n  timeouts: {unconfirmed: 301}\n",
     "sluice.yaml:3:27: conntrack.timeouts.unconfirmed: 301 is out of range; valid timeouts "
     "(seconds) are 1..300"},
    {"OneSidedMaxZero", "conntrack:\n  one_sided_max: 0\n",
     "sluice.yaml:3:18: conntrack.one_sided_max: 0 is out of range; valid values are "
     "1..262144 (conntrack.max_entries: it is a share of that table), or leave it out for half "
     "of it"},
    {"OneSidedMaxAboveMaxEntries", "conntrack:\n  max_entries: 4096\n  one_sided_max: 4097\n",
     "sluice.yaml:4:18: conntrack.one_sided_max: 4097 is out of range; valid values are "
     "1..4096 (conntrack.max_entries: it is a share of that table), or leave it out for half "
     "of it"},
    {"PendingEntriesTooSmall", "conntrack:\n  pending_entries: 10\n",
     "sluice.yaml:3:20: conntrack.pending_entries: 10 is out of range; valid values are "
     "1024..16777216"},
};

INSTANTIATE_TEST_SUITE_P(Cases, BadConntrackConfig, testing::ValuesIn(kBadCases),
                         test::ParamName());

// Every error is reported, not only the first.
TEST(ConntrackConfig, EveryBadTimeoutIsReported) {
  const ConfigResult r =
      parse_ct("conntrack:\n  sweep_interval_ms: 0\n  timeouts: {syn_sent: 0, close: 0}\n");
  EXPECT_FALSE(r.config);
  EXPECT_EQ(r.errors.size(), 3u) << errors_of(r);
}

}  // namespace
}  // namespace sluice
