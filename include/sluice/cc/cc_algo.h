// sluice_aimd, our congestion control (bpf/cc_aimd.bpf.c): the classic rules (slow start,
// AIMD, fast retransmit and fast recovery, RTO back to one segment) as a BPF
// tcp_congestion_ops, registered under SL_CC_OURS through a struct_ops link. While it is
// registered any socket may select it (setsockopt TCP_CONGESTION, or a `congestion` rule).
//
// Lifetime (docs/design.md, "Congestion control"):
//  - with a pin directory the link is pinned (kCcAlgoLinkPin), so it stays registered when
//    sluiced exits; a new sluiced adopts the pin and swaps this build's program in
//    (BPF_LINK_UPDATE), so there is never a moment without it;
//  - the count of sockets using it (kCcAlgoUsersPin: init adds one, release takes it back) is
//    a pinned map both builds share;
//  - unregister_if_unused() (--detach-on-exit) removes the link only when no socket uses it.
#pragma once

#include <sluice/abi/cc.h>
#include <sluice/bpf/pin_dir.h>
#include <sluice/core/fd.h>
#include <sluice/core/result.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

struct cc_aimd_bpf;

namespace sluice {

class CcAlgorithm {
 public:
  // Loads cc_aimd and registers it. `pins` (the cc pin directory, kCcPinSubdir) may be null:
  // then nothing is pinned and destroying the object unregisters it (tests). `name` (at most
  // 15 characters) registers it under another name than SL_CC_OURS: names are kernel-wide,
  // so tests take their own and never meet a running sluiced's.
  static Result<std::unique_ptr<CcAlgorithm>> load(PinDir* pins,
                                                   const std::string& name = SL_CC_OURS);
  // Without pins: unregisters. With pins: closes its descriptors and leaves the pins (the
  // algorithm stays registered), unless unregister_if_unused() removed them.
  ~CcAlgorithm();
  CcAlgorithm(const CcAlgorithm&) = delete;
  CcAlgorithm& operator=(const CcAlgorithm&) = delete;

  // The name it is registered under.
  const std::string& name() const { return name_; }
  // True when load() found a pinned link and swapped this build's program into it.
  bool adopted() const { return adopted_; }
  // Sockets that use sluice_aimd now.
  Result<uint64_t> users() const;
  // The count's map (cc_algo_users), for readers such as the metrics.
  int users_fd() const;
  // Unpins and closes the link (the kernel unregisters sluice_aimd) when no socket uses it;
  // otherwise leaves it registered and pinned, and the error says how many sockets hold it.
  Status unregister_if_unused();

 private:
  CcAlgorithm() = default;
  Status open();
  // load()'s two ways to register the loaded map (`map_fd`): into the pinned link, or a new
  // link (pinned with the users map when there are pins).
  Status adopt(int map_fd, bool have_users);
  Status register_link(int map_fd);
  cc_aimd_bpf* skel_ = nullptr;
  std::string name_;
  std::vector<char> elf_;  // the object renamed for `name`, read by libbpf until load
  UniqueFd link_;
  PinDir* pins_ = nullptr;
  bool adopted_ = false;
};

}  // namespace sluice
