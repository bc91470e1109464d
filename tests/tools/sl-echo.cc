// sl-echo: the backend server of the demo and the integration tests.
//
//   sl-echo --name NAME [--tcp PORT,...] [--udp PORT,...] [--ready-file PATH]
//
// UDP: answers every datagram with NAME. TCP: on accept writes "NAME\n", then echoes every
// byte back until the client's EOF, then closes. Every socket listens on [::] with
// IPV6_V6ONLY=0, so one socket serves IPv4 and IPv6. One epoll loop, non-blocking sockets, a
// bounded amount of work per event: a slow client never stalls the others. SIGTERM/SIGINT
// end the loop and the process exits 0. --ready-file is created once every socket is bound,
// so a test can wait for it instead of sleeping.
#include <arpa/inet.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include "tool_cli.h"

namespace {

// Stop reading from a client while this much of its echo is still unsent: bounds memory per
// client and pushes back on a client that sends but never reads.
constexpr size_t kMaxPending = 1 << 20;
// Per event, read at most this much from one client so that others get their turn.
constexpr size_t kReadChunk = 64 * 1024;

enum class Kind { kTcpListener, kUdp, kConn, kSignal };

struct Conn {
  std::string out;  // bytes accepted from the client (or the greeting) not yet written back
  bool eof = false;
};

struct Server {
  std::string name;
  int epfd = -1;
  std::unordered_map<int, Kind> kinds;
  std::unordered_map<int, Conn> conns;
};

[[noreturn]] void die(const char* what) {
  fprintf(stderr, "sl-echo: %s: %s\n", what, strerror(errno));
  exit(1);
}

void usage(FILE* f) {
  fprintf(f, "usage: sl-echo --name NAME [--tcp PORT,...] [--udp PORT,...] [--ready-file PATH]\n");
}

// "PORT,PORT,...": adds them to `ports`, or says which one is bad and exits.
void parse_ports(const char* arg, std::vector<uint16_t>& ports) {
  sl_tool::for_each_item(arg, [&](const std::string& tok) {
    if (!sl_tool::parse_number(tok.c_str(), 1, 65535, ports.emplace_back())) {
      fprintf(stderr, "sl-echo: bad port '%s' in '%s'\n", tok.c_str(), arg);
      exit(2);
    }
    return true;
  });
}

void epoll_set(Server& s, int fd, uint32_t events, bool add) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  if (epoll_ctl(s.epfd, add ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev) != 0) die("epoll_ctl");
}

int dual_stack_socket(int type, uint16_t port) {
  int fd = socket(AF_INET6, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  int zero = 0, one = 1;
  if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) != 0) die("IPV6_V6ONLY");
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) die("SO_REUSEADDR");
  sockaddr_in6 sa{};
  sa.sin6_family = AF_INET6;
  sa.sin6_addr = in6addr_any;
  sa.sin6_port = htons(port);
  if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    fprintf(stderr, "sl-echo: bind [::]:%u (%s): %s\n", port, type == SOCK_STREAM ? "tcp" : "udp",
            strerror(errno));
    exit(1);
  }
  return fd;
}

void close_conn(Server& s, int fd) {
  epoll_ctl(s.epfd, EPOLL_CTL_DEL, fd, nullptr);
  close(fd);
  s.conns.erase(fd);
  s.kinds.erase(fd);
}

// Writes what it can of the pending echo and re-arms the fd for what it still needs.
// Returns false when the connection was closed.
bool conn_flush(Server& s, int fd) {
  Conn& c = s.conns[fd];
  while (!c.out.empty()) {
    ssize_t n = send(fd, c.out.data(), c.out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      close_conn(s, fd);  // ECONNRESET, EPIPE: the client is gone
      return false;
    }
    c.out.erase(0, static_cast<size_t>(n));
  }
  if (c.eof && c.out.empty()) {
    close_conn(s, fd);
    return false;
  }
  uint32_t events = 0;
  if (!c.eof && c.out.size() < kMaxPending) events |= EPOLLIN;
  if (!c.out.empty()) events |= EPOLLOUT;
  epoll_set(s, fd, events, false);
  return true;
}

