// Prometheus metrics: a registry of providers, a text-format renderer, the data-path provider,
// and the HTTP endpoint on the agent's event loop. The metric reference is docs/metrics.md.
//
// A provider is a function that writes metric families through a MetricsWriter on every
// scrape; it reads whatever snapshot its component keeps. Adapting a component is a few lines:
//
//   registry.add("cc", [&cc](MetricsWriter& w) {
//     w.family("sluice_cc_connections", "Connections by congestion-control algorithm.",
//              MetricType::kGauge);
//     for (const auto& [algo, n] : cc.snapshot().by_algo) w.sample({{"algorithm", algo}}, n);
//     return Status{};
//   });
//
// Everything here runs on the event loop thread; nothing is thread-safe and nothing blocks.
#pragma once

#include <concepts>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_set>
#include <vector>

#include "sluice/abi/abi.h"
#include "sluice/bpf/maps.h"
#include "sluice/core/result.h"
#include "sluice/http/http_server.h"

namespace sluice {

struct Config;

enum class MetricType { kCounter, kGauge, kHistogram };

// A label pair. Values are escaped by the writer; names must match [a-zA-Z_][a-zA-Z0-9_]*.
struct Label {
  std::string_view name;
  std::string_view value;
};

// A sample value: integers are printed exactly (a 64-bit counter keeps every digit), doubles
// in the shortest form that reads back the same, with +Inf, -Inf and NaN spelled as
// Prometheus spells them.
class MetricValue {
 public:
  MetricValue(double v) : d_(v), is_int_(false) {}  // NOLINT: implicit by design
  template <std::integral T>
  MetricValue(T v) {  // NOLINT: implicit by design
    if constexpr (std::is_signed_v<T>) {
      negative_ = v < 0;
      // -(v + 1) + 1: the magnitude of INT64_MIN does not fit in int64_t.
      u_ = negative_ ? static_cast<uint64_t>(-(static_cast<int64_t>(v) + 1)) + 1
                     : static_cast<uint64_t>(v);
    } else {
      u_ = static_cast<uint64_t>(v);
    }
  }
  void append_to(std::string& out) const;

 private:
  double d_ = 0;
  uint64_t u_ = 0;  // magnitude when is_int_
  bool is_int_ = true;
  bool negative_ = false;
};

// A histogram with fixed upper bounds. Bucket i counts observations <= bounds[i] and above
// bounds[i-1]; the implicit last bucket (+Inf) counts the rest. The writer emits the
// cumulative _bucket series that Prometheus expects.
class Histogram {
 public:
  // `upper_bounds`: finite, strictly increasing (sorted and deduplicated if not; non-finite
  // values are dropped).
  explicit Histogram(std::vector<double> upper_bounds);
  // 1 ms .. 10 s, for health-check and other network latencies, in seconds.
  static std::vector<double> latency_buckets();

  void observe(double v);
  const std::vector<double>& bounds() const { return bounds_; }
  // Per bucket, not cumulative: bounds().size() + 1 entries, the last one for +Inf.
  const std::vector<uint64_t>& counts() const { return counts_; }
  double sum() const { return sum_; }
  uint64_t count() const { return count_; }

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;
  double sum_ = 0;
  uint64_t count_ = 0;
};

// The builder providers write through: family() opens a metric family (HELP and TYPE lines),
// sample()/histogram() add series to it. Misuse (a bad name, a family twice, a sample of the
// wrong kind or outside a family) is a programming error: it is logged and the offending
// family or sample is left out, so one bad provider never breaks the whole exposition.
class MetricsWriter {
 public:
  MetricsWriter() = default;

  void family(std::string_view name, std::string_view help, MetricType type);
  // For counter and gauge families.
  void sample(std::initializer_list<Label> labels, MetricValue value);
  void sample(std::span<const Label> labels, MetricValue value);
  // For histogram families: NAME_bucket{...,le="..."} (cumulative, ending with le="+Inf"),
  // NAME_sum and NAME_count.
  void histogram(std::initializer_list<Label> labels, const Histogram& h);
  void histogram(std::span<const Label> labels, const Histogram& h);
  // The same from buckets that are already cumulative: cumulative[i] counts observations
  // <= bounds[i] (the two spans have the same length); `count` is the +Inf bucket.
  void histogram(std::initializer_list<Label> labels, std::span<const double> bounds,
                 std::span<const uint64_t> cumulative, uint64_t count, double sum);
  void histogram(std::span<const Label> labels, std::span<const double> bounds,
                 std::span<const uint64_t> cumulative, uint64_t count, double sum);

  const std::string& text() const { return out_; }
  std::string take() { return std::move(out_); }
  // Problems found so far (bad names, duplicate families ...); empty when all was well.
  const std::vector<std::string>& errors() const { return errors_; }

