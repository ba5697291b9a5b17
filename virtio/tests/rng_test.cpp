// virtio-rng: the device filling hand-built request chains from getrandom(2)
// or a fake source, malformed requests, and rate limiting through its
// timerfd, driven by a small epoll EventLoop on the test thread.
#include <unistd.h>

#include <gtest/gtest.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <optional>
#include <thread>
#include <vector>

#include "virtio/queue.hpp"
#include "virtio/rng/rng_device.hpp"
#include "virtio/tests/support.hpp"
#include "vmm/core/event_fd.hpp"
#include "vmm/core/guest_memory.hpp"
#include "vmm/core/metrics.hpp"
#include "vmm/core/unique_fd.hpp"

namespace hvz::virtio::rng {
namespace {

using namespace std::chrono_literals;
using Bytes = std::vector<std::uint8_t>;

constexpr std::uint16_t kRingSize = 16;

using testing::EpollLoop;
using testing::FakeInterrupt;
using testing::TestRing;

std::uint64_t metric(const char* name) {
  return metrics::registry().group("entropy").counter(name).value();
}

class RngTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = GuestMemory::create({{GuestAddress(0), 0x100000}});
    ASSERT_TRUE(m) << m.error().message();
    mem_.emplace(std::move(*m));
    ring_.emplace(*mem_, 0x1000, kRingSize);
    auto e = EventFd::create();
    ASSERT_TRUE(e);
    notify_.emplace(std::move(*e));
  }
  void TearDown() override {
    if (device_) device_->reset();
    EXPECT_EQ(loop_.registered(), 0u);
  }

  void make_device(std::optional<TokenBucketParams> bw = std::nullopt,
                   std::optional<TokenBucketParams> ops = std::nullopt,
                   RngDevice::Source source = {}) {
    device_.emplace(metrics::registry().group("entropy"), bw, ops, std::move(source));
  }
  void activate(std::uint64_t acked = RngDevice::kFeatures) {
    device_->ack_features(acked);
    ASSERT_TRUE(
        device_->activate(*mem_, {ActiveQueue{&ring_->queue(), notify_->fd()}}, irq_, loop_));
  }
  Descriptor buffer(std::uint32_t len, bool writable = true) {
    const GuestAddress a(next_);
    next_ += (len + 15) / 16 * 16 + 16;
    Bytes fill(len, 0xee);
    EXPECT_TRUE(mem_->write(a, std::as_bytes(std::span(fill))));
    return Descriptor{a, len, writable};
  }
  Bytes read_guest(GuestAddress a, std::size_t len) {
    Bytes out(len);
    EXPECT_TRUE(mem_->read(a, std::as_writable_bytes(std::span(out))));
    return out;
  }
  bool wait_used(std::uint16_t n) {
    return loop_.run_until([&] { return ring_->used_idx() >= n; });
  }
  void notify() { ASSERT_TRUE(notify_->signal()); }

  std::optional<GuestMemory> mem_;
  std::optional<TestRing> ring_;
  std::optional<EventFd> notify_;
  EpollLoop loop_;
  std::shared_ptr<FakeInterrupt> irq_ = std::make_shared<FakeInterrupt>();
  std::optional<RngDevice> device_;
  std::uint64_t next_ = 0x10000;
};

// A source writing 0, 1, 2, ... (mod 251) across calls, in pieces of at
// most `chunk` bytes, failing with EINTR before every other piece.
struct CountingSource {
  std::size_t chunk = SIZE_MAX;
  bool eintr = false;
  std::shared_ptr<std::uint64_t> next = std::make_shared<std::uint64_t>(0);
  std::shared_ptr<int> calls = std::make_shared<int>(0);
  ssize_t operator()(void* buf, std::size_t len) const {
    ++*calls;
    if (eintr && *calls % 2 == 1) {
      errno = EINTR;
      return -1;
    }
    const std::size_t n = std::min(len, chunk);
    auto* p = static_cast<std::uint8_t*>(buf);
    for (std::size_t i = 0; i < n; ++i) p[i] = static_cast<std::uint8_t>((*next)++ % 251);
    return static_cast<ssize_t>(n);
  }
};

TEST(RngDevice, IdentityFeaturesAndEmptyConfig) {
  RngDevice dev(metrics::registry().group("entropy"));
  EXPECT_EQ(dev.device_type(), 4u);
  EXPECT_EQ(dev.queue_max_sizes(), (std::vector<std::uint16_t>{256}));
  EXPECT_TRUE(dev.features() & kFeatureVersion1);
  std::array<std::uint8_t, 8> cfg;
  cfg.fill(0xaa);
  dev.read_config(0, cfg);
  for (auto b : cfg) EXPECT_EQ(b, 0);
  const std::array<std::uint8_t, 4> w{1, 2, 3, 4};
  dev.write_config(0, w);  // ignored, no crash
}

