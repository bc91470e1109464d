// Helpers of the congestion control tests (header-only): what the kernel lists as available,
// selecting an algorithm on a socket, and a connected TCP pair inside a namespace.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fcntl.h>
#include <cerrno>
#include <chrono>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>

#include <sluice/core/fd.h>
#include "netns.h"
#include "sockets.h"

namespace sluice::test {

// The name the tests register sluice_aimd under: names are kernel-wide, so a test never takes
// SL_CC_OURS, which a sluiced running on the machine may hold (and keeps, pinned, after it
// exits), nor the name of another test process. "sl_aimd_<pid>", at most 15 characters.
inline std::string test_cc_name() { return "sl_aimd_" + std::to_string(getpid() % 10000000); }

// Whether `name` is in net.ipv4.tcp_available_congestion_control (one list for every
// namespace: algorithms are registered kernel-wide).
inline bool cc_available(const std::string& name) {
  std::ifstream f("/proc/sys/net/ipv4/tcp_available_congestion_control");
  std::string w;
  while (f >> w)
    if (w == name) return true;
  return false;
}

// setsockopt(TCP_CONGESTION): 0 or the errno.
inline int select_cc(int fd, const std::string& name) {
  return setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, name.data(),
                    static_cast<socklen_t>(name.size())) == 0
             ? 0
             : errno;
}

// The algorithm a socket uses.
inline std::string cc_of(int fd) {
  char buf[16] = {};
  socklen_t len = sizeof(buf);
  if (getsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, buf, &len) != 0) return "?";
  return std::string(buf, strnlen(buf, sizeof(buf)));
}

// The socket's congestion window, in segments (TCP_INFO).
inline uint32_t cwnd_of(int fd) {
  tcp_info ti{};
  socklen_t len = sizeof(ti);
  getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len);
  return ti.tcpi_snd_cwnd;
}

// A fresh TCP socket of the calling thread's namespace that selects `name`: 0 or the errno.
inline int try_select_on_fresh_socket(const std::string& name) {
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return errno;
  return select_cc(fd.get(), name);
}

// A connected TCP pair over `addr` (IPv4) in the calling thread's namespace: the client selects
// `client_cc` (empty: the default) before connecting. Throws std::runtime_error on failure.
struct TcpPair {
  UniqueFd client, server;
};

inline TcpPair tcp_pair(const std::string& addr, const std::string& client_cc) {
  auto fail = [](const std::string& what) { throw std::runtime_error(errno_text(what)); };
  sockaddr_in a{};
  a.sin_family = AF_INET;
  inet_pton(AF_INET, addr.c_str(), &a.sin_addr);
  UniqueFd l(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!l.valid()) fail("socket");
  if (bind(l.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) fail("bind " + addr);
  if (listen(l.get(), 4) != 0) fail("listen");
  socklen_t len = sizeof(a);
  getsockname(l.get(), reinterpret_cast<sockaddr*>(&a), &len);
  TcpPair p;
  p.client.reset(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!p.client.valid()) fail("socket");
  if (!client_cc.empty()) {
    if (int err = select_cc(p.client.get(), client_cc)) {
      errno = err;
      fail("select " + client_cc);
    }
  }
  if (connect(p.client.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0)
    fail("connect " + addr);
  p.server.reset(accept4(l.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!p.server.valid()) fail("accept");
  return p;
}

}  // namespace sluice::test
