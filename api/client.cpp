// Client: one request per connection, asynchronous steps under a deadline
// (beast::basic_stream's timer) driven to completion by a private
// io_context, so callers see a plain synchronous call.
#include "api/client.hpp"

#include <sys/socket.h>
#include <sys/un.h>

#include "api/beast.hpp"

#include <cerrno>

namespace hvz::api {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using Protocol = asio::local::stream_protocol;
using Stream = beast::basic_stream<Protocol>;

std::string seconds_text(std::chrono::milliseconds t) {
  const auto ms = t.count();
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + " s";
  return std::to_string(ms) + " ms";
}

// An error for a failed step: system errors keep their errno so the message
// reads "what: strerror"; others carry Boost's text.
tl::unexpected<Error> step_error(const std::string& what, const beast::error_code& ec) {
  if (ec.category() == boost::system::system_category() ||
      ec.category() == boost::system::generic_category()) {
    return make_error(Errc::kSystem, what, ec.value());
  }
  return make_error(Errc::kSystem, what + ": " + ec.message());
}

Expected<void> check_path(const std::string& path) {
  if (path.empty()) return make_error(Errc::kInvalidArgument, "empty API socket path");
  if (path.size() >= sizeof(sockaddr_un::sun_path)) {
    return make_error(Errc::kInvalidArgument,
                      "API socket path too long (" + std::to_string(path.size()) +
                          " bytes, at most " + std::to_string(sizeof(sockaddr_un::sun_path) - 1) +
                          "): " + path);
  }
  return {};
}

// Connects `stream` to `path` within `timeout`; runs `ioc` to do so.
Expected<void> connect(asio::io_context& ioc, Stream& stream, const std::string& path,
                       std::chrono::milliseconds timeout) {
  beast::error_code result = asio::error::would_block;
  stream.expires_after(timeout);
  stream.async_connect(Protocol::endpoint(path), [&](beast::error_code ec) { result = ec; });
  ioc.run();
  ioc.restart();
  if (result == beast::error::timeout) {
    return make_error(Errc::kSystem,
                      "cannot connect to " + path + ": no answer within " + seconds_text(timeout));
  }
  if (result) return step_error("cannot connect to " + path, result);
  return {};
}

}  // namespace

Expected<ClientResponse> Client::request(std::string_view method, std::string_view target,
                                         std::string_view body) const {
  if (auto ok = check_path(socket_path_); !ok) return tl::unexpected(ok.error());
  const std::string what = std::string(method) + " " + std::string(target);
  const http::verb verb = http::string_to_verb(method);
  if (verb == http::verb::unknown) {
    return make_error(Errc::kInvalidArgument, "unknown HTTP method " + std::string(method));
  }
  if (target.empty() || target.front() != '/') {
    return make_error(Errc::kInvalidArgument, "request target must start with '/': " + what);
  }

  asio::io_context ioc;
  Stream stream(ioc);
  if (auto ok = connect(ioc, stream, socket_path_, timeout_); !ok) {
    return tl::unexpected(ok.error());
  }

  http::request<http::string_body> req{verb, beast::string_view(target.data(), target.size()), 11};
  req.set(http::field::host, "localhost");
  req.set(http::field::user_agent, "hvzctl");
  req.set(http::field::accept, "application/json");
  if (!body.empty()) {
    req.set(http::field::content_type, "application/json");
    req.body() = std::string(body);
  }
  req.keep_alive(false);
  req.prepare_payload();

  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(kMaxBodyBytes);
  beast::error_code write_ec = asio::error::would_block;
  beast::error_code read_ec = asio::error::would_block;

  stream.expires_after(timeout_);
  http::async_write(stream, req, [&](beast::error_code ec, std::size_t) {
    write_ec = ec;
    if (ec) return;
    stream.expires_after(timeout_);
    http::async_read(stream, buffer, parser,
                     [&](beast::error_code ec2, std::size_t) { read_ec = ec2; });
  });
  ioc.run();

  if (write_ec == beast::error::timeout || read_ec == beast::error::timeout) {
    return make_error(Errc::kSystem, socket_path_ + ": no answer to " + what + " within " +
                                         seconds_text(timeout_));
  }
  if (write_ec) return step_error("cannot send " + what + " to " + socket_path_, write_ec);
  if (read_ec == http::error::end_of_stream || read_ec == asio::error::eof ||
      read_ec == asio::error::connection_reset) {
    return make_error(Errc::kSystem,
                      socket_path_ + " closed the connection without answering " + what);
  }
  if (read_ec) return step_error("bad answer from " + socket_path_ + " to " + what, read_ec);

  beast::error_code ignored;
  stream.socket().shutdown(Protocol::socket::shutdown_both, ignored);
  auto response = parser.release();
  return ClientResponse{static_cast<int>(response.result_int()), std::move(response.body())};
}

Expected<pid_t> Client::peer_pid() const {
  if (auto ok = check_path(socket_path_); !ok) return tl::unexpected(ok.error());
  asio::io_context ioc;
  Stream stream(ioc);
  if (auto ok = connect(ioc, stream, socket_path_, timeout_); !ok) {
    return tl::unexpected(ok.error());
  }
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (::getsockopt(stream.socket().native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return sys_error("SO_PEERCRED on " + socket_path_);
  }
  return cred.pid;
}

}  // namespace hvz::api
