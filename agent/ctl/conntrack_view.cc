// `sluicectl conntrack`: the tracked flows read from the pinned tables (xdp_lb's `conntrack`
// and `ct_pending`, or tc_flow's `host_flows` with --host), as JSON (the documented shape of
// `-o json`) and as tables rendered from that same JSON, so that the two cannot disagree.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <fmt/format.h>
#include <sluice/config/ct_expiry.h>
#include <sluice/core/clock.h>
#include <sluice/core/net.h>
#include <sluice/ctl/ctl.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstring>
#include <tuple>
#include <unordered_map>

#include "table.h"

namespace sluice {

using ctl::Col;
using ctl::format_duration;
using ctl::render_table;
using nlohmann::json;

namespace {

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

uint64_t age_ns(const sl_ct_entry& e, uint64_t now_ns) {
  return now_ns > e.first_seen_ns ? now_ns - e.first_seen_ns : 0;
}

// The filters that apply to every tracked flow, VIP or host: state and age.
bool matches_state_and_age(const ConntrackFilter& f, const sl_ct_entry& e, uint64_t now_ns) {
  if (f.state && e.state != *f.state) return false;
  return !f.older_than_s || age_ns(e, now_ns) > *f.older_than_s * 1000000000ull;
}

// The members every flow row has, VIP or host: times and handshake RTTs.
void add_times(json& row, const sl_ct_entry& e, const ConntrackTimeouts& timeouts, uint64_t now_ns,
               bool pending = false) {
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

// A filter's endpoint against a flow's: the same address, and the same port unless the filter
// gave none. `port` is in network byte order, as the maps hold it.
bool endpoint_matches(const ConntrackFilter::HostPort& want, const sl_addr& addr, uint8_t family,
                      uint16_t port) {
  return same_addr(addr, family, want.addr, want.family) &&
         (want.port == 0 || ntohs(port) == want.port);
}

// Collects the VIP flows that match a filter, with the backend and VIP mode each refers to by
// id. Those are read from the maps once per id: thousands of flows share a few ids.
class VipFlowReader {
 public:
  VipFlowReader(const PinnedMaps& pm, const ConntrackFilter& f, uint64_t now_ns)
      : pm_(pm), f_(f), now_ns_(now_ns) {}

  // Appends the matching entries of one table; `pending`: it is ct_pending.
  Status read(int fd, const char* name, bool pending) {
    return for_each_ct_entry(fd, name, [&](const sl_flow_key& k, const sl_ct_entry& e) {
      if (!matches_state_and_age(f_, e, now_ns_)) return;
      if (f_.vip && !endpoint_matches(*f_.vip, k.dst, k.family, k.dport)) return;
      CtRow row{k, e, {}, mode(e.vip_id), pending};
      if (const auto& be = backend(e.backend_id)) {
        row.backend = be->ep;
        // A port-0 backend (under a port-0 VIP) receives the port the client connected to.
        if (row.backend.port == 0) row.backend.port = k.dport;
      }
      if (f_.backend &&
          !(row.backend.family != 0 && endpoint_matches(*f_.backend, row.backend.addr,
                                                        row.backend.family, row.backend.port))) {
        return;
      }
      rows_.push_back(row);
    });
  }

  std::vector<CtRow>& rows() { return rows_; }

 private:
  // The backend now configured under `id`; none once the id is free (its flows outlived it).
  const std::optional<sl_backend>& backend(uint32_t id) {
    auto [it, inserted] = backends_.try_emplace(id);
    sl_backend be{};
    if (inserted && id < pm_.info().max_backends &&
        bpf_map_lookup_elem(pm_.fds().backends, &id, &be) == 0 &&
        (be.flags & SL_BACKEND_F_ACTIVE)) {
      it->second = be;
    }
    return it->second;
  }
  // The VIP's forwarding mode; nat when the VIP is gone.
  uint8_t mode(uint32_t vip_id) {
    auto [it, inserted] = modes_.try_emplace(vip_id, SL_MODE_NAT);
    sl_vip_entry ve{};
    if (inserted && vip_id < pm_.info().max_vips &&
        bpf_map_lookup_elem(pm_.fds().vip_table, &vip_id, &ve) == 0) {
      it->second = ve.vip.mode;
    }
    return it->second;
  }

  const PinnedMaps& pm_;
  const ConntrackFilter& f_;
  const uint64_t now_ns_;
  std::vector<CtRow> rows_;
  std::unordered_map<uint32_t, std::optional<sl_backend>> backends_;
  std::unordered_map<uint32_t, uint8_t> modes_;
};

// VIP flows list by VIP, then backend, then client: the flows of one service together.
auto vip_flow_order(const CtRow& r) {
  return std::make_tuple(r.key.family, ntohl(r.key.dst.w[0]), ntohl(r.key.dst.w[1]),
                         ntohl(r.key.dst.w[2]), ntohl(r.key.dst.w[3]), ntohs(r.key.dport),
                         r.e.backend_id, ntohl(r.key.src.w[0]), ntohl(r.key.src.w[1]),
                         ntohl(r.key.src.w[2]), ntohl(r.key.src.w[3]), ntohs(r.key.sport));
}

json vip_flow_json(const CtRow& r, const ConntrackTimeouts& timeouts, uint64_t now_ns) {
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
  return row;
}

}  // namespace

Result<json> conntrack_json(const PinnedMaps& pm, const ConntrackFilter& f,
                            const ConntrackTimeouts& timeouts, uint64_t now_ns) {
  VipFlowReader reader(pm, f, now_ns);
  // Confirmed flows, then the unconfirmed and finished ones (docs/design.md, "Trust no
  // packet"); a flow moving between the two during the read may show twice or not at all.
  if (auto s = reader.read(pm.fds().conntrack, "conntrack", false); !s) return s.error();
  if (auto s = reader.read(pm.fds().ct_pending, "ct_pending", true); !s) return s.error();
  std::vector<CtRow>& rows = reader.rows();
  std::sort(rows.begin(), rows.end(),
            [](const CtRow& a, const CtRow& b) { return vip_flow_order(a) < vip_flow_order(b); });
  json out = json::array();
  for (const CtRow& r : rows) out.push_back(vip_flow_json(r, timeouts, now_ns));
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
  auto s = for_each_ct_entry(host_flows_fd, "host_flows",
                             [&](const sl_flow_key& k, const sl_ct_entry& e) {
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
  // From 1: state 0 (none) has no timeout of its own, it shares syn_sent's.
  for (uint8_t st = 1; st < SL_TCP_STATE_MAX; ++st)
    if (info.ct_timeout_s[st] != 0) fallback.set_for_state(st, info.ct_timeout_s[st]);
  if (info.ct_timeout_s[SL_CT_TIMEOUT_UNCONFIRMED] != 0)
    fallback.unconfirmed = info.ct_timeout_s[SL_CT_TIMEOUT_UNCONFIRMED];
  return fallback;
}

}  // namespace sluice
