// The log facade's backend (see log.hpp): formats a line on the stack and
// hands it to the current output with one write().
#include "vmm/core/log.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <mutex>

#include "vmm/core/metrics.hpp"

namespace hvz::log {
namespace {

std::atomic<int> g_level{static_cast<int>(Level::kWarn)};
std::atomic<bool> g_show_level{true};
std::atomic<bool> g_show_origin{false};
thread_local char t_name[16] = "";

// The current output; null means stderr. Writers copy the pointer (under a
// lock held only for the copy or the swap, never across a write()) and keep
// the Output alive for their one write(), so switching outputs never closes
// a descriptor a write is about to use.
struct Output {
  int fd = -1;
  UniqueFd owned;  // closes fd when the log owns it
};
struct OutputSlot {
  std::mutex mutex;
  std::shared_ptr<const Output> output;
};
OutputSlot& output_slot() {
  static OutputSlot slot;
  return slot;
}
std::shared_ptr<const Output> load_output() {
  OutputSlot& s = output_slot();
  std::lock_guard lock(s.mutex);
  return s.output;
}
void store_output(std::shared_ptr<const Output> output) {
  OutputSlot& s = output_slot();
  {
    std::lock_guard lock(s.mutex);
    s.output.swap(output);
  }
  // The previous output is released here, outside the lock (closed once
  // the last writer still using it is done).
}

metrics::Counter& missed_log_count() {
  static metrics::Counter& c = metrics::registry().group("logger").counter("missed_log_count");
  return c;
}
metrics::Counter& log_fails() {
  static metrics::Counter& c = metrics::registry().group("logger").counter("log_fails");
  return c;
}

// The level as it starts a line ("WARN ").
const char* line_tag(Level l) {
  switch (l) {
    case Level::kOff:
      return "OFF";
    case Level::kError:
      return "ERROR";
    case Level::kWarn:
      return "WARN";
    case Level::kInfo:
      return "INFO";
    case Level::kDebug:
      return "DEBUG";
    case Level::kTrace:
      return "TRACE";
  }
  return "?";
}

// __FILE__ relative to the source tree: this file's own __FILE__ ends in
// "vmm/core/log.cpp", what precedes that is the tree's prefix as the
// compiler saw it ("../", "/src/hvz/", …).
const char* source_relative(const char* file) {
  static constexpr char kSelf[] = "vmm/core/log.cpp";
  static const std::size_t prefix_len = [] {
    const std::size_t n = std::strlen(__FILE__);
    const std::size_t self = sizeof kSelf - 1;
    if (n >= self && std::strcmp(&__FILE__[n - self], kSelf) == 0) return n - self;
    return std::size_t{0};
  }();
  if (prefix_len > 0 && std::strncmp(file, __FILE__, prefix_len) == 0) return file + prefix_len;
  while (std::strncmp(file, "../", 3) == 0) file += 3;
  while (std::strncmp(file, "./", 2) == 0) file += 2;
  return file;
}

void write_line(const char* line, std::size_t len) {
  const std::shared_ptr<const Output> out = load_output();
  const int fd = out ? out->fd : STDERR_FILENO;
  ssize_t n;
  do {
    n = ::write(fd, line, len);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    missed_log_count().add();
  } else if (n < 0 || static_cast<std::size_t>(n) != len) {
    log_fails().add();
  }
}

void vemit(Level l, const char* file, int line_no, const char* fmt, va_list ap) {
  if (l == Level::kOff) return;
  const int saved_errno = errno;  // callers may log between a failure and sys_error()
  char line[kMaxLineBytes];
  timeval tv{};
  ::gettimeofday(&tv, nullptr);
  tm t{};
  ::gmtime_r(&tv.tv_sec, &t);
  const char* thread = t_name[0] ? t_name : "hvz";
  int n;
  if (g_show_level.load(std::memory_order_relaxed)) {
    n = std::snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ %-5s [%s] ",
                      t.tm_year + 1900, t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec,
                      static_cast<long>(tv.tv_usec), line_tag(l), thread);
  } else {
    n = std::snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ [%s] ",
                      t.tm_year + 1900, t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec,
                      static_cast<long>(tv.tv_usec), thread);
  }
  if (n < 0) {
    errno = saved_errno;
    return;
  }
  std::size_t len = std::min(sizeof line - 1, static_cast<std::size_t>(n));
  if (file != nullptr && g_show_origin.load(std::memory_order_relaxed)) {
    const int m =
        std::snprintf(line + len, sizeof line - len, "%s:%d: ", source_relative(file), line_no);
    if (m > 0) len = std::min(sizeof line - 1, len + static_cast<std::size_t>(m));
  }
  const std::size_t message = len;
  const int m = std::vsnprintf(line + len, sizeof line - len, fmt, ap);
  if (m > 0) len = std::min(sizeof line - 2, len + static_cast<std::size_t>(m));
  // One line per call: a newline or other control character in the message
  // (text a guest chose, say) cannot forge further lines.
  for (std::size_t i = message; i < len; ++i) {
    const auto c = static_cast<unsigned char>(line[i]);
    if ((c < 0x20 && c != '\t') || c == 0x7f) line[i] = '?';
  }
  line[len++] = '\n';
  write_line(line, len);
  errno = saved_errno;
}

}  // namespace