void on_accept(Server& s, int lfd) {
  for (;;) {
    int fd = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EMFILE || errno == ENFILE) return;  // retried on the next readiness
      die("accept4");
    }
    s.kinds[fd] = Kind::kConn;
    s.conns[fd].out = s.name + "\n";
    epoll_set(s, fd, EPOLLIN, true);
    conn_flush(s, fd);
  }
}

void on_conn(Server& s, int fd, uint32_t events) {
  Conn& c = s.conns[fd];
  if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !c.eof) {
    char buf[16384];
    size_t got = 0;
    while (got < kReadChunk && c.out.size() < kMaxPending) {
      ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        close_conn(s, fd);
        return;
      }
      if (n == 0) {
        c.eof = true;
        break;
      }
      c.out.append(buf, static_cast<size_t>(n));
      got += static_cast<size_t>(n);
    }
  }
  conn_flush(s, fd);
}

// `data` as the one control message of `out`, in `buf` (room for CMSG_SPACE(len)).
void set_cmsg(msghdr& out, char* buf, int level, int type, const void* data, size_t len) {
  out.msg_control = buf;
  out.msg_controllen = CMSG_SPACE(len);
  cmsghdr* cm = CMSG_FIRSTHDR(&out);
  cm->cmsg_level = level;
  cm->cmsg_type = type;
  cm->cmsg_len = CMSG_LEN(len);
  memcpy(CMSG_DATA(cm), data, len);
}

// Replies from the address the datagram was sent to. For a DSR VIP held on lo, the routing
// table would otherwise pick the address of the outgoing interface, and the client's connected
// socket would discard the reply.
void on_udp(Server& s, int fd) {
  for (int i = 0; i < 64; ++i) {  // bounded batch per event
    char buf[2048];
    sockaddr_storage peer{};
    alignas(cmsghdr) char cbuf[256];
    iovec iov{buf, sizeof(buf)};
    msghdr msg{};
    msg.msg_name = &peer;
    msg.msg_namelen = sizeof(peer);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf;
    msg.msg_controllen = sizeof(cbuf);
    ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      continue;  // ICMP errors queued on the socket: ignore and keep serving
    }
    const in_pktinfo* pi4 = nullptr;
    const in6_pktinfo* pi6 = nullptr;
    for (cmsghdr* cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
      if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO) {
        pi4 = reinterpret_cast<const in_pktinfo*>(CMSG_DATA(cm));
      } else if (cm->cmsg_level == IPPROTO_IPV6 && cm->cmsg_type == IPV6_PKTINFO) {
        pi6 = reinterpret_cast<const in6_pktinfo*>(CMSG_DATA(cm));
      }
    }
    alignas(cmsghdr) char obuf[CMSG_SPACE(sizeof(in6_pktinfo))] = {};
    iovec oiov{const_cast<char*>(s.name.data()), s.name.size()};
    msghdr out{};
    out.msg_name = &peer;
    out.msg_namelen = msg.msg_namelen;
    out.msg_iov = &oiov;
    out.msg_iovlen = 1;
    // A v4-mapped datagram carries both kinds; IP_PKTINFO is the one udp_sendmsg() honours
    // as an IPv4 source.
    if (pi4) {
      in_pktinfo reply{};
      reply.ipi_spec_dst = pi4->ipi_addr;  // source = the address the client sent to
      set_cmsg(out, obuf, IPPROTO_IP, IP_PKTINFO, &reply, sizeof(reply));
    } else if (pi6) {
      in6_pktinfo reply{};
      reply.ipi6_addr = pi6->ipi6_addr;
      // Only a link-local source needs the interface pinned; otherwise let routing choose.
      if (IN6_IS_ADDR_LINKLOCAL(&pi6->ipi6_addr)) reply.ipi6_ifindex = pi6->ipi6_ifindex;
      set_cmsg(out, obuf, IPPROTO_IPV6, IPV6_PKTINFO, &reply, sizeof(reply));
    }
    // A full socket buffer drops the reply, as UDP may: never block the loop for one client.
    sendmsg(fd, &out, MSG_DONTWAIT | MSG_NOSIGNAL);
  }
}

}  // namespace

