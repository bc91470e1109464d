// The sluiced configuration: one YAML file, validated whole. See docs/configuration.md.
//
// Parsing never throws and never stops at the first problem: every error found is returned,
// each naming the file, line, column and field path (`vips[1].backends[0].address`) and saying
// what would be valid. A config with any error yields no Config, so a bad file is rejected
// whole and the running config stays in force.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/abi.h"

namespace sluice {

// config/default.yaml, compiled in by agent/embed.cmake (NUL-terminated; size excludes it).
extern const char kDefaultConfigYaml[];
extern const std::size_t kDefaultConfigYamlSize;

struct BackendConfig {
  sl_addr addr{};      // network byte order
  uint8_t family = 0;  // SL_AF_INET / SL_AF_INET6, always the VIP's family
  // Host byte order. Already resolved: an omitted port is the VIP's port. 0 only for a
  // port-0 VIP, where it means "keep the client's destination port".
  uint16_t port = 0;
  uint16_t weight = 1;  // 0 = configured but receives no new flows
  int line = 0;         // where the backend is defined, for later messages
};

struct VipConfig {
  std::string name;  // optional, unique when set
  sl_addr addr{};    // network byte order
  uint8_t family = 0;
  uint16_t port = 0;  // host byte order; 0 = every port
  uint8_t proto = 0;  // IPPROTO_TCP / IPPROTO_UDP
  uint8_t sched = SL_SCHED_SOURCE_HASH;
  uint8_t mode = SL_MODE_NAT;
  bool hash_source_port = false;
  std::vector<BackendConfig> backends;  // at least one, at least one with weight > 0
  int line = 0;
};

struct Config {
  std::vector<std::string> interfaces;
  std::vector<VipConfig> vips;
  uint32_t max_vips = SL_DEFAULT_MAX_VIPS;
  uint32_t max_backends = SL_DEFAULT_MAX_BACKENDS;
  uint32_t conntrack_max_entries = SL_DEFAULT_CT_ENTRIES;
  std::string log_level = "info";  // a spdlog level name
};

struct ConfigError {
  std::string file;
  int line = 0;       // 1-based; 0 when the error is about the whole file (unreadable)
  int column = 0;     // 1-based; 0 when unknown
  std::string field;  // e.g. "vips[1].backends[0].address"; empty for YAML syntax errors
  std::string message;
  // "FILE:LINE:COL: FIELD: MESSAGE"; parts that are unknown (line 0, empty field) are left out.
  std::string to_string() const;
};

struct ConfigResult {
  std::optional<Config> config;     // set if and only if errors is empty
  std::vector<ConfigError> errors;  // sorted by line, then column
};

ConfigResult parse_config(std::string_view yaml_text, std::string_view file_name);
// An unreadable file gives one error naming the file and the errno text.
ConfigResult load_config_file(const std::string& path);
// Parses kDefaultConfigYaml as the file "<embedded default>".
ConfigResult default_config();

}  // namespace sluice
