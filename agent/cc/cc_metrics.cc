// sluice_cc_* (cc_metrics.h): read from the cc maps on every scrape, nothing kept between
// scrapes, so the metrics never disagree with `sluicectl cc`.
#include <sluice/cc/cc_metrics.h>

#include <algorithm>
#include <map>
#include <string>

namespace sluice {

std::vector<double> cc_srtt_bounds_seconds() {
  std::vector<double> out;
  for (int i = 0; i < SL_CC_SRTT_BUCKETS - 1; ++i)
    out.push_back(static_cast<double>(uint64_t{1} << (i + SL_CC_SRTT_SHIFT)) / 1e6);
  return out;
}

std::vector<double> cc_retransmit_bounds() {
  std::vector<double> out;
  for (int i = 0; i < SL_CC_RETRANS_BUCKETS - 1; ++i)
    out.push_back(static_cast<double>((uint64_t{1} << i) - 1));
  return out;
}

namespace {

// Counters by rule name: a label set is written once per family, so ids that share a name
// (which the policy never gives out, but a reader must not trust) are summed into one series.
std::map<std::string, sl_cc_rule_stats> stats_by_rule(const std::vector<CcRuleName>& names,
                                                      const std::vector<sl_cc_rule_stats>& stats) {
  std::map<std::string, sl_cc_rule_stats> out;
  for (const CcRuleName& r : names) {
    if (r.id >= stats.size()) continue;
    // Ids that share a name (a rule removed and added back) are one series.
    add_cc_rule_stats(out[r.name], stats[r.id]);
  }
  return out;
}

// One histogram from a per-bucket array whose last bucket is +Inf. _count is `closed`, but
// never below what the buckets hold: the per-CPU counters are read one CPU at a time while
// connections close, so a scrape may see a bucket bumped before `closed` is, and buckets above
// the total would be refused by the writer (and by Prometheus).
template <std::size_t N>
void write_histogram(MetricsWriter& w, std::initializer_list<Label> labels,
                     const std::vector<double>& bounds, const __u64 (&buckets)[N], uint64_t closed,
                     double sum) {
  std::vector<uint64_t> cumulative(N - 1);
  uint64_t acc = 0;
  for (std::size_t i = 0; i + 1 < N; ++i) cumulative[i] = acc += buckets[i];
  const uint64_t count = std::max<uint64_t>(closed, acc + buckets[N - 1]);
  w.histogram(labels, bounds, cumulative, count, sum);
}

void write_rule_counters(MetricsWriter& w, const std::map<std::string, sl_cc_rule_stats>& rules) {
  w.family("sluice_cc_rule_connections_total",
           "Connections a congestion-control rule matched first, by whether every setting read "
           "back as asked (applied) or not (failed).",
           MetricType::kCounter);
  for (const auto& [rule, s] : rules) {
    w.sample({{"rule", rule}, {"result", "applied"}}, s.applied);
    w.sample({{"rule", rule}, {"result", "failed"}}, s.failed);
  }
  w.family("sluice_cc_rule_setting_failures_total",
           "Connections of a rule on which one setting did not read back as asked, by setting.",
           MetricType::kCounter);
  for (const auto& [rule, s] : rules)
    for (uint32_t i = 0; i < SL_CC_SET_MAX; ++i)
      w.sample({{"rule", rule}, {"setting", cc_setting_name(i)}}, s.failed_by[i]);
  w.family("sluice_cc_rule_untracked_total",
           "Connections a rule matched while cc_conns was full: set, but without live stats.",
           MetricType::kCounter);
  for (const auto& [rule, s] : rules) w.sample({{"rule", rule}}, s.untracked);
}

void write_rule_histograms(MetricsWriter& w, const std::map<std::string, sl_cc_rule_stats>& rules) {
  w.family("sluice_cc_srtt_seconds",
           "Smoothed RTT of a rule's tracked connections when they closed.",
           MetricType::kHistogram);
  const std::vector<double> srtt = cc_srtt_bounds_seconds();
  for (const auto& [rule, s] : rules) {
    write_histogram(w, {{"rule", rule}}, srtt, s.srtt_hist, s.closed,
                    static_cast<double>(s.srtt_us_sum) / 1e6);
  }
  w.family("sluice_cc_retransmits",
           "Segments retransmitted over the life of a rule's tracked connections, counted when "
           "they closed.",
           MetricType::kHistogram);
  const std::vector<double> retrans = cc_retransmit_bounds();
  for (const auto& [rule, s] : rules) {
    write_histogram(w, {{"rule", rule}}, retrans, s.retrans_hist, s.closed,
                    static_cast<double>(s.retrans_sum));
  }
}

void write_connections(MetricsWriter& w, const std::vector<CcConnView>& conns) {
  std::map<std::string, uint64_t> by_algo;
  for (const CcConnView& c : conns) {
    const std::string name = cc_name(c.conn);
    ++by_algo[name.empty() ? "unknown" : name];
  }
  w.family("sluice_cc_connections",
           "Live connections a congestion-control rule matched (cc_conns), by the algorithm "
           "they use.",
           MetricType::kGauge);
  for (const auto& [algo, n] : by_algo) w.sample({{"algorithm", algo}}, n);
  w.family("sluice_cc_connections_tracked",
           "Entries of cc_conns: the live connections with per-connection stats.",
           MetricType::kGauge);
  w.sample({}, conns.size());
}

}  // namespace

MetricsRegistry::Provider cc_metrics_provider(CcMapFds fds) {
  return [fds](MetricsWriter& w) -> Status {
    auto names = read_cc_rule_names(fds.rule_info);
    if (!names) return names.error();
    auto stats = read_cc_rule_stats(fds.rule_stats);
    if (!stats) return stats.error();
    auto conns = read_cc_conns(fds.conns);
    if (!conns) return conns.error();
    const auto rules = stats_by_rule(*names, *stats);
    write_rule_counters(w, rules);
    write_rule_histograms(w, rules);
    write_connections(w, *conns);
    if (fds.algo_users < 0) return {};
    auto users = read_cc_algo_users(fds.algo_users);
    if (!users) return users.error();
    w.family("sluice_cc_algorithm_users",
             "Sockets using our congestion control now, whichever way they selected it.",
             MetricType::kGauge);
    w.sample({{"algorithm", SL_CC_OURS}}, *users);
    return {};
  };
}

}  // namespace sluice