int main(int argc, char** argv) {
  Server s;
  std::vector<uint16_t> tcp_ports, udp_ports;
  std::string ready_file;
  static const option kOpts[] = {
      {"name", required_argument, nullptr, 'n'}, {"tcp", required_argument, nullptr, 't'},
      {"udp", required_argument, nullptr, 'u'},  {"ready-file", required_argument, nullptr, 'r'},
      {"help", no_argument, nullptr, 'h'},       {nullptr, 0, nullptr, 0}};
  const int stop =
      sl_tool::parse_options(argc, argv, kOpts, "sl-echo", usage, [&](int c, char* arg) {
        switch (c) {
          case 'n':
            s.name = arg;
            break;
          case 't':
            parse_ports(arg, tcp_ports);
            break;
          case 'u':
            parse_ports(arg, udp_ports);
            break;
          case 'r':
            ready_file = arg;
            break;
        }
        return true;
      });
  if (stop >= 0) return stop;
  if (optind != argc || s.name.empty() || (tcp_ports.empty() && udp_ports.empty())) {
    usage(stderr);
    return 2;
  }

  // Signals arrive through the loop, so shutdown never interrupts a half-done write.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  if (sigprocmask(SIG_BLOCK, &mask, nullptr) != 0) die("sigprocmask");
  signal(SIGPIPE, SIG_IGN);
  int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (sfd < 0) die("signalfd");

  s.epfd = epoll_create1(EPOLL_CLOEXEC);
  if (s.epfd < 0) die("epoll_create1");
  s.kinds[sfd] = Kind::kSignal;
  epoll_set(s, sfd, EPOLLIN, true);

  for (uint16_t port : tcp_ports) {
    int fd = dual_stack_socket(SOCK_STREAM, port);
    if (listen(fd, 1024) != 0) die("listen");
    s.kinds[fd] = Kind::kTcpListener;
    epoll_set(s, fd, EPOLLIN, true);
  }
  for (uint16_t port : udp_ports) {
    int fd = dual_stack_socket(SOCK_DGRAM, port);
    int one = 1;
    // Both: IPv4 datagrams on a dual-stack socket report IP_PKTINFO, IPv6 ones IPV6_PKTINFO.
    if (setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one)) != 0) die("IP_PKTINFO");
    if (setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one)) != 0) {
      die("IPV6_RECVPKTINFO");
    }
    s.kinds[fd] = Kind::kUdp;
    epoll_set(s, fd, EPOLLIN, true);
  }

  if (!ready_file.empty()) {
    int fd = open(ready_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) die("open --ready-file");
    close(fd);
  }

  epoll_event events[64];
  for (;;) {
    int n = epoll_wait(s.epfd, events, 64, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int i = 0; i < n; ++i) {
      int fd = events[i].data.fd;
      auto it = s.kinds.find(fd);
      if (it == s.kinds.end()) continue;  // closed earlier in this batch
      switch (it->second) {
        case Kind::kSignal: {
          for (auto& [cfd, kind] : s.kinds) {
            if (cfd != sfd) close(cfd);
          }
          close(sfd);
          close(s.epfd);
          return 0;
        }
        case Kind::kTcpListener:
          on_accept(s, fd);
          break;
        case Kind::kUdp:
          on_udp(s, fd);
          break;
        case Kind::kConn:
          on_conn(s, fd, events[i].events);
          break;
      }
    }
  }
}