std::optional<Level> parse_level(std::string_view name) {
  std::string lower(name.substr(0, 8));
  if (lower.size() != name.size()) return std::nullopt;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower == "off") return Level::kOff;
  if (lower == "error") return Level::kError;
  if (lower == "warn" || lower == "warning") return Level::kWarn;
  if (lower == "info") return Level::kInfo;
  if (lower == "debug") return Level::kDebug;
  if (lower == "trace") return Level::kTrace;
  return std::nullopt;
}

const char* level_name(Level l) {
  switch (l) {
    case Level::kOff:
      return "Off";
    case Level::kError:
      return "Error";
    case Level::kWarn:
      return "Warning";
    case Level::kInfo:
      return "Info";
    case Level::kDebug:
      return "Debug";
    case Level::kTrace:
      return "Trace";
  }
  return "Warning";
}

void set_level(Level l) {
  g_level.store(static_cast<int>(l));
}
Level level() {
  return static_cast<Level>(g_level.load(std::memory_order_relaxed));
}
void set_show_level(bool show) {
  g_show_level.store(show);
}
bool show_level() {
  return g_show_level.load();
}
void set_show_origin(bool show) {
  g_show_origin.store(show);
}
bool show_origin() {
  return g_show_origin.load();
}

void set_thread_name(const char* name) {
  std::snprintf(t_name, sizeof t_name, "%s", name);
}

void set_output(int fd) {
  auto out = std::make_shared<Output>();
  out->fd = fd;
  store_output(std::move(out));
}

void set_output(UniqueFd fd) {
  auto out = std::make_shared<Output>();
  out->fd = fd.get();
  out->owned = std::move(fd);
  store_output(std::move(out));
}

Expected<void> set_output_path(const std::string& path) {
  auto fd = open_output_file(path);
  if (!fd) return tl::unexpected(fd.error());
  set_output(std::move(*fd));
  return {};
}

void reset_output() {
  store_output(nullptr);
}

Expected<UniqueFd> open_output_file(const std::string& path) {
  if (path.empty()) return make_error(Errc::kInvalidArgument, "empty output path");
  struct stat st {};
  const bool fifo = ::stat(path.c_str(), &st) == 0 && S_ISFIFO(st.st_mode);
  const int flags = fifo ? O_RDWR | O_NONBLOCK | O_CLOEXEC
                         : O_WRONLY | O_APPEND | O_CREAT | O_NONBLOCK | O_CLOEXEC;
  UniqueFd fd(::open(path.c_str(), flags, 0640));
  if (!fd) return sys_error("open " + path);
  if (::fstat(fd.get(), &st) != 0) return sys_error("fstat " + path);
  if (S_ISDIR(st.st_mode)) return make_error(Errc::kInvalidArgument, path + " is a directory");
  return fd;
}

void emit(Level l, const char* file, int line, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vemit(l, file, line, fmt, ap);
  va_end(ap);
}

void write(Level l, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vemit(l, nullptr, 0, fmt, ap);
  va_end(ap);
}

}  // namespace hvz::log
