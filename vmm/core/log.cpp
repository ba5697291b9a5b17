// The log facade's stderr backend (see log.hpp).
#include "vmm/core/log.hpp"

#include <sys/time.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <ctime>

namespace hvz::log {
namespace {

std::atomic<int> g_level{static_cast<int>(Level::kWarn)};
thread_local char t_name[16] = "";

const char* level_name(Level l) {
  switch (l) {
    case Level::kError:
      return "ERROR";
    case Level::kWarn:
      return "WARN";
    case Level::kInfo:
      return "INFO";
    case Level::kDebug:
      return "DEBUG";
  }
  return "?";
}

}  // namespace

void set_level(Level l) {
  g_level.store(static_cast<int>(l));
}
Level level() {
  return static_cast<Level>(g_level.load(std::memory_order_relaxed));
}

void set_thread_name(const char* name) {
  std::snprintf(t_name, sizeof t_name, "%s", name);
}

void write(Level l, const char* fmt, ...) {
  char line[1024];
  timeval tv{};
  ::gettimeofday(&tv, nullptr);
  tm t{};
  ::gmtime_r(&tv.tv_sec, &t);
  int n = std::snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ %-5s [%s] ",
                        t.tm_year + 1900, t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec,
                        static_cast<long>(tv.tv_usec), level_name(l), t_name[0] ? t_name : "hvz");
  if (n < 0) return;
  std::size_t len = static_cast<std::size_t>(n);
  va_list ap;
  va_start(ap, fmt);
  int m = std::vsnprintf(line + len, sizeof line - len, fmt, ap);
  va_end(ap);
  if (m > 0) len = std::min(sizeof line - 2, len + static_cast<std::size_t>(m));
  line[len++] = '\n';
  // One write() per line so lines from threads do not interleave.
  [[maybe_unused]] ssize_t w = ::write(STDERR_FILENO, line, len);
}

}  // namespace hvz::log
