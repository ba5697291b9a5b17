// HttpServer on Boost.Asio/Beast: one io_context on one thread, an acceptor
// on a Unix socket and one Session per connection. A session reads a request
// (header first, then the body, answering "Expect: 100-continue"), calls the
// handler inline (so handlers run one at a time, on the server thread),
// writes the response and reads the next request: pipelined requests are
// answered in order because the next one is parsed only after the previous
// response went out. Every read and write runs under a timer (idle_timeout);
// a connection that is closed after an error response is shut down for
// sending and drained for a short while first, so the client reads the
// response rather than a reset.
//
// Memory per connection is bounded: Beast's parser limits the header
// (header_limit) and the body (body_limit) but not a chunk-size line, its
// extensions or the trailer, which it keeps in the read buffer until their
// end arrives; so the read buffer itself has a maximum (read_buffer_limit),
// and a request that would need more is a 400.
//
// The server must not be destroyed from inside its own handler (the
// destructor joins the server thread).
#include "api/http_server.hpp"

#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <exception>
#include <optional>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <utility>

#include "api/beast.hpp"

#include <nlohmann/json.hpp>

#include "vmm/core/log.hpp"
#include "vmm/core/metrics.hpp"

namespace hvz::api {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using boost::system::error_code;
using stream_protocol = asio::local::stream_protocol;
using Clock = std::chrono::steady_clock;

// After an error response (or "Connection: close"), how long and how much
// of the client's remaining input is read and dropped before closing.
constexpr std::chrono::milliseconds kLingerTime{1000};
constexpr std::size_t kLingerBytes = 1 << 20;
// A failing accept (EMFILE, ENFILE, …) is retried after this long instead
// of spinning.
constexpr std::chrono::milliseconds kAcceptRetry{100};
constexpr std::size_t kHeaderLimit = 16 * 1024;
// Room in the read buffer beyond a whole header and body: the start of the
// next pipelined request, chunk-size lines and a short trailer.
constexpr std::size_t kReadBufferSlack = 8 * 1024;
constexpr std::size_t kLogFieldMax = 200;

// The most a connection buffers before the parser consumes it. More than
// kHeaderLimit, so that an over-long header is still reported as one.
std::size_t read_buffer_limit(std::size_t max_body_bytes) {
  const std::size_t fixed = kHeaderLimit + kReadBufferSlack;
  return max_body_bytes > SIZE_MAX - fixed ? SIZE_MAX : fixed + max_body_bytes;
}

std::string fault_json(const std::string& message) {
  return nlohmann::json{{"fault_message", message}}.dump(-1, ' ', false,
                                                         nlohmann::json::error_handler_t::replace);
}

// Client-controlled text for a log line: printable ASCII only, bounded.
std::string loggable(std::string_view s) {
  std::string out;
  const std::size_t n = std::min(s.size(), kLogFieldMax);
  out.reserve(n + 3);
  for (std::size_t i = 0; i < n; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    out += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
  }
  if (s.size() > n) out += "...";
  return out;
}

// RFC 9110 field names are tokens; values carry no control characters but
// HTAB (a CR or LF would let a value start a new header line).
bool valid_header(std::string_view name, std::string_view value) {
  if (name.empty()) return false;
  for (char ch : name) {
    const unsigned char c = static_cast<unsigned char>(ch);
    const bool token = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                       std::string_view("!#$%&'*+-.^_`|~").find(ch) != std::string_view::npos;
    if (!token) return false;
  }
  for (char ch : value) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
  }
  return true;
}

bool equals_ignore_case(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i];
    char y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

const char kServiceUnavailable[] =
    "HTTP/1.1 503 Service Unavailable\r\n"
    "Server: hvz\r\n"
    "Content-Type: application/json\r\n"
    "Content-Length: 52\r\n"
    "Connection: close\r\n"
    "\r\n"
    "{\"fault_message\":\"Too many connections to the API.\"}";
static_assert(sizeof("{\"fault_message\":\"Too many connections to the API.\"}") - 1 == 52);

const char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";

class Session;

class ServerImpl final : public HttpServer {
 public:
  ServerImpl(HttpServerOptions options, Handler handler)
      : options_(std::move(options)),
        handler_(std::move(handler)),
        requests_(metrics::registry().group("api_server").counter("requests")),
        bad_requests_(metrics::registry().group("api_server").counter("bad_requests")),
        connections_(metrics::registry().group("api_server").counter("connections")) {}

