// `sluicectl vips` and `sluicectl stats`: the configured VIPs and the traffic counters, read
// from the pinned maps, as JSON (the documented shapes of `-o json`) and as text rendered from
// that same JSON, so that the two outputs cannot disagree.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <sluice/core/net.h>
#include <sluice/ctl/ctl.h>

#include <cctype>

namespace sluice {

using nlohmann::json;

namespace {

// What the agent recorded of a backend: retired (removed, finishing its flows), down (failed
// its health check), drained (by the operator), else up.
// In this order: a retired backend may also be down or drained, and retired is what matters
// (no ring holds it).
const char* backend_state_name(uint8_t flags) {
  if (flags & SL_BACKEND_F_RETIRED) return "retired";
  if (flags & SL_BACKEND_F_DOWN) return "down";
  if (flags & SL_BACKEND_F_DRAINED) return "drained";
  return "up";
}

json backend_json(const BackendView& b, const sl_vip& vip) {
  return {{"id", b.id},
          {"address", format_ip(b.be.ep.addr, b.be.ep.family)},
          {"port", ntohs(b.be.ep.port)},
          {"endpoint", format_endpoint(b.be.ep)},
          {"weight", b.be.weight},
          {"forward", vip.mode == SL_MODE_NAT ? "nat" : "dsr"},
          {"state", backend_state_name(b.be.flags)}};
}

// ADDRESS:PORT: a backend's protocol is its VIP's, which the row names.
std::string endpoint_no_proto(const sl_endpoint& ep) {
  std::string s = format_endpoint(ep);
  return s.substr(0, s.rfind('/'));
}

}  // namespace

Result<json> vips_json(const PinnedMaps& pm) {
  auto vips = read_vips(pm.fds(), pm.info().max_backends);
  if (!vips) return vips.error();
  json out = json::array();
  for (const VipView& v : *vips) {
    json backends = json::array();
    for (const BackendView& b : v.backends) backends.push_back(backend_json(b, v.vip));
    out.push_back({{"vip", format_endpoint(v.key)},
                   {"vip_id", v.vip.vip_id},
                   {"address", format_ip(v.key.addr, v.key.family)},
                   {"port", ntohs(v.key.port)},
                   {"protocol", proto_name(v.key.proto)},
                   {"mode", mode_name(v.vip.mode)},
                   {"scheduler", sched_name(v.vip.sched)},
                   {"hash_source_port", (v.vip.flags & SL_VIP_F_HASH_SPORT) != 0},
                   {"backends", backends}});
  }
  return out;
}

Result<json> stats_json(const PinnedMaps& pm) {
  const MapFds& f = pm.fds();
  // Sized by `info`, not by a config: sluicectl reads the maps of whatever data path is pinned.
  auto vips = read_vips(f, pm.info().max_backends);
  if (!vips) return vips.error();
  auto vs = read_traffic(f.vip_stats, pm.info().max_vips);
  if (!vs) return vs.error();
  auto bs = read_traffic(f.backend_stats, pm.info().max_backends);
  if (!bs) return bs.error();
  auto verdicts = read_counters(f.verdicts, SL_VERDICT_MAX);
  if (!verdicts) return verdicts.error();
  auto drops = read_counters(f.drops, SL_DROP_MAX);
  if (!drops) return drops.error();
  auto passes = read_counters(f.passes, SL_PASS_MAX);
  if (!passes) return passes.error();
  auto ct_stats = read_u64_counters(f.ct_stats, SL_CT_STAT_MAX);
  if (!ct_stats) return ct_stats.error();

  json jv = json::array(), jb = json::array();
  for (const VipView& v : *vips) {
    const sl_traffic& t = (*vs)[v.vip.vip_id];
    jv.push_back({{"vip", format_endpoint(v.key)},
                  {"vip_id", v.vip.vip_id},
                  {"packets", t.packets},
                  {"bytes", t.bytes},
                  {"new_flows", t.new_flows}});
    for (const BackendView& b : v.backends) {
      const sl_traffic& bt = (*bs)[b.id];
      jb.push_back({{"backend_id", b.id},
                    {"vip", format_endpoint(v.key)},
                    {"address", endpoint_no_proto(b.be.ep)},
                    {"weight", b.be.weight},
                    {"packets", bt.packets},
                    {"bytes", bt.bytes},
                    {"new_flows", bt.new_flows}});
    }
  }
  auto counters = [](const std::vector<sl_counter>& c, const char* (*name)(uint32_t)) {
    json o = json::object();
    for (uint32_t i = 0; i < c.size(); ++i)
      o[name(i)] = {{"packets", c[i].packets}, {"bytes", c[i].bytes}};
    return o;
  };
  json jverd = json::object();
  for (uint32_t i = 0; i < SL_VERDICT_MAX; ++i) jverd[verdict_name(i)] = (*verdicts)[i].packets;
  // The data path's conntrack counters (enum sl_ct_stat): full table, resets, races...
  json jct = json::object();
  for (uint32_t i = 0; i < SL_CT_STAT_MAX; ++i) jct[ct_stat_name(i)] = (*ct_stats)[i];
  return json{{"generation", pm.info().generation},
              {"vips", jv},
              {"backends", jb},
              {"verdicts", jverd},
              {"drops", counters(*drops, drop_reason_name)},
              {"passes", counters(*passes, pass_reason_name)},
              {"conntrack", jct}};
}

std::string vips_text(const json& vips) {
  // ipvsadm -Ln layout, which operators read at a glance.
  std::string s = fmt::format("{:<5} {:<34} {:<12} {}\n", "Prot", "VIP", "Scheduler", "Mode");
  s += fmt::format("  -> {:<38} {:<8} {:<7} {}\n", "Backend", "Forward", "Weight", "State");
  for (const json& v : vips) {
    std::string proto = v["protocol"].get<std::string>();
    for (auto& c : proto) c = static_cast<char>(toupper(c));
    std::string vip = v["vip"].get<std::string>();
    vip = vip.substr(0, vip.rfind('/'));
    std::string sched = v["scheduler"].get<std::string>();
    if (v["hash_source_port"].get<bool>()) sched += "+port";
    s += fmt::format("{:<5} {:<34} {:<12} {}\n", proto, vip, sched, v["mode"].get<std::string>());
    for (const json& b : v["backends"]) {
      std::string ep = b["endpoint"].get<std::string>();
      s += fmt::format("  -> {:<38} {:<8} {:<7} {}\n", ep.substr(0, ep.rfind('/')),
                       b["forward"].get<std::string>(), b["weight"].get<int>(),
                       b.value("state", "up"));
    }
  }
  return s;
}

std::string stats_text(const json& st) {
  std::string s = fmt::format("{:<40} {:>12} {:>14} {:>10}\n", "VIP / backend", "packets", "bytes",
                              "new_flows");
  for (const json& v : st["vips"]) {
    s += fmt::format("{:<40} {:>12} {:>14} {:>10}\n", v["vip"].get<std::string>(),
                     v["packets"].get<uint64_t>(), v["bytes"].get<uint64_t>(),
                     v["new_flows"].get<uint64_t>());
    for (const json& b : st["backends"]) {
      if (b["vip"] != v["vip"]) continue;
      s += fmt::format("  -> {:<36} {:>12} {:>14} {:>10}\n", b["address"].get<std::string>(),
                       b["packets"].get<uint64_t>(), b["bytes"].get<uint64_t>(),
                       b["new_flows"].get<uint64_t>());
    }
  }
  s += "\nverdicts:";
  for (auto& [k, v] : st["verdicts"].items()) s += fmt::format(" {}={}", k, v.get<uint64_t>());
  for (const char* section : {"drops", "passes"}) {
    s += fmt::format("\n{}:", section);
    bool any = false;
    for (auto& [k, v] : st[section].items()) {
      if (v["packets"].get<uint64_t>() == 0) continue;
      s += fmt::format(" {}={}", k, v["packets"].get<uint64_t>());
      any = true;
    }
    if (!any) s += " none";
  }
  if (st.contains("conntrack")) {
    s += "\nconntrack:";
    bool any = false;
    for (auto& [k, v] : st["conntrack"].items()) {
      if (v.get<uint64_t>() == 0) continue;
      s += fmt::format(" {}={}", k, v.get<uint64_t>());
      any = true;
    }
    if (!any) s += " none";
  }
  return s + "\n";
}

}  // namespace sluice
