// The `congestion` section: where the sockops policy attaches, how many connections it
// follows, and its rules, each field read on its own. How rules relate (names, overlaps, the
// count, algorithms the host has) is validate()'s (validate_congestion.cc); this file records
// where each field is, so its errors point there.
#include <algorithm>
#include <cctype>
#include <numeric>

#include "parser.h"
#include "sluice/core/net.h"

namespace sluice::detail {
namespace {

constexpr std::string_view kCongestionFields[] = {"cgroup", "max_connections", "rules", "default"};
constexpr std::string_view kCcRuleFields[] = {"name",   "destination", "port",      "direction",
                                              "cgroup", "algorithm",   "priority",  "initial_cwnd",
                                              "sndbuf", "rcvbuf",      "cwnd_clamp"};
constexpr std::string_view kCcDefaultFields[] = {"algorithm", "initial_cwnd", "sndbuf", "rcvbuf",
                                                 "cwnd_clamp"};
constexpr std::string_view kDirections[] = {"active", "passive", "any"};

// cc_conns is preallocated like conntrack, and bounded like it.
constexpr uint64_t kMinCcConns = 1024;
constexpr uint64_t kMaxCcConns = 16777216;
// TCP_BPF_IW: Linux starts at 10 segments; past 1024 a burst would overrun any queue. A
// buffer under 4 KiB is below Linux's own floor (SOCK_MIN_SNDBUF), over 1 GiB past any BDP.
constexpr uint64_t kMaxIw = 1024;
constexpr uint64_t kMinBuf = 4096;
// The kernel keeps twice the value in an int: anything above INT_MAX / 2 could not take.
constexpr uint64_t kMaxBuf = 1073741823;
constexpr uint64_t kMaxCwndClamp = 1048576;

// `c` with every bit past its prefix length cleared.
Cidr clear_host_bits(Cidr c) {
  auto* b = reinterpret_cast<uint8_t*>(c.addr.w);
  for (unsigned i = 0; i < sizeof(c.addr.w); ++i) {
    const int keep = std::clamp(int{c.len} - int(i * 8), 0, 8);
    b[i] &= static_cast<uint8_t>(0xff00 >> keep);
  }
  return c;
}

}  // namespace

void Parser::parse_congestion(const MapView& top) {
  const Field* f = top.get("congestion");
  if (!f) return;
  cfg_.congestion.enabled = true;  // `congestion: {}` too: sluice_aimd, and a policy of no rules
  const auto cc = read_map(f->value, f->key_loc, f->path, kCongestionFields, "congestion settings");
  if (!cc) return;
  if (const Field* v = cc->get("cgroup")) {
    const auto path = read_cgroup(*v);
    cfg_.congestion.cgroup = path.value_or(cfg_.congestion.cgroup);
    notes_.cc_cgroup = path.has_value();
  }
  if (const Field* v = cc->get("max_connections")) {
    if (auto n = read_uint(*v, kMinCcConns, kMaxCcConns, "values")) {
      cfg_.congestion.max_connections = static_cast<uint32_t>(*n);
    }
  }
  if (const Field* v = cc->get("rules")) parse_cc_rules(*v);
  if (const Field* v = cc->get("default")) parse_cc_default(*v);
}

// The rules, then sorted by priority (stable: equal priorities keep the file's order), their
// notes with them.
void Parser::parse_cc_rules(const Field& f) {
  if (f.value.IsNull()) return;
  if (!f.value.IsSequence()) {
    error(f.loc, f.path, "expected a list of rules, got " + describe(f.value));
    return;
  }
  mark(f.path, f.key_loc);  // validate() counts them
  for (std::size_t i = 0; i < f.value.size(); ++i) {
    parse_cc_rule(f.value[i], f.loc, indexed(f.path, i), i);
  }
  std::vector<CcRuleConfig>& rules = cfg_.congestion.rules;
  std::vector<std::size_t> order(rules.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&rules](std::size_t a, std::size_t b) {
    return rules[a].priority < rules[b].priority;
  });
  std::vector<CcRuleConfig> sorted;
  std::vector<CcRuleNotes> sorted_notes;
  for (std::size_t i : order) {
    sorted.push_back(std::move(rules[i]));
    sorted_notes.push_back(notes_.cc_rules[i]);
  }
  rules = std::move(sorted);
  notes_.cc_rules = std::move(sorted_notes);
}