  ~ServerImpl() override {
    if (thread_.joinable()) {
      asio::post(ioc_, [this] { stop_on_thread(); });
      thread_.join();
    }
    // Remove the socket file only if it is still the one this server bound.
    if (bound_) {
      struct stat st {};
      if (::lstat(options_.socket_path.c_str(), &st) == 0 && st.st_dev == bound_dev_ &&
          st.st_ino == bound_ino_) {
        ::unlink(options_.socket_path.c_str());
      }
    }
  }

  Expected<void> listen();
  Expected<void> run_thread();

  const HttpServerOptions& options() const { return options_; }
  std::unordered_set<Session*>& sessions() { return sessions_; }
  metrics::Counter& requests() { return requests_; }
  metrics::Counter& bad_requests() { return bad_requests_; }

  HttpResponse call_handler(const HttpRequest& request) {
    try {
      return handler_(request);
    } catch (const std::exception& e) {
      LOG_ERROR("api: handler failed on %s %s: %s", loggable(request.method).c_str(),
                loggable(request.target).c_str(), e.what());
      return HttpResponse{500, fault_json(std::string("Internal error: ") + e.what())};
    } catch (...) {
      LOG_ERROR("api: handler failed on %s %s", loggable(request.method).c_str(),
                loggable(request.target).c_str());
      return HttpResponse{500, fault_json("Internal error")};
    }
  }

 private:
  void accept();
  void on_accept(const error_code& ec, stream_protocol::socket socket);
  void stop_on_thread();

  HttpServerOptions options_;
  Handler handler_;
  metrics::Counter& requests_;
  metrics::Counter& bad_requests_;
  metrics::Counter& connections_;
  bool bound_ = false;
  dev_t bound_dev_ = 0;
  ino_t bound_ino_ = 0;
  bool stopping_ = false;
  log::RateLimit refuse_log_;
  // Declared before the io_context: sessions still queued in it when it is
  // destroyed unregister themselves from this set.
  std::unordered_set<Session*> sessions_;
  asio::io_context ioc_{1};
  stream_protocol::acceptor acceptor_{ioc_};
  asio::steady_timer retry_timer_{ioc_};
  std::thread thread_;
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(ServerImpl& server, stream_protocol::socket socket)
      : server_(server),
        socket_(std::move(socket)),
        timer_(socket_.get_executor()),
        buffer_(read_buffer_limit(server.options().max_body_bytes)) {
    server_.sessions().insert(this);
  }
  ~Session() { server_.sessions().erase(this); }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  void start() { read_header(); }

  // Closes the socket: the pending operation completes with an error and
  // the session ends.
  void close() {
    if (closed_) return;
    closed_ = true;
    ++timer_gen_;
    error_code ignored;
    timer_.cancel();
    socket_.shutdown(stream_protocol::socket::shutdown_both, ignored);
    socket_.close(ignored);
  }

 private:
  // Every async operation runs under the idle timer; a completion that
  // comes after the timer was re-armed or disarmed is ignored (timer_gen_).
  void arm(std::chrono::milliseconds timeout) {
    const std::uint64_t gen = ++timer_gen_;
    timer_.expires_after(timeout);
    timer_.async_wait([self = shared_from_this(), gen](const error_code& ec) {
      if (ec || gen != self->timer_gen_) return;
      LOG_DEBUG("api: closing an idle connection");
      self->close();
    });
  }
  void disarm() {
    ++timer_gen_;
    timer_.cancel();
  }

  void read_header() {
    if (closed_) return;
    parser_.emplace();
    parser_->body_limit(static_cast<std::uint64_t>(server_.options().max_body_bytes));
    parser_->header_limit(kHeaderLimit);
    arm(server_.options().idle_timeout);
    http::async_read_header(
        socket_, buffer_, *parser_,
        [self = shared_from_this()](const error_code& ec, std::size_t) { self->on_header(ec); });
  }

  void on_header(const error_code& ec) {
    disarm();
    if (closed_) return;
    if (ec) return on_read_error(ec);
    received_ = Clock::now();
    if (parser_->is_done()) return on_request();
    const auto& req = parser_->get();
    const auto expect = req[http::field::expect];
    if (req.version() >= 11 && equals_ignore_case(expect, "100-continue")) {
      arm(server_.options().idle_timeout);
      asio::async_write(socket_, asio::buffer(kContinue, sizeof kContinue - 1),
                        [self = shared_from_this()](const error_code& wec, std::size_t) {
                          self->disarm();
                          if (self->closed_) return;
                          if (wec) return self->close();
                          self->read_body();
                        });
      return;
    }
    read_body();
  }

  void read_body() {
    arm(server_.options().idle_timeout);
    http::async_read(socket_, buffer_, *parser_,
                     [self = shared_from_this()](const error_code& ec, std::size_t) {
                       self->disarm();
                       if (self->closed_) return;
                       if (ec) return self->on_read_error(ec);
                       self->on_request();
                     });
  }

