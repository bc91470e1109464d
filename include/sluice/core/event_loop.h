// The agent's single event loop: epoll over non-blocking fds plus timers (one timerfd each).
// Every agent component (signals, the data-path clock, health checks, metrics, the control
// API, ring buffers) registers here; nothing may block the loop.
#pragma once

#include <sluice/core/fd.h>
#include <sluice/core/result.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>

namespace sluice {

class EventLoop {
 public:
  using FdCallback = std::function<void(uint32_t events)>;  // epoll event bits
  using TimerCallback = std::function<void()>;
  using TimerId = uint64_t;

  static Result<std::unique_ptr<EventLoop>> create();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Watches `fd` (not owned) for `events` (EPOLLIN, EPOLLOUT, ...). One callback per fd.
  Status add(int fd, uint32_t events, FdCallback cb);
  Status modify(int fd, uint32_t events);
  // Safe to call from any callback, including the fd's own.
  void remove(int fd);

  // Calls `cb` after `delay`, then every `interval` if it is non-zero. Returns 0 on failure
  // (the error is logged with errno).
  TimerId add_timer(std::chrono::nanoseconds delay, std::chrono::nanoseconds interval,
                    TimerCallback cb);
  // Safe to call from any callback, including the timer's own.
  void cancel_timer(TimerId id);

  // Runs until stop(). Returns an error only if epoll itself fails.
  Status run();
  void stop() { running_ = false; }

 private:
  EventLoop() = default;
  struct Timer {
    UniqueFd fd;
    TimerCallback cb;
  };
  UniqueFd epfd_;
  bool running_ = false;
  TimerId next_timer_ = 1;
  // shared_ptr: a callback that removes its own registration must not destroy itself while
  // it runs.
  std::unordered_map<int, std::shared_ptr<FdCallback>> fds_;
  std::unordered_map<TimerId, std::shared_ptr<Timer>> timers_;
  std::unordered_map<int, TimerId> timer_by_fd_;
  std::unordered_map<int, uint32_t> gens_;  // fd -> generation of its registration
  uint32_t next_gen_ = 0;
};

}  // namespace sluice
