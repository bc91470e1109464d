#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <fmt/format.h>
#include <sluice/api/api_server.h>
#include <sluice/conntrack/conntrack.h>
#include <sluice/ctl/ctl.h>
#include <sluice/core/net.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <tuple>
#include <unordered_map>

namespace sluice {

using nlohmann::json;

namespace {

// What the agent recorded of a backend: retired (removed, finishing its flows), down (failed
// its health check), drained (by the operator), else up.
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

// ---- conntrack -----------------------------------------------------------------------------

namespace {

std::string valid_states() {
  std::string out;
  for (uint8_t s = 0; s < SL_TCP_STATE_MAX; ++s)
    out += (s ? ", " : "") + std::string(tcp_state_name(s));
  return out;
}

std::optional<uint64_t> parse_u64(std::string_view text) {
  uint64_t v = 0;
  if (text.empty()) return std::nullopt;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return v;
}

// ADDR, ADDR:PORT (IPv4), [ADDR] or [ADDR]:PORT (IPv6; a bare IPv6 address has no port).
Result<ConntrackFilter::HostPort> parse_filter_endpoint(const std::string& option,
                                                        const std::string& text) {
  auto bad = [&](const std::string& why) {
    return Error{0, option + " '" + text + "': " + why +
                        "; expected ADDR or ADDR:PORT (IPv6 with a port: [ADDR]:PORT), "
                        "PORT in 1..65535"};
  };
  std::string addr = text, port;
  if (!text.empty() && text[0] == '[') {
    const std::size_t close = text.find(']');
    if (close == std::string::npos) return bad("no closing ']'");
    addr = text.substr(1, close - 1);
    const std::string rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest[0] != ':') return bad("unexpected '" + rest + "' after ']'");
      port = rest.substr(1);
      if (port.empty()) return bad("empty port");
    }
  } else if (std::count(text.begin(), text.end(), ':') == 1) {
    addr = text.substr(0, text.find(':'));
    port = text.substr(text.find(':') + 1);
    if (port.empty()) return bad("empty port");
  }
  const auto ip = parse_ip(addr);
  if (!ip) return bad("'" + addr + "' is not an IPv4 or IPv6 address");
  ConntrackFilter::HostPort hp;
  hp.addr = ip->first;
  hp.family = ip->second;
  if (!port.empty()) {
    const auto n = parse_u64(port);
    if (!n || *n < 1 || *n > 65535) return bad("'" + port + "' is not a port");
    hp.port = static_cast<uint16_t>(*n);
  }
  return hp;
}

bool same_addr(const sl_addr& a, uint8_t fa, const sl_addr& b, uint8_t fb) {
  return fa == fb && std::memcmp(&a, &b, sizeof(a)) == 0;
}

// One matching flow, with what its row needs.
struct CtRow {
  sl_flow_key key{};
  sl_ct_entry e{};
  sl_endpoint backend{};  // family 0: the backend id is no longer configured
  uint8_t mode = SL_MODE_NAT;
  bool pending = false;  // read from ct_pending: unconfirmed or finished
};


// The whole handshake as the LB saw it (the sum of the measured parts), or "-".
std::string rtt_text(const json& rtt) {
  double total = 0;
  bool any = false;
  for (const char* part : {"syn_synack", "synack_ack"}) {
    if (rtt.contains(part) && rtt[part].is_number()) {
      total += rtt[part].get<double>();
      any = true;
    }
  }
  if (!any) return "-";
  return total < 1000 ? fmt::format("{:.0f}us", total) : fmt::format("{:.1f}ms", total / 1000);
}

double seconds(uint64_t ns) { return std::round(static_cast<double>(ns) / 1e6) / 1e3; }

// "42s", "5m03s", "2h05m", "4d23h": the two leading units, like `ps` and `kubectl`.
std::string format_duration(double s) {
  const uint64_t t = static_cast<uint64_t>(s < 0 ? 0 : s);
  if (t < 60) return fmt::format("{}s", t);
  if (t < 3600) return fmt::format("{}m{:02}s", t / 60, t % 60);
  if (t < 86400) return fmt::format("{}h{:02}m", t / 3600, t % 3600 / 60);
  return fmt::format("{}d{:02}h", t / 86400, t % 86400 / 3600);
}

uint64_t age_ns(const sl_ct_entry& e, uint64_t now_ns) {
  return now_ns > e.first_seen_ns ? now_ns - e.first_seen_ns : 0;
}

// The filters that apply to every tracked flow, VIP or host: state and age.
bool matches_state_and_age(const ConntrackFilter& f, const sl_ct_entry& e, uint64_t now_ns) {
  if (f.state && e.state != *f.state) return false;
  return !f.older_than_s || age_ns(e, now_ns) > *f.older_than_s * 1000000000ull;
}

// The members every flow row has, VIP or host: times and handshake RTTs.
void add_times(json& row, const sl_ct_entry& e, const ConntrackTimeouts& timeouts,
               uint64_t now_ns, bool pending = false) {
  const uint64_t idle = now_ns > e.last_seen_ns ? now_ns - e.last_seen_ns : 0;
  row["age_s"] = seconds(age_ns(e, now_ns));
  row["idle_s"] = seconds(idle);
  row["expires_in_s"] = seconds(ct_expires_in_ns(e, timeouts, now_ns, pending));
  // Microseconds; null until measured.
  auto us = [](uint32_t ns) { return ns == 0 ? json(nullptr) : json(std::round(ns / 1e2) / 10); };
  row["rtt_us"] = {{"syn_synack", us(e.rtt_synack_ns)}, {"synack_ack", us(e.rtt_ack_ns)}};
}

std::string upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

// A table with a header line, columns two spaces apart and as wide as their widest cell
// (title included), no trailing blanks.
struct Col {
  const char* title;
  bool right;
};
template <std::size_t N>
std::string render_table(const Col (&cols)[N],
                         const std::vector<std::array<std::string, N>>& rows) {
  std::array<std::size_t, N> width{};
  for (std::size_t c = 0; c < N; ++c) {
    width[c] = std::strlen(cols[c].title);
    for (const auto& r : rows) width[c] = std::max(width[c], r[c].size());
  }
  auto line = [&](const std::array<std::string, N>& cells) {
    std::string s;
    for (std::size_t c = 0; c < N; ++c) {
      if (c) s += "  ";
      s += cols[c].right ? fmt::format("{:>{}}", cells[c], width[c])
                         : fmt::format("{:<{}}", cells[c], width[c]);
    }
    while (!s.empty() && s.back() == ' ') s.pop_back();
    return s + "\n";
  };
  std::array<std::string, N> titles;
  for (std::size_t c = 0; c < N; ++c) titles[c] = cols[c].title;
  std::string out = line(titles);
  for (const auto& r : rows) out += line(r);
  return out;
}

// The columns both listings end with: Age .. Bytes<, from a row made by add_times() with
// `packets` and `bytes` under the two direction names.
std::array<std::string, 8> time_and_traffic_cells(const json& f, const char* fwd, const char* rev) {
  return {format_duration(f["age_s"].get<double>()),
          format_duration(f["idle_s"].get<double>()),
          format_duration(f["expires_in_s"].get<double>()),
          rtt_text(f["rtt_us"]),
          std::to_string(f["packets"][fwd].get<uint64_t>()),
          std::to_string(f["bytes"][fwd].get<uint64_t>()),
          std::to_string(f["packets"][rev].get<uint64_t>()),
          std::to_string(f["bytes"][rev].get<uint64_t>())};
}

}  // namespace

