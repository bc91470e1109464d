// The HTTP/1.1 server of the metrics endpoint (its connection model is in http_server.h). It
// serves what a scraper sends, one GET or HEAD per connection, and refuses the rest early: the
// parser is strict (RFC 9112 syntax, no obsolete forms), bounded (max_head_bytes), and never
// reads a body. Anything it cannot parse is answered with a status and closed, so a client
// never costs more than one connection slot until its deadline.
#include "sluice/http/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <exception>
#include <optional>

#include "sluice/core/clock.h"
#include "sluice/core/net.h"

namespace sluice {

using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------------
// Request parsing

namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

// RFC 9110 token characters.
bool is_tchar(char c) {
  if (std::isalnum(static_cast<unsigned char>(c))) return true;
  return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != '\0';
}

bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), is_tchar);
}

bool is_ctl(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u < 0x20 || u == 0x7f;
}

// One line of the head starting at `pos`: its text without the CRLF/LF, and where the next
// line starts. nullopt when no line end has arrived yet.
struct Line {
  std::string_view text;
  size_t next = 0;
};

std::optional<Line> next_line(std::string_view buf, size_t pos) {
  const size_t lf = buf.find('\n', pos);
  if (lf == std::string_view::npos) return std::nullopt;
  std::string_view text = buf.substr(pos, lf - pos);
  if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
  return Line{text, lf + 1};
}

HttpParse parse_request_line(std::string_view line, HttpRequest* out) {
  const size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos) return HttpParse::kBadRequest;
  const size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos)
    return HttpParse::kBadRequest;
  const std::string_view method = line.substr(0, sp1);
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (!is_token(method) || target.empty()) return HttpParse::kBadRequest;
  if (std::any_of(target.begin(), target.end(),
                  [](char c) { return is_ctl(c) || static_cast<unsigned char>(c) > 0x7e; }))
    return HttpParse::kBadRequest;
  // "HTTP/" DIGIT "." DIGIT
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || !std::isdigit(version[5]) ||
      version[6] != '.' || !std::isdigit(version[7]))
    return HttpParse::kBadRequest;
  if (version[5] != '1') return HttpParse::kVersionNotSupported;

  std::string_view path = target;
  if (target.front() != '/') {
    // Absolute form ("http://host/path"), which proxies send and servers must accept.
    const size_t scheme = target.find("://");
    if (scheme == std::string_view::npos || !is_token(target.substr(0, scheme)))
      return HttpParse::kBadRequest;
    const size_t slash = target.find('/', scheme + 3);
    path = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
  }
  out->method = std::string(method);
  out->target = std::string(target);
  out->path = std::string(path.substr(0, path.find('?')));
  out->version_minor = version[7] - '0';
  return HttpParse::kComplete;
}

}  // namespace

const HttpHeader* HttpRequest::header(std::string_view name) const {
  for (const HttpHeader& h : headers)
    if (iequals(h.name, name)) return &h;
  return nullptr;
}

