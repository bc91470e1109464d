// The sockops congestion-control policy (cc_sockops, CcPolicy) on real TCP connections over
// loopback, made by this process inside a cgroup of the test's own: first match wins, every
// setting read back and counted, unmatched connections untouched, live stats that go when the
// socket closes, a reload that changes new connections only, cgroup-scoped rules.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sluice/cc/cc_maps.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>

#include <sluice/cc/cc_policy.h>
#include <sluice/cc/cgroup.h>
#include <sluice/cc/congestion.h>
#include <sluice/core/net.h>
#include "cc_util.h"
#include "cgroup.h"

namespace sluice {
namespace {

using test::cc_of;
using test::cwnd_of;
using test::TestCgroup;

Cidr cidr(const std::string& addr, uint8_t len) {
  auto ip = parse_ip(addr);
  Cidr c;
  c.addr = ip->first;
  c.family = ip->second;
  c.len = len;
  return c;
}

CcRuleConfig rule(const std::string& name, const std::string& algo) {
  CcRuleConfig r;
  r.name = name;
  r.algorithm = algo;
  return r;
}

// A listener on 127.0.0.1 (ephemeral port) and connections to it: the client side is
// active, the accepted side passive, both made by this process.
class Loopback {
 public:
  Loopback() {
    lfd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(lfd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    EXPECT_EQ(listen(lfd_, 16), 0);
    socklen_t len = sizeof(a);
    getsockname(lfd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
  }
  ~Loopback() { close(lfd_); }
  uint16_t port() const { return port_; }
  // {client, accepted}.
  std::pair<int, int> connect_pair() {
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port_);
    EXPECT_EQ(connect(c, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    int s = accept4(lfd_, nullptr, nullptr, SOCK_CLOEXEC);
    EXPECT_GE(s, 0);
    return {c, s};
  }

 private:
  int lfd_ = -1;
  uint16_t port_ = 0;
};

// Sends `bytes` from c and reads them all at s (RTT samples for the callbacks), then gives
// the callbacks a moment.
bool transfer(int c, int s, size_t bytes) {
  std::string data(bytes, 'x');
  if (send(c, data.data(), data.size(), 0) != static_cast<ssize_t>(data.size())) return false;
  for (size_t got = 0; got < bytes;) {
    ssize_t n = recv(s, data.data() + got, bytes - got, 0);
    if (n <= 0) return false;
    got += static_cast<size_t>(n);
  }
  usleep(20000);
  return true;
}

uint64_t cookie_of(int fd) {
  uint64_t cookie = 0;
  socklen_t len = sizeof(cookie);
  getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &len);
  return cookie;
}

class CcPolicyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (loads BPF, attaches to a cgroup)";
    cg_ = std::make_unique<TestCgroup>("ccpol");
    // Before any socket: a passive connection belongs to its listener's cgroup.
    cg_->enter();
    auto p = CcPolicy::load(1024);
    ASSERT_TRUE(p) << p.error().to_string();
    policy_ = std::move(*p);
  }
  void TearDown() override {
    policy_.reset();
    cg_.reset();
  }
  void apply_and_attach(const CongestionConfig& cfg) {
    auto s = policy_->apply(cfg);
    ASSERT_TRUE(s) << s.error().to_string();
    auto a = policy_->attach(cg_->path());
    ASSERT_TRUE(a) << a.error().to_string();
  }
  sl_cc_rule_stats stats(uint16_t id) {
    auto all = read_cc_rule_stats(policy_->fds().rule_stats);
    EXPECT_TRUE(all) << all.error().to_string();
    return all && id < all->size() ? (*all)[id] : sl_cc_rule_stats{};
  }
  uint16_t id_of(const std::string& name) { return policy_->rule_ids().ids().at(name); }
  size_t live_conns() {
    size_t n = 0;
    uint64_t key = 0, next = 0;
    const void* prev = nullptr;
    while (bpf_map_get_next_key(policy_->fds().conns, prev, &next) == 0) {
      ++n;
      key = next;
      prev = &key;
    }
    return n;
  }

