// The rules of the `congestion` section across fields and across rules (docs/configuration.md,
// `congestion`): part of validate(), so a file, a reload and the API refuse a policy for the
// same reasons. Rules are held sorted by priority; errors name each one by its place in the
// file.
#include <algorithm>
#include <map>
#include <numeric>
#include <string>

#include "sluice/core/net.h"
#include "validate_internal.h"

namespace sluice::detail {
namespace {

constexpr char kSettings[] = "an algorithm, initial_cwnd, sndbuf, rcvbuf or cwnd_clamp";

bool sets_something(const CcRuleConfig& r) {
  return !r.algorithm.empty() || r.initial_cwnd || r.sndbuf || r.rcvbuf || r.cwnd_clamp;
}

// Whether cgroup directory `inner` is `outer` or below it (paths without a trailing '/').
bool cgroup_within(const std::string& outer, const std::string& inner) {
  return inner.compare(0, outer.size(), outer) == 0 &&
         (inner.size() == outer.size() || outer == "/" || inner[outer.size()] == '/');
}

// Whether a socket can match both: a rule's cgroup holds its whole subtree.
bool cgroups_overlap(const std::string& a, const std::string& b) {
  return a.empty() || b.empty() || cgroup_within(a, b) || cgroup_within(b, a);
}

// The addresses both rules match, in words ("198.18.1.0/24", "any address"), or nullopt when
// they share none. Two prefixes share addresses only when one holds the other, and then the
// longer one is what they share.
std::optional<std::string> shared_destination(const CcRuleConfig& a, const CcRuleConfig& b) {
  if (a.destinations.empty() && b.destinations.empty()) return "any address";
  if (a.destinations.empty()) return format_cidr(b.destinations[0]);
  if (b.destinations.empty()) return format_cidr(a.destinations[0]);
  for (const Cidr& x : a.destinations) {
    for (const Cidr& y : b.destinations) {
      if (cidr_contains(x, y)) return format_cidr(y);
      if (cidr_contains(y, x)) return format_cidr(x);
    }
  }
  return std::nullopt;
}

// What both rules match, in words, or nullopt when no connection can match both.
std::optional<std::string> shared_match(const CcRuleConfig& a, const CcRuleConfig& b) {
  const uint16_t lo = std::max(a.port_lo, b.port_lo), hi = std::min(a.port_hi, b.port_hi);
  if (lo > hi) return std::nullopt;
  if (a.direction != SL_CC_DIR_ANY && b.direction != SL_CC_DIR_ANY && a.direction != b.direction)
    return std::nullopt;
  if (!cgroups_overlap(a.cgroup, b.cgroup)) return std::nullopt;
  auto dest = shared_destination(a, b);
  if (!dest) return std::nullopt;
  if (lo == hi) return *dest + " port " + std::to_string(lo);
  if (lo != 0 || hi != 65535)
    return *dest + " ports " + std::to_string(lo) + "-" + std::to_string(hi);
  return *dest + " on any port";
}

class CcValidator {
 public:
  CcValidator(const Config& cfg, const ParseNotes& notes)
      : cc_(cfg.congestion), notes_(notes), rules_(cfg.congestion.rules) {}
  std::vector<ConfigError> run();

 private:
  void error(int line, std::string field, std::string message) {
    errors_.push_back({"", line, 0, std::move(field), std::move(message)});
  }
  CcRuleNotes notes_of(std::size_t r) const {
    if (r < notes_.cc_rules.size()) return notes_.cc_rules[r];
    return {.index = r};  // a Config built in code: named by its place in the model
  }
  // "congestion.rules[3]", by its place in the file.
  std::string path(std::size_t r) const {
    return "congestion.rules[" + std::to_string(notes_of(r).index) + "]";
  }
  // "rules[3] (line 20)".
  std::string named(std::size_t r) const {
    const int line = rules_[r].line;
    return path(r).substr(sizeof("congestion.") - 1) +
           (line > 0 ? " (line " + std::to_string(line) + ")" : "");
  }
  void check_settings(const CcRuleConfig& rule, bool read, const std::string& at);
  void check_cgroup(std::size_t r);
  void check_names();
  void check_overlaps();
  void check_prefixes();
  void check_window(const CcRuleConfig& rule, const std::string& at);