  // Rollback support for MetricsRegistry: forget everything written after mark().
  struct Mark {
    size_t bytes = 0;
    size_t families = 0;
  };
  Mark mark() const { return {out_.size(), family_order_.size()}; }
  void rollback(const Mark& m);

 private:
  void series(std::string_view suffix, std::span<const Label> labels, const Label* extra,
              const MetricValue& value);
  bool open(bool histogram);  // a family of that kind is open: samples may follow
  bool labels_ok(std::span<const Label> labels);
  void error(std::string message);

  std::string out_;
  std::unordered_set<std::string> families_;
  std::vector<std::string> family_order_;
  std::string current_;  // name of the open family; empty when none (or it was refused)
  MetricType current_type_ = MetricType::kGauge;
  bool refused_ = false;  // the last family() was refused
  std::vector<std::string> errors_;
};

// Prometheus text-format escaping, exposed for tests.
std::string escape_label_value(std::string_view v);  // \ " and newline
std::string escape_help(std::string_view v);         // \ and newline
bool valid_metric_name(std::string_view name);       // [a-zA-Z_:][a-zA-Z0-9_:]*
bool valid_label_name(std::string_view name);        // [a-zA-Z_][a-zA-Z0-9_]*, no "__" prefix

class MetricsRegistry {
 public:
  // Writes this provider's families. An error drops everything it wrote in this scrape, is
  // logged, and sets sluice_metrics_provider_up{provider=NAME} to 0.
  using Provider = std::function<Status(MetricsWriter&)>;
  using ProviderId = uint64_t;

  // Providers render in the order they were added. `name` is a label value ("datapath").
  ProviderId add(std::string name, Provider p);
  void remove(ProviderId id);

  // The full exposition: every provider, then sluice_metrics_provider_up.
  std::string render() const;

 private:
  struct Entry {
    ProviderId id;
    std::string name;
    Provider fn;
  };
  std::vector<Entry> providers_;
  ProviderId next_id_ = 1;
  // Writer errors are programming errors that repeat on every scrape: each is logged once.
  mutable std::unordered_set<std::string> logged_;
};

// --- Providers -------------------------------------------------------------------------------

// VIP labels beyond the data path's own: the config's VIP names, keyed by format_endpoint().
using VipNames = std::map<std::string, std::string>;
VipNames vip_names(const Config& cfg);

// Per-VIP and per-backend traffic, drops, passes and verdicts (every code, zeros included),
// VIP info and backend weights, and the config generation, read from the data-path maps on
// every scrape. `fds` must stay open while the provider is registered (Datapath::fds() or
// PinnedMaps::fds()); map sizes and the generation come from the `info` map.
MetricsRegistry::Provider datapath_provider(MapFds fds, VipNames names = {});

// Labels of every backend id, as the data path numbers them (Datapath::apply: the backends of
// all VIPs in config order, from 0): {vip = format_endpoint(), backend = format_host_port()}.
// For providers whose snapshots are keyed by backend id (health checks, conntrack).
struct BackendLabels {
  std::string vip;      // "198.19.0.1:80/tcp"
  std::string backend;  // "198.18.1.2:8080"
};
std::vector<BackendLabels> backend_labels(const Config& cfg);
// The same with the ids a Datapath gave (Datapath::backend_ids()); ids not in use get empty
// labels.
std::vector<BackendLabels> backend_labels(const Config& cfg,
                                          const std::vector<std::vector<uint32_t>>& ids);

// --- The endpoint ----------------------------------------------------------------------------

inline constexpr const char* kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

// Routes GET/HEAD /metrics (registry.render()) and /healthz ("ok"); 405 for other methods on
// those paths, 404 elsewhere. The returned handler keeps a reference to `registry`.
HttpServer::Handler metrics_handler(const MetricsRegistry& registry);

// The metrics endpoint: an HttpServer serving metrics_handler(), plus a provider "http" in the
// registry for the server's own counters (sluice_metrics_http_*). Destroying it removes that
// provider and closes every socket. Destroy it before the loop; the registry must outlive it.
class MetricsServer {
 public:
  static Result<std::unique_ptr<MetricsServer>> start(EventLoop& loop, MetricsRegistry& registry,
                                                      const ListenAddress& listen,
                                                      HttpServerOptions opts = {});
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // The bound address; its port is the kernel's choice when `listen` asked for port 0.
  const ListenAddress& local_address() const { return http_->local_address(); }
  uint16_t port() const { return http_->port(); }
  const HttpServer& http() const { return *http_; }

 private:
  explicit MetricsServer(MetricsRegistry& registry) : registry_(registry) {}
  MetricsRegistry& registry_;
  MetricsRegistry::ProviderId provider_ = 0;
  std::unique_ptr<HttpServer> http_;
};

}  // namespace sluice
