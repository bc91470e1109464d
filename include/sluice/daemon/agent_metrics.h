// Metrics providers for the agent's components (docs/metrics.md names every series).
#pragma once

#include <sluice/conntrack/conntrack.h>
#include <sluice/health/health.h>
#include <sluice/metrics/metrics.h>

#include <vector>

namespace sluice {

// ConntrackStats -> sluice_conntrack_*. `ct` must outlive the provider.
MetricsRegistry::Provider conntrack_metrics(const ConntrackManager& ct,
                                            const ConntrackManager& pending);
// The host-flows ConntrackManager (HostTracker::expiry()) -> sluice_host_flows*. `ct` must
// outlive the provider.
MetricsRegistry::Provider host_flow_metrics(const ConntrackManager& ct);
// HealthStats -> sluice_backend_up, sluice_health_check*. `labels` = backend_labels(cfg),
// indexed by backend id like the checker's targets. `hc` must outlive the provider.
MetricsRegistry::Provider health_metrics(const HealthChecker& hc,
                                         std::vector<BackendLabels> labels);

}  // namespace sluice
