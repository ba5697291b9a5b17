// HttpServer: HTTP/1.1 over a Unix domain socket (Boost.Beast), on its own
// thread. Requests are read asynchronously, so a slow or idle client never
// blocks the others; complete requests go to one Handler, one at a time
// (handlers need no locking among themselves). Bodies above max_body_bytes,
// malformed HTTP and idle connections get a 4xx or are closed — never a
// crash. What a connection buffers is bounded too (a header, chunk line or
// trailer that never ends is a 400, not unbounded memory). Each request is
// logged with its duration.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "vmm/core/error.hpp"

namespace hvz::api {

struct HttpRequest {
  std::string method;  // "GET", "PUT", "PATCH", …
  std::string target;  // "/drives/rootfs" (the query string, if any, included)
  std::string body;
};

struct HttpResponse {
  int status = 204;
  std::string body;  // JSON; empty for 204
  // Extra header fields, e.g. Firecracker's {"Deprecation", "true"}. A field
  // whose name is not an HTTP token or whose value holds a control
  // character is dropped (and logged), never sent.
  std::vector<std::pair<std::string, std::string>> headers = {};
};

using Handler = std::function<HttpResponse(const HttpRequest&)>;

struct HttpServerOptions {
  std::string socket_path;
  std::size_t max_body_bytes = 51200;  // Firecracker's default payload limit
  // A connection with a request half-read (or idle between requests) for
  // this long is closed.
  std::chrono::milliseconds idle_timeout{30000};
  std::size_t max_connections = 1024;
};

class HttpServer {
 public:
  // Binds and listens on options.socket_path (refusing a path that exists:
  // another VMM may own it), then serves on a new thread until destroyed.
  static Expected<std::unique_ptr<HttpServer>> start(HttpServerOptions options, Handler handler);
  virtual ~HttpServer() = default;  // stops the thread, closes clients, unlinks the socket

 protected:
  HttpServer() = default;
};

}  // namespace hvz::api
