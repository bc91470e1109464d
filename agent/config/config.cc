#include "sluice/config/config.h"

#include <arpa/inet.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <map>
#include <span>
#include <tuple>

#include "sluice/core/net.h"

namespace sluice {
namespace {

constexpr std::string_view kTopFields[] = {"interfaces", "log_level", "limits", "conntrack",
                                           "vips",       "metrics",   "api",       "track"};
constexpr std::string_view kApiFields[] = {"enabled", "socket"};
constexpr std::string_view kLimitsFields[] = {"max_vips", "max_backends"};
constexpr std::string_view kMetricsFields[] = {"enabled", "listen"};
constexpr std::string_view kTrackFields[] = {"interfaces", "max_flows"};
constexpr std::string_view kInterfaceFields[] = {"name", "vlans"};
constexpr std::string_view kConntrackFields[] = {"max_entries", "pending_entries", "timeouts",
                                                 "sweep_interval_ms"};
// nf_conntrack's timeout names, in enum sl_tcp_state order (`close` is state closed).
constexpr std::string_view kConntrackTimeoutFields[] = {"syn_sent",  "syn_recv",   "established",
                                                        "fin_wait",  "close_wait", "last_ack",
                                                        "time_wait", "close", "unconfirmed"};
constexpr std::string_view kVipFields[] = {
    "name", "address",          "port",     "protocol",     "scheduler",
    "mode", "hash_source_port", "backends", "health_check", "on_backend_down"};
constexpr std::string_view kBackendFields[] = {"address", "port", "weight"};
constexpr std::string_view kHealthCheckFields[] = {"type", "port",  "interval_ms", "timeout_ms",
                                                   "rise", "fall",  "path",        "expect_status",
                                                   "send", "expect"};
constexpr std::string_view kHealthCheckTypes[] = {"tcp", "http", "udp"};
constexpr std::string_view kBackendDownActions[] = {"keep", "reset"};
// Health-check bounds: a check below 10 ms is a load test, not a health check; an HTTP path
// or UDP payload beyond these sizes is a mistake (65507 is the largest UDP payload).
constexpr uint64_t kMinCheckIntervalMs = 10;
constexpr uint64_t kMaxCheckIntervalMs = 3600000;
constexpr uint64_t kMaxRiseFall = 1000;
constexpr std::size_t kMaxHealthPath = 1024;
constexpr std::size_t kMaxUdpPayload = 65507;
// spdlog's level names (spdlog::level::from_str also takes "warning"/"err"; we keep one word
// per level so configs stay uniform).
constexpr std::string_view kLogLevels[] = {"trace", "debug",    "info", "warn",
                                           "error", "critical", "off"};

// Bounds the agent can honour: max_vips * SL_RINGS_PER_VIP * SL_MAGLEV_SIZE ring slots are
// preallocated, and a conntrack table below 1024 entries would be full on any real load.
// Each VIP owns two rings of 65537 slots, 8 bytes each in the array map (1 MiB): 1024 VIPs
// take 1 GiB.
constexpr uint64_t kMaxVipsLimit = 1024;
constexpr uint64_t kMaxBackendsLimit = 65536;
constexpr uint64_t kMinCtEntries = 1024;
constexpr uint64_t kMaxCtEntries = 16777216;
// A conntrack timeout of 0 would expire flows between two packets; a year is far beyond any
// TCP keepalive. The sweep interval bounds how late an expiry can be, and how often the
// agent walks the table.
constexpr uint64_t kMaxCtTimeoutS = 31536000;
constexpr uint64_t kMaxCtUnconfirmedS = 300;  // nf_conntrack's `unacknowledged`
constexpr uint64_t kMinSweepIntervalMs = 10;
constexpr uint64_t kMaxSweepIntervalMs = 60000;

struct Loc {
  int line = 0;
  int column = 0;
};

Loc loc_of(const YAML::Node& node, Loc fallback) {
  // yaml-cpp marks an empty value (`port:`) at the next token, often on the next line, so
  // null values report the location of their key instead.
  if (!node.IsDefined() || node.IsNull()) return fallback;
  const YAML::Mark m = node.Mark();
  if (m.is_null()) return fallback;
  return {m.line + 1, m.column + 1};
}

std::string join(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

std::string indexed(const std::string& path, std::size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

std::string list_words(std::span<const std::string_view> words) {
  std::string out;
  for (std::string_view w : words) {
    if (!out.empty()) out += ", ";
    out += w;
  }
  return out;
}

// How a value looks to the user, for "expected X, got Y" messages.
std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return "'" + node.Scalar() + "'";
    default:
      return "nothing";
  }
}

// One `key: value` of a YAML map, with what is needed to report errors about it.
struct Field {
  YAML::Node value;
  std::string path;
  Loc key_loc;
  Loc loc;  // of the value, or of the key when the value is empty
};

// The known fields of one YAML map, after unknown and duplicate keys were reported.
struct MapView {
  std::string path;
  Loc loc;
  std::vector<std::pair<std::string, Field>> fields;