  std::unique_ptr<TestCgroup> cg_;
  std::unique_ptr<CcPolicy> policy_;
};

TEST_F(CcPolicyTest, FirstMatchSetsAlgorithmAndWindowAndCountsApplied) {
  Loopback lo;
  CongestionConfig cfg;
  CcRuleConfig active = rule("to-lo", "reno");
  active.destinations = {cidr("127.0.0.0", 8)};
  active.port_lo = active.port_hi = lo.port();
  active.direction = SL_CC_DIR_ACTIVE;
  active.initial_cwnd = 32;
  CcRuleConfig shadowed = rule("shadowed", "bbr");  // matches too, but comes second
  shadowed.destinations = {cidr("127.0.0.1", 32)};
  cfg.rules = {active, shadowed};
  apply_and_attach(cfg);

  auto [c, s] = lo.connect_pair();
  EXPECT_EQ(cc_of(c), "reno");
  EXPECT_EQ(cwnd_of(c), 32u);
  // The accepted side is passive: `to-lo` does not match it, `shadowed` does.
  EXPECT_EQ(cc_of(s), "bbr");
  EXPECT_EQ(stats(id_of("to-lo")).applied, 1u);
  EXPECT_EQ(stats(id_of("shadowed")).applied, 1u);
  EXPECT_EQ(live_conns(), 2u);
  close(c);
  close(s);
}

TEST_F(CcPolicyTest, UnmatchedConnectionIsUntouched) {
  Loopback lo;
  CongestionConfig cfg;
  CcRuleConfig other = rule("elsewhere", "reno");
  other.destinations = {cidr("198.51.100.0", 24)};
  CcRuleConfig other_port = rule("other-port", "reno");
  other_port.port_lo = other_port.port_hi = static_cast<uint16_t>(lo.port() + 1);
  cfg.rules = {other, other_port};
  apply_and_attach(cfg);

  auto [c, s] = lo.connect_pair();
  const std::string host_default = cc_of(c);
  EXPECT_NE(host_default, "reno");
  EXPECT_EQ(cc_of(s), host_default);
  EXPECT_EQ(live_conns(), 0u);
  EXPECT_EQ(stats(id_of("elsewhere")).matched, 0u);
  EXPECT_EQ(stats(id_of("other-port")).matched, 0u);
  close(c);
  close(s);
}

TEST_F(CcPolicyTest, DefaultRuleTakesWhatNoRuleMatched) {
  Loopback lo;
  CongestionConfig cfg;
  CcRuleConfig other = rule("elsewhere", "bbr");
  other.destinations = {cidr("198.51.100.0", 24)};
  cfg.rules = {other};
  cfg.default_rule = rule("default", "reno");
  apply_and_attach(cfg);
  auto [c, s] = lo.connect_pair();
  EXPECT_EQ(cc_of(c), "reno");
  EXPECT_EQ(cc_of(s), "reno");
  EXPECT_EQ(stats(id_of("default")).applied, 2u);
  close(c);
  close(s);
}

TEST_F(CcPolicyTest, LiveStatsFollowTheConnectionAndGoWhenItCloses) {
  Loopback lo;
  CongestionConfig cfg;
  CcRuleConfig r = rule("lo", "reno");
  r.direction = SL_CC_DIR_ACTIVE;
  cfg.rules = {r};
  apply_and_attach(cfg);
  auto [c, s] = lo.connect_pair();
  const size_t sent = 256 * 1024;
  ASSERT_TRUE(transfer(c, s, sent));
  const uint64_t cookie = cookie_of(c);
  sl_cc_conn e{};
  ASSERT_EQ(bpf_map_lookup_elem(policy_->fds().conns, &cookie, &e), 0);
  EXPECT_STREQ(e.cc, "reno");
  EXPECT_EQ(e.direction, SL_CC_DIR_ACTIVE);
  EXPECT_EQ(e.rport, lo.port());
  EXPECT_GT(e.srtt_us, 0u);
  EXPECT_GT(e.bytes_acked, sent / 2);
  EXPECT_EQ(e.rule_id, id_of("lo"));
  close(c);
  close(s);
  usleep(20000);
  EXPECT_NE(bpf_map_lookup_elem(policy_->fds().conns, &cookie, &e), 0)
      << "entry outlived the socket";
  EXPECT_EQ(stats(id_of("lo")).closed, 1u);
  EXPECT_EQ(stats(id_of("lo")).retrans_hist[0], 1u);
}

TEST_F(CcPolicyTest, ReloadChangesNewConnectionsOnly) {
  Loopback lo;
  CongestionConfig cfg;
  cfg.rules = {rule("lo", "reno")};
  apply_and_attach(cfg);
  auto [c1, s1] = lo.connect_pair();
  EXPECT_EQ(cc_of(c1), "reno");
  const uint64_t gen = policy_->generation();

  cfg.rules = {rule("lo", "bbr")};
  auto a = policy_->apply(cfg);
  ASSERT_TRUE(a) << a.error().to_string();
  EXPECT_EQ(policy_->generation(), gen + 1);
  auto [c2, s2] = lo.connect_pair();
  EXPECT_EQ(cc_of(c2), "bbr");
  EXPECT_EQ(cc_of(c1), "reno");
  // Same name, same id: the counters carry on across the reload.
  EXPECT_EQ(stats(id_of("lo")).applied, 4u);
  for (int fd : {c1, s1, c2, s2}) close(fd);
}

TEST_F(CcPolicyTest, SettingsThatDoNotTakeAreCountedAsFailed) {
  Loopback lo;
  CongestionConfig cfg;
  CcRuleConfig ok = rule("bufs", "");
  ok.direction = SL_CC_DIR_ACTIVE;
  ok.sndbuf = 65536;
  ok.rcvbuf = 65536;
  ok.cwnd_clamp = 20;
  CcRuleConfig too_big = rule("huge", "");
  too_big.direction = SL_CC_DIR_PASSIVE;
  too_big.sndbuf = 1u << 30;  // above net.core.wmem_max: the kernel caps it
  cfg.rules = {ok, too_big};
  apply_and_attach(cfg);
  auto [c, s] = lo.connect_pair();
  int v = 0;
  socklen_t len = sizeof(v);
  getsockopt(c, SOL_SOCKET, SO_SNDBUF, &v, &len);
  EXPECT_EQ(v, 131072);
  EXPECT_EQ(stats(id_of("bufs")).applied, 1u);
  EXPECT_EQ(stats(id_of("huge")).failed, 1u);
  EXPECT_EQ(stats(id_of("huge")).failed_by[SL_CC_SET_SNDBUF], 1u);
  close(c);
  close(s);
}

TEST_F(CcPolicyTest, CgroupRuleMatchesItsSubtreeOnly) {
  TestCgroup inner("inner", cg_->path());
  TestCgroup sibling("sibling", cg_->path());
  CongestionConfig cfg;
  CcRuleConfig sib = rule("sibling", "bbr");
  sib.cgroup = sibling.path();
  CcRuleConfig outer = rule("outer", "reno");
  outer.cgroup = cg_->path();
  cfg.rules = {sib, outer};
  apply_and_attach(cfg);
  inner.enter();  // a child of the attached cgroup: `outer` holds it, `sibling` does not
  Loopback lo;
  auto [c, s] = lo.connect_pair();
  EXPECT_EQ(cc_of(c), "reno");
  EXPECT_EQ(stats(id_of("sibling")).matched, 0u);
  EXPECT_EQ(stats(id_of("outer")).matched, 2u);
  close(c);
  close(s);
}

// Review H1: an IPv4 peer of an IPv6 socket (a dual-stack listener, an IPv6 client socket to
// ::ffff:a.b.c.d) is matched by the IPv4 rules.
TEST_F(CcPolicyTest, IpV4MappedPeersMatchIpV4Rules) {
  CongestionConfig cfg;
  CcRuleConfig r = rule("lo4", "reno");
  r.destinations = {cidr("127.0.0.0", 8)};
  cfg.rules = {r};
  apply_and_attach(cfg);
  int l = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int zero = 0;
  setsockopt(l, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_any;
  ASSERT_EQ(bind(l, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  ASSERT_EQ(listen(l, 4), 0);
  socklen_t len = sizeof(a);
  getsockname(l, reinterpret_cast<sockaddr*>(&a), &len);
  int c = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in6 to = a;
  inet_pton(AF_INET6, "::ffff:127.0.0.1", &to.sin6_addr);
  ASSERT_EQ(connect(c, reinterpret_cast<sockaddr*>(&to), sizeof(to)), 0);
  int s = accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
  EXPECT_EQ(cc_of(c), "reno");
  EXPECT_EQ(cc_of(s), "reno");
  EXPECT_EQ(stats(id_of("lo4")).applied, 2u);
  for (int fd : {c, s, l}) close(fd);
}

// Review M1: a rule for a cgroup holds its whole subtree, however deep.
TEST_F(CcPolicyTest, CgroupRuleHoldsADeepSubtree) {
  CongestionConfig cfg;
  CcRuleConfig r = rule("outer", "reno");
  r.cgroup = cg_->path();
  cfg.rules = {r};
  apply_and_attach(cfg);
  std::vector<std::unique_ptr<TestCgroup>> chain;
  std::string parent = cg_->path();
  for (int i = 0; i < 20; ++i) {
    chain.push_back(std::make_unique<TestCgroup>("d" + std::to_string(i), parent));
    parent = chain.back()->path();
  }
  chain.back()->enter();
  Loopback lo;
  auto [c, s] = lo.connect_pair();
  EXPECT_EQ(cc_of(c), "reno") << "20 levels below the rule's cgroup";
  for (int fd : {c, s}) close(fd);
  cg_->enter();  // out of the chain before it is removed
  while (!chain.empty()) chain.pop_back();
}

// Review M3: a rule whose cgroup does not exist does not fail the policy; it matches nothing.
TEST_F(CcPolicyTest, RuleWithAMissingCgroupIsInert) {
  CongestionConfig cfg;
  CcRuleConfig gone = rule("gone", "bbr");
  gone.cgroup = cg_->path() + "/not-there";
  CcRuleConfig all = rule("all", "reno");
  cfg.rules = {gone, all};
  apply_and_attach(cfg);
  Loopback lo;
  auto [c, s] = lo.connect_pair();
  EXPECT_EQ(cc_of(c), "reno");
  EXPECT_EQ(stats(id_of("gone")).matched, 0u);
  for (int fd : {c, s}) close(fd);
}

// Review M2: an id a removed rule leaves behind is not given to a new rule while connections
// of the old one are still open: their closes would count into the new rule.
TEST_F(CcPolicyTest, IdOfARemovedRuleWaitsForItsConnections) {
  CongestionConfig cfg;
  cfg.rules = {rule("old", "reno")};
  apply_and_attach(cfg);
  Loopback lo;
  auto [c, s] = lo.connect_pair();
  const uint16_t old_id = id_of("old");
  cfg.rules = {rule("x", "reno")};
  ASSERT_TRUE(policy_->apply(cfg));
  cfg.rules = {rule("x", "reno"), rule("new", "reno")};
  ASSERT_TRUE(policy_->apply(cfg));
  EXPECT_NE(id_of("new"), old_id);
  for (int fd : {c, s}) close(fd);
}

// Review M6: the live entry shows the algorithm the socket uses now.
TEST_F(CcPolicyTest, LiveEntryFollowsAnAlgorithmTheOwnerSwitches) {
  CongestionConfig cfg;
  CcRuleConfig r = rule("lo", "reno");
  r.direction = SL_CC_DIR_ACTIVE;
  cfg.rules = {r};
  apply_and_attach(cfg);
  Loopback lo;
  auto [c, s] = lo.connect_pair();
  const char cubic[] = "cubic";
  ASSERT_EQ(setsockopt(c, IPPROTO_TCP, TCP_CONGESTION, cubic, sizeof(cubic) - 1), 0);
  ASSERT_TRUE(transfer(c, s, 64 * 1024));
  const uint64_t cookie = cookie_of(c);
  sl_cc_conn e{};
  ASSERT_EQ(bpf_map_lookup_elem(policy_->fds().conns, &cookie, &e), 0);
  EXPECT_STREQ(e.cc, "cubic");
  for (int fd : {c, s}) close(fd);
}

// Review H3: when the policy moves to another cgroup, the sockets it followed get no more
// callbacks; their entries go with the move instead of staying forever.
TEST_F(CcPolicyTest, MovingToAnotherCgroupDropsEntriesNoCallbackWouldDelete) {
  CongestionConfig cfg;
  cfg.rules = {rule("lo", "reno")};
  apply_and_attach(cfg);
  Loopback lo;
  auto [c, s] = lo.connect_pair();
  EXPECT_EQ(live_conns(), 2u);
  TestCgroup other("other");
  ASSERT_TRUE(policy_->attach(other.path()));
  for (int fd : {c, s}) close(fd);
  usleep(20000);
  EXPECT_EQ(live_conns(), 0u);
  policy_->detach();  // before `other` is removed
}

// Review H2: a restart that fails (here: another cc_conns size) leaves the running policy,
// its pins and its attachment as they were.
TEST_F(CcPolicyTest, FailedRestartLeavesTheRunningPolicy) {
  policy_.reset();
  const std::string dir = "/sys/fs/bpf/sl-ccpol-h2-" + std::to_string(getpid());
  CongestionConfig cfg;
  cfg.rules = {rule("lo", "reno")};
  {
    auto first = CcPolicy::open(1024, dir);
    ASSERT_TRUE(first) << first.error().to_string();
    ASSERT_TRUE((*first)->apply(cfg));
    ASSERT_TRUE((*first)->attach(cg_->path()));
    (*first)->keep_on_exit(true);  // as sluiced leaves it (or kill -9)
  }
  auto second = CcPolicy::open(2048, dir);
  ASSERT_FALSE(second);
  EXPECT_NE(second.error().message.find("1024"), std::string::npos) << second.error().message;
  Loopback lo;
  auto [c, s] = lo.connect_pair();
  EXPECT_EQ(cc_of(c), "reno") << "the running policy was taken down";
  for (int fd : {c, s}) close(fd);
  auto third = CcPolicy::open(1024, dir);  // the right size adopts it, then removes it
  ASSERT_TRUE(third) << third.error().to_string();
  EXPECT_TRUE((*third)->adopted());
  (*third)->keep_on_exit(false);
  third->reset();
  EXPECT_FALSE(std::filesystem::exists(dir));
}

// A local flood at the table's size: more matched connections than cc_conns holds. Each one
// still gets its settings; those beyond the table are counted `untracked`, none is lost, and
// the table frees as they close.
TEST_F(CcPolicyTest, ConnectionsBeyondTheTableAreSetButUntracked) {
  policy_.reset();
  auto small = CcPolicy::load(16);
  ASSERT_TRUE(small) << small.error().to_string();
  policy_ = std::move(*small);
  CongestionConfig cfg;
  CcRuleConfig r = rule("flood", "reno");
  r.direction = SL_CC_DIR_ACTIVE;
  cfg.rules = {r};
  apply_and_attach(cfg);
  Loopback lo;
  std::vector<int> fds;
  int reno = 0;
  for (int i = 0; i < 24; ++i) {
    auto [c, s] = lo.connect_pair();
    reno += cc_of(c) == "reno";
    fds.push_back(c);
    fds.push_back(s);
  }
  EXPECT_EQ(reno, 24) << "a connection beyond the table lost its settings";
  EXPECT_EQ(live_conns(), 16u);
  const sl_cc_rule_stats st = stats(id_of("flood"));
  EXPECT_EQ(st.applied, 24u);
  EXPECT_EQ(st.untracked, 8u);
  for (int fd : fds) close(fd);
  usleep(20000);
  EXPECT_EQ(live_conns(), 0u) << "closed connections kept their entries";
  auto [c, s] = lo.connect_pair();
  EXPECT_EQ(live_conns(), 1u) << "the table did not free";
  for (int fd : {c, s}) close(fd);
}

// Two agents on one host (two pin directories, e.g. one per network namespace), both with a
// `congestion` section: sluice_aimd's name is kernel-wide, so the second uses the first's
// registration instead of failing to start; each has its own policy.
TEST_F(CcPolicyTest, SecondAgentOnTheHostUsesTheFirstsAlgorithm) {
  policy_.reset();
  const std::string base = "/sys/fs/bpf/sl-ccpol-" + std::to_string(getpid());
  CongestionConfig cfg;
  cfg.enabled = true;
  cfg.cgroup = cg_->path();
  cfg.rules = {rule("ours", SL_CC_OURS)};
  mkdir((base + "-a").c_str(), 0700);
  mkdir((base + "-b").c_str(), 0700);
  {
    auto first = CongestionControl::start(cfg, base + "-a");
    ASSERT_TRUE(first) << first.error().to_string();
    auto second = CongestionControl::start(cfg, base + "-b");
    ASSERT_TRUE(second) << second.error().to_string();
    // (The first may itself have found another process's registration.)
    if ((*first)->fds().algo_users >= 0) {
      EXPECT_EQ((*second)->fds().algo_users, -1) << "the second registered its own";
    }
    Loopback lo;
    auto [c, s] = lo.connect_pair();
    EXPECT_EQ(cc_of(c), SL_CC_OURS);
    close(c);
    close(s);
    (*second)->detach_on_exit(true);
    (*first)->detach_on_exit(true);
  }
  EXPECT_FALSE(std::filesystem::exists(base + "-a/cc")) << "pins left behind";
  EXPECT_FALSE(std::filesystem::exists(base + "-b/cc")) << "pins left behind";
  rmdir((base + "-a").c_str());
  rmdir((base + "-b").c_str());
}

}  // namespace
}  // namespace sluice
