// CongestionControl (congestion.h): what sluiced starts for `congestion:`, and what it leaves
// when it stops.
#include <spdlog/spdlog.h>

#include <sluice/cc/congestion.h>
#include <sluice/cc/pins.h>

namespace sluice {

namespace {

std::string cc_dir_of(const std::string& pin_dir) { return pin_dir + "/" + kCcPinSubdir; }

// --detach-on-exit: sluice_aimd goes only when no socket uses it.
void unregister_algorithm(CcAlgorithm& algo) {
  if (auto s = algo.unregister_if_unused(); !s)
    spdlog::warn("congestion: {} stays registered: {}", SL_CC_OURS, s.error().to_string());
  else
    spdlog::info("congestion: {} unregistered", SL_CC_OURS);
}

}  // namespace

Result<std::unique_ptr<CongestionControl>> CongestionControl::start(const CongestionConfig& cfg,
                                                                    const std::string& pin_dir) {
  std::unique_ptr<CongestionControl> cc(new CongestionControl());
  auto dir = PinDir::create(cc_dir_of(pin_dir), /*lock=*/false);
  if (!dir) return dir.error();
  cc->algo_pins_ = std::move(*dir);
  // Registered before the policy can name it. Another owner's registration (a second sluiced
  // on this host, with its own pin directory) serves as well: the name is kernel-wide.
  auto algo = CcAlgorithm::load(&*cc->algo_pins_);
  if (algo)
    cc->algo_ = std::move(*algo);
  else if (algo.error().code == EEXIST)
    spdlog::warn("congestion: {} is registered by another owner; using theirs ({})", SL_CC_OURS,
                 algo.error().to_string());
  else
    return algo.error();
  auto policy = CcPolicy::open(cfg.max_connections, cc_dir_of(pin_dir));
  if (!policy) return policy.error();
  cc->policy_ = std::move(*policy);
  if (auto s = cc->policy_->apply(cfg); !s) return s.error();
  if (auto s = cc->policy_->attach(cfg.cgroup); !s) return s.error();
  cc->fds_ = cc->policy_->fds();
  if (cc->algo_) cc->fds_.algo_users = cc->algo_->users_fd();
  return cc;
}

Status CongestionControl::apply(const CongestionConfig& cfg) {
  if (auto s = policy_->apply(cfg); !s) return s;
  if (cfg.cgroup == policy_->cgroup()) return {};
  return policy_->attach(cfg.cgroup);
}

CongestionControl::~CongestionControl() {
  // The policy and the algorithm each decide by what this run created: a start cut short
  // removes only that, and never takes down what a previous sluiced left running.
  if (policy_ && teardown_ != Teardown::kFreshOnly)
    policy_->keep_on_exit(teardown_ == Teardown::kNever);
  policy_.reset();
  const bool drop_algo = algo_ && (teardown_ == Teardown::kAlways ||
                                   (teardown_ == Teardown::kFreshOnly && !algo_->adopted()));
  if (drop_algo) unregister_algorithm(*algo_);
  algo_.reset();
  if (algo_pins_ && teardown_ != Teardown::kNever)
    algo_pins_->remove();  // fails while pins stay (an adopted policy, a used sluice_aimd)
}

void remove_congestion_pins(const std::string& pin_dir) {
  const std::string dir = cc_dir_of(pin_dir);
  PinDir pins(dir);
  if (pins.list().empty()) return;
  spdlog::info("congestion: no `congestion` section; removing what a previous sluiced left in {}",
               dir);
  CcPolicy::remove_pins(pins);
  if (pins.holds(kCcAlgoLinkPin)) {
    if (auto algo = CcAlgorithm::load(&pins)) unregister_algorithm(**algo);
  }
  pins.remove();
}

}  // namespace sluice