  const Field* get(std::string_view name) const {
    for (const auto& [key, field] : fields) {
      if (key == name) return &field;
    }
    return nullptr;
  }
};

struct BackendDraft {
  BackendConfig cfg;
  std::string path;
  Loc loc;
  bool addr_ok = false;
  bool port_ok = false;  // cfg.port is resolved (explicit and valid, or the VIP's)
  bool weight_ok = false;
};

struct VipDraft {
  VipConfig cfg;
  std::string path;
  Loc loc;
  bool addr_ok = false;
  bool port_ok = false;
  bool proto_ok = false;
  bool mode_ok = false;
  std::vector<BackendDraft> backends;
};

// What a line scan can tell about the text that yaml-cpp's single-document Load does not.
// Lines are 1-based; 0 = none.
struct TextScan {
  int first_content_line = 0;    // first line that is not blank, a comment or a directive
  int second_document_line = 0;  // where a second document starts
};

// YAML forbids a line starting with "---" or "..." (followed by a blank or the line end)
// inside any scalar or collection, so such a line is always a document marker and a plain line
// scan finds them exactly.
TextScan scan_text(std::string_view text) {
  TextScan scan;
  bool ended = false;  // a "..." closed the first document
  int line_no = 0;
  for (std::size_t pos = 0; pos <= text.size();) {
    std::size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const std::string_view head = line.substr(0, 3);
    const bool marker =
        (head == "---" || head == "...") && (line.size() == 3 || line[3] == ' ' || line[3] == '\t');
    if (marker) {
      const bool start = line[0] == '-';
      if (scan.first_content_line > 0 && scan.second_document_line == 0 && (start || !ended)) {
        if (start) {
          scan.second_document_line = line_no;
        } else {
          ended = true;
        }
      }
      line.remove_prefix(3);  // "--- a: 1" carries content on the marker line
    }
    const std::size_t first = line.find_first_not_of(" \t");
    const bool content = first != std::string_view::npos && line[first] != '#' &&
                         !(line[first] == '%' && scan.first_content_line == 0);
    if (!content) continue;
    if (scan.first_content_line == 0) {
      scan.first_content_line = line_no;
    } else if (ended && scan.second_document_line == 0) {
      scan.second_document_line = line_no;
    }
  }
  return scan;
}

class Parser {
 public:
  explicit Parser(std::string_view file) : file_(file) {}

  ConfigResult run(std::string_view text);

 private:
  void error(Loc loc, std::string field, std::string message) {
    errors_.push_back({file_, loc.line, loc.column, std::move(field), std::move(message)});
  }

  std::optional<MapView> read_map(const YAML::Node& node, Loc loc, const std::string& path,
                                  std::span<const std::string_view> valid, std::string_view what);
  std::optional<std::string> read_string(const Field& f, std::string_view expected = "a string");
  std::optional<uint64_t> read_uint(const Field& f, uint64_t lo, uint64_t hi,
                                    std::string_view plural);
  std::optional<bool> read_bool(const Field& f);
  std::optional<std::pair<sl_addr, uint8_t>> read_address(const Field& f, bool vip);
  void missing(const MapView& map, std::string_view name, std::string_view hint = {});

  void parse_limits(const MapView& top, Config& cfg);
  void parse_conntrack(const MapView& top, Config& cfg);
  void parse_log_level(const MapView& top, Config& cfg);
  void parse_metrics(const MapView& top, Config& cfg);
  void parse_api(const MapView& top, Config& cfg);
  void parse_interfaces(const MapView& top, Config& cfg);
  // `detailed`: entries may be `{name, vlans}` maps (top-level interfaces), else names only.
  void read_interface_list(const Field& f, std::string_view hint, std::vector<std::string>& out,
                           std::vector<InterfaceConfig>* detailed = nullptr);
  std::optional<std::string> read_interface_entry(const Field& item, InterfaceConfig& out);
  void read_vlans(const Field& f, std::vector<uint16_t>& out);
  void parse_track(const MapView& top, Config& cfg);
  void parse_vips(const MapView& top, const Config& cfg, std::vector<VipDraft>& vips);
  std::optional<VipDraft> parse_vip(const YAML::Node& node, Loc fallback, std::string path);
  void parse_backend(const YAML::Node& node, Loc fallback, std::string path, VipDraft& vip);
  void parse_health_check(const Field& f, VipDraft& vip);
  std::optional<std::vector<StatusRange>> read_status_codes(const Field& f);
  void check_vips(std::vector<VipDraft>& vips);
  void check_nat_backends(const std::vector<VipDraft>& vips);

