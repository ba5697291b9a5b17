// The log facade: printf-style lines with a timestamp, level and thread name
// on stderr. Lower layers log only through here (no logging library in
// core/devices/virtio). warn_once-style rate limiting is up to callers via
// RateLimitedLog.
#pragma once

#include <atomic>
#include <cstdarg>
#include <cstdint>

namespace hvz::log {

enum class Level { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };

void set_level(Level level);
Level level();
// Names the calling thread in log lines ("vcpu0", "main").
void set_thread_name(const char* name);
void write(Level level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

#define HVZ_LOG(lvl, ...)                                                 \
  do {                                                                    \
    if (static_cast<int>(lvl) <= static_cast<int>(::hvz::log::level())) { \
      ::hvz::log::write(lvl, __VA_ARGS__);                                \
    }                                                                     \
  } while (0)
#define LOG_ERROR(...) HVZ_LOG(::hvz::log::Level::kError, __VA_ARGS__)
#define LOG_WARN(...) HVZ_LOG(::hvz::log::Level::kWarn, __VA_ARGS__)
#define LOG_INFO(...) HVZ_LOG(::hvz::log::Level::kInfo, __VA_ARGS__)
#define LOG_DEBUG(...) HVZ_LOG(::hvz::log::Level::kDebug, __VA_ARGS__)

// Lets the first `burst` events through, then one in every 1024: for
// guest-triggered errors that a malicious guest could repeat endlessly.
class RateLimit {
 public:
  explicit RateLimit(std::uint64_t burst = 10) : burst_(burst) {}
  bool allow() {
    const std::uint64_t n = count_.fetch_add(1, std::memory_order_relaxed);
    return n < burst_ || (n % 1024) == 0;
  }

 private:
  std::uint64_t burst_;
  std::atomic<std::uint64_t> count_{0};
};

}  // namespace hvz::log
