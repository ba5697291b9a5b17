// api::Client against a tiny one-connection server (Boost.Beast, on a
// thread): requests as sent, answers as received, and one-line errors for
// missing sockets, refused connections, silence, hang-ups and garbage.
#include "api/client.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "api/beast.hpp"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>

#include <gtest/gtest.h>

namespace hvz::api {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using Protocol = asio::local::stream_protocol;
using namespace std::chrono_literals;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/hvz-client-test-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Accepts one connection on `path` and hands the socket to `serve`.
class OneShotServer {
 public:
  OneShotServer(const std::string& path, std::function<void(Protocol::socket&)> serve)
      : acceptor_(ioc_, Protocol::endpoint(path)) {
    thread_ = std::thread([this, serve = std::move(serve)] {
      beast::error_code ec;
      Protocol::socket socket(ioc_);
      acceptor_.accept(socket, ec);
      if (!ec) serve(socket);
    });
  }
  ~OneShotServer() { thread_.join(); }

 private:
  asio::io_context ioc_;
  Protocol::acceptor acceptor_;
  std::thread thread_;
};

struct Seen {
  std::string method, target, body, content_type;
};

// Reads one request, records it and answers `status` with `body`.
std::function<void(Protocol::socket&)> answer(Seen& seen, http::status status, std::string body) {
  return [&seen, status, body](Protocol::socket& socket) {
    beast::flat_buffer buffer;
    http::request<http::string_body> req;
    beast::error_code ec;
    http::read(socket, buffer, req, ec);
    if (ec) return;
    seen.method = std::string(req.method_string());
    seen.target = std::string(req.target());
    seen.body = req.body();
    seen.content_type = std::string(req[http::field::content_type]);
    http::response<http::string_body> res{status, 11};
    res.body() = body;
    if (!body.empty()) res.set(http::field::content_type, "application/json");
    res.prepare_payload();
    http::write(socket, res, ec);
  };
}

TEST(Client, GetReturnsStatusAndBody) {
  TempDir dir;
  const auto path = dir.file("api.sock");
  Seen seen;
  std::string body = R"({"id":"x","state":"Not started"})";
  Expected<ClientResponse> resp = make_error(Errc::kSystem, "not run");
  {
    OneShotServer server(path, answer(seen, http::status::ok, body));
    resp = Client(path, 30s).request("GET", "/");
  }
  ASSERT_TRUE(resp) << resp.error().message();
  EXPECT_EQ(resp->status, 200);
  EXPECT_EQ(resp->body, body);
  EXPECT_EQ(seen.method, "GET");
  EXPECT_EQ(seen.target, "/");
  EXPECT_EQ(seen.body, "");
}

TEST(Client, PutSendsJsonBody) {
  TempDir dir;
  const auto path = dir.file("api.sock");
  Seen seen;
  Expected<ClientResponse> resp = make_error(Errc::kSystem, "not run");
  {
    OneShotServer server(path, answer(seen, http::status::no_content, ""));
    resp = Client(path, 30s).request("PUT", "/drives/rootfs", R"({"drive_id":"rootfs"})");
  }
  ASSERT_TRUE(resp) << resp.error().message();
  EXPECT_EQ(resp->status, 204);
  EXPECT_EQ(resp->body, "");
  EXPECT_EQ(seen.method, "PUT");
  EXPECT_EQ(seen.target, "/drives/rootfs");
  EXPECT_EQ(seen.body, R"({"drive_id":"rootfs"})");
  EXPECT_EQ(seen.content_type, "application/json");
}

TEST(Client, ErrorStatusIsAnAnswerNotAnError) {
  TempDir dir;
  const auto path = dir.file("api.sock");
  Seen seen;
  Expected<ClientResponse> resp = make_error(Errc::kSystem, "not run");
  {
    OneShotServer server(path,
                         answer(seen, http::status::bad_request, R"({"fault_message":"no"})"));
    resp = Client(path, 30s).request("PATCH", "/vm", R"({"state":"Paused"})");
  }
  ASSERT_TRUE(resp) << resp.error().message();
  EXPECT_EQ(resp->status, 400);
  EXPECT_EQ(resp->body, R"({"fault_message":"no"})");
  EXPECT_EQ(seen.method, "PATCH");
}

TEST(Client, MissingSocket) {
  TempDir dir;
  const auto path = dir.file("missing.sock");
  auto resp = Client(path, 30s).request("GET", "/");
  ASSERT_FALSE(resp);
  EXPECT_EQ(resp.error().message(), "cannot connect to " + path + ": No such file or directory");
}

TEST(Client, RefusedConnection) {
  TempDir dir;
  const auto path = dir.file("dead.sock");
  {
    asio::io_context ioc;
    Protocol::socket bound(ioc);
    bound.open();
    bound.bind(Protocol::endpoint(path));  // bound, never listening
  }
  auto resp = Client(path, 30s).request("GET", "/");
  ASSERT_FALSE(resp);
  EXPECT_EQ(resp.error().message(), "cannot connect to " + path + ": Connection refused");
}

TEST(Client, SilentServerTimesOut) {
  TempDir dir;
  const auto path = dir.file("api.sock");
  Expected<ClientResponse> resp = make_error(Errc::kSystem, "not run");
  {
    // Reads the request and keeps quiet until the client gives up.
    OneShotServer server(path, [](Protocol::socket& socket) {
      char buf[4096];
      beast::error_code ec;
      while (!ec) socket.read_some(asio::buffer(buf), ec);
    });
    resp = Client(path, 200ms).request("GET", "/machine-config");
  }
  ASSERT_FALSE(resp);
  EXPECT_NE(resp.error().message().find("within 200 ms"), std::string::npos)
      << resp.error().message();
}

TEST(Client, HangUpWithoutAnswer) {
  TempDir dir;
  const auto path = dir.file("api.sock");
  Expected<ClientResponse> resp = make_error(Errc::kSystem, "not run");
  {
    OneShotServer server(path, [](Protocol::socket& socket) {
      beast::flat_buffer buffer;
      http::request<http::string_body> req;
      beast::error_code ec;
      http::read(socket, buffer, req, ec);
      socket.close(ec);
    });
    resp = Client(path, 30s).request("GET", "/");
  }
  ASSERT_FALSE(resp);
  EXPECT_EQ(resp.error().message(), path + " closed the connection without answering GET /");
}

TEST(Client, GarbageAnswer) {
  TempDir dir;
  const auto path = dir.file("api.sock");
  Expected<ClientResponse> resp = make_error(Errc::kSystem, "not run");
  {
    OneShotServer server(path, [](Protocol::socket& socket) {
      beast::flat_buffer buffer;
      http::request<http::string_body> req;
      beast::error_code ec;
      http::read(socket, buffer, req, ec);
      asio::write(socket, asio::buffer(std::string("SSH-2.0-nope\r\n\r\n")), ec);
      socket.close(ec);
    });
    resp = Client(path, 30s).request("GET", "/");
  }
  ASSERT_FALSE(resp);
  EXPECT_EQ(resp.error().message().rfind("bad answer from " + path + " to GET /: ", 0), 0u)
      << resp.error().message();
}

TEST(Client, RejectsBadArguments) {
  const std::string long_path = "/tmp/" + std::string(200, 'x') + ".sock";
  auto too_long = Client(long_path).request("GET", "/");
  ASSERT_FALSE(too_long);
  EXPECT_NE(too_long.error().message().find("too long"), std::string::npos);
  auto bad_method = Client("/tmp/x.sock").request("FETCH", "/");
  ASSERT_FALSE(bad_method);
  EXPECT_EQ(bad_method.error().message(), "unknown HTTP method FETCH");
  auto bad_target = Client("/tmp/x.sock").request("GET", "vm");
  ASSERT_FALSE(bad_target);
  EXPECT_NE(bad_target.error().message().find("must start with '/'"), std::string::npos);
}

TEST(Client, PeerPid) {
  TempDir dir;
  const auto path = dir.file("api.sock");
  Expected<pid_t> pid = make_error(Errc::kSystem, "not run");
  {
    OneShotServer server(path, [](Protocol::socket&) {});
    pid = Client(path, 30s).peer_pid();
  }
  ASSERT_TRUE(pid) << pid.error().message();
  EXPECT_EQ(*pid, ::getpid());
  auto missing = Client(dir.file("missing.sock"), 30s).peer_pid();
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message().find("No such file or directory"), std::string::npos);
}

}  // namespace
}  // namespace hvz::api