TEST_F(RngTest, FillsAWritableBufferFromGetrandom) {
  make_device();
  const std::uint64_t bytes_before = metric("entropy_bytes");
  const Descriptor d = buffer(256);
  const std::uint16_t head = ring_->post({d});
  activate();
  ASSERT_TRUE(wait_used(1));
  EXPECT_EQ(ring_->used(0), (std::pair<std::uint32_t, std::uint32_t>{head, 256}));
  const Bytes got = read_guest(d.addr, 256);
  // 256 random bytes all equal to the 0xee fill: probability 2^-2048.
  EXPECT_NE(got, Bytes(256, 0xee));
  EXPECT_GE(metric("entropy_bytes") - bytes_before, 256u);
  EXPECT_GE(irq_->used.load(), 1);
  EXPECT_EQ(irq_->needs_reset.load(), 0);
}

TEST_F(RngTest, ChainOfSeveralDescriptorsIsFilledInOrderWithEintrAndShortReads) {
  CountingSource src;
  src.chunk = 7;
  src.eintr = true;
  make_device(std::nullopt, std::nullopt, src);
  const Descriptor a = buffer(10);
  const Descriptor b = buffer(1);
  const Descriptor c = buffer(33);
  ring_->post({a, b, c});
  activate();
  ASSERT_TRUE(wait_used(1));
  EXPECT_EQ(ring_->used(0).second, 44u);
  Bytes all = read_guest(a.addr, 10);
  for (auto x : read_guest(b.addr, 1)) all.push_back(x);
  for (auto x : read_guest(c.addr, 33)) all.push_back(x);
  for (std::size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i], i % 251) << i;
  EXPECT_GT(*src.calls, 12);  // short reads and EINTRs were retried
}

TEST_F(RngTest, RequestIsCappedAt64KiB) {
  make_device(std::nullopt, std::nullopt, CountingSource{});
  const std::uint32_t len = 80 * 1024;
  const Descriptor d = buffer(len);
  ring_->post({d});
  activate();
  ASSERT_TRUE(wait_used(1));
  EXPECT_EQ(ring_->used(0).second, kMaxRequestBytes);
  const Bytes tail =
      read_guest(GuestAddress(d.addr.value() + kMaxRequestBytes), len - kMaxRequestBytes);
  EXPECT_EQ(tail, Bytes(len - kMaxRequestBytes, 0xee));
}

TEST_F(RngTest, HostFailureReturnsTheChainEmptyAndCounts) {
  auto fail = std::make_shared<bool>(true);
  make_device(std::nullopt, std::nullopt, [fail](void* buf, std::size_t len) -> ssize_t {
    if (*fail) {
      errno = EIO;
      return -1;
    }
    std::memset(buf, 0x5a, len);
    return static_cast<ssize_t>(len);
  });
  const std::uint64_t fails_before = metric("host_rng_fails");
  const Descriptor d = buffer(32);
  ring_->post({d});
  activate();
  ASSERT_TRUE(wait_used(1));
  EXPECT_EQ(ring_->used(0).second, 0u);
  EXPECT_EQ(metric("host_rng_fails") - fails_before, 1u);
  EXPECT_EQ(irq_->needs_reset.load(), 0);
  // The host recovers: the next request is served.
  *fail = false;
  const Descriptor e = buffer(32);
  ring_->post({e});
  notify();
  ASSERT_TRUE(wait_used(2));
  EXPECT_EQ(ring_->used(1).second, 32u);
  EXPECT_EQ(read_guest(e.addr, 32), Bytes(32, 0x5a));
}

TEST_F(RngTest, ReadOnlyOrEmptyRequestsAreReturnedUnusedAndTheQueueGoesOn) {
  make_device(std::nullopt, std::nullopt, CountingSource{});
  activate();
  // Let the activation's first look happen: the requests below then come
  // with a queue notification.
  ASSERT_TRUE(loop_.run_until([&] { return loop_.dispatched() >= 1; }));
  const std::uint64_t events_before = metric("entropy_event_count");
  // Only a driver-readable buffer: nothing may be written into it.
  const Descriptor ro = buffer(64, false);
  ring_->post({ro});
  // Readable then writable: refused as a whole, nothing written.
  const Descriptor ro2 = buffer(16, false);
  const Descriptor rw2 = buffer(16);
  ring_->post({ro2, rw2});
  // A zero-length writable descriptor: nothing to fill.
  const Descriptor empty = buffer(0);
  ring_->post({empty});
  // And a good one after them.
  const Descriptor good = buffer(8);
  ring_->post({good});
  notify();
  ASSERT_TRUE(wait_used(4));
  EXPECT_EQ(ring_->used(0).second, 0u);
  EXPECT_EQ(ring_->used(1).second, 0u);
  EXPECT_EQ(ring_->used(2).second, 0u);
  EXPECT_EQ(ring_->used(3).second, 8u);
  EXPECT_EQ(read_guest(ro.addr, 64), Bytes(64, 0xee));
  EXPECT_EQ(read_guest(ro2.addr, 16), Bytes(16, 0xee));
  EXPECT_EQ(read_guest(rw2.addr, 16), Bytes(16, 0xee));
  EXPECT_NE(read_guest(good.addr, 8), Bytes(8, 0xee));
  EXPECT_EQ(irq_->needs_reset.load(), 0);
  EXPECT_GE(metric("entropy_event_count") - events_before, 1u);
}

