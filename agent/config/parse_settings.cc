// The config's sections other than `vips`: limits, conntrack, log_level, metrics, api,
// interfaces and track.
#include <algorithm>
#include <cctype>
#include <map>

#include "parser.h"
#include "sluice/core/net.h"

namespace sluice::detail {
namespace {

constexpr std::string_view kApiFields[] = {"enabled", "socket"};
constexpr std::string_view kLimitsFields[] = {"max_vips", "max_backends"};
constexpr std::string_view kMetricsFields[] = {"enabled", "listen"};
constexpr std::string_view kTrackFields[] = {"interfaces", "max_flows"};
constexpr std::string_view kInterfaceFields[] = {"name", "vlans"};
constexpr std::string_view kConntrackFields[] = {"max_entries", "pending_entries", "one_sided_max",
                                                 "timeouts", "sweep_interval_ms"};
// nf_conntrack's timeout names, in enum sl_tcp_state order (`close` is state closed).
constexpr std::string_view kConntrackTimeoutFields[] = {"syn_sent",  "syn_recv",   "established",
                                                        "fin_wait",  "close_wait", "last_ack",
                                                        "time_wait", "close",      "unconfirmed"};
// spdlog's level names (spdlog::level::from_str also takes "warning"/"err"; we keep one word
// per level so configs stay uniform).
constexpr std::string_view kLogLevels[] = {"trace", "debug",    "info", "warn",
                                           "error", "critical", "off"};

// A conntrack table below 1024 entries would be full on any real load. A conntrack timeout of
// 0 would expire flows between two packets; a year is far beyond any TCP keepalive. The sweep
// interval bounds how late an expiry can be, and how often the agent walks the table.
constexpr uint64_t kMinCtEntries = 1024;
constexpr uint64_t kMaxCtEntries = 16777216;
constexpr uint64_t kMaxCtTimeoutS = 31536000;
constexpr uint64_t kMaxCtUnconfirmedS = 300;  // nf_conntrack's `unacknowledged`
constexpr uint64_t kMinSweepIntervalMs = 10;
constexpr uint64_t kMaxSweepIntervalMs = 60000;

// Linux's dev_valid_name(): 1..15 bytes (IFNAMSIZ - 1), not "." or "..", no '/', ':' or
// whitespace.
std::optional<std::string> ifname_problem(const std::string& name) {
  if (name.empty()) return "an interface name cannot be empty";
  if (name.size() >= 16) {
    return "interface name '" + name + "' is " + std::to_string(name.size()) +
           " characters long; Linux allows at most 15";
  }
  if (name == "." || name == "..") return "'" + name + "' is not a valid interface name";
  for (char c : name) {
    if (c == '/' || c == ':' || std::isspace(static_cast<unsigned char>(c)) || c == '\0') {
      return "interface name '" + name + "' contains '" + std::string(1, c) +
             "'; Linux interface names cannot contain '/', ':' or spaces";
    }
  }
  return std::nullopt;
}

}  // namespace

// The limits size the maps when the program loads; a running data path keeps its sizes, so a
// takeover or a reload needs the same values (docs/design.md, Hitless restart).
void Parser::parse_limits(const MapView& top) {
  const Field* f = top.get("limits");
  if (!f) return;
  const auto limits = read_map(f->value, f->key_loc, f->path, kLimitsFields, "limits");
  if (!limits) return;
  if (const Field* v = limits->get("max_vips")) {
    if (auto n = read_uint(*v, 1, kMaxVipsLimit, "values")) cfg_.max_vips = *n;
  }
  if (const Field* v = limits->get("max_backends")) {
    if (auto n = read_uint(*v, 1, kMaxBackendsLimit, "values")) cfg_.max_backends = *n;
  }
}

void Parser::parse_conntrack(const MapView& top) {
  const Field* f = top.get("conntrack");
  if (!f) return;
  const auto ct = read_map(f->value, f->key_loc, f->path, kConntrackFields, "conntrack settings");
  if (!ct) return;
  if (const Field* v = ct->get("max_entries")) {
    if (auto n = read_uint(*v, kMinCtEntries, kMaxCtEntries, "values")) {
      cfg_.conntrack_max_entries = *n;
    } else {
      notes_.ct_max_entries = false;
    }
  }
  if (const Field* v = ct->get("pending_entries")) {
    if (auto n = read_uint(*v, kMinCtEntries, kMaxCtEntries, "values")) {
      cfg_.conntrack_pending_entries = *n;
    }
  }
  // Its bounds depend on max_entries: validate() checks them.
  if (const Field* v = ct->get("one_sided_max")) {
    mark(v->path, v->loc);
    if (auto n = read_uint(*v, 0, kMaxCtEntries, "values")) {
      cfg_.conntrack_one_sided_max = static_cast<uint32_t>(*n);
    }
  }
  if (const Field* v = ct->get("sweep_interval_ms")) {
    if (auto n = read_uint(*v, kMinSweepIntervalMs, kMaxSweepIntervalMs, "intervals")) {
      cfg_.conntrack_sweep_interval_ms = static_cast<uint32_t>(*n);
    }
  }
  const Field* t = ct->get("timeouts");
  if (!t) return;
  const auto timeouts =
      read_map(t->value, t->key_loc, t->path, kConntrackTimeoutFields, "conntrack timeouts");
  if (!timeouts) return;
  ConntrackTimeouts& to = cfg_.conntrack_timeouts;
  uint32_t* slots[] = {&to.syn_sent, &to.syn_recv,  &to.established, &to.fin_wait,   &to.close_wait,
                       &to.last_ack, &to.time_wait, &to.close,       &to.unconfirmed};
  static_assert(sizeof(slots) / sizeof(slots[0]) == std::size(kConntrackTimeoutFields));
  for (std::size_t i = 0; i < std::size(kConntrackTimeoutFields); ++i) {
    if (const Field* v = timeouts->get(kConntrackTimeoutFields[i])) {
      // A blind sender's entries live this long at most: nf_conntrack's ceiling.
      const uint64_t most = &slots[i] == &slots[8] ? kMaxCtUnconfirmedS : kMaxCtTimeoutS;
      if (auto n = read_uint(*v, 1, most, "timeouts (seconds)")) {
        *slots[i] = static_cast<uint32_t>(*n);
      }
    }
  }
}

void Parser::parse_log_level(const MapView& top) {
  const Field* f = top.get("log_level");
  if (!f) return;
  const auto level = read_string(*f, "a log level (" + list_words(kLogLevels) + ")");
  if (!level) return;
  if (std::find(std::begin(kLogLevels), std::end(kLogLevels), *level) == std::end(kLogLevels)) {
    error(f->loc, f->path,
          "unknown log level '" + *level + "'; valid levels: " + list_words(kLogLevels));
    return;
  }
  cfg_.log_level = *level;
}

void Parser::parse_metrics(const MapView& top) {
  const Field* f = top.get("metrics");
  if (!f) return;
  const auto m = read_map(f->value, f->key_loc, f->path, kMetricsFields, "metrics settings");
  if (!m) return;
  std::optional<bool> enabled;
  if (const Field* v = m->get("enabled")) enabled = read_bool(*v);
  if (const Field* v = m->get("listen")) {
    if (v->value.IsSequence()) {
      // `listen: [::1]` is a YAML list; brackets need quotes.
      error(v->loc, v->path,
            "expected ADDRESS:PORT, got a list; quote an IPv6 address and port: "
            "listen: \"[::1]:9435\"");
    } else if (auto text = read_string(*v, "ADDRESS:PORT, e.g. 127.0.0.1:9435")) {
      if (text->empty()) {
        if (enabled.value_or(false)) {
          error(v->loc, v->path,
                "listen is empty, which turns metrics off, but enabled is true; give an address "
                "such as 127.0.0.1:9435, or set enabled: false");
        }
        cfg_.metrics.listen.clear();
      } else if (auto a = parse_listen_address(*text); !a) {
        error(v->loc, v->path, a.error().message);
      } else if (a->port == 0) {
        error(v->loc, v->path,
              "port 0 would be a random port that Prometheus cannot find; give a port in "
              "1..65535 (sluice's default is 9435)");
      } else {
        cfg_.metrics.listen = format_listen_address(*a);
      }
    }
  }
  // After `listen`: `enabled: false` wins wherever it is written. An empty listen is "off".
  if (enabled.has_value() && !*enabled) cfg_.metrics.listen.clear();
}

void Parser::parse_api(const MapView& top) {
  const Field* f = top.get("api");
  if (!f) return;
  const auto m = read_map(f->value, f->key_loc, f->path, kApiFields, "api settings");
  if (!m) return;
  std::optional<bool> enabled;
  if (const Field* v = m->get("enabled")) enabled = read_bool(*v);
  if (const Field* v = m->get("socket")) {
    if (auto text = read_string(*v, "an absolute path such as /run/sluice/sluiced.sock")) {
      if (text->empty()) {
        if (enabled.value_or(false))
          error(v->loc, v->path,
                "socket is empty, which turns the API off, but enabled is true; give a path "
                "such as /run/sluice/sluiced.sock, or set enabled: false");
        cfg_.api.socket.clear();
      } else if ((*text)[0] != '/') {
        error(v->loc, v->path,
              "'" + *text + "' is not an absolute path; give one such as /run/sluice/sluiced.sock");
      } else if (text->size() > 107) {
        error(v->loc, v->path,
              "the path is " + std::to_string(text->size()) +
                  " bytes; a Unix socket path holds at most 107 (sun_path)");
      } else {
        cfg_.api.socket = *text;
      }
    }
  }
  // As for metrics: `enabled: false` wins, and an empty socket is "off".
  if (enabled.has_value() && !*enabled) cfg_.api.socket.clear();
}

void Parser::parse_interfaces(const MapView& top) {
  const Field* f = top.get("interfaces");
  constexpr std::string_view kHint = "list the interfaces to attach to, e.g. interfaces: [eth0]";
  if (!f) return missing(top, "interfaces", kHint);
  read_interface_list(*f, kHint, cfg_.interfaces, &cfg_.interface_configs);
  mark(f->path, f->key_loc);  // validate() counts the VLANs over all interfaces
}

// VLAN ids 1..4094, distinct. 0 marks a priority-tagged frame, which 802.1Q treats as
// untagged (always carried); 4095 is reserved.
void Parser::read_vlans(const Field& f, std::vector<uint16_t>& out) {
  if (f.value.IsNull()) return;  // `vlans:` with nothing: untagged only
  if (!f.value.IsSequence()) {
    error(f.loc, f.path,
          "expected a list of VLAN ids, e.g. vlans: [100, 200], got " + describe(f.value));
    return;
  }
  std::map<uint16_t, int> seen;  // id -> line
  for (std::size_t i = 0; i < f.value.size(); ++i) {
    const Field item{f.value[i], indexed(f.path, i), f.loc, loc_of(f.value[i], f.loc)};
    if (item.value.IsScalar() && (item.value.Scalar() == "0" || item.value.Scalar() == "4095")) {
      error(item.loc, item.path,
            item.value.Scalar() == "0"
                ? "VLAN id 0 is a priority tag, which 802.1Q treats as untagged: untagged frames "
                  "are always carried; remove it"
                : "VLAN id 4095 is reserved by 802.1Q; use 1..4094");
      continue;
    }
    const auto vid = read_uint(item, 1, 4094, "VLAN ids");
    if (!vid) continue;
    if (auto [first, inserted] = seen.emplace(static_cast<uint16_t>(*vid), item.loc.line);
        !inserted) {
      error(item.loc, item.path,
            "duplicate VLAN " + std::to_string(*vid) + " (first listed at line " +
                std::to_string(first->second) + ")");
      continue;
    }
    out.push_back(static_cast<uint16_t>(*vid));
  }
  std::sort(out.begin(), out.end());
}

// `eth0` or `{name: eth0, vlans: [...]}`; returns the name if it is valid.
std::optional<std::string> Parser::read_interface_entry(const Field& item, InterfaceConfig& out) {
  out.line = item.loc.line;
  if (!item.value.IsMap())
    return read_string(item, "an interface name or {name: ..., vlans: [...]}");
  const auto entry = read_map(item.value, item.loc, item.path, kInterfaceFields, "an interface");
  if (!entry) return std::nullopt;
  std::optional<std::string> name;
  if (const Field* n = entry->get("name")) {
    name = read_string(*n, "an interface name");
  } else {
    missing(*entry, "name", "name the interface, e.g. {name: eth0, vlans: [100]}");
  }
  if (const Field* v = entry->get("vlans")) read_vlans(*v, out.vlans);
  return name;
}

// A non-empty list of distinct, valid interface names (at most SL_MAX_IFACES).
void Parser::read_interface_list(const Field& f, std::string_view hint,
                                 std::vector<std::string>& out,
                                 std::vector<InterfaceConfig>* detailed) {
  if (f.value.IsNull() || (f.value.IsSequence() && f.value.size() == 0)) {
    error(f.loc, f.path, "no interfaces listed; " + std::string(hint));
    return;
  }
  if (!f.value.IsSequence()) {
    error(f.loc, f.path, "expected a list of interface names, got " + describe(f.value));
    return;
  }
  // The redirect devmap `tx_ports` holds SL_MAX_IFACES (abi.h): refused here, not at attach.
  if (f.value.size() > SL_MAX_IFACES) {
    error(f.key_loc, f.path,
          std::to_string(f.value.size()) + " interfaces listed; at most " +
              std::to_string(SL_MAX_IFACES) + " are supported");
  }
  std::map<std::string, int> seen;  // name -> line
  for (std::size_t i = 0; i < f.value.size(); ++i) {
    const Field item{f.value[i], indexed(f.path, i), f.loc, loc_of(f.value[i], f.loc)};
    InterfaceConfig entry;
    const auto name =
        detailed ? read_interface_entry(item, entry) : read_string(item, "an interface name");
    if (!name) continue;
    // A map entry's problems with its name are reported at the name.
    const bool is_map = item.value.IsMap();
    const Loc at = is_map ? loc_of(item.value["name"], item.loc) : item.loc;
    const std::string at_path = is_map ? join(item.path, "name") : item.path;
    if (auto problem = ifname_problem(*name)) {
      error(at, at_path, *problem);
      continue;
    }
    if (auto [first, inserted] = seen.emplace(*name, item.loc.line); !inserted) {
      error(at, at_path,
            "duplicate interface '" + *name + "' (first listed at line " +
                std::to_string(first->second) + ")");
      continue;
    }
    out.push_back(*name);
    if (detailed) {
      entry.name = *name;
      detailed->push_back(std::move(entry));
    }
  }
}

void Parser::parse_track(const MapView& top) {
  const Field* f = top.get("track");
  if (!f) return;
  const auto track = read_map(f->value, f->key_loc, f->path, kTrackFields, "track settings");
  if (!track) return;
  constexpr std::string_view kHint =
      "list the interfaces whose TCP connections to track, e.g. interfaces: [eth0], or remove "
      "the track section";
  if (const Field* v = track->get("interfaces")) {
    read_interface_list(*v, kHint, cfg_.track.interfaces);
  } else {
    missing(*track, "interfaces", kHint);
  }
  if (const Field* v = track->get("max_flows")) {
    if (auto n = read_uint(*v, kMinCtEntries, kMaxCtEntries, "values")) {
      cfg_.track.max_flows = static_cast<uint32_t>(*n);
    }
  }
}

}  // namespace sluice::detail
