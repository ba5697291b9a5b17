// HttpServer over a real Unix socket, driven by raw clients that write HTTP
// text and parse what comes back: keep-alive, pipelining, body limits,
// malformed input, stalled and idle clients, many concurrent clients,
// shutdown with clients connected. Timeouts here are hang guards only.
#include "api/http_server.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "vmm/core/metrics.hpp"

namespace hvz::api {
namespace {

using namespace std::chrono_literals;

constexpr int kHangGuardSeconds = 20;

struct Response {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;

  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
  bool has_header(const std::string& name) const { return headers.count(name) != 0; }
};

std::string lower(std::string s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return s;
}

// A blocking Unix-socket client with receive/send timeouts as hang guards.
class Client {
 public:
  explicit Client(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return;
    timeval tv{kHangGuardSeconds, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    if (::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~Client() {
    if (fd_ >= 0) ::close(fd_);
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  bool connected() const { return fd_ >= 0; }

  bool send(const std::string& data) {
    std::size_t off = 0;
    while (off < data.size()) {
      const ssize_t n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      off += static_cast<std::size_t>(n);
    }
    return true;
  }

  // One response (a 1xx one included); nullopt when the connection ends or
  // the hang guard fires first. `head`: the response to a HEAD has no body.
  std::optional<Response> read_response(bool head = false) {
    std::size_t end;
    while ((end = buf_.find("\r\n\r\n")) == std::string::npos) {
      if (!fill()) return std::nullopt;
    }
    Response r;
    const std::string head_text = buf_.substr(0, end);
    buf_.erase(0, end + 4);
    std::size_t line_end = head_text.find("\r\n");
    const std::string status_line = head_text.substr(0, line_end);
    if (status_line.rfind("HTTP/1.", 0) != 0 || status_line.size() < 12) return std::nullopt;
    r.status = std::atoi(status_line.c_str() + 9);
    while (line_end != std::string::npos) {
      const std::size_t start = line_end + 2;
      line_end = head_text.find("\r\n", start);
      const std::string line = head_text.substr(
          start, line_end == std::string::npos ? std::string::npos : line_end - start);
      const std::size_t colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.erase(0, 1);
      r.headers[lower(line.substr(0, colon))] = value;
    }
    if (head || r.status / 100 == 1 || r.status == 204 || r.status == 304) return r;
    const std::size_t length = std::strtoul(r.header("content-length").c_str(), nullptr, 10);
    while (buf_.size() < length) {
      if (!fill()) return std::nullopt;
    }
    r.body = buf_.substr(0, length);
    buf_.erase(0, length);
    return r;
  }

  // True when the server closes the connection (end of stream or reset)
  // before the hang guard fires; bytes still arriving are dropped.
  bool wait_closed() {
    char tmp[4096];
    for (;;) {
      const ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
      if (n == 0) return true;
      if (n > 0) continue;
      if (errno == EINTR) continue;
      return errno == ECONNRESET;
    }
  }

  void shutdown_write() { ::shutdown(fd_, SHUT_WR); }

  // Sends `piece` again and again, `total` bytes at most, until the server
  // stops taking them (it closed, or the hang guard fired); returns how
  // many bytes it took.
  std::size_t flood(const std::string& piece, std::size_t total) {
    std::size_t sent = 0;
    while (sent < total) {
      const ssize_t n = ::send(fd_, piece.data(), piece.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      sent += static_cast<std::size_t>(n);
    }
    return sent;
  }

 private:
  bool fill() {
    char tmp[4096];
    for (;;) {
      const ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      buf_.append(tmp, static_cast<std::size_t>(n));
      return true;
    }
  }

  int fd_ = -1;
  std::string buf_;
};

std::string get(const std::string& target, const std::string& extra = "") {
  return "GET " + target + " HTTP/1.1\r\nHost: localhost\r\n" + extra + "\r\n";
}

std::string put(const std::string& target, const std::string& body) {
  return "PUT " + target +
         " HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

// Echoes what arrived as JSON.
HttpResponse echo(const HttpRequest& r) {
  return HttpResponse{
      200, nlohmann::json{{"method", r.method}, {"target", r.target}, {"body", r.body}}.dump(
               -1, ' ', false, nlohmann::json::error_handler_t::replace)};
}

nlohmann::json parse(const std::string& body) {
  return nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
}

std::uint64_t counter(const char* name) {
  return metrics::registry().group("api_server").counter(name).value();
}

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/hvz-http-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/api.sock";
  }
  void TearDown() override {
    server_.reset();
    ::unlink(path_.c_str());
    ::rmdir(dir_.c_str());
  }

  HttpServerOptions options() const {
    HttpServerOptions o;
    o.socket_path = path_;
    return o;
  }
  void start(Handler handler = echo) { start(options(), std::move(handler)); }
  void start(HttpServerOptions o, Handler handler = echo) {
    auto s = HttpServer::start(std::move(o), std::move(handler));
    ASSERT_TRUE(s) << s.error().message();
    server_ = std::move(*s);
  }

  // Destroys the server on another thread; false if that does not finish
  // within the hang guard (the thread is then left behind).
  bool destroy_server() {
    std::promise<void> done;
    auto finished = done.get_future();
    std::thread([s = std::move(server_), d = std::move(done)]() mutable {
      s.reset();
      d.set_value();
    }).detach();
    return finished.wait_for(std::chrono::seconds(kHangGuardSeconds)) == std::future_status::ready;
  }

  std::string dir_;
  std::string path_;
  std::unique_ptr<HttpServer> server_;
};

TEST_F(HttpServerTest, GetReachesHandlerAndGetsJson) {
  start();
  Client c(path_);
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.send(get("/machine-config?x=1")));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->header("server"), "hvz");
  EXPECT_EQ(r->header("content-type"), "application/json");
  EXPECT_EQ(r->header("content-length"), std::to_string(r->body.size()));
  auto j = parse(r->body);
  EXPECT_EQ(j["method"], "GET");
  EXPECT_EQ(j["target"], "/machine-config?x=1");
  EXPECT_EQ(j["body"], "");
}

TEST_F(HttpServerTest, SocketIsPrivateAndRemovedOnDestroy) {
  start();
  struct stat st {};
  ASSERT_EQ(::lstat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_TRUE(destroy_server());
  EXPECT_NE(::lstat(path_.c_str(), &st), 0);
}

TEST_F(HttpServerTest, PutBodyReachesHandlerAnd204HasNoBody) {
  std::string seen;
  start([&seen](const HttpRequest& r) {
    seen = r.method + " " + r.target + " " + r.body;
    return HttpResponse{};
  });
  Client c(path_);
  ASSERT_TRUE(c.send(put("/drives/rootfs", R"({"drive_id":"rootfs"})")));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 204);
  EXPECT_FALSE(r->has_header("content-type"));
  EXPECT_EQ(r->header("server"), "hvz");
  EXPECT_EQ(seen, R"(PUT /drives/rootfs {"drive_id":"rootfs"})");
}

TEST_F(HttpServerTest, KeepAliveServesTwoRequestsOnOneConnection) {
  start();
  Client c(path_);
  ASSERT_TRUE(c.send(get("/a")));
  auto r1 = c.read_response();
  ASSERT_TRUE(r1);
  EXPECT_EQ(parse(r1->body)["target"], "/a");
  ASSERT_TRUE(c.send(put("/b", "{}")));
  auto r2 = c.read_response();
  ASSERT_TRUE(r2);
  EXPECT_EQ(parse(r2->body)["target"], "/b");
  EXPECT_EQ(parse(r2->body)["body"], "{}");
}

TEST_F(HttpServerTest, PipelinedRequestsAreAnsweredInOrder) {
  start();
  Client c(path_);
  ASSERT_TRUE(c.send(get("/1") + put("/2", R"({"k":2})") + get("/3") + put("/4", "x")));
  for (const char* t : {"/1", "/2", "/3", "/4"}) {
    auto r = c.read_response();
    ASSERT_TRUE(r) << t;
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(parse(r->body)["target"], t);
  }
  EXPECT_EQ(parse(std::string(R"({"k":2})"))["k"], 2);
}

TEST_F(HttpServerTest, BodyAtTheLimitIsAccepted) {
  start();
  Client c(path_);
  const std::string body(51200, 'a');
  ASSERT_TRUE(c.send(put("/big", body)));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(parse(r->body)["body"], body);
}

TEST_F(HttpServerTest, BodyOverTheLimitGets400AndClose) {
  int calls = 0;
  start([&calls](const HttpRequest& r) {
    ++calls;
    return echo(r);
  });
  const std::uint64_t bad_before = counter("bad_requests");
  Client c(path_);
  ASSERT_TRUE(c.send(put("/big", std::string(51201, 'a'))));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(r->header("content-type"), "application/json");
  EXPECT_EQ(r->header("server"), "hvz");
  auto j = parse(r->body);
  ASSERT_TRUE(j.contains("fault_message")) << r->body;
  EXPECT_EQ(j["fault_message"],
            "Request payload with size 51201 is larger than the limit of 51200 allowed by server");
  EXPECT_TRUE(c.wait_closed());
  EXPECT_EQ(calls, 0);
  EXPECT_GE(counter("bad_requests"), bad_before + 1);
}

TEST_F(HttpServerTest, ChunkedBodyOverTheLimitGets400) {
  auto o = options();
  o.max_body_bytes = 100;
  start(o);
  Client c(path_);
  ASSERT_TRUE(
      c.send("PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
             "40\r\n" +
             std::string(64, 'x') + "\r\n40\r\n" + std::string(64, 'y') + "\r\n0\r\n\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_NE(parse(r->body)["fault_message"].get<std::string>().find("larger than the limit of 100"),
            std::string::npos)
      << r->body;
  EXPECT_TRUE(c.wait_closed());
}

TEST_F(HttpServerTest, ChunkedBodyWithinTheLimitIsAccepted) {
  start();
  Client c(path_);
  ASSERT_TRUE(
      c.send("PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
             "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(parse(r->body)["body"], "abcde");
}

TEST_F(HttpServerTest, EndlessChunkLineOrTrailerGets400WithBoundedBuffering) {
  // Beast keeps a chunk-size line (with its extensions) or a trailer in the
  // read buffer until its CRLF arrives, and limits neither: without a
  // bound on the buffer, one client could make the server hold any amount
  // of memory (on each of its connections).
  auto o = options();
  o.idle_timeout = 2s;  // how long an unbounded server would wait for the rest
  start(o);
  constexpr std::size_t kFlood = 16 << 20;
  // The read buffer (~75 KiB), what the server drains after its answer
  // (1 MiB) and what the socket buffers hold, with room to spare.
  constexpr std::size_t kAcceptedMax = 4 << 20;
  const std::string head = "PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
  const std::pair<const char*, std::string> cases[] = {
      {"an endless chunk extension", head + "1;ext="},
      {"an endless chunk size", head + "1"},
      {"an endless trailer", head + "1\r\nx\r\n0\r\nX-Trailer: "},
  };
  const std::string piece(64 * 1024, '1');  // a hex digit: also fits an extension and a field
  for (const auto& [what, start_text] : cases) {
    SCOPED_TRACE(what);
    Client c(path_);
    ASSERT_TRUE(c.send(start_text));
    const std::size_t sent = c.flood(piece, kFlood);
    EXPECT_LT(sent, kAcceptedMax) << "the server took " << sent << " bytes of " << what;
    auto r = c.read_response();
    ASSERT_TRUE(r) << "no answer";
    EXPECT_EQ(r->status, 400);
    const auto fault = parse(r->body).value("fault_message", "");
    EXPECT_NE(fault.find("Malformed HTTP request: a chunk header or trailer is longer than"),
              std::string::npos)
        << r->body;
    EXPECT_TRUE(c.wait_closed());
  }
  // The server still serves.
  Client ok(path_);
  ASSERT_TRUE(ok.send(get("/after")));
  auto r = ok.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST_F(HttpServerTest, LimitsKeepTheirMessagesWithTheBoundedBuffer) {
  start();
  {
    Client c(path_);
    ASSERT_TRUE(c.send("GET / HTTP/1.1\r\nX-Big: " + std::string(100000, 'a') + "\r\n\r\n"));
    auto r = c.read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400);
    EXPECT_EQ(parse(r->body)["fault_message"], "Malformed HTTP request: header limit exceeded");
  }
  {
    // A chunked body over the limit sent in one large chunk, and many small
    // ones: the body limit, not the buffer, speaks.
    Client c(path_);
    ASSERT_TRUE(
        c.send("PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
               "20000\r\n" +
               std::string(0x20000, 'x') + "\r\n0\r\n\r\n"));
    auto r = c.read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400);
    EXPECT_EQ(parse(r->body)["fault_message"],
              "Request payload is larger than the limit of 51200 allowed by server");
  }
  {
    Client c(path_);
    std::string chunks;
    for (int i = 0; i < 2000; ++i) chunks += "20\r\n" + std::string(32, 'y') + "\r\n";
    ASSERT_TRUE(
        c.send("PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks));
    auto r = c.read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400);
    EXPECT_EQ(parse(r->body)["fault_message"],
              "Request payload is larger than the limit of 51200 allowed by server");
  }
  {
    // Pipelined requests filling more than the buffer are all served.
    Client c(path_);
    std::string many;
    const std::string body(40000, 'b');
    for (int i = 0; i < 4; ++i) many += put("/p" + std::to_string(i), body);
    ASSERT_TRUE(c.send(many));
    for (int i = 0; i < 4; ++i) {
      auto r = c.read_response();
      ASSERT_TRUE(r) << i;
      EXPECT_EQ(r->status, 200);
      EXPECT_EQ(parse(r->body)["target"], "/p" + std::to_string(i));
    }
  }
}

TEST_F(HttpServerTest, HandlerHeadersAreSentAndInvalidOnesDropped) {
  start([](const HttpRequest&) {
    HttpResponse r{200, R"({"ok":true})"};
    r.headers = {{"Deprecation", "true"},
                 {"X-Bad\r\nInjected", "1"},
                 {"X-Split", "a\r\nInjected: 1"},
                 {"", "empty"}};
    return r;
  });
  Client c(path_);
  ASSERT_TRUE(c.send(get("/")));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->header("deprecation"), "true");
  EXPECT_FALSE(r->has_header("injected"));
  EXPECT_FALSE(r->has_header("x-split"));
  EXPECT_EQ(r->body, R"({"ok":true})");
}

TEST_F(HttpServerTest, MalformedRequestLineGets400AndClose) {
  start();
  Client c(path_);
  ASSERT_TRUE(c.send("GET /a HTTP/9.x\r\n\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_TRUE(parse(r->body).contains("fault_message")) << r->body;
  EXPECT_TRUE(c.wait_closed());
}

TEST_F(HttpServerTest, GarbageBytesGet400AndTheServerKeepsServing) {
  start();
  {
    Client c(path_);
    std::string garbage("\x00\x01\xff\xfe\x7f junk \r\n\r\n", 14);
    ASSERT_TRUE(c.send(garbage));
    auto r = c.read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400);
    EXPECT_TRUE(parse(r->body).contains("fault_message")) << r->body;
    EXPECT_TRUE(c.wait_closed());
  }
  {
    // A header line without a colon, then a huge header.
    Client c(path_);
    ASSERT_TRUE(c.send("GET / HTTP/1.1\r\nno colon here\r\n\r\n"));
    auto r = c.read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400);
  }
  {
    Client c(path_);
    ASSERT_TRUE(c.send("GET / HTTP/1.1\r\nX-Big: " + std::string(100000, 'a') + "\r\n\r\n"));
    auto r = c.read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400);
    EXPECT_TRUE(c.wait_closed());
  }
  Client ok(path_);
  ASSERT_TRUE(ok.send(get("/still-alive")));
  auto r = ok.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST_F(HttpServerTest, OtherMethodsReachTheHandler) {
  start();
  Client c(path_);
  ASSERT_TRUE(c.send("DELETE /x HTTP/1.1\r\nHost: h\r\n\r\n" +
                     std::string("FROB /y HTTP/1.1\r\nHost: h\r\n\r\n") +
                     "PATCH /z HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n{}"));
  for (auto [m, t] : {std::pair{"DELETE", "/x"}, {"FROB", "/y"}, {"PATCH", "/z"}}) {
    auto r = c.read_response();
    ASSERT_TRUE(r) << m;
    EXPECT_EQ(parse(r->body)["method"], m);
    EXPECT_EQ(parse(r->body)["target"], t);
  }
}

TEST_F(HttpServerTest, HeadResponseCarriesNoBody) {
  start([](const HttpRequest& r) {
    if (r.method == "HEAD")
      return HttpResponse{400, R"({"fault_message":"Invalid request method"})"};
    return echo(r);
  });
  Client c(path_);
  ASSERT_TRUE(c.send("HEAD /h HTTP/1.1\r\nHost: h\r\n\r\n" + get("/after")));
  auto r1 = c.read_response(/*head=*/true);
  ASSERT_TRUE(r1);
  EXPECT_EQ(r1->status, 400);
  auto r2 = c.read_response();
  ASSERT_TRUE(r2);
  EXPECT_EQ(r2->status, 200);
  EXPECT_EQ(parse(r2->body)["target"], "/after");
}

TEST_F(HttpServerTest, Http10ConnectionIsClosedAfterTheResponse) {
  start();
  Client c(path_);
  ASSERT_TRUE(c.send("GET /old HTTP/1.0\r\n\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_TRUE(c.wait_closed());
}

TEST_F(HttpServerTest, ConnectionCloseIsHonoured) {
  start();
  Client c(path_);
  ASSERT_TRUE(c.send(get("/bye", "Connection: close\r\n")));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(lower(r->header("connection")), "close");
  EXPECT_TRUE(c.wait_closed());
}

TEST_F(HttpServerTest, ExpectContinueGets100First) {
  start();
  Client c(path_);
  ASSERT_TRUE(
      c.send("PUT /e HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"));
  auto r1 = c.read_response();
  ASSERT_TRUE(r1);
  EXPECT_EQ(r1->status, 100);
  ASSERT_TRUE(c.send("hello"));
  auto r2 = c.read_response();
  ASSERT_TRUE(r2);
  EXPECT_EQ(r2->status, 200);
  EXPECT_EQ(parse(r2->body)["body"], "hello");
}

TEST_F(HttpServerTest, HandlerExceptionGives500AndConnectionStaysUsable) {
  start([](const HttpRequest& r) -> HttpResponse {
    if (r.target == "/throw") throw std::runtime_error("boom");
    if (r.target == "/weird") return HttpResponse{42, ""};
    return echo(r);
  });
  Client c(path_);
  ASSERT_TRUE(c.send(get("/throw")));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 500);
  auto j = parse(r->body);
  ASSERT_TRUE(j.contains("fault_message")) << r->body;
  EXPECT_NE(j["fault_message"].get<std::string>().find("boom"), std::string::npos);
  ASSERT_TRUE(c.send(get("/weird")));
  r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 500);
  ASSERT_TRUE(c.send(get("/fine")));
  r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST_F(HttpServerTest, StalledClientDoesNotBlockOthersAndIsClosed) {
  auto o = options();
  o.idle_timeout = 500ms;
  start(o);
  Client stalled(path_);
  ASSERT_TRUE(stalled.send("PUT /drives/x HTTP/1.1\r\nHost: h\r\nContent-Le"));
  Client stalled_body(path_);
  ASSERT_TRUE(stalled_body.send("PUT /drives/x HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc"));
  Client other(path_);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(other.send(get("/other/" + std::to_string(i))));
    auto r = other.read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
  }
  EXPECT_TRUE(stalled.wait_closed());
  EXPECT_TRUE(stalled_body.wait_closed());
}

TEST_F(HttpServerTest, IdleKeepAliveConnectionIsClosed) {
  auto o = options();
  o.idle_timeout = 300ms;
  start(o);
  Client c(path_);
  ASSERT_TRUE(c.send(get("/once")));
  ASSERT_TRUE(c.read_response());
  EXPECT_TRUE(c.wait_closed());
}

TEST_F(HttpServerTest, ManyConcurrentClients) {
  std::atomic<int> calls{0};
  start([&calls](const HttpRequest& r) {
    calls.fetch_add(1);
    return echo(r);
  });
  const std::uint64_t requests_before = counter("requests");
  const std::uint64_t connections_before = counter("connections");
  constexpr int kClients = 100;
  constexpr int kRequests = 20;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([this, i, &failures] {
      // Even clients keep one connection; odd ones connect per request.
      std::optional<Client> c;
      for (int j = 0; j < kRequests; ++j) {
        if (!c || i % 2 == 1) c.emplace(path_);
        const std::string target = "/c/" + std::to_string(i) + "/" + std::to_string(j);
        auto r = c->send(get(target)) ? c->read_response() : std::nullopt;
        if (!r || r->status != 200 || parse(r->body)["target"] != target) failures.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(calls.load(), kClients * kRequests);
  EXPECT_GE(counter("requests"), requests_before + kClients * kRequests);
  EXPECT_GE(counter("connections"), connections_before + kClients / 2 * (1 + kRequests));
}

TEST_F(HttpServerTest, ConnectionsOverTheMaximumAreRefused) {
  auto o = options();
  o.max_connections = 2;
  start(o);
  auto a = std::make_unique<Client>(path_);
  Client b(path_);
  for (Client* c : {a.get(), &b}) {
    ASSERT_TRUE(c->send(get("/in")));
    auto r = c->read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
  }
  {
    Client refused(path_);
    ASSERT_TRUE(refused.connected());
    refused.send(get("/refused"));
    auto r = refused.read_response();
    if (r) {
      EXPECT_EQ(r->status, 503);
    }
    EXPECT_TRUE(refused.wait_closed());
  }
  // Once a slot frees up, new clients are served again (bounded retries:
  // the server notices the close asynchronously).
  a.reset();
  bool served = false;
  for (int i = 0; i < 1000 && !served; ++i) {
    Client c(path_);
    c.send(get("/again"));
    auto r = c.read_response();
    served = r && r->status == 200;
    if (!served) std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(served);
}

TEST_F(HttpServerTest, DestroyWithClientsConnectedDoesNotHang) {
  start();
  Client idle(path_);
  Client half(path_);
  ASSERT_TRUE(half.send("GET /half HTTP/1.1\r\nHo"));
  Client body(path_);
  ASSERT_TRUE(body.send("PUT /b HTTP/1.1\r\nContent-Length: 100\r\n\r\n{"));
  Client served(path_);
  ASSERT_TRUE(served.send(get("/x")));
  ASSERT_TRUE(served.read_response());
  ASSERT_TRUE(destroy_server());
  for (Client* c : {&idle, &half, &body, &served}) EXPECT_TRUE(c->wait_closed());
  struct stat st {};
  EXPECT_NE(::lstat(path_.c_str(), &st), 0);
}

TEST_F(HttpServerTest, ExistingPathIsRefused) {
  { std::ofstream(path_) << "x"; }
  auto s = HttpServer::start(options(), echo);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message().find("exists: another VMM may be using it; remove it first"),
            std::string::npos)
      << s.error().message();
  struct stat st {};
  ASSERT_EQ(::lstat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));  // left alone
  ASSERT_EQ(::unlink(path_.c_str()), 0);

  start();
  auto second = HttpServer::start(options(), echo);
  ASSERT_FALSE(second);
  EXPECT_NE(second.error().message().find("exists"), std::string::npos);
  // The first server still owns and serves the socket.
  Client c(path_);
  ASSERT_TRUE(c.send(get("/first")));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST_F(HttpServerTest, BadOptionsAreRefused) {
  auto o = options();
  o.socket_path = dir_ + "/" + std::string(120, 'p');
  auto s = HttpServer::start(o, echo);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message().find("too long"), std::string::npos) << s.error().message();
  o.socket_path = dir_ + "/missing-dir/api.sock";
  s = HttpServer::start(o, echo);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), Errc::kSystem) << s.error().message();
  EXPECT_FALSE(HttpServer::start(options(), Handler{}));
}

}  // namespace
}  // namespace hvz::api
