#include <arpa/inet.h>
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <sluice/ctl.h>
#include <sluice/net.h>

#include <cstdio>

namespace sluice {

using nlohmann::json;

namespace {

json backend_json(const BackendView& b, const sl_vip& vip) {
  return {{"id", b.id},
          {"address", format_ip(b.be.ep.addr, b.be.ep.family)},
          {"port", ntohs(b.be.ep.port)},
          {"endpoint", format_endpoint(b.be.ep)},
          {"weight", b.be.weight},
          {"forward", vip.mode == SL_MODE_NAT ? "nat" : "dsr"}};
}

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
  return json{{"generation", pm.info().generation},
              {"vips", jv},
              {"backends", jb},
              {"verdicts", jverd},
              {"drops", counters(*drops, drop_reason_name)},
              {"passes", counters(*passes, pass_reason_name)}};
}

std::string vips_text(const json& vips) {
  // ipvsadm -Ln layout, which operators read at a glance.
  std::string s = fmt::format("{:<5} {:<34} {:<12} {}\n", "Prot", "VIP", "Scheduler", "Mode");
  s += fmt::format("  -> {:<38} {:<8} {}\n", "Backend", "Forward", "Weight");
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
      s += fmt::format("  -> {:<38} {:<8} {}\n", ep.substr(0, ep.rfind('/')),
                       b["forward"].get<std::string>(), b["weight"].get<int>());
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
  return s + "\n";
}

int ctl_main(int argc, char** argv) {
  CLI::App app{"sluicectl: inspect the sluice data path (reads the pinned maps)"};
  app.require_subcommand(1);
  std::string pin_dir = kDefaultPinDir;
  std::string output = "text";
  app.add_option("--pin-dir", pin_dir, "bpffs directory of the pinned maps")->capture_default_str();
  app.add_option("-o,--output", output, "output format")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  auto* vips = app.add_subcommand("vips", "list VIPs and their backends (like ipvsadm -Ln)");
  auto* stats = app.add_subcommand("stats", "traffic per VIP and backend, verdicts, drops, passes");
  // CLI11 reports a mistyped command as a stray argument; name it and the valid ones.
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--pin-dir" || a == "-o" || a == "--output") {
      ++i;
      continue;
    }
    if (a.empty() || a[0] == '-') continue;
    if (a != "vips" && a != "stats") {
      std::fprintf(stderr, "sluicectl: unknown command '%s'; valid commands: vips, stats\n",
                   a.c_str());
      return 2;
    }
    break;
  }
  CLI11_PARSE(app, argc, argv);

  auto pm = PinnedMaps::open(pin_dir);
  if (!pm) {
    std::fprintf(stderr, "sluicectl: %s\n", pm.error().to_string().c_str());
    return 1;
  }
  Result<json> r = vips->parsed() ? vips_json(*pm) : stats_json(*pm);
  if (!r) {
    std::fprintf(stderr, "sluicectl: %s\n", r.error().to_string().c_str());
    return 1;
  }
  if (output == "json") {
    std::printf("%s\n", r->dump(2).c_str());
  } else {
    std::fputs((vips->parsed() ? vips_text(*r) : stats_text(*r)).c_str(), stdout);
  }
  (void)stats;
  return 0;
}

}  // namespace sluice
