// The loaded congestion-control policy: cc_sockops (bpf/cc_sockops.bpf.c) with its maps, its
// cgroup link and, for sluiced, their pins under <pin dir>/cc (pins.h).
//
//  - load(): fresh program and maps, nothing pinned (tests);
//  - open(): sluiced's way in. Pins left by a previous sluiced (a restart, or kill -9) are
//    adopted: the maps carry on (live connections keep their entries and counters), and the
//    pinned cgroup link gets this build's program swapped in (BPF_LINK_UPDATE), so a new
//    connection never misses its policy and the program is never attached twice.
//
// apply() writes a config's rules into the slot that is not live, then flips `cc_config` in
// one update: a connection sees the old rules or the new ones, never a mix. Connections
// established before keep what was set on them.
#pragma once

#include <sluice/bpf/pin_dir.h>
#include <sluice/cc/cc_maps.h>
#include <sluice/cc/policy.h>
#include <sluice/config/config.h>
#include <sluice/core/fd.h>
#include <sluice/core/result.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

struct cc_sockops_bpf;

namespace sluice {

class CcPolicy {
 public:
  static Result<std::unique_ptr<CcPolicy>> load(uint32_t max_connections);
  // `cc_dir` is <pin dir>/cc (created when missing). The pinned cc_conns must have
  // `max_connections` entries; a different size is an error naming both.
  static Result<std::unique_ptr<CcPolicy>> open(uint32_t max_connections,
                                                const std::string& cc_dir);
  // Until keep_on_exit() is called: a fresh policy is detached and its pins removed (a start
  // cut short); an adopted one is left as it was (a failed restart must not take the running
  // policy down). keep_on_exit(false): detached and unpinned either way; true: left.
  ~CcPolicy();
  CcPolicy(const CcPolicy&) = delete;
  CcPolicy& operator=(const CcPolicy&) = delete;

  bool adopted() const { return adopted_; }
  // Detaches a policy pinned in `cc_dir` and removes its pins, without loading anything (a
  // config without the section finds a previous sluiced's).
  static void remove_pins(PinDir& cc_dir);
  // Writes `cfg`'s rules into the idle slot and makes it live. `resolve` maps rule cgroups to
  // ids (resolve_cgroup2 by default).
  Status apply(const CongestionConfig& cfg, const CgroupResolver& resolve = {});
  // Attaches cc_sockops to the cgroup v2 at `cgroup` (pinned as kCcSockopsLinkPin when
  // opened with pins). Attaching again moves it.
  Status attach(const std::string& cgroup);
  void detach();
  // true: the destructor leaves the link attached and the pins in place (hitless restart).
  void keep_on_exit(bool keep) { teardown_ = keep ? Teardown::kNever : Teardown::kAlways; }

  const CcMapFds& fds() const { return fds_; }
  // The cgroup it is attached to; empty when detached.
  const std::string& cgroup() const { return cgroup_; }
  int prog_fd() const;
  uint64_t generation() const { return generation_; }
  const CcRuleIds& rule_ids() const { return ids_; }

 private:
  CcPolicy() = default;
  static Result<std::unique_ptr<CcPolicy>> load_into(std::unique_ptr<CcPolicy> p,
                                                     uint32_t max_connections);
  Status adopt_maps();
  Status pin_maps();
  Status adopt_state();
  Status clear_slot(uint8_t slot);
  void forget_connections(const std::string& why);
  Result<std::vector<uint16_t>> busy_rule_ids() const;
  Status write_names(const std::vector<const CcRuleConfig*>& order,
                     const std::vector<uint16_t>& ids, const std::vector<uint16_t>& fresh);

  cc_sockops_bpf* skel_ = nullptr;
  CcMapFds fds_;
  std::vector<UniqueFd> reused_;
  UniqueFd link_;
  std::string cgroup_;
  std::optional<PinDir> pins_;
  CcRuleIds ids_;
  sl_cc_config config_{};
  uint64_t generation_ = 0;
  bool adopted_ = false;
  enum class Teardown { kFreshOnly, kAlways, kNever };
  Teardown teardown_ = Teardown::kFreshOnly;
};

}  // namespace sluice
