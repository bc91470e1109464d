// The congestion-control metrics (sluice_cc_*, include/sluice/cc/cc_metrics.h) rendered by the
// registry from real pinned maps holding known entries (tests/common/cc_pin_world.h): each series
// with its value, every label set once per family, histograms cumulative up to +Inf = _count,
// and promtool's verdict when it is installed. Needs root; skips otherwise.
#include <gtest/gtest.h>
#include <unistd.h>

#include <sluice/cc/cc_metrics.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "cc_pin_world.h"
#include "netns.h"

namespace sluice::test {
namespace {

// A bound as the writer prints it in `le`.
std::string le(double v) {
  std::string s;
  MetricValue(v).append_to(s);
  return s;
}

struct Exposition {
  std::map<std::string, std::string> value;  // series (name and labels) -> value
  std::vector<std::string> series;           // in order
  std::vector<std::string> duplicates;
  std::map<std::string, int> types;  // families' TYPE lines
};

Exposition parse(const std::string& text) {
  Exposition e;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("# TYPE ", 0) == 0) {
      ++e.types[line.substr(7, line.find(' ', 7) - 7)];
      continue;
    }
    if (line.empty() || line[0] == '#') continue;
    const size_t sp = line.rfind(' ');
    const std::string series = line.substr(0, sp);
    if (!e.value.emplace(series, line.substr(sp + 1)).second) e.duplicates.push_back(series);
    e.series.push_back(series);
  }
  return e;
}

class CcMetrics : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = skip_reason()) GTEST_SKIP() << *why;
    world_ = std::make_unique<CcPinWorld>();
    ASSERT_TRUE(world_->ok());
    fill_cc_example(*world_, 1000 * kCcSec);
  }

  std::string Render() {
    auto m = PinnedCcMaps::open(world_->pin_dir());
    EXPECT_TRUE(m) << m.error().to_string();
    if (!m) return "";
    MetricsRegistry r;
    r.add("cc", cc_metrics_provider(m->fds()));
    return r.render();
  }

  std::unique_ptr<CcPinWorld> world_;
  const uint64_t k_ = CcPinWorld::cpu_weight();
};

TEST_F(CcMetrics, BoundsFollowTheAbisBuckets) {
  const std::vector<double> srtt = cc_srtt_bounds_seconds();
  ASSERT_EQ(srtt.size(), static_cast<size_t>(SL_CC_SRTT_BUCKETS - 1));
  EXPECT_DOUBLE_EQ(srtt.front(), 64e-6);
  EXPECT_DOUBLE_EQ(srtt[1], 128e-6);
  EXPECT_DOUBLE_EQ(srtt.back(), 16777216e-6);
  EXPECT_EQ(cc_retransmit_bounds(), (std::vector<double>{0, 1, 3, 7, 15, 31, 63}));
}

TEST_F(CcMetrics, EverySeriesWithItsValue) {
  const std::string text = Render();
  const Exposition e = parse(text);
  auto expect = [&](const std::string& series, uint64_t v) {
    auto it = e.value.find(series);
    ASSERT_NE(it, e.value.end()) << series << " missing from:\n" << text;
    EXPECT_EQ(it->second, std::to_string(v)) << series;
  };
  const uint64_t k = k_;
  expect("sluice_metrics_provider_up{provider=\"cc\"}", 1);
  expect("sluice_cc_rule_connections_total{rule=\"web\",result=\"applied\"}", 2 * k);
  expect("sluice_cc_rule_connections_total{rule=\"web\",result=\"failed\"}", k);
  expect("sluice_cc_rule_connections_total{rule=\"bulk\",result=\"applied\"}", 0);
  expect("sluice_cc_rule_connections_total{rule=\"bulk\",result=\"failed\"}", k);
  expect("sluice_cc_rule_connections_total{rule=\"old\",result=\"applied\"}", k);
  for (const char* s : {"algorithm", "initial_cwnd", "sndbuf", "rcvbuf", "cwnd_clamp"}) {
    const std::string setting = s;
    expect("sluice_cc_rule_setting_failures_total{rule=\"web\",setting=\"" + setting + "\"}",
           setting == "sndbuf" ? k : 0);
    expect("sluice_cc_rule_setting_failures_total{rule=\"bulk\",setting=\"" + setting + "\"}",
           setting == "sndbuf" || setting == "rcvbuf" ? k : 0);
  }
  expect("sluice_cc_rule_untracked_total{rule=\"web\"}", k);
  expect("sluice_cc_rule_untracked_total{rule=\"bulk\"}", 0);
  expect("sluice_cc_connections{algorithm=\"cubic\"}", 1);
  expect("sluice_cc_connections{algorithm=\"bbr\"}", 1);
  expect("sluice_cc_connections{algorithm=\"sluice_aimd\"}", 1);
  expect("sluice_cc_connections{algorithm=\"unknown\"}", 1);  // not read back yet
  expect("sluice_cc_connections_tracked", 4);
  expect("sluice_cc_algorithm_users{algorithm=\"sluice_aimd\"}", 1);
  EXPECT_EQ(text.find("rule=\"#9\""), std::string::npos) << "an id without a name has no series";
  EXPECT_EQ(text.find("rule=\"\""), std::string::npos);
}