// Every rule written gets a place in the model, read or not: validate() counts them all.
void Parser::parse_cc_rule(const YAML::Node& node, Loc fallback, const std::string& path,
                           std::size_t place) {
  CcRuleConfig& rule = cfg_.congestion.rules.emplace_back();
  CcRuleNotes& notes = notes_.cc_rules.emplace_back();
  const Loc loc = loc_of(node, fallback);
  notes.index = place;
  rule.line = loc.line;
  rule.name = "rule-" + std::to_string(place + 1);
  rule.priority = static_cast<uint32_t>(place + 1);
  mark(path, loc);
  mark(join(path, "name"), loc);  // a duplicate default name is reported at its rule
  const auto map = read_map(node, fallback, path, kCcRuleFields, "a congestion rule");
  if (!map) {
    notes.match = notes.priority = notes.settings = false;
    return;
  }
  if (const Field* f = map->get("name")) {
    mark(f->path, f->loc);
    if (auto name = read_rule_name(*f)) rule.name = *name;
  }
  parse_cc_match(*map, rule, notes);
  notes.settings = parse_cc_settings(*map, rule);
  if (const Field* f = map->get("priority")) {
    mark(f->path, f->loc);
    const auto p = read_uint(*f, 0, UINT32_MAX, "priorities");
    notes.priority = p.has_value();
    rule.priority = static_cast<uint32_t>(p.value_or(rule.priority));
    rule.priority_set = p.has_value();
  }
}

// What a connection must match. A field with an error leaves "any" in the model, which the
// overlap rule must not read: notes.match.
void Parser::parse_cc_match(const MapView& map, CcRuleConfig& rule, CcRuleNotes& notes) {
  bool read = true;
  if (const Field* f = map.get("destination")) read &= read_destinations(*f, rule.destinations);
  if (const Field* f = map.get("port")) read &= read_port_range(*f, rule);
  if (const Field* f = map.get("direction")) read &= read_direction(*f, rule);
  if (const Field* f = map.get("cgroup")) {
    mark(f->path, f->loc);
    const auto path = read_cgroup(*f);
    rule.cgroup = path.value_or("");
    read &= path.has_value();
  }
  notes.match = read;
}

bool Parser::parse_cc_settings(const MapView& map, CcRuleConfig& rule) {
  bool read = true;
  if (const Field* f = map.get("algorithm")) {
    mark(f->path, f->loc);
    const auto name = read_string(*f, "an algorithm name such as cubic, bbr or sluice_aimd");
    if (name && (name->empty() || name->size() >= SL_CC_NAME_MAX)) {
      error(f->loc, f->path,
            "'" + *name + "' is not an algorithm name: Linux's are 1.." +
                std::to_string(SL_CC_NAME_MAX - 1) + " characters; e.g. cubic, bbr, sluice_aimd");
      read = false;
    } else if (name) {
      rule.algorithm = *name;
    } else {
      read = false;
    }
  }
  if (const Field* f = map.get("initial_cwnd")) {
    if (f->value.IsScalar() && f->value.Scalar() == "0" && f->value.Tag() != "!") {
      error(f->loc, f->path,
            "initial_cwnd 0 would stall every connection it matches: it could send nothing; "
            "give 1..1024 segments (Linux starts at 10), or leave it out");
      read = false;
    } else {
      const auto n = read_uint(*f, 1, kMaxIw, "initial windows (segments)");
      rule.initial_cwnd = static_cast<uint32_t>(n.value_or(0));
      read &= n.has_value();
    }
  }
  const std::pair<const char*, uint32_t*> bufs[] = {{"sndbuf", &rule.sndbuf},
                                                    {"rcvbuf", &rule.rcvbuf}};
  for (const auto& [name, slot] : bufs) {
    if (const Field* f = map.get(name)) {
      const auto n = read_uint(*f, kMinBuf, kMaxBuf, "buffer sizes (bytes)");
      *slot = static_cast<uint32_t>(n.value_or(0));
      read &= n.has_value();
    }
  }
  if (const Field* f = map.get("cwnd_clamp")) {
    const auto n = read_uint(*f, 1, kMaxCwndClamp, "clamps (segments)");
    rule.cwnd_clamp = static_cast<uint32_t>(n.value_or(0));
    read &= n.has_value();
  }
  return read;
}

