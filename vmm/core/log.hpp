// The log facade: printf-style lines with a timestamp, level and thread name,
// on stderr unless set_output*() sends them elsewhere (Firecracker's PUT
// /logger: a file, appended, or a FIFO). Lower layers log only through here
// (no logging library in core/devices/virtio). warn_once-style rate limiting
// is up to callers via RateLimit.
//
//   2026-11-24T21:00:00.123456Z WARN  [vcpu0] message
//   2026-11-24T21:00:00.123456Z WARN  [vcpu0] vmm/vcpu.cpp:120: message   (show_origin)
//   2026-11-24T21:00:00.123456Z [vcpu0] message                           (!show_level)
//
// Every line is one write() of at most kMaxLineBytes (less than PIPE_BUF),
// so lines from many threads never interleave. Outputs opened here are
// non-blocking: a line that would block (a FIFO nobody drains) is dropped
// and counted in the metrics counter logger.missed_log_count, other write
// errors in logger.log_fails; a vCPU never waits for a log reader.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "vmm/core/error.hpp"
#include "vmm/core/unique_fd.hpp"

namespace hvz::log {

// kOff shows nothing; kTrace is the most verbose. A line is written when
// its level is at or below the configured one.
enum class Level { kOff = -1, kError = 0, kWarn = 1, kInfo = 2, kDebug = 3, kTrace = 4 };

inline constexpr std::size_t kMaxLineBytes = 1024;

// The one mapping between levels and their names, for the command line,
// the config file and the API (Firecracker's LevelFilter names). Case does
// not matter and "warn" is taken for "warning", as Firecracker does:
// "off", "error", "warn"/"warning", "info", "debug", "trace"; anything else
// is nullopt.
std::optional<Level> parse_level(std::string_view name);
// "Off", "Error", "Warning", "Info", "Debug", "Trace" (parse_level takes
// them back).
const char* level_name(Level level);

void set_level(Level level);
Level level();
// Whether lines carry their level ("WARN ") — default true — and the
// source file:line of the LOG_* call — default false.
void set_show_level(bool show);
bool show_level();
void set_show_origin(bool show);
bool show_origin();

// Names the calling thread in log lines ("vcpu0", "main").
void set_thread_name(const char* name);

// Where lines go from now on. Lines being written by other threads finish
// on the previous output, which is closed once nobody uses it.
// set_output(int): a descriptor the caller keeps open (and owns) while it
// is the output; set_output(UniqueFd): the log owns and closes it.
void set_output(int fd);
void set_output(UniqueFd fd);
// Opens `path` with open_output_file() and makes it the output; on error
// the output is unchanged.
Expected<void> set_output_path(const std::string& path);
// Back to stderr (the default).
void reset_output();

// Opens a log or metrics destination the way Firecracker accepts them: a
// FIFO is opened read-write and non-blocking, so opening never waits for a
// reader, lines are buffered by the pipe until one comes, a full pipe
// refuses writes (EAGAIN) instead of blocking, and a reader going away
// raises no SIGPIPE; anything else is opened for appending (created 0640
// when missing), non-blocking. Close-on-exec either way.
Expected<UniqueFd> open_output_file(const std::string& path);

// The LOG_* macros' target. `file` is __FILE__ (shown relative to the
// source tree), `line` __LINE__.
void emit(Level level, const char* file, int line, const char* fmt, ...)
    __attribute__((format(printf, 4, 5)));
// A line without origin (shown as if show_origin were false).
void write(Level level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

#define HVZ_LOG(lvl, ...)                                                 \
  do {                                                                    \
    if (static_cast<int>(lvl) <= static_cast<int>(::hvz::log::level())) { \
      ::hvz::log::emit(lvl, __FILE__, __LINE__, __VA_ARGS__);             \
    }                                                                     \
  } while (0)
#define LOG_ERROR(...) HVZ_LOG(::hvz::log::Level::kError, __VA_ARGS__)
#define LOG_WARN(...) HVZ_LOG(::hvz::log::Level::kWarn, __VA_ARGS__)
#define LOG_INFO(...) HVZ_LOG(::hvz::log::Level::kInfo, __VA_ARGS__)
#define LOG_DEBUG(...) HVZ_LOG(::hvz::log::Level::kDebug, __VA_ARGS__)
#define LOG_TRACE(...) HVZ_LOG(::hvz::log::Level::kTrace, __VA_ARGS__)

// Lets the first `burst` events through, then at most one per `interval`:
// for guest- or client-triggered messages that a malicious guest could
// repeat endlessly. However fast the events come, the lines stay bounded in
// time (burst + elapsed / interval), never in proportion to the events.
class RateLimit {
 public:
  explicit RateLimit(std::uint64_t burst = 10,
                     std::chrono::milliseconds interval = std::chrono::seconds(10))
      : burst_(burst),
        interval_ns_(std::chrono::duration_cast<std::chrono::nanoseconds>(interval).count()) {}
  bool allow() {
    const std::uint64_t n = count_.fetch_add(1, std::memory_order_relaxed);
    if (n < burst_) return true;
    const std::int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                 std::chrono::steady_clock::now().time_since_epoch())
                                 .count();
    std::int64_t next = next_ns_.load(std::memory_order_relaxed);
    if (now < next) return false;
    // One caller wins the slot; the others see the new deadline.
    return next_ns_.compare_exchange_strong(next, now + interval_ns_, std::memory_order_relaxed);
  }
  // Events seen so far, allowed or not.
  std::uint64_t events() const { return count_.load(std::memory_order_relaxed); }

 private:
  std::uint64_t burst_;
  std::int64_t interval_ns_;
  std::atomic<std::uint64_t> count_{0};
  std::atomic<std::int64_t> next_ns_{0};
};

}  // namespace hvz::log