  void on_read_error(const error_code& ec) {
    if (ec == http::error::end_of_stream || ec == http::error::partial_message ||
        ec.category() != http::make_error_code(http::error::end_of_stream).category()) {
      // The client went away (between or in the middle of requests) or
      // the socket failed: nothing to answer.
      return close();
    }
    server_.bad_requests().add();
    std::string message;
    if (ec == http::error::body_limit) {
      // The Content-Length field (already validated by the parser; absent
      // for a chunked body, found too large while reading it).
      const std::string limit = std::to_string(server_.options().max_body_bytes);
      const auto length = parser_->get()[http::field::content_length];
      message = length.empty()
                    ? "Request payload is larger than the limit of " + limit + " allowed by server"
                    : "Request payload with size " + std::string(length) +
                          " is larger than the limit of " + limit + " allowed by server";
    } else if (ec == http::error::buffer_overflow) {
      // A chunk-size line (with its extensions) or a trailer that does
      // not end within the read buffer.
      message = "Malformed HTTP request: a chunk header or trailer is longer than the " +
                std::to_string(buffer_.max_size()) + " bytes allowed by server";
    } else {
      message = "Malformed HTTP request: " + ec.message();
    }
    LOG_INFO("api: bad request: %s -> 400", message.c_str());
    HttpResponse response{400, fault_json(message)};
    send(response, /*keep_alive=*/false, /*version=*/11, /*head=*/false);
  }

  void on_request() {
    auto& req = parser_->get();
    server_.requests().add();
    HttpRequest request{std::string(req.method_string()), std::string(req.target()),
                        std::move(req.body())};
    method_ = request.method;
    target_ = request.target;
    HttpResponse response = server_.call_handler(request);
    send(response, req.keep_alive(), req.version(), req.method() == http::verb::head);
  }

  void send(const HttpResponse& response, bool keep_alive, unsigned version, bool head) {
    int status = response.status;
    std::string body = response.body;
    if (status < 200 || status > 599) {
      LOG_ERROR("api: handler returned status %d", status);
      status = 500;
      body = fault_json("Internal error: invalid response status");
    }
    // These statuses carry no body (Beast refuses to serialize one).
    if (status == 204 || status == 304) body.clear();
    status_ = status;
    keep_alive_ = keep_alive;
    response_.emplace(static_cast<http::status>(status), version);
    response_->set(http::field::server, "hvz");
    if (!body.empty()) response_->set(http::field::content_type, "application/json");
    for (const auto& [name, value] : response.headers) {
      if (!valid_header(name, value)) {
        LOG_ERROR("api: dropping an invalid response header field '%s'", loggable(name).c_str());
        continue;
      }
      response_->set(name, value);
    }
    response_->body() = std::move(body);
    response_->keep_alive(keep_alive);
    response_->prepare_payload();
    serializer_.emplace(*response_);
    arm(server_.options().idle_timeout);
    auto done = [self = shared_from_this()](const error_code& ec, std::size_t) {
      self->on_write(ec);
    };
    if (head) {
      http::async_write_header(socket_, *serializer_, std::move(done));
    } else {
      http::async_write(socket_, *serializer_, std::move(done));
    }
  }

  void on_write(const error_code& ec) {
    disarm();
    const auto us =
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - received_).count();
    if (!method_.empty()) {
      LOG_INFO("api: %s %s -> %d in %lld us", loggable(method_).c_str(), loggable(target_).c_str(),
               status_, static_cast<long long>(us));
    }
    method_.clear();
    target_.clear();
    serializer_.reset();
    response_.reset();
    if (closed_) return;
    if (ec) return close();
    if (!keep_alive_) return linger();
    read_header();
  }

  // Half-closes and drops what the client still sends (bounded in time
  // and bytes), so the client reads our response and an end of stream.
  void linger() {
    error_code ignored;
    socket_.shutdown(stream_protocol::socket::shutdown_send, ignored);
    buffer_.clear();
    lingered_ = 0;
    arm(std::min(server_.options().idle_timeout, kLingerTime));
    drain();
  }
  void drain() {
    socket_.async_read_some(buffer_.prepare(4096),
                            [self = shared_from_this()](const error_code& ec, std::size_t n) {
                              if (self->closed_) return;
                              self->lingered_ += n;
                              if (ec || self->lingered_ > kLingerBytes) return self->close();
                              self->drain();
                            });
  }

  ServerImpl& server_;
  stream_protocol::socket socket_;
  asio::steady_timer timer_;
  std::uint64_t timer_gen_ = 0;
  bool closed_ = false;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::optional<http::response<http::string_body>> response_;
  std::optional<http::response_serializer<http::string_body>> serializer_;
  Clock::time_point received_ = Clock::now();
  std::string method_;
  std::string target_;
  int status_ = 0;
  bool keep_alive_ = false;
  std::size_t lingered_ = 0;
};

