// The congestion-control policy as the sockops program reads it (include/sluice/abi/cc.h):
// what one slot of `cc_rules` and `cc_lpm` must hold for a config, and the stable rule ids
// that keep a rule's counters across reloads. Pure functions of their inputs: the maps are
// written by CcPolicy (cc_policy.h).
#pragma once

#include <sluice/abi/cc.h>
#include <sluice/config/config.h>
#include <sluice/core/result.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace sluice {

// A cgroup v2 as the data path sees it: its id (the kernfs id, its directory's inode number)
// and its depth below the hierarchy's root (0).
struct CgroupRef {
  uint64_t id = 0;
  uint32_t level = 0;
};
using CgroupResolver = std::function<Result<CgroupRef>(const std::string& path)>;

// The config's rules in match order: `rules` (already sorted by priority), then the default.
std::vector<const CcRuleConfig*> cc_rules_in_order(const CongestionConfig& cfg);

// Rule name -> rule id (< SL_CC_MAX_RULE_IDS), the index of the rule's counters and name.
class CcRuleIds {
 public:
  // Takes the ids a previous agent recorded in cc_rule_info (a restart).
  void adopt(const std::vector<std::pair<uint16_t, std::string>>& in_use);
  // The id of each of `names`: a name keeps its id; a new name gets an id no rule held before
  // this call (an id just freed may still be counted by the slot being replaced). Names no
  // longer listed free their ids. `fresh` receives the newly assigned ids, whose counters must
  // be zeroed before the rules go live.
  // `busy`: ids that must not be given to a new name either (live connections still carry
  // them).
  Result<std::vector<uint16_t>> assign(const std::vector<std::string>& names,
                                       std::vector<uint16_t>* fresh,
                                       const std::vector<uint16_t>& busy = {});
  const std::map<std::string, uint16_t>& ids() const { return ids_; }

 private:
  std::map<std::string, uint16_t> ids_;
};

// One slot's content.
struct CcSlotTables {
  std::vector<sl_cc_rule> rules;  // match order; rules[i] goes to cc_rules[slot * MAX + i]
  std::vector<std::pair<sl_cc_lpm_key, sl_cc_lpm_val>> lpm;
};

// The LPM key of `c` in `slot`.
sl_cc_lpm_key cc_lpm_key(uint8_t slot, const Cidr& c);

// Builds slot `slot` for `cfg`'s rules in match order, with ids[i] for the i-th. Each prefix
// any rule names becomes one LPM entry whose bits are every rule covering the whole prefix.
// `resolve` turns a rule's cgroup path into its id and level.
Result<CcSlotTables> compile_cc_policy(const CongestionConfig& cfg, uint8_t slot,
                                       const std::vector<uint16_t>& ids,
                                       const CgroupResolver& resolve);

}  // namespace sluice
