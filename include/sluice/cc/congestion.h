// sluiced's congestion control (`congestion:`; docs/design.md, "Congestion control"): our
// algorithm registered (CcAlgorithm) and the sockops policy attached (CcPolicy), both pinned
// under <pin dir>/cc so that they outlive the agent.
//
// On stop:
//  - by default (hitless restart) everything stays: the policy keeps applying to new
//    connections, sluice_aimd stays registered, and the next sluiced takes both over;
//  - with --detach-on-exit the policy is detached and its pins removed, and sluice_aimd is
//    unregistered if no socket uses it (else it stays, pinned, and the log says how many
//    sockets hold it).
#pragma once

#include <sluice/bpf/pin_dir.h>
#include <sluice/cc/cc_algo.h>
#include <sluice/cc/cc_maps.h>
#include <sluice/cc/cc_policy.h>
#include <sluice/config/config.h>
#include <sluice/core/result.h>

#include <memory>
#include <optional>
#include <string>

namespace sluice {

class CongestionControl {
 public:
  // From cfg: registers sluice_aimd, loads (or adopts) the policy, applies the rules and
  // attaches to cfg.cgroup. Pins under <pin_dir>/cc.
  static Result<std::unique_ptr<CongestionControl>> start(const CongestionConfig& cfg,
                                                          const std::string& pin_dir);
  // Until detach_on_exit() is called: removes what it created fresh (a start cut short) and
  // leaves what it adopted. After: detach_on_exit(true) removes, false leaves everything.
  ~CongestionControl();
  CongestionControl(const CongestionControl&) = delete;
  CongestionControl& operator=(const CongestionControl&) = delete;

  // New rules for new connections (reload); a new cgroup moves the policy there.
  // max_connections cannot change here (cc_conns is sized at start).
  Status apply(const CongestionConfig& cfg);
  void detach_on_exit(bool detach) { teardown_ = detach ? Teardown::kAlways : Teardown::kNever; }
  const CcMapFds& fds() const { return fds_; }

 private:
  CongestionControl() = default;
  std::optional<PinDir> algo_pins_;
  std::unique_ptr<CcAlgorithm> algo_;
  std::unique_ptr<CcPolicy> policy_;
  CcMapFds fds_;
  enum class Teardown { kFreshOnly, kAlways, kNever };
  Teardown teardown_ = Teardown::kFreshOnly;
};

// When the config has no `congestion` section but a previous sluiced left its pins: detaches
// the policy and removes its pins; sluice_aimd is unregistered if no socket uses it.
void remove_congestion_pins(const std::string& pin_dir);

}  // namespace sluice