void Parser::parse_cc_default(const Field& f) {
  const auto map =
      read_map(f.value, f.key_loc, f.path, kCcDefaultFields, "the default rule's settings");
  mark(f.path, f.key_loc);
  CcRuleConfig& rule = cfg_.congestion.default_rule.emplace();
  rule.name = "default";
  rule.line = f.key_loc.line;
  notes_.cc_default_settings = map && parse_cc_settings(*map, rule);
}

// A name keys the rule's counters (cc_rule_info) and is a metrics label: a plain word.
std::optional<std::string> Parser::read_rule_name(const Field& f) {
  const auto name = read_string(f, "a rule name");
  if (!name) return std::nullopt;
  const auto bad = std::find_if(name->begin(), name->end(), [](char c) {
    return !std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '-';
  });
  std::string problem;
  if (name->empty()) {
    problem = "name is empty; give a name or remove the field";
  } else if (name->size() >= SL_CC_RULE_NAME_MAX) {
    problem = "name is " + std::to_string(name->size()) + " characters long; at most " +
              std::to_string(SL_CC_RULE_NAME_MAX - 1) + " are allowed";
  } else if (bad != name->end()) {
    problem = "name '" + *name + "' contains '" + std::string(1, *bad) +
              "'; use letters, digits, '_', '.' and '-'";
  } else if (*name == "default") {
    problem = "the name 'default' is the default rule's (congestion.default); choose another";
  }
  if (problem.empty()) return name;
  error(f.loc, f.path, std::move(problem));
  return std::nullopt;
}

// An absolute path, kept without a trailing '/' so that one cgroup is written one way.
std::optional<std::string> Parser::read_cgroup(const Field& f) {
  auto path = read_string(f, "a cgroup v2 directory such as /sys/fs/cgroup/unified");
  if (!path) return std::nullopt;
  if (path->empty() || (*path)[0] != '/') {
    error(f.loc, f.path,
          "'" + *path +
              "' is not an absolute path; give a cgroup v2 directory such as "
              "/sys/fs/cgroup/unified");
    return std::nullopt;
  }
  while (path->size() > 1 && path->back() == '/') path->pop_back();
  return path;
}

// "198.18.1.0/24", "fd00:18::/64", or an address alone (/32, /128). The address is read by
// parse_ip(), as a VIP's is; a prefix with host bits set is refused, since which one was
// meant (the address, or the network) is the user's to say.
std::optional<Cidr> Parser::read_cidr(const Field& f) {
  const auto text = read_string(f, "a prefix such as 198.18.1.0/24, or an address");
  if (!text) return std::nullopt;
  const std::size_t slash = text->find('/');
  const auto ip = parse_ip(std::string_view(*text).substr(0, slash));
  if (!ip) {
    error(f.loc, f.path,
          "'" + *text +
              "' is not an IPv4 or IPv6 address or prefix; write e.g. 198.18.1.0/24, "
              "fd00:18::/64 or 198.18.1.2");
    return std::nullopt;
  }
  const unsigned most = ip->second == SL_AF_INET ? 32 : 128;
  unsigned len = most;
  if (slash != std::string::npos) {
    const std::string digits = text->substr(slash + 1);
    const bool numeric =
        !digits.empty() && digits.size() <= 3 &&
        std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; });
    len = numeric ? static_cast<unsigned>(std::stoul(digits)) : most + 1;
    if (len > most) {
      error(f.loc, f.path,
            "'" + *text + "': the prefix length must be 0.." + std::to_string(most) + " for IPv" +
                (most == 32 ? "4" : "6"));
      return std::nullopt;
    }
  }
  const Cidr cidr{ip->first, ip->second, static_cast<uint8_t>(len)};
  const Cidr network = clear_host_bits(cidr);
  if (!(network == cidr)) {
    error(f.loc, f.path,
          *text + ": host bits set; did you mean " + format_cidr(network) + "? (or " +
              format_ip(cidr.addr, cidr.family) + " alone)");
    return std::nullopt;
  }
  return cidr;
}

