// sl-probe: the client of the demo and the integration tests; talks to sl-echo through a VIP.
//
//   sl-probe --proto udp|tcp --dst ADDR --port P [--src ADDR] [--count N] [--timeout-ms T]
//            [--hold-ms H] [--same-socket] [--retries R]
//
// Prints the name in each reply on its own line. Exit 0 when every probe got its reply, 1
// otherwise (each failure explained on stderr), 2 on bad usage.
//   UDP: one datagram per probe, from a new socket each time (so a new source port) unless
//        --same-socket; --retries resends after a timeout.
//   TCP: one connection per probe. Reads the "NAME\n" greeting; with --hold-ms keeps the
//        connection open that long, sending data every 50 ms and checking that it is echoed
//        intact; then half-closes and expects the server's FIN, so the whole close handshake
//        crosses the load balancer too.
#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <thread>

#include "tool_cli.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string proto, dst, src;
  uint16_t port = 0;
  int count = 1;
  int timeout_ms = 1000;
  int hold_ms = 0;
  int retries = 0;
  bool same_socket = false;
};

struct Addr {
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family = AF_UNSPEC;
};

std::optional<Addr> parse_addr(const std::string& text, uint16_t port) {
  Addr a;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&a.ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&a.ss);
  if (inet_pton(AF_INET, text.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    a.len = sizeof(*v4);
    a.family = AF_INET;
    return a;
  }
  std::string t = text;
  if (t.size() > 2 && t.front() == '[' && t.back() == ']') t = t.substr(1, t.size() - 2);
  if (inet_pton(AF_INET6, t.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    a.len = sizeof(*v6);
    a.family = AF_INET6;
    return a;
  }
  return std::nullopt;
}

// Milliseconds left until `deadline`, at least 0.
int left_ms(Clock::time_point deadline) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return ms > 0 ? static_cast<int>(ms) : 0;
}

// Waits for `events` on fd until the deadline. Returns false on timeout.
bool wait_for(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    int n = poll(&p, 1, left_ms(deadline));
    if (n > 0) return true;
    if (n == 0) return false;
    if (errno != EINTR) return false;
  }
}

class Prober {
 public:
  Prober(const Options& o, const Addr& dst, std::optional<Addr> src)
      : o_(o), dst_(dst), src_(src) {}

  // Returns the reply name, or nullopt after printing why to stderr.
  std::optional<std::string> probe(int i) {
    label_ = "probe " + std::to_string(i + 1) + "/" + std::to_string(o_.count) + " " + o_.proto +
             " " + (o_.src.empty() ? std::string("*") : o_.src) + " -> " + o_.dst + ":" +
             std::to_string(o_.port);
    return o_.proto == "udp" ? probe_udp(i) : probe_tcp();
  }

  ~Prober() {
    if (udp_fd_ >= 0) close(udp_fd_);
  }

 private:
  std::nullopt_t fail(const std::string& why) {
    fprintf(stderr, "sl-probe: %s: %s\n", label_.c_str(), why.c_str());
    return std::nullopt;
  }
  std::nullopt_t fail_errno(const std::string& what) { return fail(what + ": " + strerror(errno)); }

