// CcAlgorithm (agent/cc/cc_algo.cc) and sluice_aimd (bpf/cc_aimd.bpf.c) registered for real:
// listed by the kernel, selectable on sockets, the count of sockets using it, unregistered by
// the destructor without pins, and with pins adopted by a second load (BPF_LINK_UPDATE) without
// a moment unregistered, then removed by unregister_if_unused() only at 0 users.
// Needs root and struct_ops links (Linux 6.4+); skips with the reason otherwise. Registration is
// kernel-wide, so these tests hold the ctest resource lock "sluice_aimd".
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include <sluice/abi/cc.h>
#include <sluice/bpf/pin_dir.h>
#include <sluice/cc/cc_algo.h>
#include <sluice/cc/pins.h>
#include "cc_util.h"
#include "netns.h"

namespace sluice::test {
namespace {

using namespace std::chrono_literals;

// Polls `users` until it reads `want` (a released socket is counted down when the kernel
// destroys it, a moment after close()).
uint64_t wait_users(const CcAlgorithm& a, uint64_t want) {
  uint64_t n = ~0ull;
  for (int i = 0; i < 200; i++) {
    auto u = a.users();
    EXPECT_TRUE(u) << u.error().to_string();
    if (!u) return n;
    n = *u;
    if (n == want) break;
    std::this_thread::sleep_for(10ms);
  }
  return n;
}

// An RST close: the kernel destroys the socket (and releases its congestion control) at once.
void abort_close(UniqueFd& fd) {
  const linger lg{1, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  fd.reset();
}

class CcAlgoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = skip_reason()) GTEST_SKIP() << *why;
    ASSERT_FALSE(cc_available(cc_)) << cc_ << " is registered already (a test left it)";
    ns_ = std::make_unique<NetNs>("cca");
    // struct_ops links themselves: a kernel without them refuses the link (EINVAL).
    auto a = CcAlgorithm::load(nullptr, cc_);
    if (!a && (a.error().code == EINVAL || a.error().code == EOPNOTSUPP))
      GTEST_SKIP() << "no struct_ops links: " << a.error().to_string();
    ASSERT_TRUE(a) << a.error().to_string();
  }

  void TearDown() override {
    // Whatever a failed test left: pins keep sluice_aimd registered for every later test.
    if (!pin_path_.empty()) {
      PinDir d(pin_path_);
      d.unpin(kCcAlgoLinkPin);
      d.unpin(kCcAlgoUsersPin);
      d.remove();
    }
  }

  // A unique pin directory under bpffs (the pid in its name); removed in TearDown.
  std::unique_ptr<PinDir> Pins() {
    pin_path_ = "/sys/fs/bpf/" + unique_name("cc");
    auto d = PinDir::create(pin_path_, /*lock=*/false);
    EXPECT_TRUE(d) << d.error().to_string();
    return d ? std::make_unique<PinDir>(std::move(*d)) : nullptr;
  }

  std::unique_ptr<CcAlgorithm> Load(PinDir* pins) {
    auto a = CcAlgorithm::load(pins, cc_);
    EXPECT_TRUE(a) << a.error().to_string();
    return a ? std::move(*a) : nullptr;
  }

  TcpPair Pair(std::string cc = {}) {
    if (cc.empty()) cc = cc_;
    return ns_->in([&] { return tcp_pair("127.0.0.1", cc); });
  }

  const std::string cc_ = test_cc_name();
  std::unique_ptr<NetNs> ns_;
  std::string pin_path_;
};

TEST_F(CcAlgoTest, RegisteredAndSelectable) {
  auto a = Load(nullptr);
  ASSERT_TRUE(a);
  EXPECT_FALSE(a->adopted());
  EXPECT_TRUE(cc_available(cc_));
  EXPECT_EQ(ns_->in([&] { return try_select_on_fresh_socket(cc_); }), 0);
  TcpPair p = Pair();
  EXPECT_EQ(cc_of(p.client.get()), cc_);
  // Data flows both ways on it.
  const char msg[] = "sluice";
  char buf[sizeof(msg)] = {};
  ASSERT_EQ(send(p.client.get(), msg, sizeof(msg), 0), static_cast<ssize_t>(sizeof(msg)));
  ASSERT_EQ(recv(p.server.get(), buf, sizeof(buf), MSG_WAITALL), static_cast<ssize_t>(sizeof(msg)));
  EXPECT_STREQ(buf, msg);
}

TEST_F(CcAlgoTest, UsersFollowSockets) {
  auto a = Load(nullptr);
  ASSERT_TRUE(a);
  EXPECT_EQ(wait_users(*a, 0), 0u);
  {
    // Selected but never connected: init does not run, and neither does the count.
    UniqueFd idle(ns_->in([] { return socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0); }));
    ASSERT_EQ(select_cc(idle.get(), cc_), 0);
    TcpPair p1 = Pair();
    EXPECT_EQ(wait_users(*a, 1), 1u);
    TcpPair p2 = Pair();
    TcpPair other = Pair("reno");  // not ours: not counted
    EXPECT_EQ(wait_users(*a, 2), 2u);
    abort_close(p1.client);
    EXPECT_EQ(wait_users(*a, 1), 1u);
    // An orderly close: released when the kernel destroys the socket (TIME_WAIT keeps only a
    // minisock).
    p2.client.reset();
    p2.server.reset();
    EXPECT_EQ(wait_users(*a, 0), 0u);
    // A socket that moves away from sluice_aimd releases it too.
    TcpPair p3 = Pair();
    EXPECT_EQ(wait_users(*a, 1), 1u);
    ASSERT_EQ(select_cc(p3.client.get(), "reno"), 0);
    EXPECT_EQ(wait_users(*a, 0), 0u);
  }
  // Released sockets whose init never ran (the idle one) took nothing: never below 0.
  EXPECT_EQ(wait_users(*a, 0), 0u);
}