Result<ConntrackFilter> parse_conntrack_filter(const std::string& state, const std::string& vip,
                                               const std::string& backend,
                                               const std::string& older_than) {
  ConntrackFilter f;
  if (!state.empty()) {
    std::string word = state;
    for (char& c : word) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    for (uint8_t s = 0; s < SL_TCP_STATE_MAX; ++s) {
      if (word == tcp_state_name(s)) f.state = s;
    }
    if (!f.state) {
      return Error{0, "--state '" + state + "': unknown state; valid states: " + valid_states()};
    }
  }
  if (!vip.empty()) {
    auto hp = parse_filter_endpoint("--vip", vip);
    if (!hp) return hp.error();
    f.vip = *hp;
  }
  if (!backend.empty()) {
    auto hp = parse_filter_endpoint("--backend", backend);
    if (!hp) return hp.error();
    f.backend = *hp;
  }
  if (!older_than.empty()) {
    const auto n = parse_u64(older_than);
    if (!n) {
      return Error{0, "--older-than '" + older_than +
                          "': expected a whole number of seconds (0 or more), e.g. 300"};
    }
    f.older_than_s = *n;
  }
  return f;
}

Result<json> conntrack_json(const PinnedMaps& pm, const ConntrackFilter& f,
                            const ConntrackTimeouts& timeouts, uint64_t now_ns) {
  const MapFds& fds = pm.fds();
  std::unordered_map<uint32_t, std::optional<sl_backend>> backends;
  std::unordered_map<uint32_t, uint8_t> modes;
  auto backend_of = [&](uint32_t id) -> const std::optional<sl_backend>& {
    auto [it, inserted] = backends.try_emplace(id);
    sl_backend be{};
    if (inserted && id < pm.info().max_backends &&
        bpf_map_lookup_elem(fds.backends, &id, &be) == 0 && (be.flags & SL_BACKEND_F_ACTIVE)) {
      it->second = be;
    }
    return it->second;
  };
  auto mode_of = [&](uint32_t vip_id) {
    auto [it, inserted] = modes.try_emplace(vip_id, SL_MODE_NAT);
    sl_vip_entry ve{};
    if (inserted && vip_id < pm.info().max_vips &&
        bpf_map_lookup_elem(fds.vip_table, &vip_id, &ve) == 0) {
      it->second = ve.vip.mode;
    }
    return it->second;
  };

  std::vector<CtRow> rows;
  bool pending = false;
  auto add_row = [&](const sl_flow_key& k, const sl_ct_entry& e) {
    if (!matches_state_and_age(f, e, now_ns)) return;
    if (f.vip && !(same_addr(k.dst, k.family, f.vip->addr, f.vip->family) &&
                   (f.vip->port == 0 || ntohs(k.dport) == f.vip->port))) {
      return;
    }
    CtRow row{k, e, {}, mode_of(e.vip_id), pending};
    if (const auto& be = backend_of(e.backend_id)) {
      row.backend = be->ep;
      // A port-0 backend (under a port-0 VIP) receives the port the client connected to.
      if (row.backend.port == 0) row.backend.port = k.dport;
    }
    if (f.backend &&
        !(row.backend.family != 0 &&
          same_addr(row.backend.addr, row.backend.family, f.backend->addr, f.backend->family) &&
          (f.backend->port == 0 || ntohs(row.backend.port) == f.backend->port))) {
      return;
    }
    rows.push_back(row);
  };
  // Confirmed flows, then the unconfirmed and finished ones (docs/design.md, "Trust no
  // packet"); a flow moving between the two during the read may show twice or not at all.
  if (auto s = for_each_ct_entry(fds.conntrack, "conntrack", add_row); !s) return s.error();
  pending = true;
  if (auto s = for_each_ct_entry(fds.ct_pending, "ct_pending", add_row); !s) return s.error();

  auto order = [](const CtRow& r) {
    return std::make_tuple(r.key.family, ntohl(r.key.dst.w[0]), ntohl(r.key.dst.w[1]),
                           ntohl(r.key.dst.w[2]), ntohl(r.key.dst.w[3]), ntohs(r.key.dport),
                           r.e.backend_id, ntohl(r.key.src.w[0]), ntohl(r.key.src.w[1]),
                           ntohl(r.key.src.w[2]), ntohl(r.key.src.w[3]), ntohs(r.key.sport));
  };
  std::sort(rows.begin(), rows.end(),
            [&](const CtRow& a, const CtRow& b) { return order(a) < order(b); });

  json out = json::array();
  for (const CtRow& r : rows) {
    const sl_flow_key& k = r.key;
    const sl_ct_entry& e = r.e;
    std::vector<std::string> flags = ct_flag_names(e.flags);
    // An open flow that has not shown it is a real client's: uncounted, evicted first.
    if (r.pending && e.state < SL_TCP_TIME_WAIT) flags.insert(flags.begin(), "unconfirmed");
    json row = {
        {"protocol", proto_name(k.proto)},
        {"state", tcp_state_name(e.state)},
        // dsr: the backend's replies bypass the LB, so the state machine sees one direction
        // and infers the rest (docs/design.md).
        {"inferred", (e.flags & SL_CT_F_ONE_SIDED) != 0},
        {"flags", flags},
        {"confirmed", !r.pending},
        {"mode", mode_name(r.mode)},
        {"client", format_host_port(k.src, k.family, ntohs(k.sport))},
        {"vip", format_host_port(k.dst, k.family, ntohs(k.dport))},
        {"vip_id", e.vip_id},
        {"backend", r.backend.family != 0
                        ? format_host_port(r.backend.addr, r.backend.family, ntohs(r.backend.port))
                        : "#" + std::to_string(e.backend_id)},
        {"backend_id", e.backend_id},
        {"packets", {{"original", e.packets[0]}, {"reply", e.packets[1]}}},
        {"bytes", {{"original", e.bytes[0]}, {"reply", e.bytes[1]}}},
    };
    // Handshake RTTs: nat: syn_synack is LB <-> backend (with the backend's accept),
    // synack_ack is LB <-> client. dsr: synack_ack spans the whole handshake as the client's
    // direction shows it (SYN -> ACK).
    add_times(row, e, timeouts, now_ns, r.pending);
    out.push_back(std::move(row));
  }
  return out;
}

