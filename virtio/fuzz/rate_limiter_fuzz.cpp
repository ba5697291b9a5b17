// Fuzz harness for the token-bucket RateLimiter (virtio/rate_limiter.hpp)
// driven by a sequence of operations at fake times: consume, ready_at and
// update with bucket parameters of any size (the API takes u64 fields),
// time moving forward by any amount and sometimes backward. Besides
// crashes and UB (the 128-bit fixed-point arithmetic), it holds the
// limiter to its contract:
//   - ready_at(b, o, now) is never before now, and is now exactly when
//     consume(b, o, now) would succeed;
//   - consume(b, o, ready_at(b, o, now)) succeeds (when nothing else was
//     taken in between and the wait is below the one-year cap);
//   - a refused consume takes nothing.
// A second limiter fed the same operations serves as the "before" state
// for checks that must not disturb the first.
//
// Input: u8 config (bit 0 bandwidth bucket, bit 1 ops bucket), the
// buckets (u64 size, u64 one_time_burst, u64 refill_time_ms each), u64
// start time, then operations.
#include <chrono>
#include <cstdint>
#include <optional>

#include "virtio/fuzz/fuzz_support.hpp"
#include "virtio/rate_limiter.hpp"

namespace {

using namespace hvz;
using namespace hvz::virtio;
using namespace hvz::virtio::fuzz;
using Clock = RateLimiter::Clock;

constexpr unsigned kMaxOps = 128;
// Fake times stay below 2^62 ns (146 years of uptime): steady_clock values
// a real host produces, with room for the limiter's one-year answers.
constexpr std::uint64_t kMaxTime = 1ull << 62;
constexpr auto kMaxWait = std::chrono::hours(24 * 365);

enum Op : std::uint8_t {
  kConsume,
  kReadyAt,
  kWaitAndConsume,
  kUpdate,
  kAdvance,
  kAdvanceFar,
  kBackwards,
  kOpCount,
};

std::optional<TokenBucketParams> bucket(FuzzInput& in, bool present) {
  if (!present) return std::nullopt;
  TokenBucketParams p;
  p.size = in.u64();
  p.one_time_burst = in.u64();
  p.refill_time_ms = in.u64();
  return p;
}

Clock::time_point at(std::uint64_t ns) {
  return Clock::time_point(
      std::chrono::duration_cast<Clock::duration>(std::chrono::nanoseconds(ns)));
}

// The amounts devices ask for: bytes of a request or frame, one op; the
// input may ask for anything.
std::uint64_t amount(FuzzInput& in) {
  const std::uint8_t sel = in.u8();
  if (sel < 0x80) return in.u16();
  if (sel < 0xc0) return in.u32();
  return in.u64();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  hvz::fuzz::quiet_logs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzInput in(data, size);
  const std::uint8_t cfg = in.u8();
  auto bandwidth = bucket(in, cfg & 1);
  auto ops = bucket(in, cfg & 2);
  std::uint64_t now = in.u64() % kMaxTime;

  // `a` is the limiter under test; `b` receives the same successful
  // operations and answers "what would happen" questions.
  RateLimiter a;
  RateLimiter b;
  a.update(bandwidth, ops, at(now));
  b.update(bandwidth, ops, at(now));

  for (unsigned op = 0; op < kMaxOps && !in.empty(); ++op) {
    switch (in.u8() % kOpCount) {
      case kConsume: {
        const std::uint64_t bytes = amount(in);
        const std::uint64_t n = in.u8() % 4;
        const auto ready = b.ready_at(bytes, n, at(now));
        check(ready >= at(now), "ready_at answered a time in the past");
        const bool ok = a.consume(bytes, n, at(now));
        check(ok == (ready == at(now)), "consume disagrees with ready_at");
        const bool ok_b = b.consume(bytes, n, at(now));
        check(ok == ok_b, "two limiters with the same history disagree");
        break;
      }
      case kReadyAt: {
        const std::uint64_t bytes = amount(in);
        const std::uint64_t n = in.u8() % 4;
        const auto r1 = a.ready_at(bytes, n, at(now));
        const auto r2 = a.ready_at(bytes, n, at(now));
        check(r1 == r2, "ready_at is not idempotent");
        check(r1 >= at(now), "ready_at answered a time in the past");
        (void)b.ready_at(bytes, n, at(now));
        break;
      }
      case kWaitAndConsume: {
        // A device that was refused sleeps until ready_at and tries again.
        const std::uint64_t bytes = amount(in);
        const std::uint64_t n = in.u8() % 4;
        const auto ready = a.ready_at(bytes, n, at(now));
        (void)b.ready_at(bytes, n, at(now));
        if (ready - at(now) >= kMaxWait) break;
        const auto wake = static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(ready.time_since_epoch()).count());
        if (wake >= kMaxTime) break;
        now = wake;
        const bool ok = a.consume(bytes, n, at(now));
        check(ok, "consume refused at the time ready_at gave");
        check(b.consume(bytes, n, at(now)) == ok, "two limiters with the same history disagree");
        break;
      }
      case kUpdate: {
        const std::uint8_t which = in.u8();
        auto nb = bucket(in, which & 1);
        auto no = bucket(in, which & 2);
        a.update(nb, no, at(now));
        b.update(nb, no, at(now));
        check(a.unlimited() == ((!nb || !nb->size || !nb->refill_time_ms) &&
                                (!no || !no->size || !no->refill_time_ms)),
              "unlimited() disagrees with the buckets");
        break;
      }
      case kAdvance:
        now = std::min(kMaxTime - 1, now + in.u32());
        break;
      case kAdvanceFar:
        now = std::min(kMaxTime - 1, now + (in.u64() % kMaxTime));
        break;
      case kBackwards:
        // A caller passing an older time point (a stale `now`).
        now -= std::min<std::uint64_t>(now, in.u32());
        break;
    }
  }
  return 0;
}