HttpParse parse_http_request(std::string_view buf, std::size_t max_head_bytes, HttpRequest* out,
                             std::size_t* head_len) {
  *out = HttpRequest{};
  size_t pos = 0;
  // RFC 9112 2.2: ignore at least one empty line before the request line.
  for (int i = 0; i < 2; ++i) {
    if (buf.substr(pos, 2) == "\r\n")
      pos += 2;
    else if (buf.substr(pos, 1) == "\n")
      pos += 1;
  }
  auto incomplete = [&](size_t from) {
    if (buf.size() > max_head_bytes) return HttpParse::kHeadersTooLarge;
    // A partial line with a control byte cannot become valid (a TLS ClientHello on the plain
    // port, binary junk): refuse it now instead of waiting for the deadline.
    std::string_view partial = buf.substr(from);
    if (!partial.empty() && partial.back() == '\r') partial.remove_suffix(1);
    if (std::any_of(partial.begin(), partial.end(), [](char c) { return c != '\t' && is_ctl(c); }))
      return HttpParse::kBadRequest;
    return HttpParse::kIncomplete;
  };

  auto line = next_line(buf, pos);
  if (!line) return incomplete(pos);
  if (line->next > max_head_bytes) return HttpParse::kHeadersTooLarge;
  if (auto r = parse_request_line(line->text, out); r != HttpParse::kComplete) return r;

  for (pos = line->next;;) {
    line = next_line(buf, pos);
    if (!line) return incomplete(pos);
    if (line->next > max_head_bytes) return HttpParse::kHeadersTooLarge;
    pos = line->next;
    const std::string_view text = line->text;
    if (text.empty()) {
      *head_len = pos;
      return HttpParse::kComplete;
    }
    // Obsolete line folding (a line starting with a blank) is rejected (RFC 9112 5.2).
    if (text.front() == ' ' || text.front() == '\t') return HttpParse::kBadRequest;
    const size_t colon = text.find(':');
    // No blank is allowed between the name and the colon (RFC 9112 5.1): is_token checks it.
    if (colon == std::string_view::npos || !is_token(text.substr(0, colon)))
      return HttpParse::kBadRequest;
    std::string_view value = text.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
      value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    if (std::any_of(value.begin(), value.end(), [](char c) { return c != '\t' && is_ctl(c); }))
      return HttpParse::kBadRequest;
    out->headers.push_back({std::string(text.substr(0, colon)), std::string(value)});
  }
}

const char* http_reason_phrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

std::string serialize_http_response(const HttpResponse& r, bool head_only) {
  std::string out = "HTTP/1.1 " + std::to_string(r.status) + " " + http_reason_phrase(r.status) +
                    "\r\nContent-Type: " + r.content_type +
                    "\r\nContent-Length: " + std::to_string(r.body.size()) +
                    "\r\nConnection: close\r\n";
  for (const HttpHeader& h : r.extra_headers) out += h.name + ": " + h.value + "\r\n";
  out += "\r\n";
  if (!head_only) out += r.body;
  return out;
}

// ---------------------------------------------------------------------------------------------
// The server