TEST_F(RngTest, MalformedRingSetsNeedsResetOnceAndStops) {
  make_device(std::nullopt, std::nullopt, CountingSource{});
  activate();
  ring_->publish(kRingSize + 3);  // head index out of range
  notify();
  ASSERT_TRUE(loop_.run_until([&] { return irq_->needs_reset.load() > 0; }));
  const Descriptor d = buffer(8);
  ring_->post({d});
  notify();
  loop_.run_for(50ms);
  EXPECT_EQ(irq_->needs_reset.load(), 1);
  EXPECT_EQ(ring_->used_idx(), 0);
  // A reset and a fresh queue bring it back.
  device_->reset();
  EXPECT_EQ(loop_.registered(), 0u);
  ring_.emplace(*mem_, 0x3000, kRingSize);
  const Descriptor e = buffer(8);
  ring_->post({e});
  activate();
  ASSERT_TRUE(wait_used(1));
  EXPECT_EQ(ring_->used(0).second, 8u);
}

TEST_F(RngTest, BandwidthLimitThrottlesWithoutSpinningAndResumesFromTheTimer) {
  // 100 bytes per 200 ms: three 100-byte requests need at least 400 ms.
  make_device(TokenBucketParams{100, 0, 200}, std::nullopt, CountingSource{});
  const std::uint64_t throttled_before = metric("entropy_rate_limiter_throttled");
  for (int i = 0; i < 3; ++i) ring_->post({buffer(100)});
  const auto start = std::chrono::steady_clock::now();
  activate();
  ASSERT_TRUE(loop_.run_until([&] { return device_->throttled(); }));
  EXPECT_LT(ring_->used_idx(), 3);
  // Throttled: notifications change nothing and the loop is idle.
  const int before = loop_.dispatched();
  notify();
  loop_.run_for(50ms);
  EXPECT_LT(loop_.dispatched() - before, 10);
  ASSERT_TRUE(wait_used(3));
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_GE(elapsed, 400ms);
  for (std::uint16_t i = 0; i < 3; ++i) EXPECT_EQ(ring_->used(i).second, 100u);
  EXPECT_GE(metric("entropy_rate_limiter_throttled") - throttled_before, 2u);
  EXPECT_FALSE(device_->throttled());
}

TEST_F(RngTest, OpsLimitCountsRequests) {
  // One request per 150 ms, but a one-time burst of 2: four requests need
  // at least 150 ms after the burst and the full bucket are spent.
  make_device(std::nullopt, TokenBucketParams{1, 2, 150}, CountingSource{});
  for (int i = 0; i < 4; ++i) ring_->post({buffer(16)});
  const auto start = std::chrono::steady_clock::now();
  activate();
  ASSERT_TRUE(wait_used(4));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 150ms);
}

TEST_F(RngTest, UpdateRateLimiterFromAnotherThreadLiftsTheThrottle) {
  // One request per hour.
  make_device(std::nullopt, TokenBucketParams{1, 0, 3600 * 1000}, CountingSource{});
  ring_->post({buffer(16)});
  ring_->post({buffer(16)});
  activate();
  ASSERT_TRUE(loop_.run_until([&] { return device_->throttled(); }));
  EXPECT_EQ(ring_->used_idx(), 1);
  std::thread api([&] { device_->update_rate_limiter(std::nullopt, std::nullopt); });
  api.join();
  ASSERT_TRUE(wait_used(2));
  EXPECT_FALSE(device_->throttled());
}

TEST_F(RngTest, ResetWhileThrottledUnregistersEverything) {
  make_device(std::nullopt, TokenBucketParams{1, 0, 3600 * 1000}, CountingSource{});
  ring_->post({buffer(16)});
  ring_->post({buffer(16)});
  activate();
  ASSERT_TRUE(loop_.run_until([&] { return device_->throttled(); }));
  device_->reset();
  EXPECT_EQ(loop_.registered(), 0u);
  EXPECT_FALSE(device_->throttled());
  loop_.run_for(20ms);
  EXPECT_EQ(ring_->used_idx(), 1);
}

TEST_F(RngTest, ActivateRejectsWrongQueueCount) {
  make_device();
  EXPECT_FALSE(device_->activate(*mem_, {}, irq_, loop_));
  EXPECT_FALSE(device_->activate(
      *mem_,
      {ActiveQueue{&ring_->queue(), notify_->fd()}, ActiveQueue{&ring_->queue(), notify_->fd()}},
      irq_, loop_));
  EXPECT_EQ(loop_.registered(), 0u);
}

}  // namespace
}  // namespace hvz::virtio::rng