json conntrack_summary_json(const json& flows) {
  json states = json::object();
  for (uint8_t s = 0; s < SL_TCP_STATE_MAX; ++s) states[tcp_state_name(s)] = 0;
  for (const json& f : flows) {
    const std::string st = f["state"].get<std::string>();
    states[st] = states.value(st, 0) + 1;
  }
  return {{"total", flows.size()}, {"states", states}};
}

std::string conntrack_text(const json& flows) {
  static constexpr Col kCols[] = {
      {"Pro", false},   {"State", false}, {"Client", false}, {"VIP", false}, {"Backend", false},
      {"Age", true},    {"Idle", true},   {"Expires", true}, {"RTT", true},  {"Pkts>", true},
      {"Bytes>", true}, {"Pkts<", true},  {"Bytes<", true}};
  constexpr std::size_t kN = std::size(kCols);
  std::vector<std::array<std::string, kN>> rows;
  for (const json& f : flows) {
    std::string state = f["state"].get<std::string>();
    if (f["inferred"].get<bool>()) state += " (inferred)";
    std::array<std::string, kN> r{upper(f["protocol"].get<std::string>()), state,
                                  f["client"].get<std::string>(), f["vip"].get<std::string>(),
                                  f["backend"].get<std::string>()};
    const auto tail = time_and_traffic_cells(f, "original", "reply");
    std::copy(tail.begin(), tail.end(), r.begin() + 5);
    rows.push_back(std::move(r));
  }
  return render_table(kCols, rows);
}

