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
// cc_algo_users is optional: fds().algo_users is -1 while sluice_aimd is not registered.
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

// A rule id and its name, from cc_rule_info (index = rule id).
struct CcRuleName {
  uint16_t id = 0;
  std::string name;
  // A slot's rule carries the id. An id whose rule a reload removed keeps its name (and its
  // counters, which its connections still feed as they close) until the id is reused.
  bool in_use = false;
};

Result<sl_cc_config> read_cc_config(int config_fd);
// Every entry of cc_conns, read in batches; entries that come and go meanwhile may be missed.
Result<std::vector<CcConnView>> read_cc_conns(int conns_fd);
// cc_rule_stats summed over CPUs, all SL_CC_MAX_RULE_IDS ids.
Result<std::vector<sl_cc_rule_stats>> read_cc_rule_stats(int rule_stats_fd);
// Every id with a name (in use or not), by id.
Result<std::vector<CcRuleName>> read_cc_rule_names(int rule_info_fd);
// a += b, every counter and bucket (sums over CPUs, or over ids of one name).
void add_cc_rule_stats(sl_cc_rule_stats& a, const sl_cc_rule_stats& b);
// sluice_aimd's users (cc_algo_users).
Result<uint64_t> read_cc_algo_users(int algo_users_fd);
// Names (CLI, metrics labels; stable). Unknown values give "unknown".
// enum sl_cc_setting: "algorithm", "initial_cwnd", "sndbuf", "rcvbuf", "cwnd_clamp".
const char* cc_setting_name(uint32_t setting);
// enum sl_cc_direction: "any", "active", "passive".
const char* cc_direction_name(uint8_t direction);
// The kernel's TCP states (sl_cc_conn.state), as `ss` names them but in lower case with '_':
// "established", "syn_sent", "fin_wait1", "close_wait", ...
const char* cc_tcp_state_name(uint8_t state);

// The algorithm a connection uses (its `cc`, which the kernel may leave without a NUL).
std::string cc_name(const sl_cc_conn& c);

}  // namespace sluice
