// RateLimiter: token-bucket arithmetic driven by explicit time points (no
// sleeping, no dependence on the real clock).
#include "virtio/rate_limiter.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <limits>
#include <thread>

namespace hvz::virtio {
namespace {

using namespace std::chrono_literals;
using Clock = RateLimiter::Clock;

// A limiter whose buckets were filled at `t0`, well after construction.
struct Fixture {
  Fixture(std::optional<TokenBucketParams> bw, std::optional<TokenBucketParams> ops)
      : limiter(bw, ops) {
    limiter.update(bw, ops, t0);
  }
  Clock::time_point t0 = Clock::now() + 1h;
  RateLimiter limiter;
};

TEST(RateLimiter, DefaultIsUnlimited) {
  RateLimiter r;
  EXPECT_TRUE(r.unlimited());
  const auto now = Clock::now();
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(r.consume(1ull << 40, 1000, now));
  EXPECT_EQ(r.ready_at(std::numeric_limits<std::uint64_t>::max(), 5, now), now);
}

TEST(RateLimiter, ZeroSizeOrRefillMeansUnlimited) {
  RateLimiter a(TokenBucketParams{0, 100, 1000}, TokenBucketParams{10, 0, 0});
  EXPECT_TRUE(a.unlimited());
  const auto now = Clock::now();
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(a.consume(1 << 20, 100, now));
}

TEST(RateLimiter, BytesOnly) {
  Fixture f(TokenBucketParams{1000, 0, 1000}, std::nullopt);
  auto& r = f.limiter;
  EXPECT_FALSE(r.unlimited());
  EXPECT_TRUE(r.consume(600, 1, f.t0));
  EXPECT_TRUE(r.consume(400, 1, f.t0));
  EXPECT_FALSE(r.consume(1, 1, f.t0));
  // The ops bucket is unlimited: zero bytes always pass.
  EXPECT_TRUE(r.consume(0, 1000, f.t0));
  // 1000 bytes per second: 1 byte per ms.
  EXPECT_EQ(r.ready_at(1, 1, f.t0), f.t0 + 1ms);
  EXPECT_EQ(r.ready_at(250, 1, f.t0), f.t0 + 250ms);
  EXPECT_FALSE(r.consume(250, 1, f.t0 + 249ms));
  EXPECT_TRUE(r.consume(250, 1, f.t0 + 250ms));
  EXPECT_FALSE(r.consume(1, 1, f.t0 + 250ms));
}

TEST(RateLimiter, OpsOnly) {
  Fixture f(std::nullopt, TokenBucketParams{10, 0, 100});
  auto& r = f.limiter;
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(r.consume(1 << 20, 1, f.t0)) << i;
  EXPECT_FALSE(r.consume(0, 1, f.t0));
  // 10 ops per 100 ms: one every 10 ms.
  EXPECT_EQ(r.ready_at(0, 1, f.t0), f.t0 + 10ms);
  EXPECT_EQ(r.ready_at(1 << 30, 3, f.t0), f.t0 + 30ms);
  EXPECT_TRUE(r.consume(0, 0, f.t0));  // no operation: nothing needed
  EXPECT_TRUE(r.consume(5, 1, f.t0 + 10ms));
  EXPECT_FALSE(r.consume(5, 1, f.t0 + 19ms));
}

TEST(RateLimiter, BothBucketsAllOrNothing) {
  Fixture f(TokenBucketParams{100, 0, 1000}, TokenBucketParams{2, 0, 1000});
  auto& r = f.limiter;
  EXPECT_TRUE(r.consume(60, 1, f.t0));
  // Bytes lacking: the op is not taken either.
  EXPECT_FALSE(r.consume(50, 1, f.t0));
  EXPECT_TRUE(r.consume(40, 1, f.t0));
  // Now bytes are empty and ops are empty.
  EXPECT_FALSE(r.consume(0, 1, f.t0));
  EXPECT_FALSE(r.consume(1, 0, f.t0));
  // Ops lacking: bytes are not taken either.
  Fixture g(TokenBucketParams{100, 0, 1000}, TokenBucketParams{1, 0, 1000});
  EXPECT_TRUE(g.limiter.consume(10, 1, g.t0));
  EXPECT_FALSE(g.limiter.consume(10, 1, g.t0));
  EXPECT_TRUE(g.limiter.consume(90, 0, g.t0));  // all 90 bytes still there
  EXPECT_FALSE(g.limiter.consume(1, 0, g.t0));
  // ready_at: the later of the two buckets. 100 bytes per s, 1 op per s.
  EXPECT_EQ(g.limiter.ready_at(10, 0, g.t0), g.t0 + 100ms);
  EXPECT_EQ(g.limiter.ready_at(10, 1, g.t0), g.t0 + 1000ms);
  EXPECT_EQ(g.limiter.ready_at(50, 1, g.t0), g.t0 + 1000ms);
}

TEST(RateLimiter, OneTimeBurstSpentFirstNeverRefilled) {
  Fixture f(TokenBucketParams{100, 50, 1000}, std::nullopt);
  auto& r = f.limiter;
  EXPECT_TRUE(r.consume(40, 1, f.t0));  // burst 50 → 10
  EXPECT_TRUE(r.consume(30, 1, f.t0));  // burst 10 → 0, bucket 100 → 80
  EXPECT_TRUE(r.consume(80, 1, f.t0));  // bucket → 0
  EXPECT_FALSE(r.consume(1, 1, f.t0));
  // Long after, the bucket is full again but the burst is gone.
  const auto later = f.t0 + 10s;
  EXPECT_TRUE(r.consume(100, 1, later));
  EXPECT_FALSE(r.consume(1, 1, later));
}

TEST(RateLimiter, BurstPlusBucketCoverARequest) {
  Fixture f(TokenBucketParams{100, 50, 1000}, std::nullopt);
  EXPECT_TRUE(f.limiter.consume(150, 1, f.t0));
  EXPECT_FALSE(f.limiter.consume(1, 1, f.t0));
  EXPECT_EQ(f.limiter.ready_at(1, 1, f.t0), f.t0 + 10ms);
}

TEST(RateLimiter, RefillOverTimeIsContinuousAndCapped) {
  Fixture f(TokenBucketParams{1000, 0, 1000}, std::nullopt);
  auto& r = f.limiter;
  EXPECT_TRUE(r.consume(1000, 1, f.t0));
  // Many small steps add up exactly (no rounding loss): 1 ms = 1 token.
  for (int i = 1; i <= 1000; ++i) {
    EXPECT_TRUE(r.consume(1, 1, f.t0 + std::chrono::milliseconds(i))) << i;
    EXPECT_FALSE(r.consume(1, 1, f.t0 + std::chrono::milliseconds(i))) << i;
  }
  // Fractions of a token accumulate: 500 µs is half a token.
  const auto t1 = f.t0 + 1000ms;
  EXPECT_FALSE(r.consume(1, 1, t1 + 500us));
  EXPECT_TRUE(r.consume(1, 1, t1 + 1000us));
  // The bucket never holds more than its size.
  const auto t2 = t1 + 1h;
  EXPECT_TRUE(r.consume(1000, 1, t2));
  EXPECT_FALSE(r.consume(1, 1, t2));
  // A time point before the last one refills nothing and breaks nothing.
  EXPECT_FALSE(r.consume(1, 1, f.t0));
  EXPECT_EQ(r.ready_at(1, 1, t2), t2 + 1ms);
}

TEST(RateLimiter, ReadyAtIsExact) {
  // 3 tokens per 7 ms: 1 token every 7/3 ms, not a whole number of ns.
  Fixture f(TokenBucketParams{3, 0, 7}, std::nullopt);
  auto& r = f.limiter;
  EXPECT_TRUE(r.consume(3, 1, f.t0));
  const auto ready = r.ready_at(1, 1, f.t0);
  EXPECT_EQ(ready, f.t0 + 2333334ns);  // ceil(7e6 / 3)
  EXPECT_FALSE(r.consume(1, 1, ready - 1ns));
  EXPECT_TRUE(r.consume(1, 1, ready));
}

TEST(RateLimiter, OversizedRequestNeedsFullBucketAndLeavesDebt) {
  Fixture f(TokenBucketParams{100, 0, 1000}, std::nullopt);
  auto& r = f.limiter;
  // Full bucket: a request of 3 buckets goes through, leaving 200 of debt.
  EXPECT_EQ(r.ready_at(300, 1, f.t0), f.t0);
  EXPECT_TRUE(r.consume(300, 1, f.t0));
  EXPECT_FALSE(r.consume(1, 1, f.t0));
  // Paying the debt back (2 s) and one more token (10 ms).
  EXPECT_EQ(r.ready_at(1, 1, f.t0), f.t0 + 2010ms);
  EXPECT_FALSE(r.consume(1, 1, f.t0 + 2009ms));
  EXPECT_TRUE(r.consume(1, 1, f.t0 + 2010ms));
  // Another oversized request waits for a full bucket (1 s from empty),
  // not for 300 tokens.
  const auto t1 = f.t0 + 2010ms;
  EXPECT_EQ(r.ready_at(300, 1, t1), t1 + 1000ms);
  EXPECT_FALSE(r.consume(300, 1, t1 + 999ms));
  EXPECT_TRUE(r.consume(300, 1, t1 + 1000ms));
  // Not full: an oversized request is refused even with most tokens there.
  Fixture g(TokenBucketParams{100, 0, 1000}, std::nullopt);
  EXPECT_TRUE(g.limiter.consume(1, 1, g.t0));
  EXPECT_FALSE(g.limiter.consume(101, 1, g.t0));
  EXPECT_EQ(g.limiter.ready_at(101, 1, g.t0), g.t0 + 10ms);
}

TEST(RateLimiter, HugeValuesDoNotOverflow) {
  const std::uint64_t max = std::numeric_limits<std::uint64_t>::max();
  Fixture f(TokenBucketParams{1, 0, max}, TokenBucketParams{max, max, 1});
  auto& r = f.limiter;
  EXPECT_TRUE(r.consume(max, max, f.t0));
  EXPECT_FALSE(r.consume(1, 0, f.t0));
  const auto ready = r.ready_at(max, 1, f.t0);
  EXPECT_GT(ready, f.t0);
  EXPECT_LE(ready, f.t0 + std::chrono::hours(24 * 366));
}

TEST(RateLimiter, UpdateReplacesLimitsAndRefills) {
  Fixture f(TokenBucketParams{100, 0, 1000}, std::nullopt);
  auto& r = f.limiter;
  EXPECT_TRUE(r.consume(100, 1, f.t0));
  EXPECT_FALSE(r.consume(1, 1, f.t0));
  // New, bigger limit: full at once.
  r.update(TokenBucketParams{500, 10, 1000}, TokenBucketParams{1, 0, 1000}, f.t0);
  EXPECT_FALSE(r.unlimited());
  EXPECT_TRUE(r.consume(510, 1, f.t0));
  EXPECT_FALSE(r.consume(0, 1, f.t0));  // the new ops bucket is empty now
  // Removing the limits.
  r.update(std::nullopt, std::nullopt, f.t0);
  EXPECT_TRUE(r.unlimited());
  EXPECT_TRUE(r.consume(1ull << 40, 1000, f.t0));
  // And limiting an unlimited one.
  RateLimiter u;
  u.update(TokenBucketParams{10, 0, 1000}, std::nullopt, f.t0);
  EXPECT_TRUE(u.consume(10, 1, f.t0));
  EXPECT_FALSE(u.consume(10, 1, f.t0));
}

TEST(RateLimiter, ConcurrentUpdateAndConsume) {
  RateLimiter r(TokenBucketParams{1000, 0, 10}, std::nullopt);
  std::thread updater([&] {
    for (int i = 0; i < 2000; ++i) {
      r.update(TokenBucketParams{static_cast<std::uint64_t>(100 + i), 0, 10}, std::nullopt);
    }
  });
  std::uint64_t taken = 0;
  for (int i = 0; i < 2000; ++i) {
    if (r.consume(10)) taken += 10;
    (void)r.ready_at(10);
  }
  updater.join();
  EXPECT_GT(taken, 0u);
}

}  // namespace
}  // namespace hvz::virtio
