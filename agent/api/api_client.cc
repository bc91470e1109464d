// The control API's client: one blocking request and answer over the Unix socket.
#include <sys/socket.h>
#include <sys/time.h>

#include <cerrno>
#include <cstring>

#include <sluice/api/api_client.h>
#include <sluice/core/fd.h>

namespace sluice {

Result<sockaddr_un> unix_socket_address(const std::string& path) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  // Room for the terminating NUL: sun_path holds no more, and a truncated path would connect to
  // another socket.
  if (path.size() >= sizeof(sa.sun_path))
    return Error{ENAMETOOLONG, "API socket path " + path + " is too long (at most " +
                                   std::to_string(sizeof(sa.sun_path) - 1) + " bytes)"};
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  return sa;
}

Result<std::string> api_call(const std::string& path, const std::string& request,
                             std::chrono::milliseconds timeout) {
  auto sa = unix_socket_address(path);
  if (!sa) return sa.error();
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return sys_error("create socket");
  if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&*sa), sizeof(*sa)) != 0) {
    const int err = errno;
    std::string hint;
    if (err == ENOENT || err == ECONNREFUSED) hint = " (is sluiced running with this API socket?)";
    if (err == EACCES) hint = " (the control API is for root only)";
    return sys_error("connect to the control API at " + path + hint, err);
  }
  // A stuck agent must not hang the CLI: each send and receive gives up after `timeout`.
  timeval tv{};
  tv.tv_sec = timeout.count() / 1000;
  tv.tv_usec = (timeout.count() % 1000) * 1000;
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  const std::string line = request + "\n";
  std::size_t off = 0;
  while (off < line.size()) {
    // MSG_NOSIGNAL: an agent that closes early gives EPIPE, not a SIGPIPE that kills sluicectl.
    ssize_t n = send(fd.get(), line.data() + off, line.size() - off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_error("send to the control API at " + path);
    }
    off += static_cast<std::size_t>(n);
  }
  // The server closes the connection after its one answer: read to the end.
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = recv(fd.get(), buf, sizeof(buf), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_error("read the control API's answer" +
                       std::string(errno == EAGAIN ? " (timed out)" : ""));
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  if (out.empty()) return Error{EPROTO, "the control API closed the connection without an answer"};
  return out;
}

}  // namespace sluice
