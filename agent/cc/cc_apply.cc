// CcPolicy::apply and attach (cc_policy.h): a config's rules into the idle slot, flipped live
// in one update; the cgroup link, created or taken over.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <spdlog/spdlog.h>

#include <cstring>
#include <set>
#include <vector>

#include <sluice/bpf/maps.h>
#include <sluice/cc/cc_policy.h>
#include <sluice/cc/cgroup.h>
#include <sluice/cc/pins.h>

namespace sluice {

// Deletes the LPM entries of `slot`: what a previous config left in the slot being rewritten.
Status CcPolicy::clear_slot(uint8_t slot) {
  std::vector<sl_cc_lpm_key> stale;
  sl_cc_lpm_key key{}, next{};
  const void* prev = nullptr;
  while (bpf_map_get_next_key(fds_.lpm, prev, &next) == 0) {
    if (next.slot == slot) stale.push_back(next);
    key = next;
    prev = &key;
  }
  for (const sl_cc_lpm_key& k : stale)
    if (bpf_map_delete_elem(fds_.lpm, &k) != 0 && errno != ENOENT)
      return sys_error("clear map 'cc_lpm'");
  return {};
}

// Names for the new slot's ids, with zeroed counters for ids new to their name.
Status CcPolicy::write_names(const std::vector<const CcRuleConfig*>& order,
                             const std::vector<uint16_t>& ids, const std::vector<uint16_t>& fresh) {
  const int ncpus = libbpf_num_possible_cpus();
  std::vector<sl_cc_rule_stats> zeros(ncpus > 0 ? ncpus : 1);
  for (uint16_t id : fresh) {
    const uint32_t key = id;
    if (auto s = update_map(fds_.rule_stats, &key, zeros.data(), kCcRuleStatsPin); !s) return s;
  }
  for (size_t i = 0; i < order.size(); ++i) {
    sl_cc_rule_info info{};
    std::strncpy(info.name, order[i]->name.c_str(), SL_CC_RULE_NAME_MAX - 1);
    info.in_use = 1;
    const uint32_t key = ids[i];
    if (auto s = update_map(fds_.rule_info, &key, &info, kCcRuleInfoPin); !s) return s;
  }
  return {};
}

// Rule ids that live connections still carry: their closes will count into the id, so no new
// rule may take it yet.
Result<std::vector<uint16_t>> CcPolicy::busy_rule_ids() const {
  auto conns = read_cc_conns(fds_.conns);
  if (!conns) return conns.error();
  std::vector<uint16_t> out;
  for (const CcConnView& c : *conns) out.push_back(c.conn.rule_id);
  return out;
}

// Entries of sockets the program no longer sees (it left their cgroup): no callback would
// ever delete them.
void CcPolicy::forget_connections(const std::string& why) {
  auto conns = read_cc_conns(fds_.conns);
  if (!conns || conns->empty()) return;
  for (const CcConnView& c : *conns) bpf_map_delete_elem(fds_.conns, &c.cookie);
  spdlog::info("congestion: {} live entries dropped ({})", conns->size(), why);
}

Status CcPolicy::apply(const CongestionConfig& cfg, const CgroupResolver& resolve) {
  const auto order = cc_rules_in_order(cfg);
  std::vector<std::string> names;
  for (const CcRuleConfig* r : order) names.push_back(r->name);
  CcRuleIds ids = ids_;
  std::vector<uint16_t> fresh;
  auto busy = busy_rule_ids();
  if (!busy) return busy.error();
  auto assigned = ids.assign(names, &fresh, *busy);
  if (!assigned) return assigned.error();
  const uint8_t slot = static_cast<uint8_t>((config_.active_slot & 1) ^ 1);
  auto tables = compile_cc_policy(cfg, slot, *assigned, resolve ? resolve : resolve_cgroup2);
  if (!tables) return tables.error();

  if (auto s = clear_slot(slot); !s) return s;
  for (size_t i = 0; i < tables->rules.size(); ++i) {
    const uint32_t key = slot * SL_CC_MAX_RULES + static_cast<uint32_t>(i);
    if (auto s = update_map(fds_.rules, &key, &tables->rules[i], kCcRulesPin); !s) return s;
  }
  for (const auto& [k, v] : tables->lpm)
    if (auto s = update_map(fds_.lpm, &k, &v, kCcLpmPin); !s) return s;
  if (auto s = write_names(order, *assigned, fresh); !s) return s;

  // The flip: one update of cc_config makes the new slot live.
  sl_cc_config next = config_;
  next.abi_version = SL_CC_ABI_VERSION;
  next.active_slot = slot;
  next.nrules[slot] = static_cast<uint32_t>(order.size());
  next.generation = generation_ + 1;
  const uint32_t zero = 0;
  if (auto s = update_map(fds_.config, &zero, &next, kCcConfigPin); !s) return s;
  config_ = next;
  generation_ = next.generation;

  // Ids no rule carries now: their names stay for late readers, marked free.
  std::set<uint16_t> live(assigned->begin(), assigned->end());
  for (const auto& [name, id] : ids_.ids()) {
    if (live.count(id)) continue;
    sl_cc_rule_info info{};
    const uint32_t key = id;
    if (bpf_map_lookup_elem(fds_.rule_info, &key, &info) == 0) {
      info.in_use = 0;
      bpf_map_update_elem(fds_.rule_info, &key, &info, BPF_ANY);
    }
  }
  ids_ = std::move(ids);
  spdlog::info("congestion: policy generation {}: {} rule{} live (slot {})", generation_,
               order.size(), order.size() == 1 ? "" : "s", slot);
  return {};
}

Status CcPolicy::attach(const std::string& cgroup) {
  if (auto s = ensure_cgroup2(cgroup); !s) return s;
  auto cg = open_cgroup2(cgroup);
  if (!cg) return cg.error();
  // A link a previous sluiced pinned on the same cgroup gets this program swapped in: the
  // cgroup is never without the policy, and never has it twice.
  if (pins_ && pins_->holds(kCcSockopsLinkPin) && cgroup_.empty()) {
    auto pinned = pins_->open(kCcSockopsLinkPin);
    if (pinned) {
      bpf_link_info info{};
      uint32_t len = sizeof(info);
      auto want = resolve_cgroup2(cgroup);
      const bool same = bpf_obj_get_info_by_fd(pinned->get(), &info, &len) == 0 && want &&
                        info.cgroup.cgroup_id == want->id;
      if (same && bpf_link_update(pinned->get(), prog_fd(), nullptr) == 0) {
        link_ = std::move(*pinned);
        cgroup_ = cgroup;
        spdlog::info("congestion: took over the sockops link on {} (program updated)", cgroup);
        return {};
      }
    }
    pins_->unpin(kCcSockopsLinkPin);  // another cgroup, or a link that cannot take updates
    forget_connections("the policy moved to " + cgroup);
  }
  const int fd = bpf_link_create(prog_fd(), cg->get(), BPF_CGROUP_SOCK_OPS, nullptr);
  if (fd < 0) return sys_error("attach cc_sockops to cgroup " + cgroup);
  UniqueFd link(fd);
  if (pins_) {
    pins_->unpin(kCcSockopsLinkPin);
    if (auto s = pins_->pin(link.get(), kCcSockopsLinkPin, "link"); !s) return s;
  }
  const bool moved = !cgroup_.empty() && cgroup_ != cgroup;
  link_ = std::move(link);  // the previous link (another cgroup) is closed: detached
  if (moved) forget_connections("the policy moved from " + cgroup_ + " to " + cgroup);
  cgroup_ = cgroup;
  spdlog::info("congestion: sockops policy attached to {}", cgroup);
  return {};
}

void CcPolicy::detach() {
  if (pins_) pins_->unpin(kCcSockopsLinkPin);
  if (link_.valid()) spdlog::info("congestion: sockops policy detached from {}", cgroup_);
  link_.reset();
  cgroup_.clear();
}

}  // namespace sluice