  // A socket bound to --src (port chosen by the kernel) and connected to --dst, so the kernel
  // discards datagrams from any other source: a reply must come from the VIP itself.
  int open_socket(int type) {
    int fd = socket(dst_.family, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -1;
    if (src_ && bind(fd, reinterpret_cast<const sockaddr*>(&src_->ss), src_->len) != 0) {
      int saved = errno;
      close(fd);
      errno = saved;
      return -1;
    }
    return fd;
  }

  std::optional<std::string> probe_udp(int i) {
    int fd = udp_fd_;
    if (fd < 0) {
      fd = open_socket(SOCK_DGRAM);
      if (fd < 0) return fail_errno("socket/bind");
      if (connect(fd, reinterpret_cast<const sockaddr*>(&dst_.ss), dst_.len) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return fail_errno("connect");
      }
      if (o_.same_socket) udp_fd_ = fd;
    }
    std::string payload = "sl-probe " + std::to_string(i);
    std::optional<std::string> reply;
    std::string last_error = "no reply within " + std::to_string(o_.timeout_ms) + " ms";
    for (int attempt = 0; attempt <= o_.retries && !reply; ++attempt) {
      if (send(fd, payload.data(), payload.size(), 0) < 0) {
        last_error = std::string("send: ") + strerror(errno);
        continue;
      }
      auto deadline = Clock::now() + std::chrono::milliseconds(o_.timeout_ms);
      while (wait_for(fd, POLLIN, deadline)) {
        char buf[2048];
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n > 0) {
          reply.emplace(buf, static_cast<size_t>(n));
          break;
        }
        // ECONNREFUSED etc.: an ICMP error for the datagram. Keep it, it explains a timeout.
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
          last_error = std::string("recv: ") + strerror(errno);
        }
      }
    }
    if (!o_.same_socket) close(fd);
    if (!reply) return fail(last_error);
    return reply;
  }

  // Sends all of `data` before the deadline.
  bool send_all(int fd, const std::string& data, Clock::time_point deadline) {
    size_t off = 0;
    while (off < data.size()) {
      ssize_t n = send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n > 0) {
        off += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno != EAGAIN && errno != EINTR) return false;
      if (!wait_for(fd, POLLOUT, deadline)) {
        errno = ETIMEDOUT;
        return false;
      }
    }
    return true;
  }

  // Reads until `want` bytes are buffered (or, with want == 0, until EOF). Returns false on
  // error or timeout; `eof` tells whether the peer closed.
  bool read_until(int fd, std::string& buf, size_t want, Clock::time_point deadline, bool& eof) {
    eof = false;
    while (want == 0 || buf.size() < want) {
      char tmp[4096];
      ssize_t n = recv(fd, tmp, sizeof(tmp), 0);
      if (n > 0) {
        buf.append(tmp, static_cast<size_t>(n));
        continue;
      }
      if (n == 0) {
        eof = true;
        return want == 0;
      }
      if (errno == EINTR) continue;
      if (errno != EAGAIN) return false;
      if (!wait_for(fd, POLLIN, deadline)) {
        errno = ETIMEDOUT;
        return false;
      }
    }
    return true;
  }

  std::optional<std::string> probe_tcp() {
    int fd = open_socket(SOCK_STREAM);
    if (fd < 0) return fail_errno("socket/bind");
    struct Closer {
      int fd;
      ~Closer() { close(fd); }
    } closer{fd};
    auto timeout = std::chrono::milliseconds(o_.timeout_ms);

    auto deadline = Clock::now() + timeout;
    if (connect(fd, reinterpret_cast<const sockaddr*>(&dst_.ss), dst_.len) != 0) {
      if (errno != EINPROGRESS) return fail_errno("connect");
      if (!wait_for(fd, POLLOUT, deadline)) {
        return fail("connect: no answer within " + std::to_string(o_.timeout_ms) + " ms");
      }
      int err = 0;
      socklen_t len = sizeof(err);
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) return fail(std::string("connect: ") + strerror(err));
    }

    // Greeting: "NAME\n".
    std::string buf;
    bool eof = false;
    deadline = Clock::now() + timeout;
    while (buf.find('\n') == std::string::npos) {
      if (!read_until(fd, buf, buf.size() + 1, deadline, eof)) {
        if (eof) return fail("connection closed before the name line");
        return fail_errno("reading the name line");
      }
    }
    size_t nl = buf.find('\n');
    std::string name = buf.substr(0, nl);
    std::string extra = buf.substr(nl + 1);
    if (!extra.empty()) return fail("unexpected bytes after the name line");

    // Hold: data every 50 ms, each echo checked byte for byte.
    auto hold_end = Clock::now() + std::chrono::milliseconds(o_.hold_ms);
    for (int seq = 0; o_.hold_ms > 0; ++seq) {
      std::string msg = "sl-probe seq " + std::to_string(seq) + " " + std::string(64, 'x') + "\n";
      deadline = Clock::now() + timeout;
      if (!send_all(fd, msg, deadline)) return fail_errno("sending held data");
      std::string echo;
      if (!read_until(fd, echo, msg.size(), deadline, eof)) {
        if (eof) return fail("connection closed while holding (seq " + std::to_string(seq) + ")");
        return fail_errno("reading the echo (seq " + std::to_string(seq) + ")");
      }
      if (echo != msg) return fail("echo mismatch at seq " + std::to_string(seq));
      if (Clock::now() >= hold_end) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }

    // Half-close; the server answers EOF with its own FIN.
    if (shutdown(fd, SHUT_WR) != 0) return fail_errno("shutdown");
    std::string rest;
    deadline = Clock::now() + timeout;
    if (!read_until(fd, rest, 0, deadline, eof)) return fail_errno("waiting for the server's FIN");
    if (!rest.empty()) return fail("unexpected bytes before the server's FIN");
    return name;
  }

  const Options& o_;
  Addr dst_;
  std::optional<Addr> src_;
  int udp_fd_ = -1;
  std::string label_;
};

