// config::merge_rate_limiter: Firecracker's PATCH semantics for a rate
// limiter, applied once for the configuration and the device alike.
#include <gtest/gtest.h>

#include "vmm/config/vm_config.hpp"

namespace hvz::config {
namespace {

TokenBucketConfig bucket(std::uint64_t size, std::uint64_t refill_ms, std::uint64_t burst = 0) {
  return {size, burst, refill_ms};
}

TEST(MergeRateLimiter, BucketsGivenReplaceAndOthersStay) {
  const RateLimiterConfig current{bucket(1000, 10), bucket(50, 100)};
  const RateLimiterConfig merged = merge_rate_limiter(current, {std::nullopt, bucket(7, 1, 3)});
  EXPECT_EQ(merged.bandwidth, bucket(1000, 10));
  EXPECT_EQ(merged.ops, bucket(7, 1, 3));
}

TEST(MergeRateLimiter, NoCurrentLimiterTakesTheUpdate) {
  const RateLimiterConfig update{bucket(5000, 100), std::nullopt};
  EXPECT_EQ(merge_rate_limiter(std::nullopt, update), update);
}

TEST(MergeRateLimiter, EmptyUpdateChangesNothing) {
  const RateLimiterConfig current{bucket(1, 2), std::nullopt};
  EXPECT_EQ(merge_rate_limiter(current, {}), current);
  EXPECT_EQ(merge_rate_limiter(std::nullopt, {}), RateLimiterConfig{});
}

TEST(MergeRateLimiter, AnEmptyBucketGivenIsKeptForTheCallerToDrop) {
  // The merge is complete, not "effective": a disabled bucket stays as
  // given, so the device sees it switched off.
  const RateLimiterConfig current{bucket(1000, 10), bucket(50, 100)};
  const RateLimiterConfig merged = merge_rate_limiter(current, {bucket(0, 0), std::nullopt});
  EXPECT_EQ(merged.bandwidth, bucket(0, 0));
  EXPECT_EQ(merged.ops, bucket(50, 100));
}

}  // namespace
}  // namespace hvz::config
