// EventLoop: fd callbacks, one-shot and periodic timers, removal from inside callbacks.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <sluice/core/event_loop.h>

using namespace std::chrono_literals;

namespace sluice {
namespace {

TEST(EventLoop, OneShotAndPeriodicTimers) {
  auto loop = EventLoop::create();
  ASSERT_TRUE(loop) << loop.error().to_string();
  int once = 0, periodic = 0;
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_NE((*loop)->add_timer(5ms, 0ns, [&] { ++once; }), 0u);
  EventLoop::TimerId p = 0;
  p = (*loop)->add_timer(1ms, 2ms, [&] {
    if (++periodic == 5) {
      (*loop)->cancel_timer(p);  // cancelling itself from its own callback
      (*loop)->stop();
    }
  });
  ASSERT_NE(p, 0u);
  ASSERT_TRUE((*loop)->run());
  EXPECT_EQ(periodic, 5);
  EXPECT_EQ(once, 1);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 9ms);  // 1 ms + 4 intervals of 2 ms
}

TEST(EventLoop, FdCallbackAndRemoveInsideCallback) {
  auto loop = EventLoop::create();
  ASSERT_TRUE(loop);
  UniqueFd efd(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  ASSERT_TRUE(efd.valid());
  int calls = 0;
  ASSERT_TRUE((*loop)->add(efd.get(), EPOLLIN, [&](uint32_t events) {
    EXPECT_TRUE(events & EPOLLIN);
    uint64_t v;
    ASSERT_EQ(read(efd.get(), &v, sizeof(v)), 8);
    EXPECT_EQ(v, 3u);
    ++calls;
    (*loop)->remove(efd.get());  // removing itself while running
    (*loop)->add_timer(1ms, 0ns, [&] { (*loop)->stop(); });
  }));
  uint64_t three = 3;
  ASSERT_EQ(write(efd.get(), &three, sizeof(three)), 8);
  ASSERT_TRUE((*loop)->run());
  EXPECT_EQ(calls, 1);
}

TEST(EventLoop, AddingAWatchedFdTwiceIsAnError) {
  auto loop = EventLoop::create();
  ASSERT_TRUE(loop);
  UniqueFd efd(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  ASSERT_TRUE((*loop)->add(efd.get(), EPOLLIN, [](uint32_t) {}));
  auto s = (*loop)->add(efd.get(), EPOLLIN, [](uint32_t) {});
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, EEXIST);
}

// An event already returned by epoll_wait for an fd that an earlier callback of the same batch
// closed, and whose number a new registration took, must not reach the new owner: for a
// health check it could pass for "connected" on a socket still connecting.
TEST(EventLoop, StaleEventOfAReusedFdNumberIsDropped) {
  auto loop = EventLoop::create();
  ASSERT_TRUE(loop);
  EventLoop& ev = **loop;
  int a = eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC), b = eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC);
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  bool stale_hit = false, swapped = false;
  int fresh = -1;
  // Whichever of a and b runs first replaces the other with a new, never readable, eventfd
  // under the same number.
  auto replace_other = [&](int self, int other) {
    uint64_t v;
    (void)!read(self, &v, sizeof(v));
    if (swapped) return;
    swapped = true;
    ev.remove(other);
    int n = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    ASSERT_GE(n, 0);
    ASSERT_EQ(dup3(n, other, O_CLOEXEC), other);  // the old number, now a new file
    close(n);
    fresh = other;
    ASSERT_TRUE(ev.add(fresh, EPOLLIN, [&](uint32_t) { stale_hit = true; }));
  };
  ASSERT_TRUE(ev.add(a, EPOLLIN, [&](uint32_t) { replace_other(a, b); }));
  ASSERT_TRUE(ev.add(b, EPOLLIN, [&](uint32_t) { replace_other(b, a); }));
  ASSERT_NE(ev.add_timer(std::chrono::milliseconds(50), {}, [&] { ev.stop(); }), 0u);
  ASSERT_TRUE(ev.run());
  EXPECT_TRUE(swapped);
  EXPECT_FALSE(stale_hit) << "the queued event of the old fd reached the new registration";
  ev.remove(a);
  ev.remove(b);
  close(a);
  close(b);
}

}  // namespace
}  // namespace sluice
