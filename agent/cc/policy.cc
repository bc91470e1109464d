// compile_cc_policy() and CcRuleIds: the rules of a config as one slot of the policy maps.
#include <sluice/cc/policy.h>

#include <algorithm>
#include <cstring>
#include <set>

#include <spdlog/spdlog.h>

namespace sluice {

namespace {

// Every prefix that "any address" means: /0 of each family.
std::vector<Cidr> any_address() {
  Cidr v4, v6;
  v4.family = SL_AF_INET;
  v6.family = SL_AF_INET6;
  return {v4, v6};
}

std::vector<Cidr> destinations_of(const CcRuleConfig& r) {
  return r.destinations.empty() ? any_address() : r.destinations;
}

// Whether prefix `outer` holds every address of `inner`.
bool covers(const Cidr& outer, const Cidr& inner) {
  if (outer.family != inner.family || outer.len > inner.len) return false;
  const auto* a = reinterpret_cast<const uint8_t*>(&outer.addr);
  const auto* b = reinterpret_cast<const uint8_t*>(&inner.addr);
  const unsigned full = outer.len / 8, rest = outer.len % 8;
  if (std::memcmp(a, b, full) != 0) return false;
  if (rest == 0) return true;
  const uint8_t mask = static_cast<uint8_t>(0xff00 >> rest);
  return (a[full] & mask) == (b[full] & mask);
}

sl_cc_rule rule_entry(const CcRuleConfig& rc, uint16_t id, const CgroupResolver& resolve) {
  sl_cc_rule r{};
  r.port_lo = rc.port_lo;
  r.port_hi = rc.port_hi;
  r.direction = rc.direction;
  r.rule_id = id;
  auto set = [&](enum sl_cc_setting s, uint32_t v, uint32_t& field) {
    if (v == 0) return;
    field = v;
    r.set |= static_cast<uint8_t>(1u << s);
  };
  set(SL_CC_SET_IW, rc.initial_cwnd, r.iw);
  set(SL_CC_SET_SNDBUF, rc.sndbuf, r.sndbuf);
  set(SL_CC_SET_RCVBUF, rc.rcvbuf, r.rcvbuf);
  set(SL_CC_SET_CLAMP, rc.cwnd_clamp, r.cwnd_clamp);
  if (!rc.algorithm.empty()) {
    r.set |= 1u << SL_CC_SET_ALGO;
    std::strncpy(r.algo, rc.algorithm.c_str(), SL_CC_NAME_MAX - 1);
  }
  if (!rc.cgroup.empty()) {
    // A cgroup that does not exist now (a stopped service) leaves the rule inert rather than
    // failing the whole policy: no socket's cgroup has the id ~0. A reload resolves it again.
    auto cg = resolve(rc.cgroup);
    if (cg) {
      r.cgroup_id = cg->id;
      r.cgroup_level = cg->level;
    } else {
      spdlog::warn("congestion rule '{}' matches nothing until a reload finds its cgroup: {}",
                   rc.name, cg.error().to_string());
      r.cgroup_id = ~0ull;
    }
  }
  return r;
}

}  // namespace

std::vector<const CcRuleConfig*> cc_rules_in_order(const CongestionConfig& cfg) {
  std::vector<const CcRuleConfig*> out;
  for (const CcRuleConfig& r : cfg.rules) out.push_back(&r);
  if (cfg.default_rule) out.push_back(&*cfg.default_rule);
  return out;
}

void CcRuleIds::adopt(const std::vector<std::pair<uint16_t, std::string>>& in_use) {
  ids_.clear();
  for (const auto& [id, name] : in_use) ids_[name] = id;
}

Result<std::vector<uint16_t>> CcRuleIds::assign(const std::vector<std::string>& names,
                                                std::vector<uint16_t>* fresh,
                                                const std::vector<uint16_t>& busy) {
  std::set<uint16_t> taken(busy.begin(), busy.end());
  for (const auto& [name, id] : ids_) taken.insert(id);
  std::map<std::string, uint16_t> next;
  std::vector<uint16_t> out;
  uint16_t candidate = 0;
  for (const std::string& name : names) {
    if (auto it = ids_.find(name); it != ids_.end()) {
      next[name] = it->second;
      out.push_back(it->second);
      continue;
    }
    while (candidate < SL_CC_MAX_RULE_IDS && taken.count(candidate)) ++candidate;
    if (candidate >= SL_CC_MAX_RULE_IDS)
      return Error{ENOSPC, "congestion: no free rule id (" + std::to_string(SL_CC_MAX_RULE_IDS) +
                               "); reload once more without renaming rules"};
    taken.insert(candidate);
    next[name] = candidate;
    out.push_back(candidate);
    if (fresh) fresh->push_back(candidate);
  }
  ids_ = std::move(next);
  return out;
}

sl_cc_lpm_key cc_lpm_key(uint8_t slot, const Cidr& c) {
  sl_cc_lpm_key k{};
  k.prefixlen = SL_CC_LPM_FIXED_BITS + c.len;
  k.slot = slot;
  k.family = c.family;
  std::memcpy(k.addr, &c.addr, sizeof(k.addr));
  return k;
}

Result<CcSlotTables> compile_cc_policy(const CongestionConfig& cfg, uint8_t slot,
                                       const std::vector<uint16_t>& ids,
                                       const CgroupResolver& resolve) {
  const auto order = cc_rules_in_order(cfg);
  if (order.size() > SL_CC_MAX_RULES || ids.size() != order.size())
    return Error{EINVAL, "congestion: " + std::to_string(order.size()) + " rules, at most " +
                             std::to_string(SL_CC_MAX_RULES) + " (the default included)"};
  CcSlotTables t;
  std::vector<Cidr> prefixes;
  for (size_t i = 0; i < order.size(); ++i) {
    t.rules.push_back(rule_entry(*order[i], ids[i], resolve));
    for (const Cidr& c : destinations_of(*order[i]))
      if (std::find(prefixes.begin(), prefixes.end(), c) == prefixes.end()) prefixes.push_back(c);
  }
  for (const Cidr& p : prefixes) {
    sl_cc_lpm_val v{};
    for (size_t i = 0; i < order.size(); ++i)
      for (const Cidr& c : destinations_of(*order[i]))
        if (covers(c, p)) v.rules |= 1ull << i;
    t.lpm.emplace_back(cc_lpm_key(slot, p), v);
  }
  return t;
}

}  // namespace sluice
