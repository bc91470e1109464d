// Shared by the congestion-control tests: the maps of include/sluice/abi/cc.h created by hand
// with the ABI's types and sizes, pinned under a unique <dir>/cc as sluiced pins them, and
// filled with known entries (the sockops program that fills them for real is not needed).
// Everything is removed on every path: the world's destructor unpins what it pinned.
#pragma once

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sluice/abi/cc.h>
#include <sluice/cc/pins.h>
#include <sluice/core/fd.h>
#include <sluice/core/net.h>

#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace sluice::test {

class CcPinWorld {
 public:
  // Creates and pins the maps (cc_algo_users too); check ok() (or the test's failures).
  CcPinWorld() {
    static int seq = 0;
    dir_ = "/sys/fs/bpf/sl-ut-cc-" + std::to_string(getpid()) + "-" + std::to_string(seq++);
    if (mkdir(dir_.c_str(), 0700) != 0 || mkdir(cc_dir().c_str(), 0700) != 0) {
      ADD_FAILURE() << "mkdir " << cc_dir() << ": " << strerror(errno);
      return;
    }
    LIBBPF_OPTS(bpf_map_create_opts, lpm_opts, .map_flags = BPF_F_NO_PREALLOC);
    ok_ = add(kCcConfigPin, BPF_MAP_TYPE_ARRAY, 4, sizeof(sl_cc_config), 1) &&
          add(kCcLpmPin, BPF_MAP_TYPE_LPM_TRIE, sizeof(sl_cc_lpm_key), sizeof(sl_cc_lpm_val), 64,
              &lpm_opts) &&
          add(kCcRulesPin, BPF_MAP_TYPE_ARRAY, 4, sizeof(sl_cc_rule),
              SL_CC_SLOTS * SL_CC_MAX_RULES) &&
          add(kCcRuleStatsPin, BPF_MAP_TYPE_PERCPU_ARRAY, 4, sizeof(sl_cc_rule_stats),
              SL_CC_MAX_RULE_IDS) &&
          add(kCcRuleInfoPin, BPF_MAP_TYPE_ARRAY, 4, sizeof(sl_cc_rule_info), SL_CC_MAX_RULE_IDS) &&
          add(kCcConnsPin, BPF_MAP_TYPE_HASH, 8, sizeof(sl_cc_conn), 4096) &&
          add(kCcAlgoUsersPin, BPF_MAP_TYPE_ARRAY, 4, 8, 1);
    if (ok_) set_config({});
  }
  ~CcPinWorld() {
    for (const auto& [name, fd] : fds_) unlink(path(name).c_str());
    rmdir(cc_dir().c_str());
    rmdir(dir_.c_str());
  }
  CcPinWorld(const CcPinWorld&) = delete;
  CcPinWorld& operator=(const CcPinWorld&) = delete;

  bool ok() const { return ok_; }
  const std::string& pin_dir() const { return dir_; }
  std::string cc_dir() const { return dir_ + "/" + kCcPinSubdir; }
  std::string path(const std::string& name) const { return cc_dir() + "/" + name; }
  int fd(const std::string& name) const { return fds_.at(name).get(); }

  // abi_version defaults to this build's.
  void set_config(sl_cc_config c) {
    if (c.abi_version == 0) c.abi_version = SL_CC_ABI_VERSION;
    update(kCcConfigPin, 0u, &c);
  }
  void set_users(uint64_t n) { update(kCcAlgoUsersPin, 0u, &n); }
  void put_conn(uint64_t cookie, const sl_cc_conn& c) { update(kCcConnsPin, cookie, &c); }
  void put_rule_name(uint32_t id, const std::string& name, bool in_use) {
    sl_cc_rule_info info{};
    std::strncpy(info.name, name.c_str(), sizeof(info.name) - 1);
    info.in_use = in_use;
    update(kCcRuleInfoPin, id, &info);
  }
  // CPU c gets `per_cpu` scaled by (c + 1): the sum over CPUs is per_cpu * cpu_weight().
  void put_stats(uint32_t id, const sl_cc_rule_stats& per_cpu) {
    std::vector<sl_cc_rule_stats> values(ncpus());
    for (int c = 0; c < ncpus(); ++c) values[c] = scaled(per_cpu, c + 1);
    update(kCcRuleStatsPin, id, values.data());
  }
  static int ncpus() { return libbpf_num_possible_cpus(); }
  static uint64_t cpu_weight() { return static_cast<uint64_t>(ncpus()) * (ncpus() + 1) / 2; }
  static sl_cc_rule_stats scaled(sl_cc_rule_stats s, uint64_t k) {
    static_assert(sizeof(sl_cc_rule_stats) % 8 == 0);
    auto* v = reinterpret_cast<uint64_t*>(&s);
    for (size_t i = 0; i < sizeof(s) / 8; ++i) v[i] *= k;
    return s;
  }