TEST_F(CcAlgoTest, DestroyWithoutPinsUnregisters) {
  auto a = Load(nullptr);
  ASSERT_TRUE(a);
  TcpPair p = Pair();
  ASSERT_TRUE(cc_available(cc_));
  a.reset();
  EXPECT_FALSE(cc_available(cc_));
  EXPECT_EQ(ns_->in([&] { return try_select_on_fresh_socket(cc_); }), ENOENT);
  // A socket that used it keeps its (now unregistered) algorithm and keeps working.
  EXPECT_EQ(cc_of(p.client.get()), cc_);
  const char msg[] = "still";
  char buf[sizeof(msg)] = {};
  ASSERT_EQ(send(p.client.get(), msg, sizeof(msg), 0), static_cast<ssize_t>(sizeof(msg)));
  ASSERT_EQ(recv(p.server.get(), buf, sizeof(buf), MSG_WAITALL), static_cast<ssize_t>(sizeof(msg)));
}

TEST_F(CcAlgoTest, PinnedLinkAdoptedAndSharedCount) {
  auto pins = Pins();
  ASSERT_TRUE(pins);
  auto first = Load(pins.get());
  ASSERT_TRUE(first);
  EXPECT_FALSE(first->adopted());
  EXPECT_TRUE(pins->holds(kCcAlgoLinkPin));
  EXPECT_TRUE(pins->holds(kCcAlgoUsersPin));
  TcpPair old_conn = Pair();
  EXPECT_EQ(wait_users(*first, 1), 1u);

  // The first instance goes (sluiced exits, or is killed): the pin keeps it registered.
  first.reset();
  EXPECT_TRUE(cc_available(cc_));
  EXPECT_EQ(ns_->in([&] { return try_select_on_fresh_socket(cc_); }), 0);

  // While the second loads and swaps its program in, fresh sockets keep selecting it.
  std::atomic<bool> stop{false};
  std::atomic<int> tries{0}, refused{0};
  std::thread watcher([&] {
    ns_->in([&] {
      while (!stop.load()) {
        tries++;
        if (try_select_on_fresh_socket(cc_) != 0) refused++;
      }
    });
  });
  auto second = Load(pins.get());
  stop = true;
  watcher.join();
  ASSERT_TRUE(second);
  EXPECT_TRUE(second->adopted());
  EXPECT_GT(tries.load(), 0);
  EXPECT_EQ(refused.load(), 0) << "sluice_aimd was missing during the second load";

  // One count for both programs: the old connection is still counted, a new one adds to it.
  EXPECT_EQ(wait_users(*second, 1), 1u);
  TcpPair new_conn = Pair();
  EXPECT_EQ(wait_users(*second, 2), 2u);

  // Not while sockets use it: refused, naming the count, and still registered and pinned.
  auto s = second->unregister_if_unused();
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, EBUSY);
  EXPECT_NE(s.error().message.find("2 sockets"), std::string::npos) << s.error().message;
  EXPECT_TRUE(cc_available(cc_));
  EXPECT_TRUE(pins->holds(kCcAlgoLinkPin));

  // The old program's sockets release into the shared count too.
  abort_close(old_conn.client);
  abort_close(new_conn.client);
  EXPECT_EQ(wait_users(*second, 0), 0u);
  s = second->unregister_if_unused();
  ASSERT_TRUE(s) << s.error().to_string();
  EXPECT_FALSE(cc_available(cc_));
  EXPECT_EQ(ns_->in([&] { return try_select_on_fresh_socket(cc_); }), ENOENT);
  EXPECT_FALSE(pins->holds(kCcAlgoLinkPin));
  EXPECT_FALSE(pins->holds(kCcAlgoUsersPin));
  EXPECT_TRUE(pins->list().empty());
  second.reset();
  EXPECT_FALSE(cc_available(cc_));
}

// sluiced killed with SIGKILL runs no destructor: the pinned link keeps sluice_aimd registered,
// and the next load adopts it.
TEST_F(CcAlgoTest, KilledOwnerLeavesItRegistered) {
  auto pins = Pins();
  ASSERT_TRUE(pins);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0) << strerror(errno);
  if (pid == 0) {
    // The child: register with pins, then die as kill -9 would.
    auto a = CcAlgorithm::load(pins.get(), cc_);
    if (!a) _exit(1);
    raise(SIGKILL);
    _exit(2);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
      << "the child did not register (exit status " << status << ")";
  EXPECT_TRUE(cc_available(cc_));
  EXPECT_EQ(ns_->in([&] { return try_select_on_fresh_socket(cc_); }), 0);
  auto next = Load(pins.get());
  ASSERT_TRUE(next);
  EXPECT_TRUE(next->adopted());
  auto s = next->unregister_if_unused();
  ASSERT_TRUE(s) << s.error().to_string();
  EXPECT_FALSE(cc_available(cc_));
}

}  // namespace
}  // namespace sluice::test