namespace {

// After the response, the server half-closes and reads until the client closes ("lingering
// close"): closing with unread input would send a RST, which can destroy the response before
// the client reads it. Both bounds keep a client from holding the connection this way.
constexpr auto kLingerTime = std::chrono::seconds(2);
constexpr size_t kLingerBytes = 64 * 1024;
// How long accepting stays off after the process ran out of fds (EMFILE and friends).
constexpr auto kAcceptRetry = std::chrono::milliseconds(100);
constexpr int kAcceptBurst = 64;  // accepts per wakeup, so one busy listener cannot starve the loop

// Arms (or, with a zero delay, disarms) a timerfd. Re-arming needs no new fd, which is why the
// server owns its two timers instead of taking EventLoop timers: it must be able to pause and
// resume when the process has no fd left.
void arm(int fd, std::chrono::nanoseconds delay, std::chrono::nanoseconds interval) {
  itimerspec its{};
  its.it_value = to_timespec(delay);
  its.it_interval = to_timespec(interval);
  if (timerfd_settime(fd, 0, &its, nullptr) != 0)
    spdlog::error("{}", sys_error("timerfd_settime").to_string());
}

// Consumes a timerfd's expirations; false when there were none (a stale wakeup).
bool expired(int fd) {
  uint64_t n = 0;
  return read(fd, &n, sizeof(n)) == sizeof(n);
}

HttpResponse simple(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

}  // namespace

// A connection moves one way through its states: reading the head, writing the response,
// lingering until the client closes. on_conn dispatches on the state, not on the event bits.
struct HttpServer::Conn {
  enum class State { kReading, kWriting, kLingering };
  UniqueFd fd;
  State state = State::kReading;
  uint32_t events = EPOLLIN;
  Clock::time_point deadline;
  std::string in;
  std::string out;
  size_t out_off = 0;
  size_t lingered = 0;
};

HttpServer::HttpServer(EventLoop& loop, Handler handler, HttpServerOptions opts)
    : loop_(loop), handler_(std::move(handler)), opts_(opts) {}

Result<std::unique_ptr<HttpServer>> HttpServer::start(EventLoop& loop, const ListenAddress& addr,
                                                      Handler handler, HttpServerOptions opts) {
  std::unique_ptr<HttpServer> s(new HttpServer(loop, std::move(handler), opts));
  const std::string where = format_listen_address(addr);
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (addr.family == SL_AF_INET) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(addr.port);
    std::memcpy(&sin->sin_addr, &addr.addr.w[0], 4);
    len = sizeof(*sin);
  } else if (addr.family == SL_AF_INET6) {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(addr.port);
    std::memcpy(&sin6->sin6_addr, addr.addr.w, 16);
    len = sizeof(*sin6);
  } else {
    return Error{EAFNOSUPPORT, "listen on " + where + ": unknown address family"};
  }
  s->listen_fd_.reset(socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!s->listen_fd_.valid()) return sys_error("socket for " + where);
  const int one = 1;
  // A restarted agent must bind again while the old connections sit in TIME_WAIT.
  if (setsockopt(s->listen_fd_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0)
    return sys_error("SO_REUSEADDR on " + where);
  if (bind(s->listen_fd_.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0)
    return sys_error("bind " + where);
  if (listen(s->listen_fd_.get(), opts.backlog) != 0) return sys_error("listen on " + where);
  if (getsockname(s->listen_fd_.get(), reinterpret_cast<sockaddr*>(&ss), &len) != 0)
    return sys_error("getsockname of " + where);
  s->local_ = addr;
  s->local_.port = ntohs(ss.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                                                 : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  s->sweep_fd_.reset(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  s->resume_fd_.reset(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  if (!s->sweep_fd_.valid() || !s->resume_fd_.valid()) return sys_error("timerfd for " + where);
  HttpServer* self = s.get();
  // Registered in this order and removed in the reverse one by the destructor; a failure here
  // destroys `s`, which removes whatever was added.
  for (auto [fd, fn] :
       {std::pair<int, void (HttpServer::*)()>{s->sweep_fd_.get(), &HttpServer::on_sweep_timer},
        {s->resume_fd_.get(), &HttpServer::on_resume_timer},
        {s->listen_fd_.get(), &HttpServer::on_accept}}) {
    if (auto st = loop.add(fd, EPOLLIN, [self, fn](uint32_t) { (self->*fn)(); }); !st)
      return st.error();
  }
  return s;
}

HttpServer::~HttpServer() {
  for (auto& [fd, c] : conns_) loop_.remove(fd);
  conns_.clear();
  // EventLoop::remove ignores fds it does not watch (a start() that failed halfway).
  for (const UniqueFd* fd : {&listen_fd_, &resume_fd_, &sweep_fd_})
    if (fd->valid()) loop_.remove(fd->get());
}

// Pausing takes the listening socket off epoll rather than leaving it and ignoring its
// events: level-triggered, a listener with a backlog would wake the loop on every turn.
void HttpServer::set_accepting(bool on) {
  if (accepting_ == on) return;
  accepting_ = on;
  if (!on) ++stats_.accept_pauses;
  if (auto s = loop_.modify(listen_fd_.get(), on ? uint32_t{EPOLLIN} : 0u); !s)
    spdlog::error("http {}: {}", format_listen_address(local_), s.error().to_string());
}

void HttpServer::on_accept() {
  for (int i = 0; i < kAcceptBurst; ++i) {
    if (conns_.size() >= opts_.max_connections) {
      evict_lingering();
      if (conns_.size() >= opts_.max_connections) {
        // Further clients wait in the listen backlog; close_conn() resumes accepting.
        set_accepting(false);
        break;
      }
    }
    UniqueFd fd(accept4(listen_fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd.valid()) {
      const int err = errno;
      if (err == EINTR || err == ECONNABORTED) continue;
      if (err == EAGAIN || err == EWOULDBLOCK) break;
      // At most one warning per second: these repeat for as long as the cause lasts.
      const auto now = Clock::now();
      if (now - last_accept_warn_ >= std::chrono::seconds(1)) {
        last_accept_warn_ = now;
        spdlog::warn("http {}: {}", format_listen_address(local_),
                     sys_error("accept", err).to_string());
      }
      if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        // The pending connection stays in the backlog, so a level-triggered listener would wake
        // the loop again at once: stop listening for a moment instead of spinning.
        set_accepting(false);
        resume_pending_ = true;
        arm(resume_fd_.get(), kAcceptRetry, std::chrono::nanoseconds(0));
      }
      break;
    }
    const int raw = fd.get();
    auto c = std::make_unique<Conn>();
    c->fd = std::move(fd);
    c->deadline = Clock::now() + opts_.request_timeout;
    if (auto s = loop_.add(raw, EPOLLIN, [this, raw](uint32_t) { on_conn(raw); }); !s) {
      spdlog::warn("http {}: {}", format_listen_address(local_), s.error().to_string());
      continue;  // c closes the fd
    }
    conns_.emplace(raw, std::move(c));
    ++stats_.accepted;
  }
  update_sweep_timer();
}

// Lingering connections have their whole response and only wait for the client's FIN: at the
// cap they give way to new clients. Their input was drained, so close() still ends them with a
// FIN, not a RST, unless the client sends more.
void HttpServer::evict_lingering() {
  std::vector<int> lingering;
  for (const auto& [fd, c] : conns_)
    if (c->state == Conn::State::kLingering) lingering.push_back(fd);
  for (int fd : lingering) close_conn(fd);
}

void HttpServer::on_resume_timer() {
  if (!expired(resume_fd_.get())) return;
  resume_pending_ = false;
  if (conns_.size() < opts_.max_connections) set_accepting(true);
}

void HttpServer::on_sweep_timer() {
  if (expired(sweep_fd_.get())) sweep();
}

void HttpServer::update_sweep_timer() {
  if (conns_.empty() && sweep_armed_) {
    arm(sweep_fd_.get(), std::chrono::nanoseconds(0), std::chrono::nanoseconds(0));
    sweep_armed_ = false;
  } else if (!conns_.empty() && !sweep_armed_) {
    // Deadlines are checked a few times per timeout: a connection lives at most 25% longer
    // than request_timeout, for one timer per server instead of one per connection.
    auto period = std::chrono::duration_cast<std::chrono::nanoseconds>(opts_.request_timeout) / 4;
    period = std::clamp<std::chrono::nanoseconds>(period, std::chrono::milliseconds(10),
                                                  std::chrono::seconds(1));
    arm(sweep_fd_.get(), period, period);
    sweep_armed_ = true;
  }
}

void HttpServer::sweep() {
  const auto now = Clock::now();
  std::vector<int> expired;
  for (const auto& [fd, c] : conns_)
    if (c->deadline <= now) expired.push_back(fd);
  for (int fd : expired) {
    Conn& c = *conns_.at(fd);
    ++stats_.timed_out;
    if (c.state == Conn::State::kReading && !c.in.empty()) {
      // Best effort, never waits: the client gets a reason if its socket has room.
      const std::string r = serialize_http_response(simple(408, "request timeout\n"), false);
      (void)send(fd, r.data(), r.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      ++stats_.responses[408];
    }
    close_conn(fd);
  }
}

void HttpServer::close_conn(int fd) {
  loop_.remove(fd);
  conns_.erase(fd);  // closes the socket
  if (!accepting_ && !resume_pending_ && conns_.size() < opts_.max_connections) set_accepting(true);
  update_sweep_timer();
}

// The event bits are only a hint: an fd number can be reused within one epoll batch (a
// connection closed by an earlier callback, a new one accepted under the same number), so
// every decision rests on what read() and send() return, never on EPOLLHUP/EPOLLERR alone.
void HttpServer::on_conn(int fd) {
  auto it = conns_.find(fd);
  if (it == conns_.end()) return;
  Conn& c = *it->second;
  switch (c.state) {
    case Conn::State::kReading:
      return read_request(c);
    case Conn::State::kWriting:
      return flush(c);
    case Conn::State::kLingering:
      return drain(c);
  }
}

void HttpServer::read_request(Conn& c) {
  const int fd = c.fd.get();
  bool eof = false;
  char buf[4096];
  // Never hold more than the head limit plus one read: a client cannot grow this buffer.
  while (c.in.size() <= opts_.max_head_bytes) {
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n > 0) {
      c.in.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) {
      eof = true;
      break;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
    return close_conn(fd);  // ECONNRESET and the like: nobody to answer
  }
  HttpRequest req;
  size_t head_len = 0;
  switch (parse_http_request(c.in, opts_.max_head_bytes, &req, &head_len)) {
    case HttpParse::kIncomplete:
      if (!eof) return;
      // The client closed its side mid-head. With nothing sent there is nobody to answer.
      if (c.in.empty()) return close_conn(fd);
      return respond(c, simple(400, "incomplete request\n"), false);
    case HttpParse::kBadRequest:
      return respond(c, simple(400, "malformed request\n"), false);
    case HttpParse::kHeadersTooLarge:
      return respond(c,
                     simple(431, "request head longer than " +
                                     std::to_string(opts_.max_head_bytes) + " bytes\n"),
                     false);
    case HttpParse::kVersionNotSupported:
      return respond(c, simple(505, "only HTTP/1.0 and HTTP/1.1 are served\n"), false);
    case HttpParse::kComplete:
      break;
  }
  const bool head_only = req.method == "HEAD";
  // RFC 9112 3.2: an HTTP/1.1 request without Host must be answered with 400.
  if (req.version_minor >= 1 && req.header("Host") == nullptr)
    return respond(c, simple(400, "HTTP/1.1 request without a Host header\n"), head_only);
  HttpResponse resp;
  try {
    resp = handler_(req);
  } catch (const std::exception& e) {
    // Only allocation failure is expected here; it must not take the agent down.
    spdlog::error("http {} {}: handler failed: {}", req.method, req.path, e.what());
    resp = simple(500, "internal error\n");
  }
  respond(c, resp, head_only);
}

// Every response, error or not, takes this path: it is counted by status, and the request
// buffer is released before writing, so a connection holds at most one of the two.
void HttpServer::respond(Conn& c, const HttpResponse& r, bool head_only) {
  ++stats_.responses[r.status];
  c.state = Conn::State::kWriting;
  c.in = std::string();
  c.out = serialize_http_response(r, head_only);
  c.out_off = 0;
  flush(c);
}

void HttpServer::flush(Conn& c) {
  const int fd = c.fd.get();
  while (c.out_off < c.out.size()) {
    const ssize_t n = send(fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
    if (n > 0) {
      c.out_off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (c.events != EPOLLOUT) {
        if (auto s = loop_.modify(fd, EPOLLOUT); !s) return close_conn(fd);
        c.events = EPOLLOUT;
      }
      return;
    }
    return close_conn(fd);  // EPIPE, ECONNRESET: the client is gone
  }
  c.out = std::string();
  if (shutdown(fd, SHUT_WR) != 0) return close_conn(fd);
  c.state = Conn::State::kLingering;
  c.deadline = std::min(c.deadline, Clock::now() + kLingerTime);
  // This slot can be reclaimed now (evict_lingering), so clients in the backlog may come in.
  if (!accepting_ && !resume_pending_) set_accepting(true);
  if (c.events != EPOLLIN) {
    if (auto s = loop_.modify(fd, EPOLLIN); !s) return close_conn(fd);
    c.events = EPOLLIN;
  }
  drain(c);
}

void HttpServer::drain(Conn& c) {
  const int fd = c.fd.get();
  char buf[4096];
  for (;;) {
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n > 0) {
      c.lingered += static_cast<size_t>(n);
      if (c.lingered > kLingerBytes) return close_conn(fd);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    return close_conn(fd);  // EOF (the client read the response and closed) or an error
  }
}

}  // namespace sluice
