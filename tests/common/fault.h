// The fault injector (bpf/tc_fault.bpf.c): drops packets on purpose on one interface, at random
// (parts per million) or every nth, optionally only TCP segments with payload. This kernel has
// no netem; tests and benchmarks of congestion control use this instead. Never attached by
// sluiced.
//
// Where to attach: on the receiver's side of a link (tcx ingress of the interface the data
// arrives on), where a drop is a loss on the wire. A drop on the sender's own egress is not:
// the kernel returns NET_XMIT_DROP to TCP, which keeps the segment queued and enters CWR
// (a local congestion signal) instead of seeing a loss.
#pragma once

#include <sluice/abi/fault.h>
#include <sluice/core/fd.h>
#include <sluice/core/result.h>

#include <cstdint>
#include <memory>
#include <string>

struct tc_fault_bpf;

namespace sluice::test {

class FaultInjector {
 public:
  enum class Hook { kIngress, kEgress };

  // Loads tc_fault and attaches it as a tcx link to `ifname` of the calling thread's network
  // namespace (call it inside NetNs::in), first in the chain. It starts with mode off.
  static Result<std::unique_ptr<FaultInjector>> attach(const std::string& ifname, Hook hook);
  // Detaches (the link is not pinned) and unloads.
  ~FaultInjector();
  FaultInjector(const FaultInjector&) = delete;
  FaultInjector& operator=(const FaultInjector&) = delete;

  // Drops each eligible packet with probability ppm / 1e6.
  Status drop_random(uint32_t ppm, bool tcp_payload_only = true);
  // Drops the nth, 2nth, ... eligible packet (n >= 1), counted from the last reset_stats().
  Status drop_every(uint32_t n, bool tcp_payload_only = true);
  // Lets every packet pass (still counted as seen).
  Status off();
  Result<sl_fault_stats> stats() const;
  Status reset_stats();

 private:
  FaultInjector() = default;
  Status configure(const sl_fault_config& c);
  tc_fault_bpf* skel_ = nullptr;
  UniqueFd link_;
};

}  // namespace sluice::test
