// The congestion-control maps (include/sluice/abi/cc.h), opened from a loaded cc_sockops (the
// agent) or from the pins under <pin dir>/cc (sluicectl, which works while the agent is down),
// and read into plain structs for `sluicectl cc` and the metrics.
#pragma once

#include <sluice/abi/abi.h>
#include <sluice/abi/cc.h>
#include <sluice/core/fd.h>
#include <sluice/core/result.h>

#include <cstdint>
#include <string>
#include <vector>

namespace sluice {

// Map file descriptors, not owned (-1: absent).
struct CcMapFds {
  int config = -1;      // cc_config
  int lpm = -1;         // cc_lpm
  int rules = -1;       // cc_rules
  int rule_stats = -1;  // cc_rule_stats (per-CPU)
  int rule_info = -1;   // cc_rule_info
  int conns = -1;       // cc_conns
  int algo_users = -1;  // cc_algo_users (sluice_aimd's users; -1 when it is not registered)
};

// Opens every pin under <pin_dir>/cc and checks key and value sizes and cc_config's
// abi_version against this build. The error says when sluiced has no `congestion` section.
class PinnedCcMaps {
 public:
  static Result<PinnedCcMaps> open(const std::string& pin_dir);
  const CcMapFds& fds() const { return fds_; }

 private:
  std::vector<UniqueFd> owned_;
  CcMapFds fds_;
};

// One live connection of cc_conns.
struct CcConnView {
  uint64_t cookie = 0;  // the socket cookie (the key)
  sl_cc_conn conn{};
};

// The rule ids in use and their names, from cc_rule_info (index = rule id).
struct CcRuleName {
  uint16_t id = 0;
  std::string name;
};

Result<sl_cc_config> read_cc_config(int config_fd);
// Every entry of cc_conns, read in batches; entries that come and go meanwhile may be missed.
Result<std::vector<CcConnView>> read_cc_conns(int conns_fd);
// cc_rule_stats summed over CPUs, all SL_CC_MAX_RULE_IDS ids.
Result<std::vector<sl_cc_rule_stats>> read_cc_rule_stats(int rule_stats_fd);
// The ids whose cc_rule_info.in_use is set, by id.
Result<std::vector<CcRuleName>> read_cc_rule_names(int rule_info_fd);
// sluice_aimd's users (cc_algo_users).
Result<uint64_t> read_cc_algo_users(int algo_users_fd);

}  // namespace sluice
