// Client sockets and probes: see sockets.h.
#include "sockets.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/time.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <future>
#include <stdexcept>

namespace sluice::test {

SockAddr sockaddr_of(const std::string& addr, uint16_t port) {
  SockAddr a;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&a.ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&a.ss);
  if (inet_pton(AF_INET, addr.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = a.family = AF_INET;
    v4->sin_port = htons(port);
    a.len = sizeof(*v4);
  } else if (inet_pton(AF_INET6, addr.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = a.family = AF_INET6;
    v6->sin6_port = htons(port);
    a.len = sizeof(*v6);
  } else {
    throw std::invalid_argument("bad address " + addr);
  }
  return a;
}

std::string errno_text(const std::string& what) { return what + ": " + strerror(errno); }

int client_socket(const NetNs& ns, int type, const std::string& src, const std::string& dst,
                  uint16_t port, std::string& error) {
  SockAddr d = sockaddr_of(dst, port);
  SockAddr s = sockaddr_of(src, 0);
  int fd = ns.in([&] { return socket(d.family, type | SOCK_CLOEXEC, 0); });
  if (fd < 0) {
    error = errno_text("socket");
    return -1;
  }
  timeval tv{1, 500000};  // also bounds connect()
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (bind(fd, reinterpret_cast<sockaddr*>(&s.ss), s.len) != 0) {
    error = errno_text("bind " + src);
  } else if (connect(fd, reinterpret_cast<sockaddr*>(&d.ss), d.len) != 0) {
    error = errno_text("connect " + dst + ":" + std::to_string(port));
  } else {
    return fd;
  }
  close(fd);
  return -1;
}

Probe udp_probe(const NetNs& ns, const std::string& src, const std::string& dst, uint16_t port) {
  Probe p;
  Fd fd(client_socket(ns, SOCK_DGRAM, src, dst, port, p.error));
  if (fd.get() < 0) return p;
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::string q = "query from " + src;
    if (send(fd.get(), q.data(), q.size(), 0) < 0) {
      p.error = errno_text("send");
      continue;
    }
    char buf[256];
    ssize_t n = recv(fd.get(), buf, sizeof(buf), 0);
    if (n > 0) {
      p.backend.assign(buf, static_cast<size_t>(n));
      p.error.clear();
      return p;
    }
    p.error = n < 0 ? errno_text("recv") : "empty reply";
  }
  p.error = src + " -> " + dst + ":" + std::to_string(port) + "/udp: " + p.error;
  return p;
}

Probe tcp_probe(const NetNs& ns, const std::string& src, const std::string& dst, uint16_t port,
                const std::string& payload) {
  Probe p;
  std::string where = src + " -> " + dst + ":" + std::to_string(port) + "/tcp: ";
  Fd fd(client_socket(ns, SOCK_STREAM, src, dst, port, p.error));
  if (fd.get() < 0) {
    p.error = where + p.error;
    return p;
  }
  auto fail = [&](const std::string& why) {
    p.backend.clear();
    p.error = where + why;
    return p;
  };
  // Reads until `want` bytes (or EOF when want == SIZE_MAX).
  auto read_some = [&](std::string& buf, size_t want) -> ssize_t {
    while (buf.size() < want) {
      char tmp[4096];
      ssize_t n = recv(fd.get(), tmp, sizeof(tmp), 0);
      if (n <= 0) return n;
      buf.append(tmp, static_cast<size_t>(n));
    }
    return 1;
  };
  std::string buf;
  while (buf.find('\n') == std::string::npos) {
    ssize_t r = read_some(buf, buf.size() + 1);
    if (r == 0) return fail("closed before the name line");
    if (r < 0) return fail(errno_text("reading the name line"));
  }
  p.backend = buf.substr(0, buf.find('\n'));
  if (buf.size() != p.backend.size() + 1) return fail("bytes after the name line");
  if (send(fd.get(), payload.data(), payload.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(payload.size())) {
    return fail(errno_text("send"));
  }
  std::string echo;
  ssize_t r = read_some(echo, payload.size());
  if (r <= 0) return fail(r == 0 ? "closed before the echo" : errno_text("reading the echo"));
  if (echo != payload) return fail("echo differs from what was sent");
  if (shutdown(fd.get(), SHUT_WR) != 0) return fail(errno_text("shutdown"));
  std::string rest;
  r = read_some(rest, SIZE_MAX);
  if (r < 0) return fail(errno_text("waiting for the server's FIN"));
  if (!rest.empty()) return fail("bytes after the echo");
  return p;
}

std::string payload_for(const std::string& src) {
  std::string s = "hello from " + src + " ";
  while (s.size() < 3000) s += s;  // spans several segments
  return s;
}

std::vector<Probe> probe_all(const std::vector<std::string>& sources,
                             const std::function<Probe(const std::string&)>& probe) {
  std::vector<std::future<Probe>> futures;
  for (const auto& src : sources) {
    futures.push_back(std::async(std::launch::async, [&probe, src] { return probe(src); }));
  }
  std::vector<Probe> out;
  for (auto& f : futures) out.push_back(f.get());
  return out;
}

}  // namespace sluice::test
