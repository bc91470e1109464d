// The control API's client side (sluicectl, tests): one request, one answer, blocking. Apart
// from the server (api_server.h) so that a client links no event loop and no server.
#pragma once

#include <sluice/core/result.h>

#include <sys/un.h>

#include <chrono>
#include <string>

namespace sluice {

// The socket address of `path`, or why it cannot be one (too long for sun_path). The server
// binds and the client connects through this one check.
Result<sockaddr_un> unix_socket_address(const std::string& path);

// Sends `request` (one JSON object) to the API socket at `path` and returns the response line,
// without its newline. Blocking, with a timeout on each send and receive.
Result<std::string> api_call(const std::string& path, const std::string& request,
                             std::chrono::milliseconds timeout = std::chrono::seconds(10));

}  // namespace sluice
