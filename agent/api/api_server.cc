// The control API's server (protocol and access rules: api_server.h; the client is
// api_client.cc).
// One request per connection keeps the server without per-client state between requests:
// read up to the newline, answer, close. Deadlines are coarse on purpose: one EventLoop timer
// sweeps every second and closes connections past kDeadline (5 s), so a connection may live
// up to a second longer, for one timer instead of one per connection. The API serves root and
// a handful of connections, which is why it can afford a fixed cap enforced by closing extra
// connections at accept (the HTTP server, exposed to scrapers, pauses accepting instead).
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <sluice/api/api_server.h>

namespace sluice {

namespace {

// The handler builds every other answer; this one is the server's own (oversized request,
// refused peer), so it escapes by hand: quotes and backslashes escaped, control bytes dropped,
// which is all a message of ours can contain.
std::string error_json(const std::string& message) {
  std::string out = "{\"ok\":false,\"error\":\"";
  for (char c : message) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) continue;
    out += c;
  }
  return out + "\"}";
}

}  // namespace

Result<std::unique_ptr<ApiServer>> ApiServer::start(EventLoop& loop, const std::string& path,
                                                    Handler handler) {
  auto sa = unix_socket_address(path);
  if (!sa) return sa.error();
  const auto slash = path.rfind('/');
  if (slash != std::string::npos && slash > 0) {
    const std::string dir = path.substr(0, slash);
    if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
      return sys_error("create API socket directory " + dir);
  }
  std::unique_ptr<ApiServer> srv(new ApiServer(loop));
  srv->handler_ = std::move(handler);
  srv->listen_.reset(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!srv->listen_.valid()) return sys_error("create API socket");

  // A socket file nobody listens on is a dead agent's: replace it. One that answers is not.
  struct stat st {};
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      return Error{EEXIST, "API socket path " + path + " exists and is not a socket"};
    UniqueFd probe(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (probe.valid() &&
        connect(probe.get(), reinterpret_cast<const sockaddr*>(&*sa), sizeof(*sa)) == 0)
      return Error{EADDRINUSE, "API socket " + path + " is in use (another sluiced is running?)"};
    unlink(path.c_str());
  }
  // Created 0600 (umask for the bind), not chmod'ed after: no window with a wider mode.
  const mode_t old_mask = umask(0177);
  const int rc = bind(srv->listen_.get(), reinterpret_cast<const sockaddr*>(&*sa), sizeof(*sa));
  const int bind_errno = errno;
  umask(old_mask);
  if (rc != 0) return sys_error("bind API socket " + path, bind_errno);
  srv->path_ = path;  // ours from here: the destructor removes it
  if (listen(srv->listen_.get(), 64) != 0) return sys_error("listen on API socket " + path);
  ApiServer* self = srv.get();
  if (auto s = loop.add(srv->listen_.get(), EPOLLIN, [self](uint32_t) { self->on_accept(); }); !s)
    return s.error();
  srv->timer_ =
      loop.add_timer(std::chrono::seconds(1), std::chrono::seconds(1), [self] { self->expire(); });
  if (srv->timer_ == 0) return Error{0, "cannot arm the API deadline timer"};
  spdlog::info("control API on {}", path);
  return srv;
}

ApiServer::~ApiServer() {
  for (auto& [fd, c] : conns_) loop_.remove(fd);
  conns_.clear();
  if (listen_.valid()) {
    loop_.remove(listen_.get());
    if (!path_.empty()) unlink(path_.c_str());
  }
  if (timer_) loop_.cancel_timer(timer_);
}

void ApiServer::on_accept() {
  for (;;) {
    int fd = accept4(listen_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        spdlog::warn("{}", sys_error("accept on API socket").to_string());
      return;
    }
    if (conns_.size() >= kMaxConnections) {
      close(fd);  // the client sees the connection closed without an answer; it may retry
      continue;
    }
    Conn c;
    c.fd.reset(fd);
    c.deadline = std::chrono::steady_clock::now() + kDeadline;
    ucred cred{};
    socklen_t len = sizeof(cred);
    c.allowed = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && cred.uid == 0;
    if (!c.allowed)
      spdlog::warn("control API: refused a request from uid {} pid {} (root only)", cred.uid,
                   cred.pid);
    auto [it, ok] = conns_.emplace(fd, std::move(c));
    if (auto s = loop_.add(fd, EPOLLIN, [this, fd](uint32_t ev) { on_conn(fd, ev); }); !s) {
      spdlog::warn("control API: {}", s.error().to_string());
      conns_.erase(it);
      continue;
    }
  }
}

// Tries to send at once: an answer fits the socket buffer in the common case, so most
// connections never wait for EPOLLOUT.
void ApiServer::respond(Conn& c, std::string body) {
  c.out = std::move(body) + "\n";
  c.sent = 0;
  (void)loop_.modify(c.fd.get(), EPOLLOUT);
  on_conn(c.fd.get(), EPOLLOUT);
}

// Reading until the newline, then writing the answer: `c.out` non-empty is the switch. The
// answer goes out over as many EPOLLOUT wakeups as it takes, then the connection is closed; a
// client that stops reading is cut off by the deadline sweep.
void ApiServer::on_conn(int fd, uint32_t events) {
  auto it = conns_.find(fd);
  if (it == conns_.end()) return;
  Conn& c = it->second;
  if (!c.out.empty()) {
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    while (c.sent < c.out.size()) {
      ssize_t n = send(fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        break;  // the client went away
      }
      c.sent += static_cast<std::size_t>(n);
    }
    close_conn(fd);
    return;
  }
  char buf[4096];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      close_conn(fd);
      return;
    }
    if (n == 0) {  // EOF without a newline: take what came as the request
      if (c.in.empty()) {
        close_conn(fd);
        return;
      }
      break;
    }
    c.in.append(buf, static_cast<std::size_t>(n));
    if (c.in.find('\n') != std::string::npos) break;
    if (c.in.size() > kMaxRequestBytes) {
      respond(c, error_json("request longer than " + std::to_string(kMaxRequestBytes) + " bytes"));
      return;
    }
  }
  // The request is read before a refusal too: closing on unread data would reset the
  // connection and lose the answer.
  if (!c.allowed) {
    respond(c, error_json("permission denied: the control API is for root only"));
    return;
  }
  std::string req = c.in.substr(0, c.in.find('\n'));
  respond(c, handler_(req));
}

void ApiServer::close_conn(int fd) {
  loop_.remove(fd);
  conns_.erase(fd);
}

void ApiServer::expire() {
  const auto now = std::chrono::steady_clock::now();
  std::vector<int> late;
  for (auto& [fd, c] : conns_)
    if (now > c.deadline) late.push_back(fd);
  for (int fd : late) close_conn(fd);
}

}  // namespace sluice
