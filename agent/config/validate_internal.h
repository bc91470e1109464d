// What the parser and validate() share, inside the config component: the bounds both name in
// messages, and what the parser knows of a Config beyond the model.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "sluice/config/config.h"

namespace sluice::detail {

// Bounds the agent can honour: max_vips * SL_RINGS_PER_VIP * SL_MAGLEV_SIZE ring slots are
// preallocated. Each VIP owns two rings of 65537 slots, 8 bytes each in the array map
// (1 MiB): 1024 VIPs take 1 GiB.
constexpr uint64_t kMaxVipsLimit = 1024;
constexpr uint64_t kMaxBackendsLimit = 65536;

// Per field, whether the parser read a value into the model. A field with an error of its own
// holds a default that means nothing, so every rule that reads it is skipped: its error is
// reported already, and the relation cannot be checked.
struct BackendNotes {
  bool addr = true;
  bool port = true;  // resolved: written and valid, or taken from the VIP's valid port
  bool weight = true;
};

struct VipNotes {
  bool addr = true;
  bool port = true;
  bool proto = true;
  bool mode = true;
  bool backends = true;      // `backends` is a list (or missing, which is an empty one)
  bool check_port = true;    // health_check.port, if written, is valid
  bool check_timing = true;  // health_check.interval_ms and timeout_ms hold valid values
  // Whether interval_ms and timeout_ms were written (a message names a default as such).
  bool interval_written = true;
  bool timeout_written = true;
  std::vector<BackendNotes> backends_read;  // per backend; missing ones were read whole
};

// Per rule of congestion.rules, in the model's order (sorted by priority).
struct CcRuleNotes {
  // Its place in the file, 0-based: the rules are stored sorted, but errors name the rule as
  // written (`congestion.rules[3]`). Without notes, the place in the model.
  std::size_t index = 0;
  bool match = true;     // destination, port, direction and cgroup hold what was written
  bool priority = true;  // priority, if written, was read
  bool settings = true;  // every setting written (algorithm, initial_cwnd, ...) was read
};

// Per VIP; VIPs past the end (all of them, for a Config that did not come from a file) were
// read whole. Likewise congestion rules.
struct ParseNotes {
  std::vector<VipNotes> vips;
  bool ct_max_entries = true;  // conntrack.max_entries, if written, is valid
  bool cc_cgroup = true;       // congestion.cgroup, if written, is valid
  std::vector<CcRuleNotes> cc_rules;
  bool cc_default_settings = true;  // congestion.default: as CcRuleNotes::settings
};

// The most rules a config may hold: one of the SL_CC_MAX_RULES bits is the default's.
constexpr std::size_t kMaxCcRules = SL_CC_MAX_RULES - 1;

// validate(cfg) with what the parser could not read.
std::vector<ConfigError> validate(const Config& cfg, const ParseNotes& notes);
// The rules of the `congestion` section (validate_congestion.cc), part of validate().
std::vector<ConfigError> validate_congestion(const Config& cfg, const ParseNotes& notes);

}  // namespace sluice::detail
