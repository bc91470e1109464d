// A bulk TCP transfer between two namespaces, for the congestion control tests and benchmarks:
// one connection, the sender selecting an algorithm, optionally traced through the sender's
// TCP_INFO by a thread that polls it as fast as it can.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "netns.h"

namespace sluice::test {

// The kernel's enum tcp_ca_state (include/net/tcp.h), the values of tcpi_ca_state.
inline constexpr uint8_t kCaOpen = 0, kCaDisorder = 1, kCaCwr = 2, kCaRecovery = 3, kCaLoss = 4;

// One TCP_INFO reading of the sender, recorded when cwnd, ssthresh or the state changed.
struct CcSample {
  int64_t t_us;        // since connect()
  uint32_t cwnd;       // segments
  uint32_t ssthresh;   // segments
  uint32_t delivered;  // segments delivered (acked or sacked) so far
  uint8_t state;       // kCa*
};

struct BulkResult {
  std::string error;  // empty on success
  uint64_t received = 0;
  double seconds = 0;    // connect() to the receiver's EOF
  uint32_t retrans = 0;  // the sender's tcpi_total_retrans at the end
  std::vector<CcSample> trace;
  uint64_t polls = 0;  // TCP_INFO readings taken by the tracer
  double mbytes_per_s() const { return seconds > 0 ? received / seconds / 1e6 : 0; }
};

struct BulkOptions {
  bool trace = false;  // poll the sender's TCP_INFO into BulkResult::trace
  // Run the sending and receiving threads as SCHED_FIFO (root), so that a throughput figure
  // is not decided by the other processes of a shared machine. The caller's own policy is
  // restored before returning.
  bool realtime = false;
};

// Sends `bytes` from `snd` to a listener at rcv_addr (IPv4, in `rcv`) over one connection
// whose sender uses congestion control `cc`. Times out after 30 s without progress.
BulkResult bulk_transfer(const NetNs& snd, const NetNs& rcv, const std::string& rcv_addr,
                         const std::string& cc, uint64_t bytes, BulkOptions opts);

}  // namespace sluice::test
