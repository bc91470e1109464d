// Metrics: the Prometheus text renderer, the registry, the HTTP request parser, listen
// addresses, the endpoint's routing and the `metrics` config section. No kernel, no sockets.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <sluice/config/config.h>
#include <sluice/http/http_server.h>
#include <sluice/metrics/metrics.h>

namespace sluice {
namespace {

// ---------------------------------------------------------------------------------------------
// Renderer

TEST(MetricsWriter, CounterAndGaugeFamiliesWithHelpAndType) {
  MetricsWriter w;
  w.family("sluice_x_total", "Things that happened.", MetricType::kCounter);
  w.sample({{"vip", "198.19.0.1:80/tcp"}}, 3);
  w.sample({{"vip", "[fd00:19::1]:80/tcp"}}, uint64_t{0});
  w.family("sluice_y", "A level.", MetricType::kGauge);
  w.sample({}, 2.5);
  EXPECT_EQ(w.text(),
            "# HELP sluice_x_total Things that happened.\n"
            "# TYPE sluice_x_total counter\n"
            "sluice_x_total{vip=\"198.19.0.1:80/tcp\"} 3\n"
            "sluice_x_total{vip=\"[fd00:19::1]:80/tcp\"} 0\n"
            "# HELP sluice_y A level.\n"
            "# TYPE sluice_y gauge\n"
            "sluice_y 2.5\n");
  EXPECT_TRUE(w.errors().empty());
}

TEST(MetricsWriter, EscapesLabelValuesAndHelp) {
  EXPECT_EQ(escape_label_value(R"(a\b"c)"
                               "\n"
                               "d"),
            R"(a\\b\"c\nd)");
  // HELP escapes only backslash and newline: a quote stays as it is.
  EXPECT_EQ(escape_help("say \"hi\"\\\nbye"), "say \"hi\"\\\\\\nbye");
  MetricsWriter w;
  w.family("m", "two\nlines \\ here", MetricType::kGauge);
  w.sample({{"name", "web \"front\"\n\\prod"}, {"empty", ""}}, 1);
  EXPECT_EQ(w.text(),
            "# HELP m two\\nlines \\\\ here\n"
            "# TYPE m gauge\n"
            "m{name=\"web \\\"front\\\"\\n\\\\prod\",empty=\"\"} 1\n");
}

TEST(MetricsWriter, ValuesAreExactIntegersOrShortestDoubles) {
  auto render = [](MetricValue v) {
    std::string s;
    v.append_to(s);
    return s;
  };
  EXPECT_EQ(render(std::numeric_limits<uint64_t>::max()), "18446744073709551615");
  EXPECT_EQ(render(std::numeric_limits<int64_t>::min()), "-9223372036854775808");
  EXPECT_EQ(render(-5), "-5");
  EXPECT_EQ(render(true), "1");
  EXPECT_EQ(render(1.0), "1");
  EXPECT_EQ(render(0.005), "0.005");
  EXPECT_EQ(render(1e-05), "1e-05");
  EXPECT_EQ(render(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(render(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(render(std::nan("")), "NaN");
}

TEST(MetricsWriter, HistogramBucketsAreCumulativeAndEndWithInf) {
  Histogram h({0.1, 0.5, 1});
  for (double v : {0.05, 0.1, 0.3, 0.7, 2.0, 3.0}) h.observe(v);
  EXPECT_EQ(h.counts(), (std::vector<uint64_t>{2, 1, 1, 2}));  // 0.1 lands in le="0.1"
  EXPECT_EQ(h.count(), 6u);
  MetricsWriter w;
  w.family("sluice_lat_seconds", "Latency.", MetricType::kHistogram);
  w.histogram({{"type", "tcp"}}, h);
  EXPECT_EQ(w.text(),
            "# HELP sluice_lat_seconds Latency.\n"
            "# TYPE sluice_lat_seconds histogram\n"
            "sluice_lat_seconds_bucket{type=\"tcp\",le=\"0.1\"} 2\n"
            "sluice_lat_seconds_bucket{type=\"tcp\",le=\"0.5\"} 3\n"
            "sluice_lat_seconds_bucket{type=\"tcp\",le=\"1\"} 4\n"
            "sluice_lat_seconds_bucket{type=\"tcp\",le=\"+Inf\"} 6\n"
            "sluice_lat_seconds_sum{type=\"tcp\"} 6.15\n"
            "sluice_lat_seconds_count{type=\"tcp\"} 6\n");
  EXPECT_TRUE(w.errors().empty());
}

TEST(MetricsWriter, HistogramFromCumulativeBuckets) {
  // The shape the health checker keeps (already cumulative, +Inf = count).
  const std::array<double, 2> bounds = {0.001, 0.01};
  const std::array<uint64_t, 2> cumulative = {4, 9};
  MetricsWriter w;
  w.family("h_seconds", "H.", MetricType::kHistogram);
  w.histogram({}, bounds, cumulative, 10, 0.25);
  EXPECT_EQ(w.text(),
            "# HELP h_seconds H.\n# TYPE h_seconds histogram\n"
            "h_seconds_bucket{le=\"0.001\"} 4\n"
            "h_seconds_bucket{le=\"0.01\"} 9\n"
            "h_seconds_bucket{le=\"+Inf\"} 10\n"
            "h_seconds_sum 0.25\n"
            "h_seconds_count 10\n");
  // Counts that go down, or exceed the total, are not a histogram.
  const std::array<uint64_t, 2> bad = {9, 4};
  w.histogram({{"x", "y"}}, bounds, bad, 10, 0);
  w.histogram({{"x", "z"}}, bounds, cumulative, 5, 0);
  EXPECT_EQ(w.errors().size(), 2u);
  EXPECT_EQ(w.text().find("x=\""), std::string::npos);
}

TEST(MetricsWriter, EmptyHistogramHasOnlyInf) {
  MetricsWriter w;
  w.family("h", "H.", MetricType::kHistogram);
  w.histogram({}, Histogram({}));
  EXPECT_EQ(w.text(),
            "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 0\nh_sum 0\nh_count 0\n");
}

TEST(MetricsWriter, HistogramBoundsAreSortedAndFinite) {
  Histogram h({1, std::numeric_limits<double>::infinity(), 0.5, 1, std::nan("")});
  EXPECT_EQ(h.bounds(), (std::vector<double>{0.5, 1}));
  h.observe(std::nan(""));
  EXPECT_EQ(h.counts().back(), 1u);
}

TEST(MetricsWriter, MisuseIsReportedAndLeftOut) {
  MetricsWriter w;
  w.family("9bad", "x", MetricType::kGauge);  // invalid name
  w.sample({}, 1);                            // belongs to the refused family: dropped
  w.family("ok", "x", MetricType::kGauge);
  w.sample({{"__reserved", "v"}}, 1);
  w.sample({{"bad-name", "v"}}, 1);
  w.sample({{"a", "1"}, {"a", "2"}}, 1);
  w.sample({{"a", "1"}}, 7);
  w.family("ok", "again", MetricType::kGauge);  // twice
  w.sample({}, 8);
  w.family("h", "x", MetricType::kHistogram);
  w.sample({}, 1);                               // not a histogram sample
  w.histogram({{"le", "0.1"}}, Histogram({1}));  // le is the histogram's own label
  EXPECT_EQ(w.errors().size(), 7u) << ::testing::PrintToString(w.errors());
  EXPECT_EQ(w.text(),
            "# HELP ok x\n# TYPE ok gauge\nok{a=\"1\"} 7\n"
            "# HELP h x\n# TYPE h histogram\n");
  EXPECT_TRUE(valid_metric_name("sluice:rule_total"));
  EXPECT_FALSE(valid_label_name("a:b"));
}

// ---------------------------------------------------------------------------------------------
// Registry

TEST(MetricsRegistry, FailingProviderIsRolledBackAndReported) {
  MetricsRegistry r;
  r.add("one", [](MetricsWriter& w) -> Status {
    w.family("one_total", "One.", MetricType::kCounter);
    w.sample({}, 1);
    return {};
  });
  const auto bad = r.add("bad", [](MetricsWriter& w) -> Status {
    w.family("half_written", "Half.", MetricType::kGauge);
    w.sample({}, 1);
    return Error{5, "read map 'x'"};
  });
  r.add("throws", [](MetricsWriter& w) -> Status {
    w.family("thrown", "T.", MetricType::kGauge);
    throw std::runtime_error("boom");
  });
  std::string text = r.render();
  EXPECT_EQ(text.find("half_written"), std::string::npos);
  EXPECT_EQ(text.find("thrown"), std::string::npos);
  EXPECT_NE(text.find("one_total 1\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE sluice_metrics_provider_up gauge\n"
                      "sluice_metrics_provider_up{provider=\"one\"} 1\n"
                      "sluice_metrics_provider_up{provider=\"bad\"} 0\n"
                      "sluice_metrics_provider_up{provider=\"throws\"} 0\n"),
            std::string::npos)
      << text;
  r.remove(bad);
  text = r.render();
  EXPECT_EQ(text.find("provider=\"bad\""), std::string::npos);
}

TEST(MetricsRegistry, AFamilyNameTakenByAnEarlierProviderIsLeftOut) {
  MetricsRegistry r;
  for (int i = 0; i < 2; ++i) {
    r.add("p" + std::to_string(i), [i](MetricsWriter& w) -> Status {
      w.family("shared", "S.", MetricType::kGauge);
      w.sample({}, i + 10);
      return {};
    });
  }
  const std::string text = r.render();
  EXPECT_NE(text.find("shared 10\n"), std::string::npos);
  EXPECT_EQ(text.find("shared 11\n"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Endpoint routing

HttpRequest request(std::string method, std::string path) {
  HttpRequest r;
  r.method = std::move(method);
  r.target = path;
  r.path = std::move(path);
  return r;
}

TEST(MetricsHandler, Routes) {
  MetricsRegistry reg;
  reg.add("t", [](MetricsWriter& w) -> Status {
    w.family("t", "T.", MetricType::kGauge);
    w.sample({}, 1);
    return {};
  });
  auto h = metrics_handler(reg);
  HttpResponse r = h(request("GET", "/metrics"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_NE(r.body.find("t 1\n"), std::string::npos);
  r = h(request("GET", "/healthz"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "ok");
  EXPECT_EQ(h(request("GET", "/")).status, 404);
  EXPECT_EQ(h(request("GET", "/metrics/")).status, 404);
  r = h(request("POST", "/metrics"));
  EXPECT_EQ(r.status, 405);
  ASSERT_EQ(r.extra_headers.size(), 1u);
  EXPECT_EQ(r.extra_headers[0].name, "Allow");
  EXPECT_EQ(h(request("HEAD", "/metrics")).status, 200);
}

TEST(HttpResponse, Serializes) {
  HttpResponse r;
  r.status = 405;
  r.body = "no\n";
  r.extra_headers.push_back({"Allow", "GET, HEAD"});
  EXPECT_EQ(serialize_http_response(r, false),
            "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Length: 3\r\nConnection: close\r\nAllow: GET, HEAD\r\n\r\nno\n");
  // HEAD: the same head, Content-Length of the body that GET would get, no body.
  const std::string head = serialize_http_response(r, true);
  EXPECT_EQ(head.substr(head.size() - 4), "\r\n\r\n");
  EXPECT_NE(head.find("Content-Length: 3\r\n"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Request parser

constexpr size_t kMax = 8192;

HttpParse parse(std::string_view text, HttpRequest* req = nullptr, size_t* head_len = nullptr) {
  HttpRequest r;
  size_t n = 0;
  return parse_http_request(text, kMax, req ? req : &r, head_len ? head_len : &n);
}

TEST(HttpParser, CompleteRequest) {
  HttpRequest req;
  size_t head_len = 0;
  const std::string text =
      "GET /metrics?name[]=x HTTP/1.1\r\nHost: 127.0.0.1:9435\r\nAccept:  text/plain \t\r\n"
      "User-Agent: Prometheus/2.42.0\r\n\r\nBODY";
  ASSERT_EQ(parse(text, &req, &head_len), HttpParse::kComplete);
  EXPECT_EQ(req.method, "GET");
  EXPECT_EQ(req.target, "/metrics?name[]=x");
  EXPECT_EQ(req.path, "/metrics");
  EXPECT_EQ(req.version_minor, 1);
  ASSERT_EQ(req.headers.size(), 3u);
  EXPECT_EQ(req.headers[1].value, "text/plain");
  ASSERT_NE(req.header("host"), nullptr);
  EXPECT_EQ(req.header("HOST")->value, "127.0.0.1:9435");
  EXPECT_EQ(req.header("Cookie"), nullptr);
  EXPECT_EQ(head_len, text.size() - 4);
}

TEST(HttpParser, PartialReadsAnySplit) {
  const std::string text = "GET /healthz HTTP/1.0\r\nHost: x\r\nX-A: b\r\n\r\n";
  for (size_t n = 0; n < text.size(); ++n)
    EXPECT_EQ(parse(text.substr(0, n)), HttpParse::kIncomplete) << "prefix of " << n << " bytes";
  HttpRequest req;
  ASSERT_EQ(parse(text, &req), HttpParse::kComplete);
  EXPECT_EQ(req.path, "/healthz");
  EXPECT_EQ(req.version_minor, 0);
  EXPECT_EQ(req.headers.size(), 2u);
}

TEST(HttpParser, BareLineFeedsAndLeadingEmptyLine) {
  HttpRequest req;
  EXPECT_EQ(parse("\r\nGET / HTTP/1.1\nHost: h\n\n", &req), HttpParse::kComplete);
  EXPECT_EQ(req.header("Host")->value, "h");
}

TEST(HttpParser, AbsoluteFormTarget) {
  HttpRequest req;
  ASSERT_EQ(parse("GET http://10.0.0.1:9435/metrics?x HTTP/1.1\r\nHost: a\r\n\r\n", &req),
            HttpParse::kComplete);
  EXPECT_EQ(req.path, "/metrics");
  ASSERT_EQ(parse("GET http://10.0.0.1:9435 HTTP/1.1\r\nHost: a\r\n\r\n", &req),
            HttpParse::kComplete);
  EXPECT_EQ(req.path, "/");
}

TEST(HttpParser, HeadTooLarge) {
  std::string text = "GET /metrics HTTP/1.1\r\n";
  while (text.size() <= kMax) text += "X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
  EXPECT_EQ(parse(text), HttpParse::kHeadersTooLarge);
  // A request line alone that long, without its end yet.
  EXPECT_EQ(parse("GET /" + std::string(kMax, 'a')), HttpParse::kHeadersTooLarge);
  // Exactly at the limit is fine.
  std::string fits = "GET / HTTP/1.1\r\nHost: h\r\nX: ";
  fits += std::string(kMax - fits.size() - 4, 'b') + "\r\n\r\n";
  ASSERT_EQ(fits.size(), kMax);
  EXPECT_EQ(parse(fits), HttpParse::kComplete);
  EXPECT_EQ(parse(fits + "extra body bytes beyond the limit"), HttpParse::kComplete);
}

TEST(HttpParser, BadRequestLines) {
  for (const char* line : {
           "GET /metrics\r\n\r\n",                // no version
           "GET  /metrics HTTP/1.1\r\n\r\n",      // two spaces
           "GET /metrics HTTP/1.1 \r\n\r\n",      // trailing space
           "GET /a b HTTP/1.1\r\n\r\n",           // space in target
           "G(T / HTTP/1.1\r\n\r\n",              // method not a token
           " GET / HTTP/1.1\r\n\r\n",             // leading space
           "GET metrics HTTP/1.1\r\n\r\n",        // not origin or absolute form
           "GET / HTTX/1.1\r\n\r\n",              // not HTTP
           "GET / HTTP/1\r\n\r\n",                // version without minor
           "GET / HTTP/1.10\r\n\r\n",             // two-digit minor
           "GET /\x7f HTTP/1.1\r\n\r\n",          // control byte in target
           "GET /\xc3\xa9 HTTP/1.1\r\n\r\n",      // raw non-ASCII in target
           "\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n",  // more than the tolerated empty lines
       }) {
    EXPECT_EQ(parse(line), HttpParse::kBadRequest) << ::testing::PrintToString(line);
  }
  EXPECT_EQ(parse("GET / HTTP/2.0\r\n\r\n"), HttpParse::kVersionNotSupported);
  EXPECT_EQ(parse("GET / HTTP/0.9\r\n\r\n"), HttpParse::kVersionNotSupported);
}

TEST(HttpParser, BadHeaders) {
  for (const char* text : {
           "GET / HTTP/1.1\r\nHost h\r\n\r\n",              // no colon
           "GET / HTTP/1.1\r\nHost : h\r\n\r\n",            // blank before the colon
           "GET / HTTP/1.1\r\n: h\r\n\r\n",                 // empty name
           "GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n",  // obsolete line folding
           "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",          // bare CR in a value
           "GET / HTTP/1.1\r\nHost: a\x01\r\n\r\n",         // control byte in a value
       }) {
    EXPECT_EQ(parse(text), HttpParse::kBadRequest) << ::testing::PrintToString(text);
  }
}

TEST(HttpParser, JunkIsRefusedBeforeTheLineEnds) {
  // A TLS ClientHello on the plain-text port: no line end will ever come.
  EXPECT_EQ(parse(std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11)),
            HttpParse::kBadRequest);
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: a\x01"), HttpParse::kBadRequest);
  EXPECT_EQ(parse("GET / HTTP/1.1\r"), HttpParse::kIncomplete);  // CRLF split over two reads
}

TEST(HttpParser, RandomInputNeverBreaksIt) {
  // Mutations of a valid request and plain noise: any answer is fine, but no crash, and a
  // complete head always ends within the input.
  const std::string valid = "GET /metrics HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n";
  std::mt19937 rng(12345);
  for (int i = 0; i < 20000; ++i) {
    std::string in = valid;
    if (i % 2) {
      in.resize(rng() % 64);
      for (char& c : in) c = static_cast<char>(rng());
    } else {
      for (int k = 0; k < 3; ++k) in[rng() % in.size()] = static_cast<char>(rng());
      in.resize(rng() % (in.size() + 1));
    }
    HttpRequest req;
    size_t head_len = 0;
    if (parse_http_request(in, 64, &req, &head_len) == HttpParse::kComplete) {
      ASSERT_LE(head_len, in.size());
      ASSERT_EQ(req.path.empty() ? '/' : req.path[0], '/');
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Listen addresses

TEST(ListenAddress, Parses) {
  auto a = parse_listen_address("127.0.0.1:9435");
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(a->family, SL_AF_INET);
  EXPECT_EQ(a->port, 9435);
  EXPECT_EQ(format_listen_address(*a), "127.0.0.1:9435");
  a = parse_listen_address("[::1]:0");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->family, SL_AF_INET6);
  EXPECT_EQ(a->port, 0);
  EXPECT_EQ(format_listen_address(*a), "[::1]:0");
  a = parse_listen_address("[0:0::0]:65535");
  ASSERT_TRUE(a);
  EXPECT_EQ(format_listen_address(*a), "[::]:65535");
}

TEST(ListenAddress, RejectsWithAReason) {
  struct {
    const char* text;
    const char* says;
  } cases[] = {
      {"", "empty"},
      {"127.0.0.1", "no port"},
      {"localhost:9435", "not an IP address"},
      {"::1:9435", "needs brackets"},
      {"[::1]", "no port"},
      {"[::1]9435", "no port"},
      {"[::1:9435", "no closing"},
      {"[127.0.0.1]:80", "brackets are for IPv6"},
      {"127.0.0.1:65536", "not a number in 0..65535"},
      {"127.0.0.1:", "not a number"},
      {"127.0.0.1:-1", "not a number"},
      {"127.0.0.1:http", "not a number"},
      {"[fe80::1%eth0]:80", "not an IP address"},
  };
  for (const auto& c : cases) {
    auto a = parse_listen_address(c.text);
    ASSERT_FALSE(a) << c.text;
    EXPECT_NE(a.error().message.find(c.says), std::string::npos)
        << c.text << " -> " << a.error().message;
  }
}

// ---------------------------------------------------------------------------------------------
// The `metrics` config section

constexpr const char* kBase =
    "interfaces: [eth0]\n"
    "vips:\n"
    "  - address: 198.19.0.1\n"
    "    port: 80\n"
    "    protocol: tcp\n"
    "    backends: [{address: 10.0.0.1}]\n";

ConfigResult with(const std::string& metrics) { return parse_config(kBase + metrics, "m.yaml"); }

std::string errors_of(const ConfigResult& r) {
  std::string s;
  for (const auto& e : r.errors) s += e.to_string() + "\n";
  return s;
}

TEST(MetricsConfig, DefaultsToLocalhost) {
  auto r = with("");
  ASSERT_TRUE(r.config) << errors_of(r);
  EXPECT_EQ(r.config->metrics.listen, "127.0.0.1:9435");
  r = with("metrics:\n");
  ASSERT_TRUE(r.config) << errors_of(r);
  EXPECT_EQ(r.config->metrics.listen, "127.0.0.1:9435");
}

TEST(MetricsConfig, ListenAndDisable) {
  auto r = with("metrics:\n  listen: \"[::1]:9500\"\n");
  ASSERT_TRUE(r.config) << errors_of(r);
  EXPECT_EQ(r.config->metrics.listen, "[::1]:9500");
  r = with("metrics: {listen: 0.0.0.0:9435, enabled: true}\n");
  ASSERT_TRUE(r.config) << errors_of(r);
  EXPECT_EQ(r.config->metrics.listen, "0.0.0.0:9435");
  r = with("metrics:\n  enabled: false\n");
  ASSERT_TRUE(r.config) << errors_of(r);
  EXPECT_EQ(r.config->metrics.listen, "");
  r = with("metrics:\n  listen: \"\"\n");
  ASSERT_TRUE(r.config) << errors_of(r);
  EXPECT_EQ(r.config->metrics.listen, "");
  r = with("metrics:\n  enabled: false\n  listen: 127.0.0.1:1\n");
  ASSERT_TRUE(r.config) << errors_of(r);
  EXPECT_EQ(r.config->metrics.listen, "");
}

TEST(MetricsConfig, Errors) {
  struct {
    const char* yaml;
    const char* error;
  } cases[] = {
      {"metrics:\n  listen: localhost:9435\n",
       "m.yaml:8:11: metrics.listen: 'localhost:9435': 'localhost' is not an IP address"},
      {"metrics:\n  listen: 127.0.0.1:0\n", "m.yaml:8:11: metrics.listen: port 0 would be"},
      {"metrics:\n  listen: \"::1:9435\"\n", "needs brackets"},
      {"metrics:\n  listen: [::1]\n",
       "m.yaml:8:11: metrics.listen: expected ADDRESS:PORT, got a list"},
      {"metrics:\n  listen: 9435\n", "'9435' has no port"},
      {"metrics:\n  port: 9435\n",
       "m.yaml:8:3: metrics.port: unknown field 'port'; valid fields: enabled, listen"},
      {"metrics:\n  enabled: yes\n", "metrics.enabled: expected true or false"},
      {"metrics:\n  enabled: true\n  listen: \"\"\n",
       "metrics.listen: listen is empty, which turns metrics off, but enabled is true"},
      {"metrics: 127.0.0.1:9435\n", "m.yaml:7:10: metrics: expected metrics settings"},
  };
  for (const auto& c : cases) {
    auto r = with(c.yaml);
    ASSERT_FALSE(r.config) << c.yaml;
    const std::string all = errors_of(r);
    EXPECT_EQ(r.errors.size(), 1u) << all;
    EXPECT_NE(all.find(c.error), std::string::npos) << c.yaml << "\n" << all;
  }
}

}  // namespace
}  // namespace sluice