  std::string file_;
  std::vector<ConfigError> errors_;
};

std::optional<MapView> Parser::read_map(const YAML::Node& node, Loc loc, const std::string& path,
                                        std::span<const std::string_view> valid,
                                        std::string_view what) {
  MapView view{path, loc_of(node, loc), {}};
  // An empty map (`limits:` with every line commented out) means "all defaults".
  if (node.IsNull()) return view;
  if (!node.IsMap()) {
    error(view.loc, path,
          "expected " + std::string(what) + " (a map of 'field: value'), got " + describe(node));
    return std::nullopt;
  }
  std::map<std::string, int> seen;  // key -> line
  for (auto it = node.begin(); it != node.end(); ++it) {
    const Loc key_loc = loc_of(it->first, view.loc);
    if (!it->first.IsScalar()) {
      error(key_loc, path, "field names must be plain words, got " + describe(it->first));
      continue;
    }
    const std::string key = it->first.Scalar();
    const std::string field_path = join(path, key);
    if (std::find(valid.begin(), valid.end(), key) == valid.end()) {
      error(key_loc, field_path, "unknown field '" + key + "'; valid fields: " + list_words(valid));
      continue;
    }
    if (auto [first, inserted] = seen.emplace(key, key_loc.line); !inserted) {
      error(key_loc, field_path,
            "field '" + key + "' is set twice (first at line " + std::to_string(first->second) +
                "); remove one");
      continue;
    }
    view.fields.push_back(
        {key, Field{it->second, field_path, key_loc, loc_of(it->second, key_loc)}});
  }
  return view;
}

void Parser::missing(const MapView& map, std::string_view name, std::string_view hint) {
  std::string message = "required field '" + std::string(name) + "' is missing";
  if (!hint.empty()) message += "; " + std::string(hint);
  error(map.loc, join(map.path, name), std::move(message));
}

std::optional<std::string> Parser::read_string(const Field& f, std::string_view expected) {
  if (!f.value.IsScalar()) {
    error(f.loc, f.path, "expected " + std::string(expected) + ", got " + describe(f.value));
    return std::nullopt;
  }
  return f.value.Scalar();
}

std::optional<uint64_t> Parser::read_uint(const Field& f, uint64_t lo, uint64_t hi,
                                          std::string_view plural) {
  const std::string range = std::to_string(lo) + ".." + std::to_string(hi);
  if (!f.value.IsScalar()) {
    error(f.loc, f.path, "expected an integer in " + range + ", got " + describe(f.value));
    return std::nullopt;
  }
  const std::string& text = f.value.Scalar();
  // Tag "!" marks a quoted scalar: YAML says "80" is a string, and accepting it would hide
  // typos such as "8O".
  if (f.value.Tag() == "!") {
    error(f.loc, f.path,
          "expected an integer in " + range + ", got the quoted string \"" + text +
              "\"; remove the quotes");
    return std::nullopt;
  }
  const bool negative = !text.empty() && text[0] == '-';
  const std::string_view digits = std::string_view(text).substr(negative ? 1 : 0);
  bool numeric = !digits.empty();
  uint64_t value = 0;
  bool overflow = false;
  for (char c : digits) {
    if (!std::isdigit(static_cast<unsigned char>(c))) {
      numeric = false;
      break;
    }
    if (value > (UINT64_MAX - 9) / 10) overflow = true;
    value = overflow ? value : value * 10 + static_cast<uint64_t>(c - '0');
  }
  if (!numeric) {
    error(f.loc, f.path, "'" + text + "' is not a number; expected an integer in " + range);
    return std::nullopt;
  }
  // "-0" is 0; any other negative number is out of range.
  if ((negative && value != 0) || overflow || value < lo || value > hi) {
    error(f.loc, f.path, text + " is out of range; valid " + std::string(plural) + " are " + range);
    return std::nullopt;
  }
  return value;
}

std::optional<bool> Parser::read_bool(const Field& f) {
  // YAML 1.2 core schema booleans only: yes/no/on/off are YAML 1.1 and read as strings by
  // most other tools, so accepting them here would make the file mean different things.
  if (f.value.IsScalar() && f.value.Tag() != "!") {
    const std::string& v = f.value.Scalar();
    if (v == "true" || v == "True" || v == "TRUE") return true;
    if (v == "false" || v == "False" || v == "FALSE") return false;
  }
  error(f.loc, f.path, "expected true or false, got " + describe(f.value));
  return std::nullopt;
}

std::optional<std::pair<sl_addr, uint8_t>> Parser::read_address(const Field& f, bool vip) {
  const std::optional<std::string> text = read_string(f, "an IPv4 or IPv6 address");
  if (!text) return std::nullopt;
  const auto parsed = parse_ip(*text);
  if (!parsed) {
    std::string message = "'" + *text + "' is not an IPv4 or IPv6 address";
    if (text->find('/') != std::string::npos) message += "; give one address, without a prefix";
    error(f.loc, f.path, std::move(message));
    return std::nullopt;
  }
  const auto& [addr, family] = *parsed;
  const uint8_t* b = reinterpret_cast<const uint8_t*>(addr.w);
  const bool unspecified = std::all_of(b, b + sizeof(addr.w), [](uint8_t x) { return x == 0; });
  const bool multicast = family == SL_AF_INET ? (b[0] & 0xf0) == 0xe0 : b[0] == 0xff;
  const bool broadcast = family == SL_AF_INET && addr.w[0] == 0xffffffffu;
  const char* what = vip ? "a VIP" : "a backend";
  if (unspecified || multicast || broadcast) {
    error(f.loc, f.path,
          *text + " is " +
              (unspecified ? "the unspecified address"
               : multicast ? "a multicast address"
                           : "the broadcast address") +
              " and cannot be " + what + "; give a unicast address");
    return std::nullopt;
  }
  return parsed;
}

void Parser::parse_limits(const MapView& top, Config& cfg) {
  const Field* f = top.get("limits");
  if (!f) return;
  const auto limits = read_map(f->value, f->key_loc, f->path, kLimitsFields, "limits");
  if (!limits) return;
  if (const Field* v = limits->get("max_vips")) {
    if (auto n = read_uint(*v, 1, kMaxVipsLimit, "values")) cfg.max_vips = *n;
  }
  if (const Field* v = limits->get("max_backends")) {
    if (auto n = read_uint(*v, 1, kMaxBackendsLimit, "values")) cfg.max_backends = *n;
  }
}

void Parser::parse_conntrack(const MapView& top, Config& cfg) {
  const Field* f = top.get("conntrack");
  if (!f) return;
  const auto ct = read_map(f->value, f->key_loc, f->path, kConntrackFields, "conntrack settings");
  if (!ct) return;
  if (const Field* v = ct->get("max_entries")) {
    if (auto n = read_uint(*v, kMinCtEntries, kMaxCtEntries, "values")) {
      cfg.conntrack_max_entries = *n;
    }
  }
  if (const Field* v = ct->get("pending_entries")) {
    if (auto n = read_uint(*v, kMinCtEntries, kMaxCtEntries, "values")) {
      cfg.conntrack_pending_entries = *n;
    }
  }
  if (const Field* v = ct->get("sweep_interval_ms")) {
    if (auto n = read_uint(*v, kMinSweepIntervalMs, kMaxSweepIntervalMs, "intervals")) {
      cfg.conntrack_sweep_interval_ms = static_cast<uint32_t>(*n);
    }
  }
  const Field* t = ct->get("timeouts");
  if (!t) return;
  const auto timeouts =
      read_map(t->value, t->key_loc, t->path, kConntrackTimeoutFields, "conntrack timeouts");
  if (!timeouts) return;
  ConntrackTimeouts& to = cfg.conntrack_timeouts;
  uint32_t* slots[] = {&to.syn_sent,   &to.syn_recv, &to.established, &to.fin_wait,
                       &to.close_wait, &to.last_ack, &to.time_wait,   &to.close,
                       &to.unconfirmed};
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

void Parser::parse_log_level(const MapView& top, Config& cfg) {
  const Field* f = top.get("log_level");
  if (!f) return;
  const auto level = read_string(*f, "a log level (" + list_words(kLogLevels) + ")");
  if (!level) return;
  if (std::find(std::begin(kLogLevels), std::end(kLogLevels), *level) == std::end(kLogLevels)) {
    error(f->loc, f->path,
          "unknown log level '" + *level + "'; valid levels: " + list_words(kLogLevels));
    return;
  }
  cfg.log_level = *level;
}

void Parser::parse_metrics(const MapView& top, Config& cfg) {
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
        cfg.metrics.listen.clear();
      } else if (auto a = parse_listen_address(*text); !a) {
        error(v->loc, v->path, a.error().message);
      } else if (a->port == 0) {
        error(v->loc, v->path,
              "port 0 would be a random port that Prometheus cannot find; give a port in "
              "1..65535 (sluice's default is 9435)");
      } else {
        cfg.metrics.listen = format_listen_address(*a);
      }
    }
  }
  if (enabled.has_value() && !*enabled) cfg.metrics.listen.clear();
}

