// A small HTTP/1.1 server on the agent's EventLoop, for the metrics endpoint (docs/metrics.md).
//
// It never blocks and never starts a thread: the listening socket and every connection are
// non-blocking fds on the loop. Each connection carries one request: the server reads the
// request head (capped, see HttpServerOptions), calls the handler, writes the response
// (waiting for EPOLLOUT when the socket buffer is full) and closes. A connection has a fixed
// deadline from accept to the end of its response, so a client that sends nothing, or reads
// slowly, costs one fd until then and never delays the loop or other clients. At
// max_connections the server first closes the connections that already have their response
// (waiting for the client's FIN), then stops accepting: further connections wait in the
// kernel's listen backlog (and past it, their SYNs are retried by the client's TCP) until a
// slot frees.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "sluice/abi/abi.h"
#include "sluice/core/event_loop.h"
#include "sluice/core/fd.h"
#include "sluice/core/net.h"
#include "sluice/core/result.h"

namespace sluice {

struct HttpHeader {
  std::string name;   // as sent; compare with iequals()
  std::string value;  // leading and trailing blanks removed
};

struct HttpRequest {
  std::string method;     // "GET"
  std::string target;     // "/metrics?x=1", as sent
  std::string path;       // "/metrics": the target up to '?'
  int version_minor = 1;  // HTTP/1.<minor>
  std::vector<HttpHeader> headers;

  // The first header named `name` (case-insensitive), or nullptr.
  const HttpHeader* header(std::string_view name) const;
};

enum class HttpParse {
  kIncomplete,           // the head is not complete yet: read more
  kComplete,             // *out is filled
  kBadRequest,           // 400: malformed request line or header
  kHeadersTooLarge,      // 431: no end of head within max_head_bytes
  kVersionNotSupported,  // 505: HTTP/2+ or HTTP/0.9-style
};

// Parses the request head at the start of `buf` (what was read so far). Lines end in CRLF or
// a bare LF. A malformed request line is reported as soon as that line is complete. The head
// (request line, headers, blank line) may be at most `max_head_bytes` long. On kComplete,
// `*head_len` is the length of the head; any bytes after it are a body or a pipelined request,
// which this server does not serve.
HttpParse parse_http_request(std::string_view buf, std::size_t max_head_bytes, HttpRequest* out,
                             std::size_t* head_len);

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::vector<HttpHeader> extra_headers;  // e.g. Allow, Retry-After
};

// "HTTP/1.1 200 OK\r\nContent-Type: ...\r\nContent-Length: N\r\nConnection: close\r\n...\r\n\r\n"
// + body (left out when `head_only`, for HEAD requests).
std::string serialize_http_response(const HttpResponse& r, bool head_only);
const char* http_reason_phrase(int status);

struct HttpServerOptions {
  // From accept to the last byte of the response. Connections past it are closed.
  std::chrono::milliseconds request_timeout{10000};
  std::size_t max_connections = 256;
  std::size_t max_head_bytes = 8192;
  int backlog = 512;
};

// Counters of the server itself (exported as sluice_metrics_http_* by the metrics module).
struct HttpServerStats {
  uint64_t accepted = 0;
  uint64_t accept_pauses = 0;  // times accepting stopped (max_connections reached, or no fds)
  uint64_t timed_out = 0;      // connections closed at their deadline
  std::unordered_map<int, uint64_t> responses;  // by status code
};

class HttpServer {
 public:
  // Called on the loop for every complete request; must not block. HEAD is passed as-is: the
  // server drops the body of the response.
  using Handler = std::function<HttpResponse(const HttpRequest&)>;

  // Binds and listens on `addr` (SO_REUSEADDR) and registers with `loop`. The server must be
  // destroyed before the loop; destroying it closes every connection and the listening socket.
  static Result<std::unique_ptr<HttpServer>> start(EventLoop& loop, const ListenAddress& addr,
                                                   Handler handler, HttpServerOptions opts = {});
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // The bound address, with the kernel's port when the requested port was 0.
  const ListenAddress& local_address() const { return local_; }
  uint16_t port() const { return local_.port; }
  std::size_t connections() const { return conns_.size(); }
  const HttpServerStats& stats() const { return stats_; }

 private:
  struct Conn;
  HttpServer(EventLoop& loop, Handler handler, HttpServerOptions opts);

  void on_accept();
  void on_sweep_timer();
  void on_resume_timer();
  void on_conn(int fd);
  void read_request(Conn& c);
  void respond(Conn& c, const HttpResponse& r, bool head_only);
  void flush(Conn& c);
  void drain(Conn& c);
  void close_conn(int fd);
  void evict_lingering();
  void sweep();
  void set_accepting(bool on);
  void update_sweep_timer();

  EventLoop& loop_;
  Handler handler_;
  HttpServerOptions opts_;
  UniqueFd listen_fd_;
  ListenAddress local_;
  std::unordered_map<int, std::unique_ptr<Conn>> conns_;
  UniqueFd sweep_fd_;   // periodic while connections are open: enforces their deadlines
  UniqueFd resume_fd_;  // one-shot: accepting again after running out of fds
  bool sweep_armed_ = false;
  bool resume_pending_ = false;
  bool accepting_ = true;
  std::chrono::steady_clock::time_point last_accept_warn_{};
  HttpServerStats stats_;
};

}  // namespace sluice
