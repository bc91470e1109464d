// CcPolicy (cc_policy.h): cc_sockops loaded fresh or on pinned maps, its cgroup link, and the
// two-slot apply.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <spdlog/spdlog.h>

#include <cstring>

#include <sluice/bpf/maps.h>
#include <sluice/cc/cc_policy.h>
#include <sluice/cc/cgroup.h>
#include <sluice/cc/pins.h>
#include "cc_sockops.skel.h"

namespace sluice {

namespace {

struct MapSpec {
  const char* name;
  bpf_map* (*get)(cc_sockops_bpf*);
  int CcMapFds::*fd;
};

// Every map of cc_sockops with its pin name; `cc_algo_users` belongs to cc_aimd (CcAlgorithm).
const MapSpec kMaps[] = {
    {kCcConfigPin, [](cc_sockops_bpf* s) { return s->maps.cc_config; }, &CcMapFds::config},
    {kCcLpmPin, [](cc_sockops_bpf* s) { return s->maps.cc_lpm; }, &CcMapFds::lpm},
    {kCcRulesPin, [](cc_sockops_bpf* s) { return s->maps.cc_rules; }, &CcMapFds::rules},
    {kCcRuleStatsPin, [](cc_sockops_bpf* s) { return s->maps.cc_rule_stats; },
     &CcMapFds::rule_stats},
    {kCcRuleInfoPin, [](cc_sockops_bpf* s) { return s->maps.cc_rule_info; }, &CcMapFds::rule_info},
    {kCcConnsPin, [](cc_sockops_bpf* s) { return s->maps.cc_conns; }, &CcMapFds::conns},
};

uint32_t max_entries_of(int fd) {
  bpf_map_info info{};
  uint32_t len = sizeof(info);
  return bpf_obj_get_info_by_fd(fd, &info, &len) == 0 ? info.max_entries : 0;
}

}  // namespace

Result<std::unique_ptr<CcPolicy>> CcPolicy::load(uint32_t max_connections) {
  return load_into(std::unique_ptr<CcPolicy>(new CcPolicy()), max_connections);
}

Result<std::unique_ptr<CcPolicy>> CcPolicy::load_into(std::unique_ptr<CcPolicy> p,
                                                      uint32_t max_connections) {
  p->skel_ = cc_sockops_bpf__open();
  if (!p->skel_) return sys_error("open BPF skeleton cc_sockops");
  if (int err = bpf_map__set_max_entries(p->skel_->maps.cc_conns, max_connections))
    return sys_error("size map 'cc_conns' to " + std::to_string(max_connections), err);
  if (p->adopted_) {
    if (auto s = p->adopt_maps(); !s) return s.error();
  }
  if (int err = cc_sockops_bpf__load(p->skel_))
    return sys_error("load BPF program cc_sockops (verifier log above)", err);
  for (const MapSpec& m : kMaps) p->fds_.*m.fd = bpf_map__fd(m.get(p->skel_));
  if (p->adopted_) {
    if (auto s = p->adopt_state(); !s) return s.error();
  } else {
    p->config_.abi_version = SL_CC_ABI_VERSION;
    const uint32_t zero = 0;
    if (auto s = update_map(p->fds_.config, &zero, &p->config_, kCcConfigPin); !s) return s.error();
  }
  return p;
}

Result<std::unique_ptr<CcPolicy>> CcPolicy::open(uint32_t max_connections,
                                                 const std::string& cc_dir) {
  auto dir = PinDir::create(cc_dir, /*lock=*/false);
  if (!dir) return dir.error();
  std::unique_ptr<CcPolicy> p(new CcPolicy());
  p->adopted_ = dir->holds(kCcConfigPin);
  p->pins_ = std::move(*dir);
  auto loaded = load_into(std::move(p), max_connections);
  if (!loaded) return loaded;
  if (!(*loaded)->adopted_) {
    if (auto s = (*loaded)->pin_maps(); !s) return s.error();
  }
  return loaded;
}

// Every pinned map takes the place of the skeleton's own (libbpf checks type, key and value
// sizes). cc_conns must also have the size the config asks for.
Status CcPolicy::adopt_maps() {
  for (const MapSpec& m : kMaps) {
    bpf_map* map = m.get(skel_);
    auto fd = pins_->open_map(m.name, bpf_map__key_size(map), bpf_map__value_size(map));
    if (!fd) return fd.error();
    if (map == skel_->maps.cc_conns && max_entries_of(fd->get()) != bpf_map__max_entries(map))
      return Error{0, "congestion: the cc_conns pinned under " + pins_->path() + " has " +
                          std::to_string(max_entries_of(fd->get())) +
                          " entries, the config asks for " +
                          std::to_string(bpf_map__max_entries(map)) +
                          "; keep congestion.max_connections at the pinned size, or remove " +
                          pins_->path() +
                          " (this detaches the policy and drops its live stats) and start "
                          "again"};
    reused_.push_back(std::move(*fd));
    if (int err = bpf_map__reuse_fd(map, reused_.back().get()))
      return sys_error(std::string("reuse pinned map '") + m.name + "'", err);
  }
  return {};
}

// What the previous agent left: the live slot, the generation and the rule ids in use.
Status CcPolicy::adopt_state() {
  auto cfg = read_cc_config(fds_.config);
  if (!cfg) return cfg.error();
  if (cfg->abi_version != SL_CC_ABI_VERSION)
    return Error{0, "congestion: the maps pinned under " + pins_->path() + " are version " +
                        std::to_string(cfg->abi_version) + ", this sluiced writes version " +
                        std::to_string(SL_CC_ABI_VERSION) +
                        "; stop sluiced with --detach-on-exit once to replace them"};
  config_ = *cfg;
  generation_ = config_.generation;
  auto names = read_cc_rule_names(fds_.rule_info);
  if (!names) return names.error();
  std::vector<std::pair<uint16_t, std::string>> in_use;
  for (const CcRuleName& n : *names)
    if (n.in_use) in_use.emplace_back(n.id, n.name);
  ids_.adopt(in_use);
  spdlog::info("congestion: adopted the policy pinned under {} (generation {}, {} rules)",
               pins_->path(), generation_, in_use.size());
  return {};
}

Status CcPolicy::pin_maps() {
  for (const MapSpec& m : kMaps)
    if (auto s = pins_->pin(fds_.*m.fd, m.name); !s) return s;
  return {};
}

void CcPolicy::remove_pins(PinDir& cc_dir) {
  cc_dir.unpin(kCcSockopsLinkPin);  // the last reference to the link: detached
  for (const MapSpec& m : kMaps) cc_dir.unpin(m.name);
}

int CcPolicy::prog_fd() const { return bpf_program__fd(skel_->progs.cc_sockops); }

CcPolicy::~CcPolicy() {
  const bool teardown =
      teardown_ == Teardown::kAlways || (teardown_ == Teardown::kFreshOnly && !adopted_);
  if (teardown) {
    detach();
    if (pins_) {
      remove_pins(*pins_);
      pins_->remove();
    }
  }
  link_.reset();
  if (skel_) cc_sockops_bpf__destroy(skel_);
}

}  // namespace sluice
