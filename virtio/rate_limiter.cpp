// RateLimiter: two token buckets (bytes, operations) with Firecracker's
// semantics, in exact fixed-point arithmetic (see rate_limiter.hpp).
#include "virtio/rate_limiter.hpp"

#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace hvz::virtio {
namespace {

// refill_time_ms is clamped to 2^40 ms (about 35 years), so that
// size * refill_ns (< 2^64 * 2^60) and any debt fit a signed 128-bit value.
constexpr std::uint64_t kMaxRefillMs = 1ull << 40;
// Elapsed times are clamped too (a bucket is full long before).
constexpr std::int64_t kMaxElapsedNs = std::int64_t{1} << 62;
// ready_at() never answers further than this ahead (a huge debt on a tiny
// bucket would otherwise overflow the clock).
constexpr std::int64_t kMaxWaitNs = std::int64_t{365} * 24 * 3600 * 1'000'000'000;

}  // namespace

void RateLimiter::Bucket::refill(Clock::time_point now) {
  if (!active() || now <= last) return;
  const std::int64_t elapsed =
      std::min<std::int64_t>(std::chrono::nanoseconds(now - last).count(), kMaxElapsedNs);
  last = now;
  const Credit full = capacity();
  if (credit >= full) return;
  credit = std::min(full, credit + static_cast<Credit>(elapsed) * params.size);
}

bool RateLimiter::Bucket::can_take(std::uint64_t n) const {
  if (!active() || n == 0) return true;
  // Enough burst and tokens, or a full bucket: a request bigger than the
  // bucket could never be covered, so it goes through and leaves debt.
  if (n <= burst) return true;
  const Credit need = static_cast<Credit>(n - burst) * refill_ns;
  return credit >= need || credit >= capacity();
}

void RateLimiter::Bucket::take(std::uint64_t n) {
  if (!active()) return;
  const std::uint64_t from_burst = std::min(burst, n);
  burst -= from_burst;
  credit -= static_cast<Credit>(n - from_burst) * refill_ns;
}

RateLimiter::Clock::time_point RateLimiter::Bucket::ready_at(std::uint64_t n,
                                                             Clock::time_point now) const {
  // `last` may be ahead of `now` when callers pass older time points.
  const Clock::time_point base = std::max(now, last);
  if (can_take(n)) return now;
  // Waiting for n - burst tokens, or for a full bucket when more are needed.
  const std::uint64_t target = std::min(n - burst, params.size);
  const Credit deficit = static_cast<Credit>(target) * refill_ns - credit;
  const Credit size = params.size;
  const Credit wait = (deficit + size - 1) / size;  // ceil: never too early
  const std::int64_t ns = wait > kMaxWaitNs ? kMaxWaitNs : static_cast<std::int64_t>(wait);
  return base + std::chrono::duration_cast<Clock::duration>(std::chrono::nanoseconds(ns));
}

RateLimiter::Bucket RateLimiter::make_bucket(std::optional<TokenBucketParams> p,
                                             Clock::time_point now) {
  Bucket b;
  if (!p || p->size == 0 || p->refill_time_ms == 0) return b;  // unlimited
  b.params = *p;
  b.refill_ns = static_cast<Credit>(std::min(p->refill_time_ms, kMaxRefillMs)) * 1'000'000;
  b.credit = b.capacity();
  b.burst = p->one_time_burst;
  b.last = now;
  return b;
}

RateLimiter::RateLimiter(std::optional<TokenBucketParams> bandwidth,
                         std::optional<TokenBucketParams> ops) {
  const Clock::time_point now = Clock::now();
  bandwidth_ = make_bucket(bandwidth, now);
  ops_ = make_bucket(ops, now);
}

bool RateLimiter::consume(std::uint64_t bytes, std::uint64_t ops, Clock::time_point now) {
  std::lock_guard lock(mutex_);
  bandwidth_.refill(now);
  ops_.refill(now);
  if (!bandwidth_.can_take(bytes) || !ops_.can_take(ops)) return false;
  bandwidth_.take(bytes);
  ops_.take(ops);
  return true;
}

RateLimiter::Clock::time_point RateLimiter::ready_at(std::uint64_t bytes, std::uint64_t ops,
                                                     Clock::time_point now) const {
  std::lock_guard lock(mutex_);
  bandwidth_.refill(now);
  ops_.refill(now);
  // Buckets refill independently: both are ready at the later time.
  return std::max(bandwidth_.ready_at(bytes, now), ops_.ready_at(ops, now));
}

void RateLimiter::update(std::optional<TokenBucketParams> bandwidth,
                         std::optional<TokenBucketParams> ops, Clock::time_point now) {
  std::lock_guard lock(mutex_);
  bandwidth_ = make_bucket(bandwidth, now);
  ops_ = make_bucket(ops, now);
}

bool RateLimiter::unlimited() const {
  std::lock_guard lock(mutex_);
  return !bandwidth_.active() && !ops_.active();
}

Expected<ThrottleTimer> ThrottleTimer::create() {
  UniqueFd fd(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  if (!fd) return sys_error("timerfd_create");
  return ThrottleTimer(std::move(fd));
}

Expected<void> ThrottleTimer::arm_at(RateLimiter::Clock::time_point when) const {
  const std::int64_t ns = std::chrono::nanoseconds(when.time_since_epoch()).count();
  itimerspec spec{};
  // An all-zero it_value would disarm: the earliest valid time is 1 ns,
  // long past, which fires at once.
  if (ns > 0) {
    spec.it_value.tv_sec = ns / 1'000'000'000;
    spec.it_value.tv_nsec = ns % 1'000'000'000;
  } else {
    spec.it_value.tv_nsec = 1;
  }
  if (::timerfd_settime(fd_.get(), TFD_TIMER_ABSTIME, &spec, nullptr) != 0) {
    return sys_error("timerfd_settime");
  }
  return {};
}

Expected<void> ThrottleTimer::fire_now() const {
  itimerspec spec{};
  spec.it_value.tv_nsec = 1;  // relative: 1 ns from now
  if (::timerfd_settime(fd_.get(), 0, &spec, nullptr) != 0) return sys_error("timerfd_settime");
  return {};
}

Expected<void> ThrottleTimer::disarm() const {
  itimerspec spec{};
  if (::timerfd_settime(fd_.get(), 0, &spec, nullptr) != 0) return sys_error("timerfd_settime");
  // An expiry that already happened stays readable until read.
  drain();
  return {};
}

void ThrottleTimer::drain() const {
  std::uint64_t expirations = 0;
  [[maybe_unused]] auto n = ::read(fd_.get(), &expirations, sizeof expirations);
}

}  // namespace hvz::virtio
