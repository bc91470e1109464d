// The control API: newline-delimited JSON over a Unix stream socket, on the agent's EventLoop.
//
// One request per connection: the client writes one JSON object and a newline, the server
// answers with one JSON object and a newline, then closes. Every socket is non-blocking; a
// client that does not finish its request within the deadline is dropped, so a slow or stuck
// client never holds the loop.
//
// Access: the socket file is created with mode 0600 in a directory of mode 0700, so only root
// can connect; the server also checks the peer's credentials (SO_PEERCRED) and refuses any
// uid but 0, in case the file mode was changed.
#pragma once

#include <sluice/api/api_client.h>  // the server and its clients share the address check
#include <sluice/core/event_loop.h>
#include <sluice/core/fd.h>
#include <sluice/core/result.h>

#include <sys/socket.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>

namespace sluice {

class ApiServer {
 public:
  // Takes the request line (without the newline) and returns the response object, serialized
  // (without the newline). Runs on the loop.
  using Handler = std::function<std::string(const std::string& request)>;

  // Binds `path` (a stale socket file left by a dead agent is replaced; a live one is an
  // error), creating its directory with mode 0700 if missing.
  static Result<std::unique_ptr<ApiServer>> start(EventLoop& loop, const std::string& path,
                                                  Handler handler);
  ~ApiServer();  // closes every connection and removes the socket file
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  const std::string& path() const { return path_; }
  static constexpr std::size_t kMaxRequestBytes = 64 * 1024;
  static constexpr std::chrono::seconds kDeadline{5};
  // Connections served at once; more are closed on accept (bounds the agent's memory and fds).
  static constexpr std::size_t kMaxConnections = 64;

 private:
  struct Conn {
    UniqueFd fd;
    std::string in;
    std::string out;
    std::size_t sent = 0;
    std::chrono::steady_clock::time_point deadline;
    bool allowed = false;
  };
  ApiServer(EventLoop& loop) : loop_(loop) {}
  void on_accept();
  void on_conn(int fd, uint32_t events);
  void respond(Conn& c, std::string body);
  void close_conn(int fd);
  void expire();

  EventLoop& loop_;
  std::string path_;
  UniqueFd listen_;
  Handler handler_;
  EventLoop::TimerId timer_ = 0;
  std::unordered_map<int, Conn> conns_;
};

}  // namespace sluice