namespace {

// Host flows name who sent the first FIN from the host's side; the raw bits (INBOUND is
// `direction`, CLOSER_BACKEND is "the side that did not open") would read as VIP terms.
std::vector<std::string> host_flag_names(const sl_ct_entry& e) {
  std::vector<std::string> names =
      ct_flag_names(e.flags & ~(SL_CT_F_INBOUND | SL_CT_F_CLOSER_BACKEND));
  if (e.seen & (SL_CT_SEEN_FIN(0) | SL_CT_SEEN_FIN(1))) {
    const bool opener_closed = !(e.flags & SL_CT_F_CLOSER_BACKEND);
    const bool local_opened = !(e.flags & SL_CT_F_INBOUND);
    names.emplace_back(opener_closed == local_opened ? "closer_local" : "closer_peer");
  }
  return names;
}

}  // namespace

Result<json> host_flows_json(int host_flows_fd, const ConntrackFilter& f,
                             const ConntrackTimeouts& timeouts, uint64_t now_ns) {
  if (f.vip || f.backend) {
    return Error{0, "host flows have no VIP or backend; filter them by state or age"};
  }
  std::vector<std::pair<sl_flow_key, sl_ct_entry>> rows;
  auto s =
      for_each_ct_entry(host_flows_fd, "host_flows", [&](const sl_flow_key& k, const sl_ct_entry& e) {
        if (matches_state_and_age(f, e, now_ns)) rows.emplace_back(k, e);
      });
  if (!s) return s.error();
  // By local endpoint, then peer: the key is local -> peer.
  auto order = [](const sl_flow_key& k) {
    return std::make_tuple(k.family, ntohl(k.src.w[0]), ntohl(k.src.w[1]), ntohl(k.src.w[2]),
                           ntohl(k.src.w[3]), ntohs(k.sport), ntohl(k.dst.w[0]), ntohl(k.dst.w[1]),
                           ntohl(k.dst.w[2]), ntohl(k.dst.w[3]), ntohs(k.dport));
  };
  std::sort(rows.begin(), rows.end(),
            [&](const auto& a, const auto& b) { return order(a.first) < order(b.first); });

  json out = json::array();
  for (const auto& [k, e] : rows) {
    // Direction 0 is the opener's: the peer's when it opened (INBOUND).
    const bool inbound = e.flags & SL_CT_F_INBOUND;
    const int sent = inbound ? 1 : 0;
    json row = {
        {"protocol", proto_name(k.proto)},
        {"state", tcp_state_name(e.state)},
        {"direction", inbound ? "in" : "out"},
        {"flags", host_flag_names(e)},
        {"local", format_host_port(k.src, k.family, ntohs(k.sport))},
        {"peer", format_host_port(k.dst, k.family, ntohs(k.dport))},
        {"packets", {{"out", e.packets[sent]}, {"in", e.packets[sent ^ 1]}}},
        {"bytes", {{"out", e.bytes[sent]}, {"in", e.bytes[sent ^ 1]}}},
    };
    // Handshake RTTs: syn_synack is from the opener's SYN to the SYN+ACK, synack_ack from
    // there to the opener's ACK. Outbound, the first spans the network to the peer and back;
    // inbound, the second does.
    add_times(row, e, timeouts, now_ns);
    out.push_back(std::move(row));
  }
  return out;
}

