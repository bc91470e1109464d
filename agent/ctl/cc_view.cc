// `sluicectl cc`: the connections our congestion-control policy matched (cc_conns), like
// `ss -ti` for them, and the per-rule counters (--rules), as JSON (the documented shape of
// `-o json`) and as text rendered from that same JSON, so that the two cannot disagree.
#include <fmt/format.h>
#include <sluice/core/net.h>
#include <sluice/ctl/ctl.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>

#include "table.h"

namespace sluice {

using nlohmann::json;

namespace {

// The kernel's TCP_INFINITE_SSTHRESH: no loss yet, still in slow start.
constexpr uint32_t kSsthreshUnset = 0x7fffffff;

// Milliseconds of precision, like conntrack's times.
double seconds_since(uint64_t then_ns, uint64_t now_ns) {
  const uint64_t ns = now_ns > then_ns ? now_ns - then_ns : 0;
  return std::round(static_cast<double>(ns) / 1e6) / 1e3;
}

bool in_prefix(const CcFilter::Prefix& p, const sl_cc_conn& c) {
  if (c.family != p.family) return false;
  const int full = p.len / 8, rest = p.len % 8;
  if (std::memcmp(c.raddr, &p.addr, full) != 0) return false;
  if (rest == 0) return true;
  const uint8_t mask = static_cast<uint8_t>(0xff00 >> rest);
  return (c.raddr[full] & mask) == (reinterpret_cast<const uint8_t*>(&p.addr)[full] & mask);
}

// A rule id's name; "#ID" once cc_rule_info no longer names it.
std::string rule_name(const std::map<uint16_t, std::string>& names, uint16_t id) {
  auto it = names.find(id);
  return it != names.end() ? it->second : "#" + std::to_string(id);
}

std::string endpoint(const uint8_t (&addr)[16], uint8_t family, uint16_t port) {
  sl_addr a{};
  std::memcpy(&a, addr, sizeof(a));
  return format_host_port(a, family, port);
}

json failed_settings(uint8_t failed_set) {
  json out = json::array();
  for (uint32_t s = 0; s < SL_CC_SET_MAX; ++s)
    if (failed_set & (1u << s)) out.push_back(cc_setting_name(s));
  return out;
}

// Every field of the entry; numbers as numbers, ssthresh null while unset (slow start).
json conn_json(const CcConnView& v, const std::string& rule, uint64_t now_ns) {
  const sl_cc_conn& c = v.conn;
  return {{"cookie", v.cookie},
          {"rule", rule},
          {"rule_id", c.rule_id},
          {"direction", cc_direction_name(c.direction)},
          {"state", cc_tcp_state_name(c.state)},
          {"family", c.family == SL_AF_INET6 ? "ipv6" : "ipv4"},
          {"local", endpoint(c.laddr, c.family, c.lport)},
          {"remote", endpoint(c.raddr, c.family, c.rport)},
          {"cc", cc_name(c)},
          {"applied", c.applied != 0},
          {"failed_settings", failed_settings(c.failed_set)},
          {"cwnd", c.cwnd},
          {"ssthresh", c.ssthresh == kSsthreshUnset ? json(nullptr) : json(c.ssthresh)},
          {"srtt_us", c.srtt_us},
          {"rttvar_us", c.rttvar_us},
          {"retransmits", c.total_retrans},
          {"mss", c.mss},
          {"bytes_acked", c.bytes_acked},
          {"age_s", seconds_since(c.established_ns, now_ns)},
          {"updated_s", seconds_since(c.updated_ns, now_ns)}};
}

bool matches(const CcFilter& f, const sl_cc_conn& c, const std::string& rule) {
  if (f.rule && rule != *f.rule) return false;
  if (f.cc && cc_name(c) != *f.cc) return false;
  return !f.dst || in_prefix(*f.dst, c);
}

using Row = std::pair<std::string, const CcConnView*>;  // rule name, entry

// By rule, then remote, then local: a rule's connections to one service together. Addresses
// compare as bytes in network order, which is their numeric order.
bool listing_order(const Row& a, const Row& b) {
  if (a.first != b.first) return a.first < b.first;
  const sl_cc_conn &x = a.second->conn, &y = b.second->conn;
  if (x.family != y.family) return x.family < y.family;
  if (int r = std::memcmp(x.raddr, y.raddr, sizeof(x.raddr)); r != 0) return r < 0;
  if (x.rport != y.rport) return x.rport < y.rport;
  if (int r = std::memcmp(x.laddr, y.laddr, sizeof(x.laddr)); r != 0) return r < 0;
  if (x.lport != y.lport) return x.lport < y.lport;
  return a.second->cookie < b.second->cookie;
}

}  // namespace

Result<CcView> read_cc_view(const CcMapFds& fds, bool with_stats) {
  CcView v;
  auto cfg = read_cc_config(fds.config);
  if (!cfg) return cfg.error();
  v.config = *cfg;
  auto conns = read_cc_conns(fds.conns);
  if (!conns) return conns.error();
  v.conns = std::move(*conns);
  auto rules = read_cc_rule_names(fds.rule_info);
  if (!rules) return rules.error();
  v.rules = std::move(*rules);
  if (!with_stats) return v;
  auto stats = read_cc_rule_stats(fds.rule_stats);
  if (!stats) return stats.error();
  v.stats = std::move(*stats);
  if (fds.algo_users >= 0) {
    auto users = read_cc_algo_users(fds.algo_users);
    if (!users) return users.error();
    v.algo_users = *users;
  }
  return v;
}

json cc_json(const CcView& view, const CcFilter& f, uint64_t now_ns) {
  std::map<uint16_t, std::string> names;
  for (const CcRuleName& r : view.rules) names[r.id] = r.name;
  std::vector<Row> rows;
  for (const CcConnView& v : view.conns) {
    std::string rule = rule_name(names, v.conn.rule_id);
    if (matches(f, v.conn, rule)) rows.emplace_back(std::move(rule), &v);
  }
  std::sort(rows.begin(), rows.end(), listing_order);
  json out = json::array();
  for (const auto& [rule, v] : rows) out.push_back(conn_json(*v, rule, now_ns));
  return out;
}

namespace {

json rule_json(const CcRuleName& r, const sl_cc_rule_stats& s, uint64_t live) {
  json failed_by = json::object();
  for (uint32_t i = 0; i < SL_CC_SET_MAX; ++i) failed_by[cc_setting_name(i)] = s.failed_by[i];
  return {{"id", r.id},
          {"name", r.name},
          {"in_use", r.in_use},
          {"matched", s.matched},
          {"applied", s.applied},
          {"failed", s.failed},
          {"failed_by", failed_by},
          {"untracked", s.untracked},
          {"closed", s.closed},
          {"live", live}};
}

}  // namespace

json cc_summary_json(const CcView& view, const CcFilter& f, const json& conns) {
  std::map<std::string, uint64_t> live_by_rule, by_cc;
  for (const json& c : conns) {
    ++live_by_rule[c["rule"].get<std::string>()];
    ++by_cc[c["cc"].get<std::string>()];
  }
  json rules = json::array();
  for (const CcRuleName& r : view.rules) {
    if (f.rule && r.name != *f.rule) continue;
    const sl_cc_rule_stats s = r.id < view.stats.size() ? view.stats[r.id] : sl_cc_rule_stats{};
    rules.push_back(rule_json(r, s, live_by_rule[r.name]));
  }
  json users = json::object();
  if (view.algo_users) users[SL_CC_OURS] = *view.algo_users;
  return {{"generation", view.config.generation},
          {"active_slot", view.config.active_slot},
          {"rules", rules},
          {"connections", {{"total", conns.size()}, {"by_cc", by_cc}}},
          {"algorithm_users", users}};
}

namespace {

std::string ms(const json& us) { return fmt::format("{:.3f}", us.get<double>() / 1000.0); }

std::string applied_text(const json& c) {
  if (c["applied"].get<bool>()) return "yes";
  std::string s = "no";
  for (const json& f : c["failed_settings"]) s += (s == "no" ? ":" : ",") + f.get<std::string>();
  return s;
}

// "3 connections: cubic 2, sluice_aimd 1".
std::string by_cc_line(const json& by_cc, size_t total) {
  std::string s = fmt::format("{} connection{}", total, total == 1 ? "" : "s");
  const char* sep = ": ";
  for (const auto& [cc, n] : by_cc.items()) {
    s += fmt::format("{}{} {}", sep, cc.empty() ? "?" : cc, n.get<uint64_t>());
    sep = ", ";
  }
  return s + "\n";
}

}  // namespace

std::string cc_text(const json& conns) {
  static constexpr ctl::Col kCols[] = {{"Local", false},     {"Remote", false},  {"Dir", false},
                                       {"State", false},     {"CC", false},      {"Rule", false},
                                       {"Cwnd", true},       {"Ssthresh", true}, {"Srtt(ms)", true},
                                       {"Rttvar(ms)", true}, {"Retrans", true},  {"Acked", true},
                                       {"Age", true},        {"Applied", false}};
  constexpr std::size_t kN = std::size(kCols);
  std::vector<std::array<std::string, kN>> rows;
  json by_cc = json::object();
  for (const json& c : conns) {
    const std::string cc = c["cc"].get<std::string>();
    by_cc[cc] = by_cc.value(cc, uint64_t{0}) + 1;
    rows.push_back(
        {c["local"].get<std::string>(), c["remote"].get<std::string>(),
         c["direction"].get<std::string>(), c["state"].get<std::string>(), cc.empty() ? "?" : cc,
         c["rule"].get<std::string>(), std::to_string(c["cwnd"].get<uint32_t>()),
         c["ssthresh"].is_null() ? "-" : std::to_string(c["ssthresh"].get<uint32_t>()),
         ms(c["srtt_us"]), ms(c["rttvar_us"]), std::to_string(c["retransmits"].get<uint32_t>()),
         std::to_string(c["bytes_acked"].get<uint64_t>()),
         ctl::format_duration(c["age_s"].get<double>()), applied_text(c)});
  }
  return ctl::render_table(kCols, rows) + by_cc_line(by_cc, conns.size());
}

std::string cc_summary_text(const json& summary) {
  static constexpr ctl::Col kCols[] = {{"Rule", false},     {"Id", true},      {"InUse", false},
                                       {"Matched", true},   {"Applied", true}, {"Failed", true},
                                       {"Untracked", true}, {"Closed", true},  {"Live", true},
                                       {"FailedBy", false}};
  constexpr std::size_t kN = std::size(kCols);
  std::vector<std::array<std::string, kN>> rows;
  for (const json& r : summary["rules"]) {
    // In the settings' order, not the JSON object's alphabetical one.
    std::string failed_by;
    for (uint32_t i = 0; i < SL_CC_SET_MAX; ++i) {
      const uint64_t n = r["failed_by"].value(cc_setting_name(i), uint64_t{0});
      if (n != 0)
        failed_by += fmt::format("{}{} {}", failed_by.empty() ? "" : ", ", cc_setting_name(i), n);
    }
    auto num = [&](const char* k) { return std::to_string(r[k].get<uint64_t>()); };
    rows.push_back({r["name"].get<std::string>(), num("id"), r["in_use"].get<bool>() ? "yes" : "no",
                    num("matched"), num("applied"), num("failed"), num("untracked"), num("closed"),
                    num("live"), failed_by.empty() ? "-" : failed_by});
  }
  std::string out =
      fmt::format("policy generation {}, slot {}\n", summary["generation"].get<uint64_t>(),
                  summary["active_slot"].get<uint32_t>());
  out += ctl::render_table(kCols, rows);
  const json& conns = summary["connections"];
  out += by_cc_line(conns["by_cc"], conns["total"].get<size_t>());
  const json& users = summary["algorithm_users"];
  out += users.contains(SL_CC_OURS)
             ? fmt::format("{} users: {}\n", SL_CC_OURS, users[SL_CC_OURS].get<uint64_t>())
             : fmt::format("{}: not registered\n", SL_CC_OURS);
  return out;
}

}  // namespace sluice