  // Replaces a pin by a map of other sizes, as another build would have pinned it.
  void repin_with_sizes(const std::string& name, uint32_t key, uint32_t value) {
    unlink(path(name).c_str());
    fds_.erase(name);
    add(name, BPF_MAP_TYPE_ARRAY, key, value, 1);
  }
  void unpin(const std::string& name) {
    unlink(path(name).c_str());
    fds_.erase(name);
  }

 private:
  bool add(const std::string& name, bpf_map_type type, uint32_t key, uint32_t value,
           uint32_t entries, const bpf_map_create_opts* opts = nullptr) {
    UniqueFd fd(bpf_map_create(type, name.c_str(), key, value, entries, opts));
    if (!fd.valid()) {
      ADD_FAILURE() << "create map " << name << ": " << strerror(errno);
      return false;
    }
    if (bpf_obj_pin(fd.get(), path(name).c_str()) != 0) {
      ADD_FAILURE() << "pin " << path(name) << ": " << strerror(errno);
      return false;
    }
    fds_.emplace(name, std::move(fd));
    return true;
  }
  template <class K>
  void update(const std::string& name, K key, const void* value) {
    EXPECT_EQ(bpf_map_update_elem(fd(name), &key, value, BPF_ANY), 0)
        << "update " << name << ": " << strerror(errno);
  }

  std::string dir_;
  std::map<std::string, UniqueFd> fds_;
  bool ok_ = false;
};

// A cc_conns entry: ADDR:PORT pairs as the CLI prints them (IPv4 or IPv6, no brackets).
inline sl_cc_conn cc_conn(const std::string& laddr, uint16_t lport, const std::string& raddr,
                          uint16_t rport, uint16_t rule_id, const char* cc) {
  sl_cc_conn c{};
  auto l = parse_ip(laddr);
  auto r = parse_ip(raddr);
  EXPECT_TRUE(l && r) << laddr << " " << raddr;
  if (!l || !r) return c;
  c.family = l->second;
  std::memcpy(c.laddr, &l->first, 16);
  std::memcpy(c.raddr, &r->first, 16);
  c.lport = lport;
  c.rport = rport;
  c.rule_id = rule_id;
  c.direction = SL_CC_DIR_ACTIVE;
  c.state = 1;  // TCP_ESTABLISHED
  c.applied = 1;
  c.ssthresh = 0x7fffffff;
  std::strncpy(c.cc, cc, sizeof(c.cc) - 1);
  return c;
}

inline constexpr uint64_t kCcSec = 1000000000ull;

