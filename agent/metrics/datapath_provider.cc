// The data-path provider: the maps' counters and the configured VIPs and backends as metric
// families (docs/metrics.md), and the labels other providers use for backend ids. Apart from
// the exposition (metrics.cc) because it is the only part of the metrics component that reads
// kernel maps; the writer and the registry need none.
#include <arpa/inet.h>
#include <bpf/bpf.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sluice/config/config.h"
#include "sluice/core/net.h"
#include "sluice/metrics/metrics.h"

namespace sluice {

VipNames vip_names(const Config& cfg) {
  VipNames names;
  for (const VipConfig& v : cfg.vips) {
    if (v.name.empty()) continue;
    names[format_endpoint(vip_endpoint(v))] = v.name;
  }
  return names;
}

namespace {

// One scrape's copy of the data-path maps. Everything is read before anything is written: a
// failed read then returns before the provider has written a family, instead of relying on
// the registry's rollback to hide half a provider.
struct DatapathSnapshot {
  sl_info info{};
  std::vector<VipView> vips;
  std::vector<sl_traffic> vip_stats;
  std::vector<sl_traffic> backend_stats;
  std::vector<sl_counter> verdicts;
  std::vector<sl_counter> drops;
  std::vector<sl_counter> passes;
  std::vector<uint64_t> ct_stats;
  uint64_t one_sided = 0;  // ct_one_sided[0]
};

// The map's name in the error: the errno alone would not say which of eight reads failed.
template <class T>
Status take(Result<T> r, T& out, const char* map) {
  if (!r) return Error{r.error().code, std::string("read map '") + map + "'"};
  out = std::move(*r);
  return {};
}

Result<DatapathSnapshot> read_datapath(const MapFds& fds) {
  DatapathSnapshot d;
  // `info` sizes every other read, and read_info/read_vips name their maps themselves.
  auto info = read_info(fds.info);
  if (!info) return info.error();
  d.info = *info;
  auto vips = read_vips(fds, d.info.max_backends);
  if (!vips) return vips.error();
  d.vips = std::move(*vips);
  // Each read only if all before it succeeded: the first failure is the one reported.
  Status s = take(read_traffic(fds.vip_stats, d.info.max_vips), d.vip_stats, "vip_stats");
  if (s)
    s = take(read_traffic(fds.backend_stats, d.info.max_backends), d.backend_stats,
             "backend_stats");
  if (s) s = take(read_counters(fds.verdicts, SL_VERDICT_MAX), d.verdicts, "verdicts");
  if (s) s = take(read_counters(fds.drops, SL_DROP_MAX), d.drops, "drops");
  if (s) s = take(read_counters(fds.passes, SL_PASS_MAX), d.passes, "passes");
  if (s) s = take(read_u64_counters(fds.ct_stats, SL_CT_STAT_MAX), d.ct_stats, "ct_stats");
  if (!s) return s.error();
  const uint32_t zero = 0;
  if (bpf_map_lookup_elem(fds.ct_one_sided, &zero, &d.one_sided) != 0)
    return sys_error("read map 'ct_one_sided'");
  return d;
}

// A VIP's or backend's series, labelled as docs/metrics.md documents them. A backend row
// points into its VIP's row (`vip`), so the VIP rows must not move once backend rows exist.
struct VipRow {
  std::string vip;
  const VipView* view;
  sl_traffic t;
};
struct BackendRow {
  std::string_view vip;
  std::string backend;
  uint16_t weight;
  sl_traffic t;
};

// Traffic is indexed by id: an id past the stats map (never expected: the agent sizes both
// from `info`) reads as zero traffic rather than failing the whole scrape.
std::vector<VipRow> vip_rows(const DatapathSnapshot& d) {
  std::vector<VipRow> rows;
  for (const VipView& v : d.vips) {
    const uint32_t id = v.vip.vip_id;
    rows.push_back(
        {format_endpoint(v.key), &v, id < d.vip_stats.size() ? d.vip_stats[id] : sl_traffic{}});
  }
  return rows;
}

std::vector<BackendRow> backend_rows(const DatapathSnapshot& d, const std::vector<VipRow>& vips) {
  std::vector<BackendRow> rows;
  for (const VipRow& r : vips) {
    for (const BackendView& b : r.view->backends) {
      const sl_traffic t = b.id < d.backend_stats.size() ? d.backend_stats[b.id] : sl_traffic{};
      rows.push_back({r.vip, format_host_port(b.be.ep.addr, b.be.ep.family, ntohs(b.be.ep.port)),
                      b.be.weight, t});
    }
  }
  return rows;
}

void write_vips(MetricsWriter& w, const std::vector<VipRow>& rows, const VipNames& names) {
  w.family("sluice_vip_info",
           "One series per configured VIP, value 1, carrying its name, mode and scheduler.",
           MetricType::kGauge);
  for (const VipRow& r : rows) {
    auto it = names.find(r.vip);
    w.sample({{"vip", r.vip},
              {"name", it == names.end() ? std::string_view() : it->second},
              {"mode", mode_name(r.view->vip.mode)},
              {"scheduler", sched_name(r.view->vip.sched)}},
             1);
  }
  auto vip_family = [&](const char* name, const char* help, __u64 sl_traffic::*field) {
    w.family(name, help, MetricType::kCounter);
    for (const VipRow& r : rows) w.sample({{"vip", r.vip}}, r.t.*field);
  };
  vip_family("sluice_vip_packets_total", "Client packets to the VIP that a backend was chosen for.",
             &sl_traffic::packets);
  vip_family("sluice_vip_bytes_total",
             "Bytes of the packets in sluice_vip_packets_total (whole frames as received).",
             &sl_traffic::bytes);
  vip_family("sluice_vip_new_flows_total", "TCP flows of the VIP that got a new conntrack entry.",
             &sl_traffic::new_flows);
}

void write_backends(MetricsWriter& w, const std::vector<BackendRow>& rows) {
  w.family("sluice_backend_weight",
           "Configured weight of the backend; 0 means drained (no new flows).", MetricType::kGauge);
  for (const BackendRow& r : rows) w.sample({{"vip", r.vip}, {"backend", r.backend}}, r.weight);
  auto be_family = [&](const char* name, const char* help, __u64 sl_traffic::*field) {
    w.family(name, help, MetricType::kCounter);
    for (const BackendRow& r : rows) w.sample({{"vip", r.vip}, {"backend", r.backend}}, r.t.*field);
  };
  be_family("sluice_backend_packets_total", "Client packets sent towards the backend.",
            &sl_traffic::packets);
  be_family("sluice_backend_bytes_total",
            "Bytes of the packets in sluice_backend_packets_total (whole frames as received).",
            &sl_traffic::bytes);
  be_family("sluice_backend_new_flows_total",
            "TCP flows that got a new conntrack entry pointing to the backend.",
            &sl_traffic::new_flows);
}

// Drops, passes and verdicts: one series per code, zeros included, so that a rate() over a
// reason that has never happened yet is 0 rather than absent.
void write_codes(MetricsWriter& w, const DatapathSnapshot& d) {
  auto code_family = [&](const char* name, const char* help, const char* label,
                         const std::vector<sl_counter>& c, const char* (*code_name)(uint32_t),
                         __u64 sl_counter::*field) {
    w.family(name, help, MetricType::kCounter);
    for (uint32_t i = 0; i < c.size(); ++i) w.sample({{label, code_name(i)}}, c[i].*field);
  };
  code_family("sluice_drops_total",
              "Packets addressed to a VIP that the data path dropped, by reason.", "reason",
              d.drops, drop_reason_name, &sl_counter::packets);
  code_family("sluice_drop_bytes_total", "Bytes of the packets in sluice_drops_total.", "reason",
              d.drops, drop_reason_name, &sl_counter::bytes);
  code_family("sluice_passes_total",
              "Packets handed to the kernel stack unchanged, by reason (not for a VIP, or "
              "for the kernel to resolve).",
              "reason", d.passes, pass_reason_name, &sl_counter::packets);
  code_family("sluice_pass_bytes_total", "Bytes of the packets in sluice_passes_total.", "reason",
              d.passes, pass_reason_name, &sl_counter::bytes);
  code_family("sluice_verdicts_total",
              "Packets seen by the XDP program, by the action it returned.", "verdict", d.verdicts,
              verdict_name, &sl_counter::packets);
  code_family("sluice_verdict_bytes_total", "Bytes of the packets in sluice_verdicts_total.",
              "verdict", d.verdicts, verdict_name, &sl_counter::bytes);
  w.family("sluice_conntrack_datapath_total",
           "Conntrack counters of the data path (ct_stats), by name: lost events, reuses, "
           "retransmitted handshakes, replies without an entry, flows forwarded untracked "
           "because the table was full, ...",
           MetricType::kCounter);
  for (uint32_t i = 0; i < d.ct_stats.size(); ++i)
    w.sample({{"counter", ct_stat_name(i)}}, d.ct_stats[i]);
  w.family("sluice_conntrack_one_sided_entries",
           "Entries of the conntrack table held by one-sided (dsr) flows, as the data path "
           "counts them (ct_one_sided): at most sluice_conntrack_one_sided_max.",
           MetricType::kGauge);
  w.sample({}, d.one_sided);
  w.family("sluice_conntrack_one_sided_max",
           "The budget of one-sided (dsr) flows in the conntrack table "
           "(conntrack.one_sided_max), as published to the data path.",
           MetricType::kGauge);
  w.sample({}, d.info.ct_one_sided_max);
}

}  // namespace

// Everything but the VIP names comes from the maps at scrape time; the names are not in the
// maps, so they are captured here, and the daemon registers a new provider with every applied
// config.
MetricsRegistry::Provider datapath_provider(MapFds fds, VipNames names) {
  return [fds, names = std::move(names)](MetricsWriter& w) -> Status {
    auto d = read_datapath(fds);
    if (!d) return d.error();
    w.family("sluice_config_generation",
             "Generation of the config the data path runs; bumped by every applied config.",
             MetricType::kGauge);
    w.sample({}, d->info.generation);
    const std::vector<VipRow> vips = vip_rows(*d);
    write_vips(w, vips, names);
    write_backends(w, backend_rows(*d, vips));
    write_codes(w, *d);
    return {};
  };
}

// By id, not by position: across reloads the data path keeps an unchanged backend's id (its
// flows and counters stay with it), so after the first reload positions and ids part ways.
std::vector<BackendLabels> backend_labels(const Config& cfg,
                                          const std::vector<std::vector<uint32_t>>& ids) {
  std::vector<BackendLabels> positional = backend_labels(cfg), out;
  std::size_t k = 0;
  for (std::size_t v = 0; v < cfg.vips.size(); ++v) {
    for (std::size_t b = 0; b < cfg.vips[v].backends.size(); ++b, ++k) {
      if (v >= ids.size() || b >= ids[v].size()) continue;
      const uint32_t id = ids[v][b];
      if (out.size() <= id) out.resize(id + 1);
      out[id] = positional[k];
    }
  }
  return out;
}

std::vector<BackendLabels> backend_labels(const Config& cfg) {
  std::vector<BackendLabels> out;
  for (const VipConfig& v : cfg.vips) {
    const std::string vip = format_endpoint(vip_endpoint(v));
    for (const BackendConfig& b : v.backends)
      out.push_back({vip, format_host_port(b.addr, b.family, b.port)});
  }
  return out;
}

}  // namespace sluice