std::string host_flows_text(const json& flows) {
  static constexpr Col kCols[] = {
      {"Pro", false},   {"State", false}, {"Dir", false},    {"Local", false}, {"Peer", false},
      {"Age", true},    {"Idle", true},   {"Expires", true}, {"RTT", true},    {"Pkts>", true},
      {"Bytes>", true}, {"Pkts<", true},  {"Bytes<", true}};
  constexpr std::size_t kN = std::size(kCols);
  std::vector<std::array<std::string, kN>> rows;
  for (const json& f : flows) {
    std::array<std::string, kN> r{upper(f["protocol"].get<std::string>()),
                                  f["state"].get<std::string>(), f["direction"].get<std::string>(),
                                  f["local"].get<std::string>(), f["peer"].get<std::string>()};
    const auto tail = time_and_traffic_cells(f, "out", "in");
    std::copy(tail.begin(), tail.end(), r.begin() + 5);
    rows.push_back(std::move(r));
  }
  return render_table(kCols, rows);
}

std::string conntrack_summary_text(const json& summary) {
  std::string s = fmt::format("{:<12} {:>10}\n", "State", "Flows");
  const json& states = summary["states"];
  // Handshake order, not the JSON object's alphabetical one; then names this build does not
  // know ("unknown").
  for (uint8_t st = 0; st < SL_TCP_STATE_MAX; ++st) {
    s += fmt::format("{:<12} {:>10}\n", tcp_state_name(st),
                     states.value(tcp_state_name(st), uint64_t{0}));
  }
  for (auto& [state, n] : states.items()) {
    bool known = false;
    for (uint8_t st = 0; st < SL_TCP_STATE_MAX; ++st) known |= state == tcp_state_name(st);
    if (!known) s += fmt::format("{:<12} {:>10}\n", state, n.get<uint64_t>());
  }
  return s + fmt::format("{:<12} {:>10}\n", "total", summary["total"].get<uint64_t>());
}