// One prefix or a list of them; an empty list would match nothing.
bool Parser::read_destinations(const Field& f, std::vector<Cidr>& out) {
  if (!f.value.IsSequence()) {
    auto cidr = read_cidr(f);
    if (cidr) out.push_back(*cidr);
    return cidr.has_value();
  }
  if (f.value.size() == 0) {
    error(f.loc, f.path,
          "an empty list matches no address; list prefixes, or leave destination "
          "out to match any address");
    return false;
  }
  bool read = true;
  for (std::size_t i = 0; i < f.value.size(); ++i) {
    const Field item{f.value[i], indexed(f.path, i), f.loc, loc_of(f.value[i], f.loc)};
    auto cidr = read_cidr(item);
    if (cidr) out.push_back(*cidr);
    read &= cidr.has_value();
  }
  return read;
}

// `5201` or `"5000-5300"` (inclusive). Port 0 is no connection's.
bool Parser::read_port_range(const Field& f, CcRuleConfig& rule) {
  const std::string text = f.value.IsScalar() ? f.value.Scalar() : "";
  const std::size_t dash = text.find('-');
  if (dash == std::string::npos) {
    const auto port = read_uint(f, 1, 65535, "ports");
    if (port) rule.port_lo = rule.port_hi = static_cast<uint16_t>(*port);
    return port.has_value();
  }
  auto number = [](std::string_view s) -> std::optional<uint16_t> {
    if (s.empty() || s.size() > 5 ||
        !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
      return std::nullopt;
    const unsigned long v = std::stoul(std::string(s));
    return v >= 1 && v <= 65535 ? std::optional<uint16_t>(static_cast<uint16_t>(v)) : std::nullopt;
  };
  const auto lo = number(std::string_view(text).substr(0, dash));
  const auto hi = number(std::string_view(text).substr(dash + 1));
  if (!lo || !hi) {
    error(f.loc, f.path,
          "'" + text +
              "' is not a port or a port range; write a port (1..65535) or a range "
              "such as 5000-5300");
    return false;
  }
  if (*lo > *hi) {
    error(f.loc, f.path,
          "port range " + text + " runs backwards; write the lower port first: " +
              std::to_string(*hi) + "-" + std::to_string(*lo));
    return false;
  }
  rule.port_lo = *lo;
  rule.port_hi = *hi;
  return true;
}

bool Parser::read_direction(const Field& f, CcRuleConfig& rule) {
  const auto word = read_string(f, "active, passive or any");
  if (!word) return false;
  const auto it = std::find(std::begin(kDirections), std::end(kDirections), *word);
  if (it == std::end(kDirections)) {
    error(f.loc, f.path,
          "unknown direction '" + *word + "'; valid directions: " + list_words(kDirections) +
              " (active: this host connected; passive: it accepted)");
    return false;
  }
  rule.direction = *word == "active"    ? SL_CC_DIR_ACTIVE
                   : *word == "passive" ? SL_CC_DIR_PASSIVE
                                        : SL_CC_DIR_ANY;
  return true;
}

}  // namespace sluice::detail