TEST_F(CcMetrics, HistogramsFromTheBpfBuckets) {
  const Exposition e = parse(Render());
  const uint64_t k = k_;
  auto v = [&](const std::string& s) {
    auto it = e.value.find(s);
    return it == e.value.end() ? std::string("(missing)") : it->second;
  };
  const std::vector<double> srtt = cc_srtt_bounds_seconds();
  // web: one srtt below 128 us (bucket 1), one below 4096 us (bucket 6).
  for (size_t i = 0; i < srtt.size(); ++i) {
    const uint64_t want = i < 1 ? 0 : i < 6 ? k : 2 * k;
    EXPECT_EQ(v("sluice_cc_srtt_seconds_bucket{rule=\"web\",le=\"" + le(srtt[i]) + "\"}"),
              std::to_string(want))
        << "le " << srtt[i];
  }
  EXPECT_EQ(v("sluice_cc_srtt_seconds_bucket{rule=\"web\",le=\"+Inf\"}"), std::to_string(2 * k));
  EXPECT_EQ(v("sluice_cc_srtt_seconds_count{rule=\"web\"}"), std::to_string(2 * k));
  EXPECT_EQ(v("sluice_cc_srtt_seconds_sum{rule=\"web\"}"), le(3100.0 * k / 1e6));
  // old: beyond every finite bound.
  EXPECT_EQ(v("sluice_cc_srtt_seconds_bucket{rule=\"old\",le=\"" + le(srtt.back()) + "\"}"), "0");
  EXPECT_EQ(v("sluice_cc_srtt_seconds_bucket{rule=\"old\",le=\"+Inf\"}"), std::to_string(k));
  EXPECT_EQ(v("sluice_cc_srtt_seconds_sum{rule=\"old\"}"), le(20.0 * k));
  // web's retransmits: 0 (bucket 0) and 5 (bucket 3, 4..7).
  const std::map<std::string, uint64_t> retrans = {
      {"0", k}, {"1", k}, {"3", k}, {"7", 2 * k}, {"15", 2 * k}, {"63", 2 * k}, {"+Inf", 2 * k}};
  for (const auto& [bound, want] : retrans) {
    EXPECT_EQ(v("sluice_cc_retransmits_bucket{rule=\"web\",le=\"" + bound + "\"}"),
              std::to_string(want))
        << "le " << bound;
  }
  EXPECT_EQ(v("sluice_cc_retransmits_sum{rule=\"web\"}"), le(5.0 * k));
  EXPECT_EQ(v("sluice_cc_retransmits_count{rule=\"web\"}"), std::to_string(2 * k));
  EXPECT_EQ(v("sluice_cc_retransmits_count{rule=\"bulk\"}"), "0");
}

// Per series: the labels but `le`, so that a histogram's buckets group under one key.
std::string without_le(const std::string& series) {
  const size_t at = series.find(",le=\"");
  if (at == std::string::npos) return series;
  return series.substr(0, at) + series.substr(series.find('"', at + 5) + 1);
}

