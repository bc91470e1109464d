// One health check of one probe, from socket() to its result: connect, send the request
// (http, udp), read the answer and judge it. Every step is non-blocking and driven by the
// loop; the check ends in succeed(), fail() or skip() (health.cc), which free the socket.
// The whole check, connect included, is bounded by the probe's timeout (on_timer, health.cc).
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "probe.h"
#include "sluice/health/health.h"

namespace sluice {

namespace {

// The status line of an HTTP response is read up to this size; a longer one fails the check.
// Only the status line decides an http check: headers and body are never read (the socket is
// reset after), so a backend cannot make the agent buffer a large response.
constexpr std::size_t kMaxStatusLine = 1024;

// The accepted codes as the config wrote them, for the failure reason: "200-299 or 404".
std::string status_list(const std::vector<StatusRange>& ranges) {
  std::string out;
  for (std::size_t i = 0; i < ranges.size(); ++i) {
    if (i > 0) out += i + 1 == ranges.size() ? " or " : ", ";
    out += std::to_string(ranges[i].lo);
    if (ranges[i].hi != ranges[i].lo) out += "-" + std::to_string(ranges[i].hi);
  }
  return out;
}

// Bytes from the network, made safe to log: printable ASCII kept, the rest as \xNN. They end
// up in log lines and in the API's last_error, where a backend must not inject newlines or
// terminal escapes.
std::string printable(std::string_view s, std::size_t max = 64) {
  std::string out;
  for (std::size_t i = 0; i < s.size() && i < max; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      char buf[5];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    }
  }
  if (s.size() > max) out += "...";
  return out;
}

// Parses "HTTP/<version> <3 digits>[ <reason>]" (the line without its CR LF).
std::optional<int> parse_status_line(std::string_view line) {
  if (line.substr(0, 5) != "HTTP/") return std::nullopt;
  const std::size_t sp = line.find(' ');
  if (sp == std::string_view::npos || sp == 5) return std::nullopt;
  std::string_view rest = line.substr(sp + 1);
  if (rest.size() < 3 || (rest.size() > 3 && rest[3] != ' ')) return std::nullopt;
  int code = 0;
  for (int i = 0; i < 3; ++i) {
    if (rest[i] < '0' || rest[i] > '9') return std::nullopt;
    code = code * 10 + (rest[i] - '0');
  }
  return code;
}

// Errors of the agent's own resources: the backend is not to blame for them. Such a check is
// skipped (skip()), not failed: an agent out of fds or ports must not take every healthy
// backend down with it.
bool local_errno(int err) {
  return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM ||
         err == EADDRNOTAVAIL || err == EAFNOSUPPORT;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// One check

void HealthChecker::start(Probe& p, Clock::time_point now) {
  const HealthCheckType type = p.target.check.type;
  p.started = now;
  p.sent = 0;
  p.buf.clear();
  const int domain = p.target.family == SL_AF_INET ? AF_INET : AF_INET6;
  const int socktype = type == HealthCheckType::kUdp ? SOCK_DGRAM : SOCK_STREAM;
  p.fd.reset(socket(domain, socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!p.fd.valid()) return skip(p, "socket", errno);
  ++in_flight_;
  if (type != HealthCheckType::kUdp) {
    // Close with a reset, not a FIN: a checker that closes first would otherwise hold a
    // TIME_WAIT socket for 60 s per check (60000 of them at 1000 checks a second).
    const linger lg{1, 0};
    setsockopt(p.fd.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  }
  // The timeout covers the whole check: connect, request and answer.
  p.phase = Probe::Phase::kConnecting;
  schedule(p, now + p.timeout());
  if (connect(p.fd.get(), reinterpret_cast<const sockaddr*>(&p.sa), p.sa_len) != 0) {
    const int err = errno;
    if (err == EINPROGRESS) return watch(p, EPOLLOUT);  // writable when the handshake ends
    if (local_errno(err)) return skip(p, "connect", err);
    return fail(p, std::string("connect: ") + std::strerror(err));
  }
  // UDP always gets here; TCP when the handshake completed at once.
  if (type == HealthCheckType::kTcp) return succeed(p, "connected");
  p.phase = Probe::Phase::kSending;
  send_request(p);
}

// Registers the check's socket on the loop, or changes its events.
void HealthChecker::watch(Probe& p, uint32_t events) {
  if (p.watched == events) return;
  Status s = p.watched != 0
                 ? loop_.modify(p.fd.get(), events)
                 : loop_.add(p.fd.get(), events, [this, self = &p](uint32_t) { on_io(*self); });
  if (!s) return skip(p, "epoll_ctl", s.error().code);
  p.watched = events;
}

// Every handler tries its syscall and treats EAGAIN as "not yet", instead of trusting the
// event bits: an event queued for a socket that was closed can be delivered, within the same
// epoll batch, to a new socket that got the same fd number.
void HealthChecker::on_io(Probe& p) {
  const HealthCheckType type = p.target.check.type;
  switch (p.phase) {
    case Probe::Phase::kIdle:
      return;
    case Probe::Phase::kConnecting: {  // TCP only: UDP connects at once
      // One syscall tells "still connecting" (a stale event), "connected" and "failed".
      tcp_info ti{};
      socklen_t len = sizeof(ti);
      if (getsockopt(p.fd.get(), IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) {
        return fail(p, std::string("connect: ") + std::strerror(errno));
      }
      if (ti.tcpi_state == TCP_SYN_SENT) return;
      if (ti.tcpi_state == TCP_CLOSE) {
        int err = 0;
        socklen_t elen = sizeof(err);
        getsockopt(p.fd.get(), SOL_SOCKET, SO_ERROR, &err, &elen);
        return fail(
            p, std::string("connect: ") + (err != 0 ? std::strerror(err) : "connection closed"));
      }
      // Established, or already closed by the server (CLOSE_WAIT): the handshake completed.
      if (type == HealthCheckType::kTcp) return succeed(p, "connected");
      p.phase = Probe::Phase::kSending;
      return send_request(p);
    }
    case Probe::Phase::kSending:
      return send_request(p);
    case Probe::Phase::kReading:
      return type == HealthCheckType::kHttp ? read_status(p) : read_reply(p);
  }
}

// Sends the http request or the udp payload, resuming after a partial send (EAGAIN: the loop
// calls again on EPOLLOUT), then waits for the answer.
void HealthChecker::send_request(Probe& p) {
  const bool udp = p.target.check.type == HealthCheckType::kUdp;
  const std::string& data = udp ? p.target.check.send : p.request;
  // A UDP payload goes out whole in one send, even an empty one.
  while (p.sent < data.size() || (udp && p.sent == 0 && data.empty())) {
    const ssize_t n = send(p.fd.get(), data.data() + p.sent, data.size() - p.sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return watch(p, EPOLLOUT);
      if (local_errno(errno)) return skip(p, "send", errno);
      return fail(p, std::string("send: ") + std::strerror(errno));
    }
    p.sent += static_cast<std::size_t>(n);
    if (udp) break;
  }
  p.phase = Probe::Phase::kReading;
  watch(p, EPOLLIN);
}

// HTTP: reads until the first line ending, then judges the status code against
// expect_status. Whatever follows the status line is left unread.
void HealthChecker::read_status(Probe& p) {
  char chunk[512];
  for (;;) {
    const ssize_t n = recv(p.fd.get(), chunk, sizeof(chunk), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return;
      return fail(p, std::string("recv: ") + std::strerror(errno));
    }
    if (n == 0) {
      return fail(p, p.buf.empty() ? "connection closed before any response"
                                   : "connection closed in the status line after " +
                                         std::to_string(p.buf.size()) + " bytes ('" +
                                         printable(p.buf) + "')");
    }
    p.buf.append(chunk, static_cast<std::size_t>(n));
    const std::size_t eol = p.buf.find('\n');
    if (eol == std::string::npos) {
      if (p.buf.size() > kMaxStatusLine) {
        return fail(p, "no status line in the first " + std::to_string(kMaxStatusLine) +
                           " bytes ('" + printable(p.buf) + "')");
      }
      continue;
    }
    std::string_view line(p.buf.data(), eol);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const std::optional<int> code = parse_status_line(line);
    if (!code) return fail(p, "bad status line '" + printable(line) + "'");
    const auto& want = p.target.check.expect_status;
    const bool match = std::any_of(want.begin(), want.end(), [&](const StatusRange& r) {
      return *code >= r.lo && *code <= r.hi;
    });
    if (!match) {
      return fail(p, "HTTP " + std::to_string(*code) + ", expected " + status_list(want));
    }
    return succeed(p, "HTTP " + std::to_string(*code));
  }
}

// UDP: one datagram is the answer. The buffer holds the largest datagram there is, shared by
// all probes (the loop runs one handler at a time), and MSG_TRUNC makes recv() return the
// datagram's real length even if it were cut, for the failure reason.
void HealthChecker::read_reply(Probe& p) {
  if (scratch_.empty()) scratch_.resize(65536);
  ssize_t n;
  do {
    n = recv(p.fd.get(), scratch_.data(), scratch_.size(), MSG_TRUNC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN) return;
    // ECONNREFUSED: an ICMP port unreachable came back for the payload.
    return fail(p, std::string("recv: ") + std::strerror(errno));
  }
  const std::size_t got = std::min(static_cast<std::size_t>(n), scratch_.size());
  const std::string_view reply(scratch_.data(), got);
  const std::string& expect = p.target.check.expect;
  if (!expect.empty() && reply.find(expect) == std::string_view::npos) {
    return fail(p, "the reply ('" + printable(reply) + "', " + std::to_string(n) +
                       " bytes) does not contain '" + printable(expect) + "'");
  }
  succeed(p, "reply of " + std::to_string(n) + " bytes");
}

}  // namespace sluice
