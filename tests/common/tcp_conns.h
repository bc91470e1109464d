// Long-lived TCP connections through the load balancer, with both ends held by the test:
// a listening socket in every backend namespace and the client socket in the client
// namespace, so a test decides who sends, who closes and how.
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>

#include <array>
#include <memory>
#include <string>

#include "agent.h"

namespace sluice::test {

// A listening socket on `port` in every backend namespace. Which backend a client
// reaches is Maglev's choice; the test accepts wherever the connection arrived.
class Servers {
 public:
  Servers(const Topology& topo, uint16_t port) : port_(port) {
    for (int n = 0; n < 3; ++n) {
      int fd = topo.backends[n]->in([] { return socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0); });
      if (fd < 0) throw std::runtime_error(errno_text("server socket"));
      listeners_[n] = fd;
      const int one = 1;
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
      SockAddr a = sockaddr_of("0.0.0.0", port);
      if (bind(fd, reinterpret_cast<sockaddr*>(&a.ss), a.len) != 0 || listen(fd, 16) != 0) {
        throw std::runtime_error(errno_text("server bind/listen"));
      }
    }
  }
  uint16_t port() const { return port_; }
  ~Servers() {
    for (int fd : listeners_) close(fd);
  }
  Servers(const Servers&) = delete;
  Servers& operator=(const Servers&) = delete;

  // Accepts one connection from any backend within 3 s. Returns {fd, backend number 1..3},
  // or {-1, 0}.
  std::pair<int, int> accept_one() {
    pollfd pfd[3];
    for (int n = 0; n < 3; ++n) pfd[n] = {listeners_[n], POLLIN, 0};
    if (poll(pfd, 3, 3000) <= 0) return {-1, 0};
    for (int n = 0; n < 3; ++n) {
      if (pfd[n].revents & POLLIN) {
        return {accept4(listeners_[n], nullptr, nullptr, SOCK_CLOEXEC), n + 1};
      }
    }
    return {-1, 0};
  }

 private:
  std::array<int, 3> listeners_{-1, -1, -1};
  uint16_t port_;
};

// One connection through the VIP: the client end, the server end, the backend it reached.
struct Conn {
  std::unique_ptr<Fd> client;
  std::unique_ptr<Fd> server;
  int backend = 0;           // 1..3
  std::string client_name;   // "198.18.0.100:PORT", as sluicectl prints it
  std::string backend_name;  // "198.18.N.2:PORT"
};

// Connects from source `i` (Topology::source) to vip:port and accepts the server side.
inline Conn connect_through(const Topology& topo, Servers& servers, int i, const std::string& vip,
                            uint16_t port) {
  Conn c;
  std::string err;
  const std::string src = Topology::source(i);
  int fd = client_socket(topo.client, SOCK_STREAM, src, vip, port, err);
  EXPECT_GE(fd, 0) << err;
  if (fd < 0) return c;
  c.client = std::make_unique<Fd>(fd);
  sockaddr_in local{};
  socklen_t len = sizeof(local);
  getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len);
  c.client_name = src + ":" + std::to_string(ntohs(local.sin_port));
  auto [sfd, backend] = servers.accept_one();
  EXPECT_GE(sfd, 0) << "no backend accepted " << c.client_name;
  if (sfd >= 0) {
    c.server = std::make_unique<Fd>(sfd);
    timeval tv{1, 500000};  // a lost segment fails the test instead of hanging it
    setsockopt(sfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(sfd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  }
  c.backend = backend;
  c.backend_name = "198.18." + std::to_string(backend) + ".2:" + std::to_string(servers.port());
  return c;
}

inline void send_all(int fd, const std::string& s) {
  ASSERT_EQ(send(fd, s.data(), s.size(), MSG_NOSIGNAL), static_cast<ssize_t>(s.size()))
      << strerror(errno);
}

inline std::string recv_some(int fd) {
  char buf[256];
  ssize_t n = recv(fd, buf, sizeof(buf), 0);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

}  // namespace sluice::test
