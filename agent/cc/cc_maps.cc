// Reading the congestion-control maps (cc_maps.h), for sluicectl and the metrics alike.
// Nothing here writes: the policy's writes (cc_config, cc_rules, cc_lpm, cc_rule_info) are
// CcPolicy's, the rest belongs to the BPF programs.

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sluice/bpf/pin_dir.h>
#include <sluice/cc/cc_maps.h>
#include <sluice/cc/pins.h>

#include <unistd.h>

#include <cstring>
#include <iterator>

namespace sluice {

namespace {

// One pin of <pin dir>/cc with this build's key and value sizes; `slot` gets its fd.
struct CcPin {
  const char* name;
  uint32_t key_size;
  uint32_t value_size;
  int CcMapFds::*slot;
};

// Every map sluicectl and the metrics read, cc_algo_users apart (optional).
constexpr CcPin kCcPins[] = {
    {kCcConfigPin, sizeof(uint32_t), sizeof(sl_cc_config), &CcMapFds::config},
    {kCcLpmPin, sizeof(sl_cc_lpm_key), sizeof(sl_cc_lpm_val), &CcMapFds::lpm},
    {kCcRulesPin, sizeof(uint32_t), sizeof(sl_cc_rule), &CcMapFds::rules},
    {kCcRuleStatsPin, sizeof(uint32_t), sizeof(sl_cc_rule_stats), &CcMapFds::rule_stats},
    {kCcRuleInfoPin, sizeof(uint32_t), sizeof(sl_cc_rule_info), &CcMapFds::rule_info},
    {kCcConnsPin, sizeof(uint64_t), sizeof(sl_cc_conn), &CcMapFds::conns},
};

// A name from a fixed-size char array of the maps, which the writer may have left without a
// NUL: never read past the array.
template <std::size_t N>
std::string bounded(const char (&s)[N]) {
  return std::string(s, strnlen(s, N));
}

}  // namespace

Result<PinnedCcMaps> PinnedCcMaps::open(const std::string& pin_dir) {
  const std::string dir = pin_dir + "/" + kCcPinSubdir;
  if (access(pin_dir.c_str(), F_OK) != 0) {
    return Error{
        0, "no pin directory " + pin_dir + " (has sluiced run with --pin-dir " + pin_dir + "?)"};
  }
  // sluiced pins these only with a `congestion` section: say so rather than "no such file".
  if (!PinDir(pin_dir).holds(kCcPinSubdir)) {
    return Error{0, "sluiced has no `congestion` section (no " + dir +
                        "); add one to its config, or give the --pin-dir of an agent that has"};
  }
  const PinDir pins(dir);
  const std::string hint = " (a partly pinned " + dir + ": is sluiced starting or stopping?)";
  PinnedCcMaps m;
  for (const CcPin& p : kCcPins) {
    auto fd = pins.open_map(p.name, p.key_size, p.value_size, hint);
    if (!fd) return fd.error();
    m.fds_.*p.slot = fd->get();
    m.owned_.push_back(std::move(*fd));
  }
  // Checked before any other map is read: another build's entries would be misread.
  auto cfg = read_cc_config(m.fds_.config);
  if (!cfg) return cfg.error();
  // The maps are pinned before the first policy is written: a zeroed cc_config is that moment,
  // not another build.
  if (cfg->abi_version == 0)
    return Error{0, "no congestion policy written under " + dir + " yet (is sluiced starting?)"};
  if (cfg->abi_version != SL_CC_ABI_VERSION) {
    return Error{0, "the congestion-control maps pinned under " + dir + " have ABI version " +
                        std::to_string(cfg->abi_version) + ", this build speaks " +
                        std::to_string(SL_CC_ABI_VERSION) +
                        " (use the sluicectl of the running sluiced)"};
  }
  // Present only while sluice_aimd is registered.
  if (pins.holds(kCcAlgoUsersPin)) {
    auto fd = pins.open_map(kCcAlgoUsersPin, sizeof(uint32_t), sizeof(uint64_t));
    if (!fd) return fd.error();
    m.fds_.algo_users = fd->get();
    m.owned_.push_back(std::move(*fd));
  }
  return m;
}

Result<sl_cc_config> read_cc_config(int config_fd) {
  uint32_t key = 0;
  sl_cc_config cfg{};
  if (bpf_map_lookup_elem(config_fd, &key, &cfg) != 0) return sys_error("read map 'cc_config'");
  return cfg;
}

Result<std::vector<CcConnView>> read_cc_conns(int conns_fd) {
  // Batches: one syscall per kBatch entries, not two per entry (get_next_key, then lookup).
  constexpr uint32_t kBatch = 1024;
  std::vector<uint64_t> keys(kBatch);
  std::vector<sl_cc_conn> values(kBatch);
  std::vector<CcConnView> out;
  uint64_t cursor = 0, next = 0;
  for (bool first = true;; first = false) {
    uint32_t count = kBatch;
    const int err = bpf_map_lookup_batch(conns_fd, first ? nullptr : &cursor, &next, keys.data(),
                                         values.data(), &count, nullptr);
    // ENOENT marks the last batch, which may still carry `count` entries.
    const bool end = err != 0 && errno == ENOENT;
    if (err != 0 && !end) return sys_error("read map 'cc_conns'");
    for (uint32_t i = 0; i < count; ++i) out.push_back({keys[i], values[i]});
    if (end) return out;
    cursor = next;
  }
}

void add_cc_rule_stats(sl_cc_rule_stats& a, const sl_cc_rule_stats& b) {
  a.matched += b.matched;
  a.applied += b.applied;
  a.failed += b.failed;
  for (int i = 0; i < SL_CC_SET_MAX; ++i) a.failed_by[i] += b.failed_by[i];
  a.untracked += b.untracked;
  a.closed += b.closed;
  a.srtt_us_sum += b.srtt_us_sum;
  for (int i = 0; i < SL_CC_SRTT_BUCKETS; ++i) a.srtt_hist[i] += b.srtt_hist[i];
  a.retrans_sum += b.retrans_sum;
  for (int i = 0; i < SL_CC_RETRANS_BUCKETS; ++i) a.retrans_hist[i] += b.retrans_hist[i];
}

Result<std::vector<sl_cc_rule_stats>> read_cc_rule_stats(int rule_stats_fd) {
  const int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return sys_error("count possible CPUs", -ncpu);
  // The kernel copies one value per possible CPU, each rounded up to 8 bytes: a raw buffer,
  // so that the stride stays right should the struct ever stop being a multiple of 8.
  constexpr std::size_t kStride = (sizeof(sl_cc_rule_stats) + 7) / 8 * 8;
  std::vector<uint64_t> raw(kStride / 8 * static_cast<std::size_t>(ncpu));
  std::vector<sl_cc_rule_stats> out(SL_CC_MAX_RULE_IDS);
  for (uint32_t id = 0; id < SL_CC_MAX_RULE_IDS; ++id) {
    if (bpf_map_lookup_elem(rule_stats_fd, &id, raw.data()) != 0)
      return sys_error("read map 'cc_rule_stats' at rule id " + std::to_string(id));
    for (int cpu = 0; cpu < ncpu; ++cpu) {
      sl_cc_rule_stats one;
      std::memcpy(&one, reinterpret_cast<const char*>(raw.data()) + cpu * kStride, sizeof(one));
      add_cc_rule_stats(out[id], one);
    }
  }
  return out;
}

Result<std::vector<CcRuleName>> read_cc_rule_names(int rule_info_fd) {
  std::vector<CcRuleName> out;
  for (uint32_t id = 0; id < SL_CC_MAX_RULE_IDS; ++id) {
    sl_cc_rule_info info{};
    if (bpf_map_lookup_elem(rule_info_fd, &id, &info) != 0)
      return sys_error("read map 'cc_rule_info' at rule id " + std::to_string(id));
    std::string name = bounded(info.name);
    if (name.empty()) continue;  // a free id
    out.push_back({static_cast<uint16_t>(id), std::move(name), info.in_use != 0});
  }
  return out;
}

Result<uint64_t> read_cc_algo_users(int algo_users_fd) {
  uint32_t key = 0;
  uint64_t users = 0;
  if (bpf_map_lookup_elem(algo_users_fd, &key, &users) != 0)
    return sys_error("read map 'cc_algo_users'");
  return users;
}

std::string cc_name(const sl_cc_conn& c) { return bounded(c.cc); }

const char* cc_setting_name(uint32_t setting) {
  static constexpr const char* kNames[SL_CC_SET_MAX] = {"algorithm", "initial_cwnd", "sndbuf",
                                                        "rcvbuf", "cwnd_clamp"};
  return setting < SL_CC_SET_MAX ? kNames[setting] : "unknown";
}

const char* cc_direction_name(uint8_t direction) {
  switch (direction) {
    case SL_CC_DIR_ANY:
      return "any";
    case SL_CC_DIR_ACTIVE:
      return "active";
    case SL_CC_DIR_PASSIVE:
      return "passive";
  }
  return "unknown";
}

const char* cc_tcp_state_name(uint8_t state) {
  // include/net/tcp_states.h: TCP_ESTABLISHED = 1 .. TCP_NEW_SYN_RECV = 12 (never a full
  // socket's, listed for completeness).
  static constexpr const char* kNames[] = {
      "unknown", "established", "syn_sent", "syn_recv", "fin_wait1", "fin_wait2",   "time_wait",
      "close",   "close_wait",  "last_ack", "listen",   "closing",   "new_syn_recv"};
  return state < std::size(kNames) ? kNames[state] : "unknown";
}

}  // namespace sluice