  const CongestionConfig& cc_;
  const ParseNotes& notes_;
  const std::vector<CcRuleConfig>& rules_;
  std::optional<std::optional<std::vector<std::string>>> algorithms_;  // read once, if needed
  std::vector<ConfigError> errors_;
};

// A rule must change something, and only with an algorithm this host has: bpf_setsockopt()
// cannot load a module (it never autoloads), so a name not registered would fail on every
// connection.
void CcValidator::check_settings(const CcRuleConfig& rule, bool read, const std::string& at) {
  if (read && !sets_something(rule)) {
    error(rule.line, at,
          at == "congestion.default"
              ? std::string("the default sets nothing; give it ") + kSettings + ", or remove it"
              : std::string("this rule sets nothing; give it ") + kSettings);
  }
  if (rule.algorithm.empty()) return;
  if (!algorithms_) algorithms_ = available_congestion_algorithms();
  const std::optional<std::vector<std::string>>& names = *algorithms_;
  if (!names || std::find(names->begin(), names->end(), rule.algorithm) != names->end()) return;
  std::string list;
  for (const std::string& n : *names) list += (list.empty() ? "" : ", ") + n;
  error(rule.line, at + ".algorithm",
        "algorithm \"" + rule.algorithm + "\" is not available on this host; available: " + list +
            " (load a module with modprobe tcp_<name> to add one)");
}

// The policy is attached at congestion.cgroup and sees only the sockets below it: a rule for
// any other cgroup could never match.
void CcValidator::check_cgroup(std::size_t r) {
  const std::string& cgroup = rules_[r].cgroup;
  if (cgroup.empty() || !notes_.cc_cgroup || !notes_of(r).match) return;
  if (cgroup_within(cc_.cgroup, cgroup)) return;
  error(rules_[r].line, path(r) + ".cgroup",
        cgroup + " is not under congestion.cgroup (" + cc_.cgroup +
            "), where the policy is attached, so this rule would match no socket; give a "
            "directory under it");
}

// Names key the rules' counters across reloads (cc_rule_info), so each picks one rule.
void CcValidator::check_names() {
  std::vector<std::size_t> by_place(rules_.size());
  std::iota(by_place.begin(), by_place.end(), 0);
  std::stable_sort(by_place.begin(), by_place.end(), [this](std::size_t a, std::size_t b) {
    return notes_of(a).index < notes_of(b).index;
  });
  std::map<std::string, std::size_t> seen;
  for (std::size_t r : by_place) {
    auto [first, inserted] = seen.emplace(rules_[r].name, r);
    if (inserted) continue;
    std::string message =
        "duplicate rule name '" + rules_[r].name + "' (also " + named(first->second) + ")";
    if (rules_[r].name.starts_with("rule-"))
      message += "; an unnamed rule is named rule-N after its place in the list";
    error(rules_[r].line, path(r) + ".name", std::move(message));
  }
}

// Rules of equal priority have no order between them: if one connection can match both, which
// one it gets would depend on how they were written to the map.
void CcValidator::check_overlaps() {
  for (std::size_t a = 0; a < rules_.size(); ++a) {
    for (std::size_t b = a + 1; b < rules_.size(); ++b) {
      const CcRuleConfig &x = rules_[a], &y = rules_[b];
      if (x.priority != y.priority) continue;
      const CcRuleNotes nx = notes_of(a), ny = notes_of(b);
      if (!nx.match || !ny.match || !nx.priority || !ny.priority) continue;
      const auto both = shared_match(x, y);
      if (!both) continue;
      const bool x_first = nx.index < ny.index;
      const std::size_t later = x_first ? b : a;
      error(rules_[later].line, path(later) + (rules_[later].priority_set ? ".priority" : ""),
            named(x_first ? a : b) + " and " + named(later) + " have priority " +
                std::to_string(x.priority) + " and both match " + *both +
                ": which applies first is ambiguous; give them different priorities");
    }
  }
}

// Every distinct destination prefix is one entry of the policy's LPM trie per slot.
void CcValidator::check_prefixes() {
  std::vector<Cidr> seen;
  for (const CcRuleConfig& r : rules_)
    for (const Cidr& c : r.destinations)
      if (std::find(seen.begin(), seen.end(), c) == seen.end()) seen.push_back(c);
  // The default and any rule without a destination add 0.0.0.0/0 and ::/0.
  if (seen.size() + 2 > SL_CC_MAX_PREFIXES)
    error(0, "congestion.rules",
          std::to_string(seen.size()) + " distinct destination prefixes; at most " +
              std::to_string(SL_CC_MAX_PREFIXES - 2) +
              " fit the policy's map (merge adjacent prefixes into shorter ones)");
}

// initial_cwnd above cwnd_clamp: the clamp lowers the window again at once.
void CcValidator::check_window(const CcRuleConfig& rule, const std::string& at) {
  if (rule.initial_cwnd && rule.cwnd_clamp && rule.initial_cwnd > rule.cwnd_clamp)
    error(rule.line, at + ".initial_cwnd",
          "initial_cwnd " + std::to_string(rule.initial_cwnd) + " is above cwnd_clamp " +
              std::to_string(rule.cwnd_clamp) +
              ": the clamp would cut the first flight; lower it or raise the clamp");
}

std::vector<ConfigError> CcValidator::run() {
  if (!cc_.enabled) return {};
  if (rules_.size() > kMaxCcRules) {
    error(0, "congestion.rules",
          std::to_string(rules_.size()) + " rules; at most " + std::to_string(kMaxCcRules) +
              " are supported (the policy map holds " + std::to_string(SL_CC_MAX_RULES) +
              ", one of them the default)");
  }
  for (std::size_t r = 0; r < rules_.size(); ++r) {
    check_cgroup(r);
    check_settings(rules_[r], notes_of(r).settings, path(r));
    check_window(rules_[r], path(r));
  }
  if (cc_.default_rule) {
    check_settings(*cc_.default_rule, notes_.cc_default_settings, "congestion.default");
    check_window(*cc_.default_rule, "congestion.default");
  }
  check_names();
  check_overlaps();
  check_prefixes();
  return std::move(errors_);
}

}  // namespace

std::vector<ConfigError> validate_congestion(const Config& cfg, const ParseNotes& notes) {
  return CcValidator(cfg, notes).run();
}

}  // namespace sluice::detail
