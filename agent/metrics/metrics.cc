// The Prometheus text exposition (format 0.0.4), its registry, the data-path provider and the
// /metrics endpoint. Nothing is kept between scrapes: every provider reads its component's
// current snapshot (or the maps) when scraped, so a metric can never be stale or drift from
// what `sluicectl` shows, and an idle agent spends nothing on metrics.
#include "sluice/metrics/metrics.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <exception>

#include "sluice/core/net.h"

namespace sluice {

// ---------------------------------------------------------------------------------------------
// Text format

// std::to_chars, not printf: it ignores the locale (a "%g" may write "0,5") and its shortest
// form reads back as the same double.
void MetricValue::append_to(std::string& out) const {
  char buf[32];
  if (is_int_) {
    if (negative_) out += '-';
    auto r = std::to_chars(buf, buf + sizeof(buf), u_);
    out.append(buf, r.ptr);
    return;
  }
  if (std::isnan(d_)) {
    out += "NaN";
  } else if (std::isinf(d_)) {
    out += d_ > 0 ? "+Inf" : "-Inf";
  } else {
    // Shortest form that parses back to the same double ("0.005", "1", "1e-05").
    auto r = std::to_chars(buf, buf + sizeof(buf), d_);
    out.append(buf, r.ptr);
  }
}

// Label values and HELP text escape differently (the text format's rules): only a label value
// is quoted, so only it escapes '"'.
std::string escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string escape_help(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

namespace {

// `colon`: metric names may contain ':' (the text format keeps it for recording rules), label
// names may not.
bool name_char(char c, bool first, bool colon) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') return true;
  if (colon && c == ':') return true;
  return !first && c >= '0' && c <= '9';
}

bool valid_name(std::string_view s, bool colon) {
  if (s.empty()) return false;
  for (size_t i = 0; i < s.size(); ++i)
    if (!name_char(s[i], i == 0, colon)) return false;
  return true;
}

const char* type_word(MetricType t) {
  switch (t) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

}  // namespace

bool valid_metric_name(std::string_view name) { return valid_name(name, true); }

bool valid_label_name(std::string_view name) {
  // Names starting with "__" are reserved for Prometheus' internal use.
  return valid_name(name, false) && name.substr(0, 2) != "__";
}

// ---------------------------------------------------------------------------------------------
// Histogram

Histogram::Histogram(std::vector<double> upper_bounds) : bounds_(std::move(upper_bounds)) {
  std::erase_if(bounds_, [](double b) { return !std::isfinite(b); });
  std::sort(bounds_.begin(), bounds_.end());
  bounds_.erase(std::unique(bounds_.begin(), bounds_.end()), bounds_.end());
  counts_.assign(bounds_.size() + 1, 0);
}

std::vector<double> Histogram::latency_buckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

void Histogram::observe(double v) {
  // lower_bound: the first bound >= v, so a value equal to a bound lands in that bucket
  // (Prometheus buckets are "less than or equal"). NaN compares false and goes to +Inf.
  const size_t i =
      static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
  ++counts_[std::isnan(v) ? bounds_.size() : i];
  sum_ += v;
  ++count_;
}

// ---------------------------------------------------------------------------------------------
// Writer

void MetricsWriter::error(std::string message) { errors_.push_back(std::move(message)); }

void MetricsWriter::family(std::string_view name, std::string_view help, MetricType type) {
  current_.clear();
  // Samples of a refused family are dropped without an error of their own: one mistake is
  // logged once, not once per series.
  refused_ = true;
  if (!valid_metric_name(name)) {
    error("invalid metric name '" + std::string(name) + "': family left out");
    return;
  }
  if (!families_.insert(std::string(name)).second) {
    error("metric family '" + std::string(name) + "' written twice: second one left out");
    return;
  }
  refused_ = false;
  family_order_.emplace_back(name);
  current_ = std::string(name);
  current_type_ = type;
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  out_ += escape_help(help);
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += ' ';
  out_ += type_word(type);
  out_ += '\n';
}

bool MetricsWriter::open(bool histogram) {
  if (current_.empty()) {
    if (!refused_) error("sample written outside a metric family");
    return false;
  }
  const bool is_histogram = current_type_ == MetricType::kHistogram;
  if (histogram != is_histogram) {
    error("metric '" + current_ + "'" +
          (is_histogram ? " is a histogram: use histogram(), not sample()"
                        : " is not a histogram: use sample(), not histogram()"));
    return false;
  }
  return true;
}

bool MetricsWriter::labels_ok(std::span<const Label> labels) {
  for (size_t i = 0; i < labels.size(); ++i) {
    // `le` names a histogram's buckets.
    if (!valid_label_name(labels[i].name) ||
        (current_type_ == MetricType::kHistogram && labels[i].name == "le")) {
      error("metric '" + current_ + "': invalid label name '" + std::string(labels[i].name) +
            "': series left out");
      return false;
    }
    for (size_t j = 0; j < i; ++j) {
      if (labels[j].name == labels[i].name) {
        error("metric '" + current_ + "': label '" + std::string(labels[i].name) +
              "' given twice: series left out");
        return false;
      }
    }
  }
  return true;
}

void MetricsWriter::series(std::string_view suffix, std::span<const Label> labels,
                           const Label* extra, const MetricValue& value) {
  out_ += current_;
  out_ += suffix;
  if (!labels.empty() || extra) {
    out_ += '{';
    bool first = true;
    auto put = [&](const Label& l) {
      if (!first) out_ += ',';
      first = false;
      out_ += l.name;
      out_ += "=\"";
      out_ += escape_label_value(l.value);
      out_ += '"';
    };
    for (const Label& l : labels) put(l);
    if (extra) put(*extra);
    out_ += '}';
  }
  out_ += ' ';
  value.append_to(out_);
  out_ += '\n';
}

void MetricsWriter::sample(std::initializer_list<Label> labels, MetricValue value) {
  sample(std::span<const Label>(labels.begin(), labels.size()), value);
}

void MetricsWriter::sample(std::span<const Label> labels, MetricValue value) {
  if (!open(false) || !labels_ok(labels)) return;
  series("", labels, nullptr, value);
}

void MetricsWriter::histogram(std::initializer_list<Label> labels, const Histogram& h) {
  histogram(std::span<const Label>(labels.begin(), labels.size()), h);
}

void MetricsWriter::histogram(std::span<const Label> labels, const Histogram& h) {
  if (!open(true)) return;
  std::vector<uint64_t> cumulative(h.bounds().size());
  uint64_t acc = 0;
  for (size_t i = 0; i < cumulative.size(); ++i) cumulative[i] = acc += h.counts()[i];
  histogram(labels, h.bounds(), cumulative, h.count(), h.sum());
}

void MetricsWriter::histogram(std::initializer_list<Label> labels, std::span<const double> bounds,
                              std::span<const uint64_t> cumulative, uint64_t count, double sum) {
  histogram(std::span<const Label>(labels.begin(), labels.size()), bounds, cumulative, count, sum);
}

void MetricsWriter::histogram(std::span<const Label> labels, std::span<const double> bounds,
                              std::span<const uint64_t> cumulative, uint64_t count, double sum) {
  if (!open(true) || !labels_ok(labels)) return;
  if (bounds.size() != cumulative.size()) {
    error("metric '" + current_ + "': " + std::to_string(bounds.size()) + " bucket bounds but " +
          std::to_string(cumulative.size()) + " bucket counts: series left out");
    return;
  }
  for (size_t i = 0; i < bounds.size(); ++i) {
    const bool ordered =
        i == 0 || (bounds[i] > bounds[i - 1] && cumulative[i] >= cumulative[i - 1]);
    if (!std::isfinite(bounds[i]) || !ordered || cumulative[i] > count) {
      error("metric '" + current_ +
            "': buckets must have finite, increasing bounds and non-decreasing counts up to "
            "the total: series left out");
      return;
    }
  }
  std::string le;
  for (size_t i = 0; i < bounds.size(); ++i) {
    le.clear();
    MetricValue(bounds[i]).append_to(le);
    const Label extra{"le", le};
    series("_bucket", labels, &extra, cumulative[i]);
  }
  const Label inf{"le", "+Inf"};
  series("_bucket", labels, &inf, count);
  series("_sum", labels, nullptr, sum);
  series("_count", labels, nullptr, count);
}

// Forgets the names of the families written since `m` too: the exposition must read as if
// the failed provider had never run.
void MetricsWriter::rollback(const Mark& m) {
  out_.resize(std::min(m.bytes, out_.size()));
  while (family_order_.size() > m.families) {
    families_.erase(family_order_.back());
    family_order_.pop_back();
  }
  current_.clear();
  refused_ = false;
}

// ---------------------------------------------------------------------------------------------
// Registry

MetricsRegistry::ProviderId MetricsRegistry::add(std::string name, Provider p) {
  const ProviderId id = next_id_++;
  providers_.push_back({id, std::move(name), std::move(p)});
  return id;
}

void MetricsRegistry::remove(ProviderId id) {
  std::erase_if(providers_, [id](const Entry& e) { return e.id == id; });
}

std::string MetricsRegistry::render() const {
  MetricsWriter w;
  std::vector<std::pair<std::string_view, bool>> up;
  for (const Entry& e : providers_) {
    const MetricsWriter::Mark mark = w.mark();
    Status s;
    // A provider that throws (bad_alloc, a bug) costs its own metrics, not the scrape, and
    // not the agent: the event loop must never see the exception.
    try {
      s = e.fn(w);
    } catch (const std::exception& ex) {
      s = Error{0, std::string("exception: ") + ex.what()};
    }
    if (!s) {
      w.rollback(mark);
      spdlog::warn("metrics provider '{}' failed, its metrics are left out of this scrape: {}",
                   e.name, s.error().to_string());
    }
    up.emplace_back(e.name, s.ok());
  }
  // Last, so that it reports this scrape's outcome of every provider above.
  w.family("sluice_metrics_provider_up",
           "1 if the provider's metrics are in this scrape, 0 if reading them failed (see the "
           "agent's log).",
           MetricType::kGauge);
  for (const auto& [name, ok] : up) w.sample({{"provider", name}}, ok ? 1 : 0);
  for (const std::string& err : w.errors()) {
    if (logged_.insert(err).second) spdlog::error("metrics: {}", err);
  }
  return w.take();
}

// ---------------------------------------------------------------------------------------------
// The endpoint

HttpServer::Handler metrics_handler(const MetricsRegistry& registry) {
  return [&registry](const HttpRequest& req) {
    HttpResponse r;
    if (req.path != "/metrics" && req.path != "/healthz") {
      r.status = 404;
      r.body = "not found; metrics are at /metrics\n";
      return r;
    }
    if (req.method != "GET" && req.method != "HEAD") {
      r.status = 405;
      r.body = "method not allowed; use GET\n";
      r.extra_headers.push_back({"Allow", "GET, HEAD"});
      return r;
    }
    if (req.path == "/healthz") {
      r.body = "ok";
      return r;
    }
    r.content_type = kMetricsContentType;
    r.body = registry.render();
    return r;
  };
}

namespace {

// Only for the startup log line: the endpoint has no TLS, so one reachable beyond the host
// deserves a warning (not a refusal: the operator chose the address).
bool is_loopback(const ListenAddress& a) {
  const auto* b = reinterpret_cast<const uint8_t*>(a.addr.w);
  if (a.family == SL_AF_INET) return b[0] == 127;
  static const uint8_t kLoop6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  return std::equal(b, b + 16, kLoop6);
}

}  // namespace

Result<std::unique_ptr<MetricsServer>> MetricsServer::start(EventLoop& loop,
                                                            MetricsRegistry& registry,
                                                            const ListenAddress& listen,
                                                            HttpServerOptions opts) {
  std::unique_ptr<MetricsServer> m(new MetricsServer(registry));
  auto http = HttpServer::start(loop, listen, metrics_handler(registry), opts);
  if (!http) return Error{http.error().code, "metrics endpoint: " + http.error().message};
  m->http_ = std::move(*http);
  const HttpServer* srv = m->http_.get();
  m->provider_ = registry.add("http", [srv](MetricsWriter& w) -> Status {
    const HttpServerStats& s = srv->stats();
    w.family("sluice_metrics_http_connections_total",
             "Connections accepted by the metrics endpoint.", MetricType::kCounter);
    w.sample({}, s.accepted);
    w.family("sluice_metrics_http_open_connections",
             "Connections the metrics endpoint holds open now.", MetricType::kGauge);
    w.sample({}, srv->connections());
    w.family("sluice_metrics_http_responses_total",
             "Responses of the metrics endpoint, by HTTP status code.", MetricType::kCounter);
    std::vector<std::pair<int, uint64_t>> codes(s.responses.begin(), s.responses.end());
    std::sort(codes.begin(), codes.end());
    for (const auto& [code, n] : codes) w.sample({{"code", std::to_string(code)}}, n);
    w.family("sluice_metrics_http_timeouts_total",
             "Connections the metrics endpoint closed at their deadline.", MetricType::kCounter);
    w.sample({}, s.timed_out);
    w.family("sluice_metrics_http_accept_pauses_total",
             "Times the metrics endpoint stopped accepting: connection cap reached or no fds "
             "left.",
             MetricType::kCounter);
    w.sample({}, s.accept_pauses);
    return {};
  });
  const std::string where = format_listen_address(m->local_address());
  if (is_loopback(listen)) {
    spdlog::info("metrics at http://{}/metrics", where);
  } else {
    spdlog::warn(
        "metrics at http://{}/metrics are reachable beyond this host and served without TLS",
        where);
  }
  return m;
}

MetricsServer::~MetricsServer() {
  if (provider_) registry_.remove(provider_);
}

}  // namespace sluice
