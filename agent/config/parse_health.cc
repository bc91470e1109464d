// A VIP's `health_check` (docs/configuration.md, "Health checks"). Whether its timeout fits its
// interval, and whether a port-0 VIP's check names a port, is validate()'s.
#include <algorithm>
#include <cctype>

#include "parser.h"

namespace sluice::detail {
namespace {

constexpr std::string_view kHealthCheckFields[] = {"type", "port",  "interval_ms", "timeout_ms",
                                                   "rise", "fall",  "path",        "expect_status",
                                                   "send", "expect"};
constexpr std::string_view kHealthCheckTypes[] = {"tcp", "http", "udp"};  // by HealthCheckType
// Health-check bounds: a check below 10 ms is a load test, not a health check; an HTTP path
// or UDP payload beyond these sizes is a mistake (65507 is the largest UDP payload).
constexpr uint64_t kMinCheckIntervalMs = 10;
constexpr uint64_t kMaxCheckIntervalMs = 3600000;
constexpr uint64_t kMaxRiseFall = 1000;
constexpr std::size_t kMaxHealthPath = 1024;
constexpr std::size_t kMaxUdpPayload = 65507;

// The word of a check type: kHealthCheckTypes is in enum HealthCheckType's order.
std::string type_word(HealthCheckType type) {
  return std::string(kHealthCheckTypes[static_cast<std::size_t>(type)]);
}

}  // namespace

void Parser::parse_health_check(const Field& f, VipConfig& vip, VipNotes& notes) {
  const auto map = read_map(f.value, f.key_loc, f.path, kHealthCheckFields, "a health check");
  if (!map) return;
  HealthCheckConfig hc;
  std::optional<HealthCheckType> type;
  if (const Field* t = map->get("type")) {
    if (auto word = read_string(*t, "a check type (" + list_words(kHealthCheckTypes) + ")")) {
      const auto* known =
          std::find(std::begin(kHealthCheckTypes), std::end(kHealthCheckTypes), *word);
      if (known != std::end(kHealthCheckTypes)) {
        type = static_cast<HealthCheckType>(known - std::begin(kHealthCheckTypes));
      } else {
        error(t->loc, t->path,
              "unknown check type '" + *word + "'; valid types: " + list_words(kHealthCheckTypes));
      }
    }
  } else {
    missing(*map, "type", "valid types: " + list_words(kHealthCheckTypes));
  }
  // An unknown type keeps the default in the model; the rest is still read, so every error of
  // the check is reported in one pass.
  if (type) hc.type = *type;
  if (const Field* p = map->get("port")) {
    const auto port = read_uint(*p, 1, 65535, "ports");
    hc.port = static_cast<uint16_t>(port.value_or(0));
    notes.check_port = port.has_value();
  } else {
    mark(join(map->path, "port"), map->loc);  // validate(): a port-0 VIP's check needs one
  }
  parse_check_timing(*map, hc, notes);
  parse_check_payloads(*map, hc, type);
  vip.health_check = std::move(hc);
}

void Parser::parse_check_timing(const MapView& map, HealthCheckConfig& hc, VipNotes& notes) {
  const Field* interval = map.get("interval_ms");
  notes.interval_written = interval != nullptr;
  if (interval) {
    mark(interval->path, interval->loc);
    if (auto v = read_uint(*interval, kMinCheckIntervalMs, kMaxCheckIntervalMs, "intervals")) {
      hc.interval_ms = static_cast<uint32_t>(*v);
    } else {
      // A bad value leaves the default in the model: validate() must not compare it with the other.
      notes.check_timing = false;
    }
  }
  const Field* timeout = map.get("timeout_ms");
  notes.timeout_written = timeout != nullptr;
  if (timeout) {
    mark(timeout->path, timeout->loc);
    if (auto v = read_uint(*timeout, 1, kMaxCheckIntervalMs, "timeouts")) {
      hc.timeout_ms = static_cast<uint32_t>(*v);
    } else {
      notes.check_timing = false;
    }
  }
  if (const Field* v = map.get("rise")) {
    if (auto n = read_uint(*v, 1, kMaxRiseFall, "values")) hc.rise = static_cast<uint32_t>(*n);
  }
  if (const Field* v = map.get("fall")) {
    if (auto n = read_uint(*v, 1, kMaxRiseFall, "values")) hc.fall = static_cast<uint32_t>(*n);
  }
}

// What one type of check sends and expects: the http and udp fields.
void Parser::parse_check_payloads(const MapView& map, HealthCheckConfig& hc,
                                  std::optional<HealthCheckType> type) {
  // A field of another check type is a mistake the user should hear about, not a no-op.
  auto only_for = [&](const Field* field, HealthCheckType want) {
    if (field == nullptr || !type || *type == want) return;
    const std::string name = field->path.substr(field->path.rfind('.') + 1);
    const std::string want_word = type_word(want);
    error(field->key_loc, field->path,
          "'" + name + "' applies only to " + want_word + " checks, and this check's type is " +
              type_word(*type) + "; remove it, or set type: " + want_word);
  };
  if (const Field* p = map.get("path")) {
    only_for(p, HealthCheckType::kHttp);
    if (auto path = read_string(*p, "an HTTP path such as /healthz")) {
      const bool printable = std::all_of(path->begin(), path->end(), [](char c) {
        return c > ' ' && c < 0x7f;  // no spaces or controls: they would break the request line
      });
      if (path->empty() || (*path)[0] != '/') {
        error(p->loc, p->path, "path '" + *path + "' must start with '/'");
      } else if (!printable) {
        error(p->loc, p->path,
              "path contains a space or a control character; percent-encode it (%20)");
      } else if (path->size() > kMaxHealthPath) {
        error(p->loc, p->path,
              "path is " + std::to_string(path->size()) + " characters long; at most " +
                  std::to_string(kMaxHealthPath) + " are allowed");
      } else {
        hc.path = *path;
      }
    }
  }
  if (const Field* s = map.get("expect_status")) {
    only_for(s, HealthCheckType::kHttp);
    if (auto codes = read_status_codes(*s)) hc.expect_status = std::move(*codes);
  }
  if (const Field* s = map.get("send")) {
    only_for(s, HealthCheckType::kUdp);
    if (auto payload = read_string(*s, "a string (the UDP payload)")) {
      if (payload->size() > kMaxUdpPayload) {
        error(s->loc, s->path,
              "the payload is " + std::to_string(payload->size()) + " bytes; a UDP datagram " +
                  "carries at most " + std::to_string(kMaxUdpPayload));
      } else {
        hc.send = *payload;
      }
    }
  }
  if (const Field* e = map.get("expect")) {
    only_for(e, HealthCheckType::kUdp);
    if (auto text = read_string(*e, "a string to find in the reply")) hc.expect = *text;
  }
}

// expect_status: one code (200), a range ("200-299"), or a list of either. Codes are 100..599.
std::optional<std::vector<StatusRange>> Parser::read_status_codes(const Field& f) {
  constexpr std::string_view kValid =
      "a status code (200), a range (200-299), or a list of them, with codes in 100..599";
  std::vector<YAML::Node> storage;
  if (f.value.IsSequence()) {
    if (f.value.size() == 0) {
      error(f.loc, f.path, "the list is empty; expected " + std::string(kValid));
      return std::nullopt;
    }
    for (std::size_t i = 0; i < f.value.size(); ++i) storage.push_back(f.value[i]);
  } else {
    storage.push_back(f.value);
  }
  std::vector<StatusRange> out;
  bool ok = true;
  for (std::size_t i = 0; i < storage.size(); ++i) {
    const YAML::Node& node = storage[i];
    const Field item{node, f.value.IsSequence() ? indexed(f.path, i) : f.path, f.key_loc,
                     f.value.IsSequence() ? loc_of(node, f.loc) : f.loc};
    if (!node.IsScalar()) {
      error(item.loc, item.path, "expected " + std::string(kValid) + ", got " + describe(node));
      ok = false;
      continue;
    }
    const std::string& text = node.Scalar();
    const std::size_t dash = text.find('-');
    // No dash, or a leading one ("-1"): a single code, which read_uint() accepts or names as bad.
    if (dash == std::string::npos || dash == 0) {
      if (auto code = read_uint(item, 100, 599, "status codes")) {
        out.push_back({static_cast<uint16_t>(*code), static_cast<uint16_t>(*code)});
      } else {
        ok = false;
      }
      continue;
    }
    // A range: "LO-HI", both plain three-digit codes.
    auto code_of = [](std::string_view s) -> std::optional<uint16_t> {
      if (s.size() != 3 || !std::all_of(s.begin(), s.end(), [](char c) {
            return std::isdigit(static_cast<unsigned char>(c));
          })) {
        return std::nullopt;
      }
      const int v = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
      if (v < 100 || v > 599) return std::nullopt;
      return static_cast<uint16_t>(v);
    };
    const auto lo = code_of(std::string_view(text).substr(0, dash));
    const auto hi = code_of(std::string_view(text).substr(dash + 1));
    if (!lo || !hi) {
      error(item.loc, item.path,
            "'" + text + "' is not a status range; expected " + std::string(kValid));
      ok = false;
    } else if (*lo > *hi) {
      error(item.loc, item.path,
            "range " + text + " is empty (its start is above its end); write it as " +
                std::to_string(*hi) + "-" + std::to_string(*lo));
      ok = false;
    } else {
      out.push_back({*lo, *hi});
    }
  }
  if (!ok) return std::nullopt;
  return out;
}

}  // namespace sluice::detail
