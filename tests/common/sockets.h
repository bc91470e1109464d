// Client sockets of the tests: created inside a namespace (NetNs::in), bound to a chosen
// source and connected, so the kernel discards any reply that does not come from the
// destination itself; and the UDP/TCP probes that ask an sl-echo backend for its name.
#pragma once

#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "netns.h"

namespace sluice::test {

struct SockAddr {
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family = 0;
};

// addr (IPv4 or IPv6 literal) and port; throws std::invalid_argument on a bad address.
SockAddr sockaddr_of(const std::string& addr, uint16_t port);

// Owns a file descriptor (closed on destruction).
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// "<what>: <strerror(errno)>".
std::string errno_text(const std::string& what);

// A socket created inside `ns`, bound to `src`, connected to dst:port, with I/O timeouts.
// Returns -1 and sets `error` on failure.
int client_socket(const NetNs& ns, int type, const std::string& src, const std::string& dst,
                  uint16_t port, std::string& error);

struct Probe {
  std::string backend;  // the name the backend answered with
  std::string error;    // empty on success
  bool ok() const { return error.empty(); }
};

// One datagram; the reply must come from dst:port (the socket is connected). One resend covers
// a datagram lost while the kernel resolves a neighbour on the first packet of a run.
Probe udp_probe(const NetNs& ns, const std::string& src, const std::string& dst, uint16_t port);

// One connection to sl-echo: reads "NAME\n", sends `payload` and checks it comes back intact,
// half-closes and expects the server's FIN (so the close handshake crosses the LB too).
Probe tcp_probe(const NetNs& ns, const std::string& src, const std::string& dst, uint16_t port,
                const std::string& payload);

// A payload of a few segments that names its source.
std::string payload_for(const std::string& src);

// Runs probe(src) for every source concurrently, one thread each.
std::vector<Probe> probe_all(const std::vector<std::string>& sources,
                             const std::function<Probe(const std::string&)>& probe);

}  // namespace sluice::test