void Parser::parse_api(const MapView& top, Config& cfg) {
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
        cfg.api.socket.clear();
      } else if ((*text)[0] != '/') {
        error(v->loc, v->path,
              "'" + *text + "' is not an absolute path; give one such as /run/sluice/sluiced.sock");
      } else if (text->size() > 107) {
        error(v->loc, v->path,
              "the path is " + std::to_string(text->size()) +
                  " bytes; a Unix socket path holds at most 107 (sun_path)");
      } else {
        cfg.api.socket = *text;
      }
    }
  }
  if (enabled.has_value() && !*enabled) cfg.api.socket.clear();
}

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

void Parser::parse_interfaces(const MapView& top, Config& cfg) {
  const Field* f = top.get("interfaces");
  constexpr std::string_view kHint = "list the interfaces to attach to, e.g. interfaces: [eth0]";
  if (!f) return missing(top, "interfaces", kHint);
  read_interface_list(*f, kHint, cfg.interfaces, &cfg.interface_configs);
  std::size_t pairs = 0;
  for (const InterfaceConfig& i : cfg.interface_configs) pairs += i.vlans.size();
  if (pairs > SL_VLAN_MEMBER_ENTRIES) {
    error(f->key_loc, f->path,
          std::to_string(pairs) + " VLANs listed over all interfaces; at most " +
              std::to_string(SL_VLAN_MEMBER_ENTRIES) + " are supported");
  }
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

void Parser::parse_track(const MapView& top, Config& cfg) {
  const Field* f = top.get("track");
  if (!f) return;
  const auto track = read_map(f->value, f->key_loc, f->path, kTrackFields, "track settings");
  if (!track) return;
  constexpr std::string_view kHint =
      "list the interfaces whose TCP connections to track, e.g. interfaces: [eth0], or remove "
      "the track section";
  if (const Field* v = track->get("interfaces")) {
    read_interface_list(*v, kHint, cfg.track.interfaces);
  } else {
    missing(*track, "interfaces", kHint);
  }
  if (const Field* v = track->get("max_flows")) {
    if (auto n = read_uint(*v, kMinCtEntries, kMaxCtEntries, "values")) {
      cfg.track.max_flows = static_cast<uint32_t>(*n);
    }
  }
}

void Parser::parse_backend(const YAML::Node& node, Loc fallback, std::string path, VipDraft& vip) {
  BackendDraft b;
  const auto map = read_map(node, fallback, path, kBackendFields, "a backend");
  b.path = std::move(path);
  b.loc = loc_of(node, fallback);
  b.cfg.line = b.loc.line;
  if (!map) {
    vip.backends.push_back(std::move(b));
    return;
  }

  if (const Field* f = map->get("address")) {
    if (auto parsed = read_address(*f, /*vip=*/false)) {
      b.cfg.addr = parsed->first;
      b.cfg.family = parsed->second;
      b.addr_ok = true;
      if (vip.addr_ok && b.cfg.family != vip.cfg.family) {
        error(f->loc, f->path,
              "backend " + format_ip(b.cfg.addr, b.cfg.family) + " is IPv" +
                  std::to_string(b.cfg.family) + " but the VIP " +
                  format_ip(vip.cfg.addr, vip.cfg.family) + " is IPv" +
                  std::to_string(vip.cfg.family) +
                  "; a VIP's backends must use the VIP's address family");
        b.addr_ok = false;
      } else if (vip.addr_ok && std::memcmp(&b.cfg.addr, &vip.cfg.addr, sizeof(sl_addr)) == 0) {
        error(f->loc, f->path,
              "the backend address is the VIP's own address; give the backend host's address");
        b.addr_ok = false;
      }
    }
  } else {
    missing(*map, "address");
  }

  if (const Field* f = map->get("port")) {
    if (auto port = read_uint(*f, 0, 65535, "ports")) {
      const uint16_t vip_port = vip.cfg.port;
      if (!vip.port_ok) {
        // The VIP's own error is reported; the relation cannot be checked.
      } else if (vip_port == 0 && *port != 0) {
        error(f->loc, f->path,
              "the VIP's port is 0 (every port), so backends keep the client's destination "
              "port; omit 'port' here");
      } else if (vip_port != 0 && *port == 0) {
        error(f->loc, f->path,
              "port 0 is only valid under a port-0 VIP; use 1..65535, or omit it to use the "
              "VIP's port " +
                  std::to_string(vip_port));
      } else if (vip.mode_ok && vip.cfg.mode == SL_MODE_DSR && *port != vip_port) {
        error(f->loc, f->path,
              "dsr mode does not rewrite ports, so the backend port must equal the VIP port " +
                  std::to_string(vip_port) + "; omit 'port' or set it to " +
                  std::to_string(vip_port));
      } else {
        b.cfg.port = static_cast<uint16_t>(*port);
        b.port_ok = true;
      }
    }
  } else if (vip.port_ok) {
    b.cfg.port = vip.cfg.port;
    b.port_ok = true;
  }

  if (const Field* f = map->get("weight")) {
    if (auto weight = read_uint(*f, 0, 65535, "weights")) {
      b.cfg.weight = static_cast<uint16_t>(*weight);
      b.weight_ok = true;
    }
  } else {
    b.weight_ok = true;
  }
  vip.backends.push_back(std::move(b));
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

void Parser::parse_health_check(const Field& f, VipDraft& vip) {
  const auto map = read_map(f.value, f.key_loc, f.path, kHealthCheckFields, "a health check");
  if (!map) return;
  HealthCheckConfig hc;
  std::optional<HealthCheckType> type;
  if (const Field* t = map->get("type")) {
    if (auto word = read_string(*t, "a check type (" + list_words(kHealthCheckTypes) + ")")) {
      if (*word == "tcp") {
        type = HealthCheckType::kTcp;
      } else if (*word == "http") {
        type = HealthCheckType::kHttp;
      } else if (*word == "udp") {
        type = HealthCheckType::kUdp;
      } else {
        error(t->loc, t->path,
              "unknown check type '" + *word + "'; valid types: " + list_words(kHealthCheckTypes));
      }
    }
  } else {
    missing(*map, "type", "valid types: " + list_words(kHealthCheckTypes));
  }
  if (type) hc.type = *type;
  const std::string type_word = !type                             ? ""
                                : *type == HealthCheckType::kTcp  ? "tcp"
                                : *type == HealthCheckType::kHttp ? "http"
                                                                  : "udp";
  // A field of another check type is a mistake the user should hear about, not a no-op.
  auto only_for = [&](const Field* field, HealthCheckType want, std::string_view want_word) {
    if (field == nullptr || !type || *type == want) return;
    const std::string name = field->path.substr(field->path.rfind('.') + 1);
    error(field->key_loc, field->path,
          "'" + name + "' applies only to " + std::string(want_word) +
              " checks, and this check's type is " + type_word +
              "; remove it, or set type: " + std::string(want_word));
  };

  if (const Field* p = map->get("port")) {
    if (auto port = read_uint(*p, 1, 65535, "ports")) hc.port = static_cast<uint16_t>(*port);
  } else if (vip.port_ok && vip.cfg.port == 0) {
    error(map->loc, join(map->path, "port"),
          "the VIP's port is 0 (every port), so its backends have no port of their own to "
          "check; give the health check a 'port'");
  }
  bool timing_ok = true;
  const Field* interval = map->get("interval_ms");
  if (interval) {
    if (auto v = read_uint(*interval, kMinCheckIntervalMs, kMaxCheckIntervalMs, "intervals")) {
      hc.interval_ms = static_cast<uint32_t>(*v);
    } else {
      timing_ok = false;
    }
  }
  const Field* timeout = map->get("timeout_ms");
  if (timeout) {
    if (auto v = read_uint(*timeout, 1, kMaxCheckIntervalMs, "timeouts")) {
      hc.timeout_ms = static_cast<uint32_t>(*v);
    } else {
      timing_ok = false;
    }
  }
  if (timing_ok && hc.timeout_ms >= hc.interval_ms) {
    // Checks of one backend never overlap: each ends (at the latest by its timeout) before
    // the next one starts.
    const std::string why = "; a check must end before the next one starts";
    if (timeout) {
      error(timeout->loc, timeout->path,
            "timeout_ms (" + std::to_string(hc.timeout_ms) + ") must be less than interval_ms (" +
                std::to_string(hc.interval_ms) + (interval ? "" : ", the default") + ")" + why);
    } else {
      error(interval->loc, interval->path,
            "interval_ms (" + std::to_string(hc.interval_ms) + ") must be more than timeout_ms (" +
                std::to_string(hc.timeout_ms) + ", the default)" + why + "; lower timeout_ms too");
    }
  }
  if (const Field* v = map->get("rise")) {
    if (auto n = read_uint(*v, 1, kMaxRiseFall, "values")) hc.rise = static_cast<uint32_t>(*n);
  }
  if (const Field* v = map->get("fall")) {
    if (auto n = read_uint(*v, 1, kMaxRiseFall, "values")) hc.fall = static_cast<uint32_t>(*n);
  }

  if (const Field* p = map->get("path")) {
    only_for(p, HealthCheckType::kHttp, "http");
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
  if (const Field* s = map->get("expect_status")) {
    only_for(s, HealthCheckType::kHttp, "http");
    if (auto codes = read_status_codes(*s)) hc.expect_status = std::move(*codes);
  }
  if (const Field* s = map->get("send")) {
    only_for(s, HealthCheckType::kUdp, "udp");
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
  if (const Field* e = map->get("expect")) {
    only_for(e, HealthCheckType::kUdp, "udp");
    if (auto text = read_string(*e, "a string to find in the reply")) hc.expect = *text;
  }
  vip.cfg.health_check = std::move(hc);
}

std::optional<VipDraft> Parser::parse_vip(const YAML::Node& node, Loc fallback, std::string path) {
  const auto map = read_map(node, fallback, path, kVipFields, "a VIP");
  if (!map) return std::nullopt;
  VipDraft vip;
  vip.path = std::move(path);
  vip.loc = map->loc;
  vip.cfg.line = vip.loc.line;

  if (const Field* f = map->get("name")) {
    if (auto name = read_string(*f)) {
      if (name->empty()) {
        error(f->loc, f->path, "name is empty; give a name or remove the field");
      } else {
        vip.cfg.name = *name;
      }
    }
  }
  if (const Field* f = map->get("address")) {
    if (auto parsed = read_address(*f, /*vip=*/true)) {
      vip.cfg.addr = parsed->first;
      vip.cfg.family = parsed->second;
      vip.addr_ok = true;
    }
  } else {
    missing(*map, "address");
  }
  if (const Field* f = map->get("port")) {
    if (auto port = read_uint(*f, 0, 65535, "ports")) {
      vip.cfg.port = static_cast<uint16_t>(*port);
      vip.port_ok = true;
    }
  } else {
    missing(*map, "port", "give a port number, or 0 for every port");
  }
  if (const Field* f = map->get("protocol")) {
    if (auto word = read_string(*f, "tcp or udp")) {
      if (auto proto = parse_proto(*word)) {
        vip.cfg.proto = *proto;
        vip.proto_ok = true;
      } else {
        error(f->loc, f->path, "unknown protocol '" + *word + "'; valid protocols: tcp, udp");
      }
    }
  } else {
    missing(*map, "protocol", "valid protocols: tcp, udp");
  }
  if (const Field* f = map->get("scheduler")) {
    if (auto word = read_string(*f, "a scheduler (source-hash, round-robin or least-conn)")) {
      const auto sched = parse_sched(*word);
      if (!sched) {
        error(f->loc, f->path,
              "unknown scheduler '" + *word +
                  "'; valid schedulers: source-hash, round-robin, least-conn");
      } else if (*sched != SL_SCHED_SOURCE_HASH && vip.proto_ok && vip.cfg.proto == IPPROTO_UDP) {
        // UDP has no connections to schedule: every datagram is placed on its own.
        error(f->loc, f->path,
              "scheduler '" + *word +
                  "' needs TCP: UDP is forwarded statelessly, datagram by datagram, so a UDP "
                  "VIP takes source-hash (with hash_source_port: true to spread one client's "
                  "flows)");
      } else {
        vip.cfg.sched = *sched;
      }
    }
  }
  vip.mode_ok = true;  // the default, nat
  if (const Field* f = map->get("mode")) {
    vip.mode_ok = false;
    if (auto word = read_string(*f, "nat or dsr")) {
      if (auto mode = parse_mode(*word)) {
        vip.cfg.mode = *mode;
        vip.mode_ok = true;
      } else {
        error(f->loc, f->path, "unknown mode '" + *word + "'; valid modes: nat, dsr");
      }
    }
  }
  if (const Field* f = map->get("hash_source_port")) {
    if (auto v = read_bool(*f)) {
      if (*v && vip.cfg.sched != SL_SCHED_SOURCE_HASH) {
        error(f->loc, f->path,
              "hash_source_port applies to scheduler source-hash only; " +
                  std::string(sched_name(vip.cfg.sched)) +
                  " places every connection by itself: remove hash_source_port");
      } else {
        vip.cfg.hash_source_port = *v;
      }
    }
  }
  if (const Field* f = map->get("health_check")) parse_health_check(*f, vip);
  if (const Field* f = map->get("on_backend_down")) {
    if (auto word = read_string(*f, "keep or reset")) {
      if (*word == "keep") {
        vip.cfg.on_backend_down = BackendDownAction::kKeep;
      } else if (*word == "reset") {
        vip.cfg.on_backend_down = BackendDownAction::kReset;
      } else {
        error(f->loc, f->path,
              "unknown value '" + *word + "'; valid values: " + list_words(kBackendDownActions));
      }
    }
  }

  // Backends come last: their checks depend on the VIP's address, port and mode.
  const Field* f = map->get("backends");
  constexpr std::string_view kNoBackends = "VIP has no backends; add at least one under 'backends'";
  if (!f) {
    error(vip.loc, join(vip.path, "backends"), std::string(kNoBackends));
  } else if (f->value.IsNull() || (f->value.IsSequence() && f->value.size() == 0)) {
    error(f->loc, f->path, std::string(kNoBackends));
  } else if (!f->value.IsSequence()) {
    error(f->loc, f->path, "expected a list of backends, got " + describe(f->value));
  } else {
    for (std::size_t i = 0; i < f->value.size(); ++i) {
      parse_backend(f->value[i], f->loc, indexed(f->path, i), vip);
    }
    const bool weights_known = std::all_of(vip.backends.begin(), vip.backends.end(),
                                           [](const BackendDraft& b) { return b.weight_ok; });
    const bool any_weight = std::any_of(vip.backends.begin(), vip.backends.end(),
                                        [](const BackendDraft& b) { return b.cfg.weight > 0; });
    if (weights_known && !any_weight) {
      // At the key: the list's own mark is its first item, which reads as "this backend".
      error(f->key_loc, f->path,
            "every backend has weight 0, so the VIP could serve no traffic; give at least one "
            "backend a weight above 0");
    }
    if (vip.cfg.sched == SL_SCHED_LEAST_CONN && f->value.size() > SL_LC_MAX_BACKENDS) {
      error(f->key_loc, f->path,
            "a least-conn VIP takes at most " + std::to_string(SL_LC_MAX_BACKENDS) +
                " backends (every new connection compares them all), this one has " +
                std::to_string(f->value.size()) +
                "; split it into several VIPs, or use round-robin or source-hash");
    }
  }
  return vip;
}

void Parser::parse_vips(const MapView& top, const Config& cfg, std::vector<VipDraft>& vips) {
  const Field* f = top.get("vips");
  constexpr std::string_view kHint = "add at least one VIP under 'vips'";
  if (!f) return missing(top, "vips", kHint);
  if (f->value.IsNull() || (f->value.IsSequence() && f->value.size() == 0)) {
    error(f->loc, f->path, "no VIPs configured; " + std::string(kHint));
    return;
  }
  if (!f->value.IsSequence()) {
    error(f->loc, f->path, "expected a list of VIPs, got " + describe(f->value));
    return;
  }
  std::size_t total_backends = 0;
  bool backends_reported = false;
  for (std::size_t i = 0; i < f->value.size(); ++i) {
    const YAML::Node node = f->value[i];
    const std::string path = indexed(f->path, i);
    auto vip = parse_vip(node, f->loc, path);
    if (i == cfg.max_vips) {
      error(loc_of(node, f->loc), path,
            "VIP number " + std::to_string(i + 1) + " exceeds limits.max_vips (" +
                std::to_string(cfg.max_vips) + "); raise limits.max_vips (at most " +
                std::to_string(kMaxVipsLimit) + ") or remove VIPs");
    }
    if (!vip) continue;
    for (const BackendDraft& b : vip->backends) {
      if (++total_backends > cfg.max_backends && !backends_reported) {
        backends_reported = true;
        error(b.loc, b.path,
              "backend number " + std::to_string(total_backends) +
                  " (counting all VIPs) exceeds limits.max_backends (" +
                  std::to_string(cfg.max_backends) + "); raise limits.max_backends (at most " +
                  std::to_string(kMaxBackendsLimit) + ") or remove backends");
      }
    }
    vips.push_back(std::move(*vip));
  }
}

// Keys for the cross-VIP checks: (family, address words, port, protocol).
using EndpointKey = std::tuple<uint8_t, std::array<uint32_t, 4>, uint16_t, uint8_t>;

EndpointKey endpoint_key(const sl_addr& addr, uint8_t family, uint16_t port, uint8_t proto) {
  return {family, {addr.w[0], addr.w[1], addr.w[2], addr.w[3]}, port, proto};
}

std::string endpoint_text(const sl_addr& addr, uint8_t family, uint16_t port, uint8_t proto) {
  sl_endpoint ep{};
  ep.addr = addr;
  ep.family = family;
  ep.port = htons(port);
  ep.proto = proto;
  return format_endpoint(ep);
}

void Parser::check_vips(std::vector<VipDraft>& vips) {
  std::map<EndpointKey, int> seen_vips;  // -> line
  std::map<std::string, int> seen_names;
  for (VipDraft& vip : vips) {
    if (!vip.cfg.name.empty()) {
      if (auto [first, inserted] = seen_names.emplace(vip.cfg.name, vip.loc.line); !inserted) {
        error(vip.loc, join(vip.path, "name"),
              "duplicate VIP name '" + vip.cfg.name + "' (first used at line " +
                  std::to_string(first->second) + ")");
      }
    }
    if (vip.addr_ok && vip.port_ok && vip.proto_ok) {
      const EndpointKey key =
          endpoint_key(vip.cfg.addr, vip.cfg.family, vip.cfg.port, vip.cfg.proto);
      if (auto [first, inserted] = seen_vips.emplace(key, vip.loc.line); !inserted) {
        error(vip.loc, vip.path,
              "duplicate VIP " +
                  endpoint_text(vip.cfg.addr, vip.cfg.family, vip.cfg.port, vip.cfg.proto) +
                  " (first defined at line " + std::to_string(first->second) + ")");
      }
    }
    std::map<EndpointKey, int> seen_backends;
    for (const BackendDraft& b : vip.backends) {
      if (!b.addr_ok || !b.port_ok) continue;
      const EndpointKey key = endpoint_key(b.cfg.addr, b.cfg.family, b.cfg.port, 0);
      if (auto [first, inserted] = seen_backends.emplace(key, b.loc.line); !inserted) {
        error(b.loc, b.path,
              "duplicate backend " + format_host_port(b.cfg.addr, b.cfg.family, b.cfg.port) +
                  " (first defined at line " + std::to_string(first->second) + ")");
      }
    }
  }
}

// The reverse-NAT map is keyed by the backend's endpoint: a reply from it must name exactly
// one VIP to restore as the source. A port-0 backend (under a port-0 VIP) answers from every
// port of its address, so it clashes with any port of that address in another nat VIP.
void Parser::check_nat_backends(const std::vector<VipDraft>& vips) {
  using Owners = std::map<EndpointKey, const VipDraft*>;
  Owners exact;     // (addr, port, proto) -> first nat VIP with that backend
  Owners any_port;  // (addr, 0, proto) -> first nat VIP with a backend on that address
  Owners wildcard;  // (addr, 0, proto) -> first nat VIP with a port-0 backend on that address
  for (const VipDraft& vip : vips) {
    if (!vip.mode_ok || vip.cfg.mode != SL_MODE_NAT || !vip.addr_ok || !vip.port_ok ||
        !vip.proto_ok) {
      continue;
    }
    for (const BackendDraft& b : vip.backends) {
      if (!b.addr_ok || !b.port_ok) continue;
      const EndpointKey key = endpoint_key(b.cfg.addr, b.cfg.family, b.cfg.port, vip.cfg.proto);
      const EndpointKey addr_key = endpoint_key(b.cfg.addr, b.cfg.family, 0, vip.cfg.proto);
      const VipDraft* other = nullptr;
      auto owner_other_than = [&vip](const Owners& m, const EndpointKey& k) -> const VipDraft* {
        auto it = m.find(k);
        return it != m.end() && it->second != &vip ? it->second : nullptr;
      };
      if (b.cfg.port != 0) {
        other = owner_other_than(exact, key);
        if (!other) other = owner_other_than(wildcard, addr_key);
      } else {
        other = owner_other_than(any_port, addr_key);
      }
      if (other) {
        error(b.loc, b.path,
              "backend " + endpoint_text(b.cfg.addr, b.cfg.family, b.cfg.port, vip.cfg.proto) +
                  " of nat VIP " +
                  endpoint_text(vip.cfg.addr, vip.cfg.family, vip.cfg.port, vip.cfg.proto) +
                  " (line " + std::to_string(vip.loc.line) + ") is also a backend of nat VIP " +
                  endpoint_text(other->cfg.addr, other->cfg.family, other->cfg.port,
                                other->cfg.proto) +
                  " (line " + std::to_string(other->loc.line) +
                  "); its replies could not be mapped back to one VIP. Use a different "
                  "backend port in one of them, or dsr mode");
      }
      exact.emplace(key, &vip);
      any_port.emplace(addr_key, &vip);
      if (b.cfg.port == 0) wildcard.emplace(addr_key, &vip);
    }
  }
}

ConfigResult Parser::run(std::string_view text) {
  // YAML::Load, not LoadAll: yaml-cpp 0.7's LoadAll loops forever, allocating, on a document
  // that starts with a stray ',' (the parser returns an empty document without consuming the
  // token). Load reads only the first document; the text scan finds any others.
  const TextScan scan = scan_text(text);
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    const Loc loc = e.mark.is_null() ? Loc{} : Loc{e.mark.line + 1, e.mark.column + 1};
    error(loc, "", "invalid YAML: " + e.msg);
    return {std::nullopt, std::move(errors_)};
  }
  if (scan.second_document_line > 0) {
    error({scan.second_document_line, 1}, "",
          "a second YAML document starts here; sluice reads exactly one document per file "
          "(remove the '---' or '...' separator and what follows)");
  }
  if (root.IsNull()) {
    if (scan.first_content_line == 0) {
      error({1, 1}, "", "the config is empty; it needs at least 'interfaces' and 'vips'");
    } else {
      error({scan.first_content_line, 1}, "",
            "invalid YAML: expected the top level of the config (a map of 'field: value') to "
            "start here");
    }
    return {std::nullopt, std::move(errors_)};
  }

  Config cfg;
  std::vector<VipDraft> vips;
  if (auto top = read_map(root, {1, 1}, "", kTopFields, "the top level of the config")) {
    // Limits first: the VIP list is checked against them wherever they appear in the file.
    parse_limits(*top, cfg);
    parse_conntrack(*top, cfg);
    parse_log_level(*top, cfg);
    parse_metrics(*top, cfg);
    parse_api(*top, cfg);
    parse_interfaces(*top, cfg);
    parse_track(*top, cfg);
    parse_vips(*top, cfg, vips);
    check_vips(vips);
    check_nat_backends(vips);
  }

  // Cross-field checks run after the per-field ones; report in file order.
  std::stable_sort(errors_.begin(), errors_.end(), [](const ConfigError& a, const ConfigError& b) {
    return std::tie(a.line, a.column) < std::tie(b.line, b.column);
  });
  if (!errors_.empty()) return {std::nullopt, std::move(errors_)};
  for (VipDraft& vip : vips) {
    for (BackendDraft& b : vip.backends) vip.cfg.backends.push_back(b.cfg);
    cfg.vips.push_back(std::move(vip.cfg));
  }
  return {std::move(cfg), {}};
}

}  // namespace

std::string ConfigError::to_string() const {
  std::string out = file;
  if (line > 0) {
    out += ":" + std::to_string(line);
    if (column > 0) out += ":" + std::to_string(column);
  }
  if (!field.empty()) out += ": " + field;
  out += ": " + message;
  return out;
}

ConfigResult parse_config(std::string_view yaml_text, std::string_view file_name) {
  // yaml-cpp reports through exceptions, and allocation can fail anywhere: nothing may escape.
  try {
    return Parser(file_name).run(yaml_text);
  } catch (const std::exception& e) {
    return {std::nullopt,
            {{std::string(file_name), 0, 0, "", std::string("internal error: ") + e.what()}}};
  }
}

ConfigResult load_config_file(const std::string& path) {
  auto fail = [&path](int err) {
    return ConfigResult{
        std::nullopt,
        {{path, 0, 0, "", std::string("cannot read the config file: ") + std::strerror(err)}}};
  };
  std::FILE* fp = std::fopen(path.c_str(), "rb");
  if (fp == nullptr) return fail(errno);
  std::string text;
  char buf[65536];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), fp)) > 0) text.append(buf, n);
  // Reading a directory fails here (EISDIR), not at fopen.
  const int err = std::ferror(fp) ? errno : 0;
  std::fclose(fp);
  if (err != 0) return fail(err);
  return parse_config(text, path);
}

ConfigResult default_config() {
  return parse_config(std::string_view(kDefaultConfigYaml, kDefaultConfigYamlSize),
                      "<embedded default>");
}

}  // namespace sluice
