// Fuzz harness for the API's HTTP server (api/http_server.hpp) on raw
// bytes: one real server per process on a Unix socket in a fresh directory
// under /tmp, with a small handler; per input a client connects, writes the
// input (any number of pipelined requests, chunked bodies, garbage),
// half-closes, and reads the answer until the server closes. The server
// must answer with HTTP (or nothing), hand the handler no body above the
// limit, and close the connection once the client's input has ended
// (a connection left open until the idle timeout is a finding).
//
// The handler answers by the target so the server's response paths run:
// "/status/NNN" answers status NNN (any number, valid or not), "/throw"
// throws, a GET answers 200 with a JSON body, other methods 204.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>

#include "api/http_server.hpp"
#include "vmm/core/fuzz/fuzz_input.hpp"
#include "vmm/core/unique_fd.hpp"

namespace {

using namespace hvz;
using namespace hvz::api;

// Small, so that the body limit is within the fuzzer's reach.
constexpr std::size_t kMaxBody = 1024;
// How long a client waits for the server to finish and close.
constexpr auto kCloseTimeout = std::chrono::seconds(5);

void fail(const char* what) {
  std::fprintf(stderr, "hvz fuzz: invariant broken: %s\n", what);
  std::abort();
}

HttpResponse handle(const HttpRequest& req) {
  if (req.body.size() > kMaxBody) fail("the server passed the handler a body above the limit");
  if (req.target.rfind("/status/", 0) == 0) {
    const long status = std::strtol(req.target.c_str() + 8, nullptr, 10);
    return HttpResponse{static_cast<int>(std::clamp(status, -1L, 10000L)), "{\"status\":true}"};
  }
  if (req.target == "/throw") throw std::runtime_error("handler failure");
  if (req.method == "GET") {
    return HttpResponse{200,
                        "{\"method\":\"GET\",\"length\":" + std::to_string(req.body.size()) + "}"};
  }
  return HttpResponse{204, ""};
}

// The server and its directory, for the whole process.
class Fixture {
 public:
  Fixture() {
    char dir[] = "/tmp/hvz-fuzz-http.XXXXXX";
    if (::mkdtemp(dir) == nullptr) {
      std::perror("mkdtemp");
      std::abort();
    }
    dir_ = dir;
    path_ = dir_ + "/api.sock";
    HttpServerOptions options;
    options.socket_path = path_;
    options.max_body_bytes = kMaxBody;
    auto server = HttpServer::start(options, handle);
    if (!server) {
      std::fprintf(stderr, "http_server_fuzz: %s\n", server.error().message().c_str());
      std::abort();
    }
    server_ = std::move(*server);
  }
  ~Fixture() {
    server_.reset();  // unlinks the socket
    ::rmdir(dir_.c_str());
  }
  const std::string& path() const { return path_; }

 private:
  std::string dir_;
  std::string path_;
  std::unique_ptr<HttpServer> server_;
};

Fixture* g_fixture = nullptr;

UniqueFd connect_to(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) fail("socket");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    fail("cannot connect to the API server");
  }
  ::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) | O_NONBLOCK);
  return fd;
}

// Writes `in` while reading what comes back (so neither side can block
// the other), half-closes, then reads until the server closes.
std::string exchange(int fd, std::span<const std::uint8_t> in) {
  std::string out;
  std::size_t sent = 0;
  bool half_closed = false;
  const auto deadline = std::chrono::steady_clock::now() + kCloseTimeout;
  char buf[4096];
  for (;;) {
    if (sent == in.size() && !half_closed) {
      ::shutdown(fd, SHUT_WR);
      half_closed = true;
    }
    const auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) {
      fail("the server kept the connection open after the client's input ended");
    }
    pollfd p{fd, static_cast<short>(POLLIN | (half_closed ? 0 : POLLOUT)), 0};
    const int ms =
        static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(left).count() + 1);
    if (::poll(&p, 1, ms) < 0) continue;
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n == 0) return out;
      if (n < 0 && errno != EAGAIN && errno != EINTR) return out;  // reset: also closed
      if (n > 0) out.append(buf, static_cast<std::size_t>(n));
    }
    if (!half_closed && (p.revents & POLLOUT)) {
      const ssize_t n = ::send(fd, in.data() + sent, in.size() - sent, MSG_NOSIGNAL);
      if (n > 0) {
        sent += static_cast<std::size_t>(n);
      } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        sent = in.size();  // the server closed its end: stop writing
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  hvz::fuzz::quiet_logs();
  g_fixture = new Fixture();
  std::atexit([] {
    delete g_fixture;
    g_fixture = nullptr;
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  UniqueFd fd = connect_to(g_fixture->path());
  const std::string answer = exchange(fd.get(), std::span(data, size));
  if (!answer.empty() && answer.rfind("HTTP/1.", 0) != 0) {
    fail("the server answered something that is not an HTTP response");
  }
  return 0;
}
