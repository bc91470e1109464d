// The providers that turn the agent's components' snapshots into metric families
// (docs/metrics.md). They live with the daemon, not with their components, so that conntrack
// and health need not link the metrics library: the daemon is the one place that knows both
// sides. Each provider captures its component by reference, which must outlive the
// provider's registration (agent_metrics.h).
#include <sluice/core/net.h>
#include <sluice/daemon/agent_metrics.h>

namespace sluice {

namespace {

const char* state_label(size_t slot) {
  return slot < SL_TCP_STATE_MAX ? tcp_state_name(static_cast<uint8_t>(slot)) : "unknown";
}

// One sample per state slot (ct_state_slot) but `none`, zeros included, so that a dashboard's
// series exist before the first flow reaches that state; `unknown` (a state this agent has no
// name for) only when non-zero.
void per_state(MetricsWriter& w, const std::array<uint64_t, kCtStateSlots>& v) {
  for (size_t i = 1; i < kCtStateSlots; ++i)
    if (i < SL_TCP_STATE_MAX || v[i]) w.sample({{"state", state_label(i)}}, v[i]);
}

}  // namespace

// Conntrack: ConntrackStats -> sluice_conntrack_*.
MetricsRegistry::Provider conntrack_metrics(const ConntrackManager& ct,
                                            const ConntrackManager& pending) {
  return [&ct, &pending](MetricsWriter& w) -> Status {
    const ConntrackStats s = ct.snapshot();
    const ConntrackStats p = pending.snapshot();
    w.family("sluice_conntrack_entries",
             "Confirmed TCP flows (the conntrack table) by state, as of the last complete "
             "sweep.",
             MetricType::kGauge);
    per_state(w, s.entries);
    w.family("sluice_conntrack_pending_entries",
             "Unconfirmed and finished TCP flows (ct_pending, evicted first when full) by "
             "state, as of the last complete sweep.",
             MetricType::kGauge);
    per_state(w, p.entries);
    w.family("sluice_conntrack_expiries_total",
             "Conntrack entries removed by their state's timeout, by the state they were in.",
             MetricType::kCounter);
    per_state(w, s.expired);
    w.family("sluice_conntrack_transitions_total",
             "Notable TCP state transitions reported by the data path (ct_events); a pair "
             "appears at its first transition.",
             MetricType::kCounter);
    for (size_t f = 0; f < kCtStateSlots; ++f)
      for (size_t t = 0; t < kCtStateSlots; ++t)
        if (s.transitions[f][t])
          w.sample({{"from", state_label(f)}, {"to", state_label(t)}}, s.transitions[f][t]);
    w.family("sluice_conntrack_sweep_errors_total",
             "Conntrack map operations of the expiry sweep that failed (see the log).",
             MetricType::kCounter);
    w.sample({}, s.errors);
    return {};
  };
}

// Host flows: the host_flows sweep's ConntrackStats -> sluice_host_flow*.
MetricsRegistry::Provider host_flow_metrics(const ConntrackManager& ct) {
  return [&ct](MetricsWriter& w) -> Status {
    const ConntrackStats s = ct.snapshot();
    w.family("sluice_host_flows",
             "The host's own TCP connections on the tracked interfaces, by state, as of the "
             "last complete sweep of host_flows.",
             MetricType::kGauge);
    per_state(w, s.entries);
    w.family("sluice_host_flow_expiries_total",
             "host_flows entries removed by their state's timeout, by the state they were in.",
             MetricType::kCounter);
    per_state(w, s.expired);
    w.family("sluice_host_flow_sweep_errors_total",
             "host_flows map operations of the expiry sweep that failed (see the log).",
             MetricType::kCounter);
    w.sample({}, s.errors);
    return {};
  };
}

// Health checks: HealthStats -> sluice_backend_up, sluice_health_check*.
// `labels` = backend_labels(cfg), indexed by backend id like the checker's targets.
MetricsRegistry::Provider health_metrics(const HealthChecker& hc,
                                         std::vector<BackendLabels> labels) {
  return [&hc, labels = std::move(labels)](MetricsWriter& w) -> Status {
    const HealthStats s = hc.snapshot();
    auto lbl = [&](const BackendHealth& b) -> const BackendLabels* {
      return b.backend_id < labels.size() && !labels[b.backend_id].vip.empty()
                 ? &labels[b.backend_id]
                 : nullptr;
    };
    w.family("sluice_backend_up",
             "1 if the backend passes its health check (it receives new flows), else 0.",
             MetricType::kGauge);
    for (const BackendHealth& b : s.backends)
      if (auto* l = lbl(b)) w.sample({{"vip", l->vip}, {"backend", l->backend}}, b.up);
    w.family("sluice_health_checks_total", "Completed health checks, by result.",
             MetricType::kCounter);
    for (const BackendHealth& b : s.backends) {
      if (auto* l = lbl(b)) {
        w.sample({{"vip", l->vip}, {"backend", l->backend}, {"result", "success"}},
                 b.checks - b.failures);
        w.sample({{"vip", l->vip}, {"backend", l->backend}, {"result", "failure"}}, b.failures);
      }
    }
    w.family("sluice_health_check_duration_seconds",
             "Time from the start of a successful health check to its result.",
             MetricType::kHistogram);
    for (const BackendHealth& b : s.backends) {
      if (auto* l = lbl(b)) {
        w.histogram(
            {{"vip", l->vip}, {"backend", l->backend}, {"type", health_check_type_name(b.type)}},
            LatencyHistogram::kBoundsSeconds, b.latency.cumulative, b.latency.count,
            b.latency.sum_seconds);
      }
    }
    w.family("sluice_health_checks_in_flight", "Health checks running now (one socket each).",
             MetricType::kGauge);
    w.sample({}, s.in_flight);
    return {};
  };
}

}  // namespace sluice
