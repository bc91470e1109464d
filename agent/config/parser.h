// The YAML parser of the config, inside the config component. One Parser reads one file: the
// fields of each section (parse_*.cc), each checked on its own, then validate() for the rules
// across fields, whose errors it places at the fields they name (config.cc).
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sluice/config/config.h"
#include "validate_internal.h"

namespace sluice::detail {

struct Loc {
  int line = 0;
  int column = 0;
};

// Where `node` is, 1-based; `fallback` for an empty value or a node without a mark.
Loc loc_of(const YAML::Node& node, Loc fallback);
// "a.b", or "b" under the top level.
std::string join(const std::string& path, std::string_view key);
// "a[3]".
std::string indexed(const std::string& path, std::size_t i);
// "a, b, c".
std::string list_words(std::span<const std::string_view> words);
// How a value looks to the user, for "expected X, got Y" messages.
std::string describe(const YAML::Node& node);

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

class Parser {
 public:
  explicit Parser(std::string_view file) : file_(file) {}

  ConfigResult run(std::string_view text);

 private:
  void error(Loc loc, std::string field, std::string message) {
    errors_.push_back({file_, loc.line, loc.column, std::move(field), std::move(message)});
  }
  // Records where a field path is in the file, for the errors validate() gives about it.
  void mark(const std::string& path, Loc loc) { where_[path] = loc; }
  void add_validate_errors();

  // reader.cc: values of each YAML type, with their errors.
  std::optional<MapView> read_map(const YAML::Node& node, Loc loc, const std::string& path,
                                  std::span<const std::string_view> valid, std::string_view what);
  std::optional<std::string> read_string(const Field& f, std::string_view expected = "a string");
  std::optional<uint64_t> read_uint(const Field& f, uint64_t lo, uint64_t hi,
                                    std::string_view plural);
  std::optional<bool> read_bool(const Field& f);
  std::optional<std::pair<sl_addr, uint8_t>> read_ip(const Field& f);
  void missing(const MapView& map, std::string_view name, std::string_view hint = {});

  // parse_settings.cc: everything but the VIPs.
  void parse_limits(const MapView& top);
  void parse_conntrack(const MapView& top);
  void parse_log_level(const MapView& top);
  void parse_metrics(const MapView& top);
  void parse_api(const MapView& top);
  void parse_interfaces(const MapView& top);
  // `detailed`: entries may be `{name, vlans}` maps (top-level interfaces), else names only.
  void read_interface_list(const Field& f, std::string_view hint, std::vector<std::string>& out,
                           std::vector<InterfaceConfig>* detailed = nullptr);
  std::optional<std::string> read_interface_entry(const Field& item, InterfaceConfig& out);
  void read_vlans(const Field& f, std::vector<uint16_t>& out);
  void parse_track(const MapView& top);

  // parse_vips.cc
  void parse_vips(const MapView& top);
  void parse_vip(const YAML::Node& node, Loc fallback, const std::string& path);
  void parse_vip_endpoint(const MapView& map, VipConfig& vip, VipNotes& notes);
  void parse_vip_behaviour(const MapView& map, VipConfig& vip, VipNotes& notes);
  void parse_backends(const MapView& map, VipConfig& vip, VipNotes& notes);
  void parse_backend(const YAML::Node& node, Loc fallback, const std::string& path, VipConfig& vip,
                     VipNotes& notes);

  // parse_health.cc
  void parse_health_check(const Field& f, VipConfig& vip, VipNotes& notes);
  void parse_check_timing(const MapView& map, HealthCheckConfig& hc, VipNotes& notes);
  void parse_check_payloads(const MapView& map, HealthCheckConfig& hc,
                            std::optional<HealthCheckType> type);
  std::optional<std::vector<StatusRange>> read_status_codes(const Field& f);

  // parse_congestion.cc
  void parse_congestion(const MapView& top);
  void parse_cc_rules(const Field& f);
  void parse_cc_rule(const YAML::Node& node, Loc fallback, const std::string& path,
                     std::size_t place);
  void parse_cc_match(const MapView& map, CcRuleConfig& rule, CcRuleNotes& notes);
  // False when a setting written could not be read.
  bool parse_cc_settings(const MapView& map, CcRuleConfig& rule);
  void parse_cc_default(const Field& f);
  std::optional<std::string> read_rule_name(const Field& f);
  std::optional<std::string> read_cgroup(const Field& f);
  std::optional<Cidr> read_cidr(const Field& f);
  bool read_destinations(const Field& f, std::vector<Cidr>& out);
  bool read_port_range(const Field& f, CcRuleConfig& rule);
  bool read_direction(const Field& f, CcRuleConfig& rule);

  std::string file_;
  std::vector<ConfigError> errors_;
  Config cfg_;
  ParseNotes notes_;                  // per VIP of cfg_.vips, one per VIP written
  std::map<std::string, Loc> where_;  // field path -> where validate()'s errors about it go
};

}  // namespace sluice::detail
