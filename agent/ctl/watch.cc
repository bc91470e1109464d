// The `--watch` loop (watch.h). The interval is slept in sigtimedwait with the stop signals
// blocked, so a Ctrl-C ends the wait at once and the loop exits 0 through its one return,
// with no handler and no global flag.
#include "watch.h"

#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <ctime>

namespace sluice::ctl {

namespace {

std::string now_text() {
  char buf[64];
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  std::strftime(buf, sizeof(buf), "%a %b %e %H:%M:%S %Y", &tm);
  return buf;
}

// Sleeps `seconds` unless a signal of `stop` arrives first: true when one did.
bool interrupted_within(double seconds, const sigset_t& stop) {
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(seconds);
  ts.tv_nsec = static_cast<long>((seconds - std::floor(seconds)) * 1e9);
  // EAGAIN: the time passed. EINTR (another signal, handled elsewhere): redraw early.
  return sigtimedwait(&stop, nullptr, &ts) > 0;
}

}  // namespace

int watch(double interval_s, const std::string& title, bool json,
          const std::function<std::string()>& frame) {
  sigset_t stop, old;
  sigemptyset(&stop);
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&stop, s);
  sigprocmask(SIG_BLOCK, &stop, &old);
  const bool tty = isatty(STDOUT_FILENO) == 1;
  const std::string head = fmt::format("Every {:g}s: {}", interval_s, title);
  do {
    const std::string body = frame();
    if (tty) std::fputs("\033[H\033[2J", stdout);  // home, clear: the frame replaces the last
    if (tty || !json) std::printf("%s    %s\n\n", head.c_str(), now_text().c_str());
    std::fputs(body.c_str(), stdout);
    if (!tty && !json) std::fputs("\n", stdout);
    std::fflush(stdout);
  } while (!interrupted_within(interval_s, stop));
  sigprocmask(SIG_SETMASK, &old, nullptr);
  return 0;
}

}  // namespace sluice::ctl
