// The congestion-control metrics (sluice_cc_*, docs/metrics.md): a provider that reads the cc
// maps on every scrape, like the data path's.
#pragma once

#include <sluice/cc/cc_maps.h>
#include <sluice/metrics/metrics.h>

#include <vector>

namespace sluice {

// Per rule: connections applied and failed, failures per setting, untracked connections, and
// the srtt and retransmit histograms of closed connections; the live connections of cc_conns
// by algorithm; sluice_aimd's users when `fds.algo_users` is open. Rules are labelled by
// name, each once (ids that share a name are summed). `fds` must stay open while the
// provider is registered (PinnedCcMaps::fds(), or the loaded policy's).
MetricsRegistry::Provider cc_metrics_provider(CcMapFds fds);

// The finite bucket bounds of the two histograms, as the ABI defines the buckets: srtt in
// seconds, 2^(i + SL_CC_SRTT_SHIFT) us for i < SL_CC_SRTT_BUCKETS - 1; retransmits 0, 1, 3,
// 7, .., 2^(SL_CC_RETRANS_BUCKETS - 2) - 1. The last bucket of each is +Inf.
std::vector<double> cc_srtt_bounds_seconds();
std::vector<double> cc_retransmit_bounds();

}  // namespace sluice