ConntrackTimeouts timeouts_from_info(const sl_info& info, ConntrackTimeouts fallback) {
  for (uint8_t st = 1; st < SL_TCP_STATE_MAX; ++st)
    if (info.ct_timeout_s[st] != 0) fallback.set_for_state(st, info.ct_timeout_s[st]);
  if (info.ct_timeout_s[SL_CT_TIMEOUT_UNCONFIRMED] != 0)
    fallback.unconfirmed = info.ct_timeout_s[SL_CT_TIMEOUT_UNCONFIRMED];
  return fallback;
}

namespace {

// Sends one request to the control API and prints the answer. 0: done; 1: refused or failed.
int api_command(const std::string& socket, const json& req, bool as_json) {
  auto line = api_call(socket, req.dump());
  if (!line) {
    std::fprintf(stderr, "sluicectl: %s\n", line.error().to_string().c_str());
    return 1;
  }
  json resp = json::parse(*line, nullptr, false);
  if (resp.is_discarded() || !resp.is_object()) {
    std::fprintf(stderr, "sluicectl: the control API answered something that is not JSON: %s\n",
                 line->c_str());
    return 1;
  }
  const bool ok = resp.value("ok", false);
  if (as_json) {
    std::printf("%s\n", resp.dump(2).c_str());
    return ok ? 0 : 1;
  }
  if (!ok) {
    if (resp.contains("error"))
      std::fprintf(stderr, "sluicectl: %s\n", resp["error"].get<std::string>().c_str());
    if (resp.contains("errors"))
      for (const auto& e : resp["errors"])
        std::fprintf(stderr, "%s\n", e.get<std::string>().c_str());
    if (req["cmd"] == "reload")
      std::fprintf(stderr, "sluicectl: reload rejected; generation %llu stays in force\n",
                   static_cast<unsigned long long>(resp.value("generation", 0ull)));
    return 1;
  }
  const std::string cmd = req["cmd"];
  if (cmd == "reload") {
    std::printf("reloaded: %s\n", resp.value("summary", "").c_str());
  } else if (cmd == "status") {
    std::printf("sluiced pid %d, config %s (generation %llu)%s\n%zu VIPs on", resp.value("pid", 0),
                resp.value("config", "").c_str(),
                static_cast<unsigned long long>(resp.value("generation", 0ull)),
                resp.value("adopted", false) ? ", took over a running data path" : "",
                resp.value("vips", static_cast<size_t>(0)));
    for (const auto& i : resp["interfaces"]) std::printf(" %s", i.get<std::string>().c_str());
    std::printf(", up %llds\n", static_cast<long long>(resp.value("uptime_seconds", 0ll)));
  } else {
    std::printf("backend %s of %s: %s done (generation %llu)\n", resp.value("backend", "").c_str(),
                resp.value("vip", "").c_str(), req["action"].get<std::string>().c_str(),
                static_cast<unsigned long long>(resp.value("generation", 0ull)));
  }
  return 0;
}

}  // namespace

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
  auto* conntrack =
      app.add_subcommand("conntrack", "list tracked TCP flows (like conntrack -L, ipvsadm -lnc)");
  // Taken as text and validated by parse_conntrack_filter(), whose messages say what is valid.
  std::string ct_state, ct_vip, ct_backend, ct_older_than, ct_timeouts_from;
  bool ct_summary = false, ct_host = false;
  conntrack->add_flag("--host", ct_host,
                      "the host's own TCP connections on the interfaces of the config's 'track' "
                      "section, instead of the VIP flows");
  conntrack->add_option("--state", ct_state, "only flows in this state (" + valid_states() + ")")
      ->type_name("STATE");
  conntrack
      ->add_option("--vip", ct_vip, "only flows to this VIP ([ADDR]:PORT for IPv6 with a port)")
      ->type_name("ADDR[:PORT]");
  conntrack
      ->add_option("--backend", ct_backend,
                   "only flows to this backend ([ADDR]:PORT for IPv6 with a port)")
      ->type_name("ADDR[:PORT]");
  conntrack
      ->add_option("--older-than", ct_older_than,
                   "only flows whose first packet is more than SECONDS old")
      ->type_name("SECONDS");
  conntrack
      ->add_option("--timeouts-from", ct_timeouts_from,
                   "the sluiced config whose conntrack timeouts 'expires' uses (default: "
                   "nf_conntrack's defaults)")
      ->type_name("CONFIG");
  conntrack->add_flag("--summary", ct_summary, "count the flows by state instead of listing them");

  // Commands that change the running agent go through its control API.
  std::string api_socket = "/run/sluice/sluiced.sock";
  app.add_option("--api-socket", api_socket,
                 "sluiced's control API socket (backend, reload, status)")
      ->capture_default_str();
  auto* backend = app.add_subcommand("backend", "change a backend of the running sluiced");
  backend->require_subcommand(1);
  std::string b_vip, b_addr;
  uint32_t b_weight = 1;
  struct Action {
    const char* name;
    const char* help;
  };
  const Action actions[] = {
      {"drain", "no new flows to the backend; established ones stay (weight kept)"},
      {"enable", "undo drain: the backend takes new flows again"},
      {"add", "add a backend to a VIP (until the next reload)"},
      {"remove", "remove a backend from a VIP (its established flows finish on it)"},
      {"weight", "set a backend's weight (until the next reload)"}};
  std::vector<CLI::App*> backend_cmds;
  for (const Action& a : actions) {
    auto* sub = backend->add_subcommand(a.name, a.help);
    sub->add_option("vip", b_vip, "the VIP: its name or ADDRESS:PORT/PROTOCOL (198.19.0.1:80/tcp)")
        ->required();
    sub->add_option("backend", b_addr, "ADDRESS:PORT ([V6]:PORT), or ADDRESS for the VIP's port")
        ->required();
    if (std::string(a.name) == "weight")
      sub->add_option("weight", b_weight, "0..65535")->required()->check(CLI::Range(0, 65535));
    if (std::string(a.name) == "add")
      sub->add_option("--weight", b_weight, "0..65535 (default 1)")->check(CLI::Range(0, 65535));
    sub->fallthrough();
    backend_cmds.push_back(sub);
  }
  auto* reload = app.add_subcommand("reload", "make sluiced re-read its config file (like SIGHUP)");
  auto* status = app.add_subcommand("status", "the running sluiced: pid, config generation, VIPs");

  // -o and --pin-dir also after the command: `sluicectl conntrack -o json`.
  for (CLI::App* sub : {vips, stats, conntrack, backend, reload, status}) sub->fallthrough();
  // CLI11 reports a mistyped command as a stray argument; name it and the valid ones.
  static const char* kCommands[] = {"vips", "stats", "conntrack", "backend", "reload", "status"};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--pin-dir" || a == "-o" || a == "--output" || a == "--api-socket") {
      ++i;
      continue;
    }
    if (a.empty() || a[0] == '-') continue;
    if (a == "backend") {
      // The action, likewise.
      for (int j = i + 1; j < argc; ++j) {
        std::string b = argv[j];
        if (b == "-o" || b == "--output" || b == "--pin-dir" || b == "--api-socket") {
          ++j;
          continue;
        }
        if (b.empty() || b[0] == '-') continue;
        bool known = false;
        for (const Action& act : actions) known |= b == act.name;
        if (!known) {
          std::fprintf(stderr,
                       "sluicectl: backend: unknown action '%s'; valid actions: drain, enable, "
                       "add, remove, weight\n",
                       b.c_str());
          return 2;
        }
        break;
      }
      break;
    }
    if (std::find(std::begin(kCommands), std::end(kCommands), a) == std::end(kCommands)) {
      std::fprintf(stderr,
                   "sluicectl: unknown command '%s'; valid commands: vips, stats, conntrack, "
                   "backend, reload, status\n",
                   a.c_str());
      return 2;
    }
    break;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help exits 0; every other parse error is a bad argument (exit 2, as documented).
    return app.exit(e) == 0 ? 0 : 2;
  }

  // Arguments are checked before the maps are opened: a typo is reported as such even while
  // sluiced is down.
  ConntrackFilter ct_filter;
  ConntrackTimeouts ct_timeouts;  // nf_conntrack's defaults
  if (conntrack->parsed()) {
    auto f = parse_conntrack_filter(ct_state, ct_vip, ct_backend, ct_older_than);
    if (!f) {
      std::fprintf(stderr, "sluicectl: %s\n", f.error().to_string().c_str());
      return 2;
    }
    ct_filter = *f;
    if (ct_host && (!ct_vip.empty() || !ct_backend.empty())) {
      std::fprintf(stderr,
                   "sluicectl: %s selects VIP flows, and host flows (--host) have no VIP or "
                   "backend; filter them with --state or --older-than\n",
                   !ct_vip.empty() ? "--vip" : "--backend");
      return 2;
    }
    if (!ct_timeouts_from.empty()) {
      ConfigResult cr = load_config_file(ct_timeouts_from);
      if (!cr.config) {
        for (const ConfigError& e : cr.errors) {
          std::fprintf(stderr, "%s\n", e.to_string().c_str());
        }
        std::fprintf(stderr, "sluicectl: --timeouts-from %s: config rejected\n",
                     ct_timeouts_from.c_str());
        return 2;
      }
      ct_timeouts = cr.config->conntrack_timeouts;
    }
  }

  if (backend->parsed() || reload->parsed() || status->parsed()) {
    json req;
    if (reload->parsed()) {
      req = {{"cmd", "reload"}};
    } else if (status->parsed()) {
      req = {{"cmd", "status"}};
    } else {
      for (CLI::App* sub : backend_cmds)
        if (sub->parsed()) req = {{"cmd", "backend"}, {"action", sub->get_name()}};
      req["vip"] = b_vip;
      req["backend"] = b_addr;
      if (req["action"] == "weight" || req["action"] == "add") req["weight"] = b_weight;
    }
    return api_command(api_socket, req, output == "json");
  }

  auto pm = PinnedMaps::open(pin_dir);
  if (!pm) {
    std::fprintf(stderr, "sluicectl: %s\n", pm.error().to_string().c_str());
    return 1;
  }
  Result<json> r = json();
  // Expiry by the timeouts the running agent published (it expires VIP and host flows by the
  // same ones), unless --timeouts-from says otherwise.
  if (conntrack->parsed() && ct_timeouts_from.empty())
    ct_timeouts = timeouts_from_info(pm->info(), ct_timeouts);
  if (vips->parsed()) {
    r = vips_json(*pm);
  } else if (conntrack->parsed() && ct_host) {
    auto fd = open_pinned_host_flows(pin_dir);
    r = fd ? host_flows_json(fd->get(), ct_filter, ct_timeouts, monotonic_ns()) : fd.error();
    if (r && ct_summary) r = conntrack_summary_json(*r);
  } else if (conntrack->parsed()) {
    r = conntrack_json(*pm, ct_filter, ct_timeouts, monotonic_ns());
    if (r && ct_summary) r = conntrack_summary_json(*r);
  } else {
    r = stats_json(*pm);
  }
  if (!r) {
    std::fprintf(stderr, "sluicectl: %s\n", r.error().to_string().c_str());
    return 1;
  }
  if (output == "json") {
    std::printf("%s\n", r->dump(2).c_str());
  } else {
    std::string text;
    if (vips->parsed()) {
      text = vips_text(*r);
    } else if (conntrack->parsed()) {
      text = ct_summary ? conntrack_summary_text(*r)
             : ct_host  ? host_flows_text(*r)
                        : conntrack_text(*r);
    } else {
      text = stats_text(*r);
    }
    std::fputs(text.c_str(), stdout);
  }
  (void)stats;
  return 0;
}

}  // namespace sluice