Expected<void> ServerImpl::listen() {
  const std::string& path = options_.socket_path;
  const auto exists = [&path] {
    return make_error(Errc::kBusy, "API socket " + path +
                                       " exists: another VMM may be using it; remove it first");
  };
  error_code ec;
  acceptor_.open(stream_protocol(), ec);
  if (ec) return make_error(Errc::kSystem, "socket(AF_UNIX)", ec.value());
  acceptor_.bind(stream_protocol::endpoint(path), ec);
  if (ec == asio::error::address_in_use) return exists();
  if (ec) return make_error(Errc::kSystem, "bind " + path, ec.value());
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    bound_ = true;
    bound_dev_ = st.st_dev;
    bound_ino_ = st.st_ino;
  }
  // Before listen(): nobody can connect while the mode is still the umask's.
  if (::chmod(path.c_str(), 0600) != 0) return sys_error("chmod " + path);
  acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return make_error(Errc::kSystem, "listen " + path, ec.value());
  return {};
}

Expected<void> ServerImpl::run_thread() {
  accept();
  try {
    thread_ = std::thread([this] {
      log::set_thread_name("api");
      for (;;) {
        try {
          ioc_.run();
          return;
        } catch (const std::exception& e) {
          LOG_ERROR("api: server thread: %s", e.what());
        }
      }
    });
  } catch (const std::system_error& e) {
    return make_error(Errc::kSystem, "starting the API server thread", e.code().value());
  }
  return {};
}

void ServerImpl::accept() {
  acceptor_.async_accept([this](const error_code& ec, stream_protocol::socket socket) {
    on_accept(ec, std::move(socket));
  });
}

void ServerImpl::on_accept(const error_code& ec, stream_protocol::socket socket) {
  if (stopping_ || ec == asio::error::operation_aborted) return;
  if (ec) {
    if (refuse_log_.allow()) LOG_WARN("api: accept: %s", ec.message().c_str());
    retry_timer_.expires_after(kAcceptRetry);
    retry_timer_.async_wait([this](const error_code& wec) {
      if (!wec && !stopping_) accept();
    });
    return;
  }
  if (sessions_.size() >= options_.max_connections) {
    if (refuse_log_.allow()) {
      LOG_WARN("api: refusing a connection: %zu connections open", sessions_.size());
    }
    error_code ignored;
    socket.non_blocking(true, ignored);
    socket.write_some(asio::buffer(kServiceUnavailable, sizeof kServiceUnavailable - 1), ignored);
    socket.shutdown(stream_protocol::socket::shutdown_both, ignored);
    socket.close(ignored);
  } else {
    connections_.add();
    std::make_shared<Session>(*this, std::move(socket))->start();
  }
  accept();
}

void ServerImpl::stop_on_thread() {
  stopping_ = true;
  error_code ignored;
  acceptor_.close(ignored);
  retry_timer_.cancel();
  // close() does not destroy sessions (their pending operations hold them),
  // so the set is not modified while iterating.
  for (Session* s : sessions_) s->close();
}

}  // namespace

Expected<std::unique_ptr<HttpServer>> HttpServer::start(HttpServerOptions options,
                                                        Handler handler) {
  const std::string& path = options.socket_path;
  if (path.empty()) return make_error(Errc::kInvalidArgument, "API socket path is empty");
  if (path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return make_error(Errc::kInvalidArgument,
                      "API socket path " + path + " is too long (" + std::to_string(path.size()) +
                          " bytes, at most " + std::to_string(sizeof(sockaddr_un{}.sun_path) - 1) +
                          ")");
  }
  if (!handler) return make_error(Errc::kInvalidArgument, "API server without a handler");
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    return make_error(Errc::kBusy, "API socket " + path +
                                       " exists: another VMM may be using it; remove it first");
  }
  if (errno != ENOENT) return sys_error("stat " + path);

  auto server = std::make_unique<ServerImpl>(std::move(options), std::move(handler));
  if (auto r = server->listen(); !r) return tl::unexpected(r.error());
  if (auto r = server->run_thread(); !r) return tl::unexpected(r.error());
  LOG_INFO("api: listening on %s", server->options().socket_path.c_str());
  return std::unique_ptr<HttpServer>(std::move(server));
}

}  // namespace hvz::api
