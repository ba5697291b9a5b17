// Client: a small synchronous HTTP/1.1 client over a Unix domain socket
// (Boost.Beast), for hvzctl and tests that drive hvz's API. One connection
// per request; every step (connect, send, read) is bounded by the timeout.
// Errors are one readable line, e.g.
//   "cannot connect to /run/hvz/x/api.sock: No such file or directory".
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <string_view>
#include <utility>

#include "vmm/core/error.hpp"

namespace hvz::api {

struct ClientResponse {
  int status = 0;
  std::string body;
};

class Client {
 public:
  explicit Client(std::string socket_path,
                  std::chrono::milliseconds timeout = std::chrono::seconds(30))
      : socket_path_(std::move(socket_path)), timeout_(timeout) {}

  const std::string& socket_path() const { return socket_path_; }
  std::chrono::milliseconds timeout() const { return timeout_; }
  void set_timeout(std::chrono::milliseconds timeout) { timeout_ = timeout; }

  // `method`: "GET", "PUT", "PATCH", … ; `target`: "/machine-config". A
  // non-empty body is sent as application/json. Any HTTP status is a
  // successful exchange: callers judge the status.
  Expected<ClientResponse> request(std::string_view method, std::string_view target,
                                   std::string_view body = {}) const;

  // The pid of the process serving the socket (SO_PEERCRED).
  Expected<pid_t> peer_pid() const;

  // Upper bound on a response body; larger answers are an error.
  static constexpr std::size_t kMaxBodyBytes = 16u << 20;

 private:
  std::string socket_path_;
  std::chrono::milliseconds timeout_;
};

}  // namespace hvz::api
