// bulk_transfer (bulk.h).
#include "bulk.h"

#include <arpa/inet.h>
#include <linux/tcp.h>  // the tcp_info of the kernel (glibc's lacks tcpi_delivered)
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

#include <sluice/core/fd.h>
#include "sockets.h"

namespace sluice::test {

using Clock = std::chrono::steady_clock;

// Between two TCP_INFO readings of the tracer.
constexpr long kTraceGapNs = 10000;
// SCHED_FIFO priorities: the tracer above the transfer, so it wakes on time.
constexpr int kTracerPrio = 10;
constexpr int kTransferPrio = 5;

// SCHED_FIFO for the calling thread while it lives (when `on`), the previous policy after.
class RealtimeScope {
 public:
  RealtimeScope(bool on, int prio) {
    if (!on) return;
    pthread_getschedparam(pthread_self(), &policy_, &param_);
    const sched_param p{.sched_priority = prio};
    set_ = pthread_setschedparam(pthread_self(), SCHED_FIFO, &p) == 0;
  }
  ~RealtimeScope() {
    if (set_) pthread_setschedparam(pthread_self(), policy_, &param_);
  }
  RealtimeScope(const RealtimeScope&) = delete;
  RealtimeScope& operator=(const RealtimeScope&) = delete;

 private:
  bool set_ = false;
  int policy_ = SCHED_OTHER;
  sched_param param_{};
};

BulkResult bulk_transfer(const NetNs& snd, const NetNs& rcv, const std::string& rcv_addr,
                         const std::string& cc, uint64_t bytes, BulkOptions opts) {
  const bool trace = opts.trace;
  BulkResult r;
  sockaddr_in dst{};
  dst.sin_family = AF_INET;
  if (inet_pton(AF_INET, rcv_addr.c_str(), &dst.sin_addr) != 1) {
    r.error = "not an IPv4 address: " + rcv_addr;
    return r;
  }
  UniqueFd l(rcv.in([] { return socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0); }));
  if (!l.valid()) return r.error = errno_text("socket"), r;
  if (bind(l.get(), reinterpret_cast<sockaddr*>(&dst), sizeof(dst)) != 0)
    return r.error = errno_text("bind " + rcv_addr), r;
  if (listen(l.get(), 1) != 0) return r.error = errno_text("listen"), r;
  socklen_t alen = sizeof(dst);
  getsockname(l.get(), reinterpret_cast<sockaddr*>(&dst), &alen);

  const timeval timeout{30, 0};
  Clock::time_point eof_at{};
  std::string rcv_error;
  std::thread receiver([&] {
    RealtimeScope rt(opts.realtime, kTransferPrio);
    pollfd p{l.get(), POLLIN, 0};
    if (poll(&p, 1, 10000) != 1) {
      rcv_error = "receiver: no connection within 10 s";
      return;
    }
    UniqueFd c(accept4(l.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!c.valid()) {
      rcv_error = errno_text("accept");
      return;
    }
    setsockopt(c.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    std::vector<char> buf(1 << 18);
    for (;;) {
      const ssize_t n = recv(c.get(), buf.data(), buf.size(), 0);
      if (n == 0) break;
      if (n < 0) {
        rcv_error = errno_text("recv");
        break;
      }
      r.received += static_cast<uint64_t>(n);
    }
    eof_at = Clock::now();
  });
  // Every early return below must first let the receiver go: it waits for a connection.
  auto stop_receiver = [&](std::string error) {
    r.error = std::move(error);
    shutdown(l.get(), SHUT_RDWR);
    receiver.join();
    return r;
  };

  UniqueFd s(snd.in([] { return socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0); }));
  if (!s.valid()) return stop_receiver(errno_text("socket"));
  setsockopt(s.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  if (setsockopt(s.get(), IPPROTO_TCP, TCP_CONGESTION, cc.data(),
                 static_cast<socklen_t>(cc.size())) != 0)
    return stop_receiver(errno_text("select congestion control " + cc));
  const Clock::time_point start = Clock::now();
  if (connect(s.get(), reinterpret_cast<sockaddr*>(&dst), sizeof(dst)) != 0)
    return stop_receiver(errno_text("connect " + rcv_addr));

  std::atomic<bool> done{false};
  std::thread tracer;
  if (trace) {
    tracer = std::thread([&] {
      // A real-time thread that sleeps between readings: it wakes on time even with both
      // cores busy moving the transfer (a normal thread gets the CPU only every few ms, and
      // fast recoveries on a veth last tens of microseconds), and leaves the core to the
      // transfer in between. As root; without it, readings are just sparser.
      RealtimeScope rt(true, kTracerPrio);
      const timespec gap{0, kTraceGapNs};
      CcSample last{};
      while (!done.load(std::memory_order_relaxed)) {
        nanosleep(&gap, nullptr);
        tcp_info ti{};
        socklen_t len = sizeof(ti);
        if (getsockopt(s.get(), IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) break;
        r.polls++;
        const auto t = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start);
        const CcSample x{t.count(), ti.tcpi_snd_cwnd, ti.tcpi_snd_ssthresh, ti.tcpi_delivered,
                         ti.tcpi_ca_state};
        if (r.trace.empty() || x.cwnd != last.cwnd || x.ssthresh != last.ssthresh ||
            x.state != last.state) {
          r.trace.push_back(x);
          last = x;
        }
      }
    });
  }
  RealtimeScope rt(opts.realtime, kTransferPrio);
  // Small writes: the socket lock is held for a whole send(), and TCP_INFO waits for it (ACKs
  // meanwhile go to the backlog), so large ones would hide whole recoveries from the tracer.
  std::vector<char> buf(trace ? 16384 : 1 << 18, 'x');
  uint64_t sent = 0;
  while (sent < bytes) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), bytes - sent));
    const ssize_t n = send(s.get(), buf.data(), want, MSG_NOSIGNAL);
    if (n <= 0) {
      r.error = errno_text("send");
      break;
    }
    sent += static_cast<uint64_t>(n);
  }
  shutdown(s.get(), SHUT_WR);
  receiver.join();
  done = true;
  if (tracer.joinable()) tracer.join();
  tcp_info ti{};
  socklen_t len = sizeof(ti);
  if (getsockopt(s.get(), IPPROTO_TCP, TCP_INFO, &ti, &len) == 0) r.retrans = ti.tcpi_total_retrans;
  if (r.error.empty()) r.error = rcv_error;
  r.seconds = std::chrono::duration<double>(eof_at - start).count();
  return r;
}

}  // namespace sluice::test
