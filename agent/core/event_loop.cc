// The epoll loop every agent component runs on (see event_loop.h). Level-triggered: a handler
// that leaves data unread is called again on the next turn, so no component has to drain its
// fd completely for correctness. One thread: handlers never race each other, which is what
// lets every component keep plain, unlocked state.
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>

#include <sluice/core/clock.h>
#include <sluice/core/event_loop.h>

namespace sluice {

Result<std::unique_ptr<EventLoop>> EventLoop::create() {
  std::unique_ptr<EventLoop> loop(new EventLoop());
  loop->epfd_.reset(epoll_create1(EPOLL_CLOEXEC));
  if (!loop->epfd_.valid()) return sys_error("epoll_create1");
  return loop;
}

EventLoop::~EventLoop() = default;

// epoll_data carries the fd and the generation of its registration: an event still queued for
// an fd that was closed, and whose number a new registration took in the same epoll_wait
// batch, is recognised as stale and dropped instead of reaching the new owner.
static uint64_t tag(int fd, uint32_t gen) { return (uint64_t{gen} << 32) | uint32_t(fd); }

Status EventLoop::add(int fd, uint32_t events, FdCallback cb) {
  const uint32_t gen = ++next_gen_;
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = tag(fd, gen);
  if (epoll_ctl(epfd_.get(), EPOLL_CTL_ADD, fd, &ev) != 0)
    return sys_error("epoll_ctl ADD fd " + std::to_string(fd));
  fds_[fd] = std::make_shared<FdCallback>(std::move(cb));
  gens_[fd] = gen;
  return {};
}

Status EventLoop::modify(int fd, uint32_t events) {
  auto g = gens_.find(fd);
  if (g == gens_.end())
    return Error{EBADF, "epoll_ctl MOD fd " + std::to_string(fd) + ": not registered"};
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = tag(fd, g->second);
  if (epoll_ctl(epfd_.get(), EPOLL_CTL_MOD, fd, &ev) != 0)
    return sys_error("epoll_ctl MOD fd " + std::to_string(fd));
  return {};
}

void EventLoop::remove(int fd) {
  gens_.erase(fd);
  if (fds_.erase(fd)) epoll_ctl(epfd_.get(), EPOLL_CTL_DEL, fd, nullptr);
}

// A timerfd per timer, registered like any fd: timers and I/O share one wait and one
// dispatch path. Components with many deadlines (health checks, the HTTP server) keep their
// own single timerfd over a sorted set instead of one of these each (see health.h).
EventLoop::TimerId EventLoop::add_timer(std::chrono::nanoseconds delay,
                                        std::chrono::nanoseconds interval, TimerCallback cb) {
  auto t = std::make_shared<Timer>();
  t->fd.reset(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  if (!t->fd.valid()) {
    spdlog::error("{}", sys_error("timerfd_create").to_string());
    return 0;
  }
  itimerspec its{};
  // A zero it_value disarms a timerfd: the first expiry must be at least 1 ns away.
  its.it_value = to_timespec(delay.count() > 0 ? delay : std::chrono::nanoseconds(1));
  its.it_interval = to_timespec(interval);
  if (timerfd_settime(t->fd.get(), 0, &its, nullptr) != 0) {
    spdlog::error("{}", sys_error("timerfd_settime").to_string());
    return 0;
  }
  t->cb = std::move(cb);
  const TimerId id = next_timer_++;
  const int fd = t->fd.get();
  const bool periodic = interval.count() > 0;
  auto s = add(fd, EPOLLIN, [this, id, fd, periodic](uint32_t) {
    uint64_t expirations = 0;
    if (read(fd, &expirations, sizeof(expirations)) != sizeof(expirations)) return;
    auto it = timers_.find(id);
    if (it == timers_.end()) return;
    std::shared_ptr<Timer> keep = it->second;  // the callback may cancel this timer
    if (!periodic) cancel_timer(id);
    keep->cb();
  });
  if (!s) {
    spdlog::error("{}", s.error().to_string());
    return 0;
  }
  timers_[id] = std::move(t);
  timer_by_fd_[fd] = id;
  return id;
}

void EventLoop::cancel_timer(TimerId id) {
  auto it = timers_.find(id);
  if (it == timers_.end()) return;
  const int fd = it->second->fd.get();
  remove(fd);
  timer_by_fd_.erase(fd);
  timers_.erase(it);  // closes the timerfd (a running callback holds its own reference)
}

// Each callback is looked up again just before it runs, not taken from a list made before the
// batch: an earlier callback of the same batch may have removed it (or re-registered its fd).
Status EventLoop::run() {
  running_ = true;
  epoll_event events[64];
  while (running_) {
    int n = epoll_wait(epfd_.get(), events, 64, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_error("epoll_wait");
    }
    for (int i = 0; i < n && running_; ++i) {
      const int fd = static_cast<int>(events[i].data.u64 & 0xffffffffu);
      const uint32_t gen = static_cast<uint32_t>(events[i].data.u64 >> 32);
      auto it = fds_.find(fd);
      if (it == fds_.end()) continue;  // removed by an earlier callback in this batch
      auto g = gens_.find(fd);
      if (g == gens_.end() || g->second != gen) continue;  // stale: the fd was re-registered
      std::shared_ptr<FdCallback> cb = it->second;
      (*cb)(events[i].events);
    }
  }
  return {};
}

}  // namespace sluice
