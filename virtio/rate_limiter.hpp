// RateLimiter: Firecracker's token-bucket rate limiter, one bucket for bytes
// and one for operations. Devices ask before doing work and, when refused,
// wait until ready_at() (a timer or a sleep on their I/O thread) instead of
// dropping the work. A request larger than a bucket's size is let through
// when that bucket is full and leaves it in debt, so oversized requests are
// slowed down, never starved. Thread-safe: the device's I/O thread consumes
// while the API thread may update() the limits.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <utility>

#include "vmm/core/error.hpp"
#include "vmm/core/unique_fd.hpp"

namespace hvz::virtio {

struct TokenBucketParams {
  std::uint64_t size = 0;            // tokens; 0 = unlimited
  std::uint64_t one_time_burst = 0;  // extra tokens spent first, never refilled
  std::uint64_t refill_time_ms = 0;  // time to refill `size` from empty; 0 = unlimited
};

// A RateLimiter's two buckets, as devices take them; unset = unlimited.
struct RateLimits {
  std::optional<TokenBucketParams> bandwidth;
  std::optional<TokenBucketParams> ops;
};

class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  RateLimiter() = default;  // unlimited
  RateLimiter(std::optional<TokenBucketParams> bandwidth, std::optional<TokenBucketParams> ops);

  // Takes `bytes` from the bandwidth bucket and `ops` from the ops bucket,
  // both or neither; false when either lacks them (nothing is taken).
  bool consume(std::uint64_t bytes, std::uint64_t ops = 1, Clock::time_point now = Clock::now());
  // The earliest time consume(bytes, ops) can succeed (`now` if it can).
  Clock::time_point ready_at(std::uint64_t bytes, std::uint64_t ops = 1,
                             Clock::time_point now = Clock::now()) const;
  // Replaces the limits (PATCH); buckets start full.
  void update(std::optional<TokenBucketParams> bandwidth, std::optional<TokenBucketParams> ops,
              Clock::time_point now = Clock::now());
  bool unlimited() const;

 private:
  // Exact fixed-point arithmetic: a bucket's credit is counted in units of
  // 1/refill_ns token, so refilling for `t` ns adds exactly t * size units
  // and nothing is lost to rounding.
  using Credit = __int128;
  struct Bucket {
    TokenBucketParams params;
    Credit refill_ns = 0;  // refill_time_ms in ns (clamped)
    Credit credit = 0;     // tokens * refill_ns; negative = debt after an oversized request
    std::uint64_t burst = 0;
    Clock::time_point last{};
    bool active() const { return params.size != 0 && params.refill_time_ms != 0; }
    Credit capacity() const { return static_cast<Credit>(params.size) * refill_ns; }
    void refill(Clock::time_point now);
    bool can_take(std::uint64_t n) const;
    void take(std::uint64_t n);
    Clock::time_point ready_at(std::uint64_t n, Clock::time_point now) const;
  };
  static Bucket make_bucket(std::optional<TokenBucketParams> p, Clock::time_point now);

  mutable std::mutex mutex_;
  mutable Bucket bandwidth_;
  mutable Bucket ops_;
};

// ThrottleTimer: a timerfd on CLOCK_MONOTONIC (the clock behind
// RateLimiter::Clock) that a device keeps registered with its EventLoop
// while it waits for ready_at(): readable once the time has come, so a
// throttled device sleeps instead of polling. Arming and firing are plain
// timerfd_settime calls, safe from any thread (an API thread that changed
// the limits calls fire_now() to make the device look again at once).
class ThrottleTimer {
 public:
  static Expected<ThrottleTimer> create();
  int fd() const { return fd_.get(); }
  // Readable at `when` (at once when it has passed).
  Expected<void> arm_at(RateLimiter::Clock::time_point when) const;
  Expected<void> fire_now() const;
  Expected<void> disarm() const;
  // Clears a pending expiry (call from the readable callback).
  void drain() const;

 private:
  explicit ThrottleTimer(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

}  // namespace hvz::virtio