// The entries every cc test reads, as of `now_ns`:
//  rules: 0 "web" and 3 "bulk" in use, 5 "old" removed by a reload (named, not in use), 9
//  carries counters but no name;
//  connections: 0x1001 web 10.0.0.1:40000 -> 198.18.1.2:443 cubic (slow start);
//  0x1002 bulk 198.18.0.1:80 <- 198.18.2.7:50000 sluice_aimd passive, sndbuf and rcvbuf failed;
//  0x1003 web [fd00::1]:1234 -> [fd00:18:1::2]:443 bbr; 0x1004 rule 9, 198.18.1.3, no cc yet.
inline void fill_cc_conns(CcPinWorld& w, uint64_t now_ns) {
  sl_cc_conn a = cc_conn("10.0.0.1", 40000, "198.18.1.2", 443, 0, "cubic");
  a.cwnd = 10;
  a.srtt_us = 1234;
  a.rttvar_us = 567;
  a.mss = 1448;
  a.bytes_acked = 1000;
  a.established_ns = now_ns - 100 * kCcSec;
  a.updated_ns = now_ns - kCcSec / 2;
  w.put_conn(0x1001, a);

  sl_cc_conn b = cc_conn("198.18.0.1", 80, "198.18.2.7", 50000, 3, SL_CC_OURS);
  b.direction = SL_CC_DIR_PASSIVE;
  b.applied = 0;
  b.failed_set = (1u << SL_CC_SET_SNDBUF) | (1u << SL_CC_SET_RCVBUF);
  b.cwnd = 40;
  b.ssthresh = 20;
  b.srtt_us = 350;
  b.rttvar_us = 100;
  b.total_retrans = 3;
  b.bytes_acked = 123456;
  b.established_ns = now_ns - 100 * kCcSec;
  b.updated_ns = now_ns;
  w.put_conn(0x1002, b);

  sl_cc_conn c = cc_conn("fd00::1", 1234, "fd00:18:1::2", 443, 0, "bbr");
  c.cwnd = 32;
  c.ssthresh = 100;
  c.srtt_us = 12000;
  c.rttvar_us = 3000;
  c.total_retrans = 1;
  c.state = 8;  // TCP_CLOSE_WAIT
  c.established_ns = now_ns - 30 * kCcSec;
  c.updated_ns = now_ns - 30 * kCcSec;
  w.put_conn(0x1003, c);

  sl_cc_conn d = cc_conn("10.0.0.1", 40001, "198.18.1.3", 80, 9, "");
  d.established_ns = now_ns;
  d.updated_ns = now_ns;
  w.put_conn(0x1004, d);
}

inline void fill_cc_stats(CcPinWorld& w) {
  // Per CPU (scaled by CPU, see put_stats). web: 3 matched, 2 applied, 1 failed (sndbuf), 1
  // untracked; 2 closed: srtt 100 us (bucket 1, < 128 us) and 3000 us (bucket 6, < 4096 us),
  // retransmits 0 (bucket 0) and 5 (bucket 3: 4..7).
  sl_cc_rule_stats web{};
  web.matched = 3;
  web.applied = 2;
  web.failed = 1;
  web.failed_by[SL_CC_SET_SNDBUF] = 1;
  web.untracked = 1;
  web.closed = 2;
  web.srtt_us_sum = 3100;
  web.srtt_hist[1] = 1;
  web.srtt_hist[6] = 1;
  web.retrans_sum = 5;
  web.retrans_hist[0] = 1;
  web.retrans_hist[3] = 1;
  w.put_stats(0, web);
  sl_cc_rule_stats bulk{};
  bulk.matched = 1;
  bulk.failed = 1;
  bulk.failed_by[SL_CC_SET_SNDBUF] = 1;
  bulk.failed_by[SL_CC_SET_RCVBUF] = 1;
  w.put_stats(3, bulk);
  // old: one closed connection beyond every finite bucket (srtt 20 s, 100 retransmits).
  sl_cc_rule_stats old{};
  old.matched = 1;
  old.applied = 1;
  old.closed = 1;
  old.srtt_us_sum = 20000000;
  old.srtt_hist[SL_CC_SRTT_BUCKETS - 1] = 1;
  old.retrans_sum = 100;
  old.retrans_hist[SL_CC_RETRANS_BUCKETS - 1] = 1;
  w.put_stats(5, old);
  sl_cc_rule_stats unnamed{};
  unnamed.matched = 4;
  w.put_stats(9, unnamed);
}

inline void fill_cc_example(CcPinWorld& w, uint64_t now_ns) {
  w.set_config({SL_CC_ABI_VERSION, 1, {2, 2}, 3});
  w.set_users(1);
  w.put_rule_name(0, "web", true);
  w.put_rule_name(3, "bulk", true);
  w.put_rule_name(5, "old", false);
  fill_cc_conns(w, now_ns);
  fill_cc_stats(w);
}

}  // namespace sluice::test