TEST_F(CcMetrics, EveryLabelSetOnceAndBucketsCumulativeUpToCount) {
  const std::string text = Render();
  const Exposition e = parse(text);
  EXPECT_TRUE(e.duplicates.empty()) << "written twice: " << e.duplicates.front();
  for (const auto& [family, n] : e.types) EXPECT_EQ(n, 1) << family;
  // Buckets in order per label set: non-decreasing, the last one +Inf and equal to _count.
  std::map<std::string, std::vector<std::pair<std::string, uint64_t>>> buckets;
  for (const std::string& s : e.series) {
    const size_t b = s.find("_bucket{");
    if (b == std::string::npos) continue;
    const size_t at = s.find(",le=\"") + 1;
    const std::string bound = s.substr(at + 4, s.find('"', at + 4) - at - 4);
    buckets[without_le(s)].emplace_back(bound, std::stoull(e.value.at(s)));
  }
  EXPECT_EQ(buckets.size(), 6u) << "srtt and retransmits of web, bulk and old";
  for (const auto& [key, list] : buckets) {
    for (size_t i = 1; i < list.size(); ++i)
      EXPECT_GE(list[i].second, list[i - 1].second) << key << " le " << list[i].first;
    EXPECT_EQ(list.back().first, "+Inf") << key;
    std::string count = key;
    count.replace(count.find("_bucket{"), 8, "_count{");
    EXPECT_EQ(std::to_string(list.back().second), e.value.at(count)) << key;
  }
}

TEST_F(CcMetrics, ATornReadNeverLeavesBucketsAboveTheCount) {
  // A bucket bumped on one CPU before `closed` was, as a scrape may catch it.
  sl_cc_rule_stats torn{};
  torn.srtt_hist[2] = 1;
  torn.retrans_hist[0] = 1;
  world_->put_stats(3, torn);
  const Exposition e = parse(Render());
  EXPECT_EQ(e.value.at("sluice_cc_srtt_seconds_count{rule=\"bulk\"}"), std::to_string(k_));
  EXPECT_EQ(e.value.at("sluice_cc_srtt_seconds_bucket{rule=\"bulk\",le=\"+Inf\"}"),
            std::to_string(k_));
  EXPECT_EQ(e.value.at("sluice_cc_retransmits_count{rule=\"bulk\"}"), std::to_string(k_));
}

TEST_F(CcMetrics, IdsSharingANameMakeOneSeries) {
  world_->put_rule_name(9, "web", true);  // id 9 carries 4 matched, none applied
  const std::string text = Render();
  const Exposition e = parse(text);
  EXPECT_TRUE(e.duplicates.empty()) << "written twice: " << e.duplicates.front();
  EXPECT_EQ(e.value.at("sluice_cc_rule_connections_total{rule=\"web\",result=\"applied\"}"),
            std::to_string(2 * k_));
}

TEST_F(CcMetrics, WithoutOurAlgorithmNoUsersSeries) {
  world_->unpin(kCcAlgoUsersPin);
  const std::string text = Render();
  EXPECT_EQ(text.find("sluice_cc_algorithm_users"), std::string::npos) << text;
  EXPECT_NE(text.find("sluice_metrics_provider_up{provider=\"cc\"} 1"), std::string::npos);
}

TEST_F(CcMetrics, PromtoolAcceptsTheExposition) {
  if (std::system("command -v promtool >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "promtool is not installed (Debian package 'prometheus')";
  const std::string text = Render();
  char path[] = "/tmp/sluice-cc-metrics-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  close(fd);
  const std::string cmd = std::string("promtool check metrics < ") + path + " 2>&1";
  std::string out;
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[512];
    while (fgets(buf, sizeof(buf), p)) out += buf;
    const int st = pclose(p);
    EXPECT_EQ(st, 0) << out;
  }
  unlink(path);
  EXPECT_EQ(out, "") << "promtool findings:\n" << out << "\n--- exposition ---\n" << text;
}

}  // namespace
}  // namespace sluice::test