void usage(FILE* f) {
  fprintf(f,
          "usage: sl-probe --proto udp|tcp --dst ADDR --port P [--src ADDR] [--count N]\n"
          "                [--timeout-ms T] [--hold-ms H] [--same-socket] [--retries R]\n");
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  int port = -1;
  static const option kOpts[] = {{"proto", required_argument, nullptr, 'p'},
                                 {"dst", required_argument, nullptr, 'd'},
                                 {"port", required_argument, nullptr, 'P'},
                                 {"src", required_argument, nullptr, 's'},
                                 {"count", required_argument, nullptr, 'c'},
                                 {"timeout-ms", required_argument, nullptr, 't'},
                                 {"hold-ms", required_argument, nullptr, 'H'},
                                 {"same-socket", no_argument, nullptr, 'S'},
                                 {"retries", required_argument, nullptr, 'r'},
                                 {"help", no_argument, nullptr, 'h'},
                                 {nullptr, 0, nullptr, 0}};
  const int stop =
      sl_tool::parse_options(argc, argv, kOpts, "sl-probe", usage, [&](int c, char* arg) {
        using sl_tool::parse_number;
        switch (c) {
          case 'p':
            o.proto = arg;
            return true;
          case 'd':
            o.dst = arg;
            return true;
          case 'P':
            return parse_number(arg, 1, 65535, port);
          case 's':
            o.src = arg;
            return true;
          case 'c':
            return parse_number(arg, 1, 1000000, o.count);
          case 't':
            return parse_number(arg, 1, 3600000, o.timeout_ms);
          case 'H':
            return parse_number(arg, 0, 3600000, o.hold_ms);
          case 'S':
            o.same_socket = true;
            return true;
          case 'r':
            return parse_number(arg, 0, 100, o.retries);
        }
        return true;
      });
  if (stop >= 0) return stop;
  if (optind != argc || (o.proto != "udp" && o.proto != "tcp") || o.dst.empty() || port < 0) {
    usage(stderr);
    return 2;
  }
  o.port = static_cast<uint16_t>(port);
  auto dst = parse_addr(o.dst, o.port);
  if (!dst) {
    fprintf(stderr, "sl-probe: bad --dst address '%s'\n", o.dst.c_str());
    return 2;
  }
  std::optional<Addr> src;
  if (!o.src.empty()) {
    src = parse_addr(o.src, 0);
    if (!src || src->family != dst->family) {
      fprintf(stderr, "sl-probe: bad --src address '%s' (must match the family of --dst)\n",
              o.src.c_str());
      return 2;
    }
  }

  Prober prober(o, *dst, src);
  int failed = 0;
  for (int i = 0; i < o.count; ++i) {
    if (auto name = prober.probe(i)) {
      printf("%s\n", name->c_str());
      fflush(stdout);
    } else {
      ++failed;
    }
  }
  if (failed > 0) {
    fprintf(stderr, "sl-probe: %d of %d probes got no reply\n", failed, o.count);
    return 1;
  }
  return 0;
}
