// virtio-blk quiesce (VM pause): with either I/O engine, once quiesce()
// returns neither the disk file nor the used ring changes, however hard the
// driver keeps refilling and notifying; unquiesce() resumes the queue; a
// request waiting for the rate limiter goes back to the ring.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "virtio/block/block_device.hpp"
#include "virtio/block/disk_image.hpp"
#include "virtio/block/request.hpp"
#include "virtio/tests/block_support.hpp"
#include "virtio/tests/support.hpp"
#include "vmm/core/event_fd.hpp"
#include "vmm/core/metrics.hpp"

namespace hvz::virtio::block {
namespace {

using testing::EpollLoop;
using testing::FakeInterrupt;
using testing::TestRing;

using namespace std::chrono_literals;

constexpr std::uint16_t kSize = 64;
constexpr std::uint64_t kRing = 0x10000;  // desc, avail, used 0x1000 apart
constexpr std::uint64_t kTables = 0x20000;
constexpr std::uint64_t kHeaders = 0x24000;
constexpr std::uint64_t kStatus = 0x25000;
constexpr std::uint64_t kData = 0x30000;
constexpr std::uint32_t kDataLen = 4096;
constexpr std::uint64_t kSlots = 16;  // distinct disk blocks written

class BlockQuiesceTest : public ::testing::TestWithParam<IoEngine> {
 protected:
  void SetUp() override {
    auto n = EventFd::create();
    ASSERT_TRUE(n);
    notify_.emplace(std::move(*n));
  }
  void TearDown() override {
    stop_driver();
    if (device_) device_->reset();
  }
  void make_device(BlockOptions options = {}) {
    auto d = DiskImage::open(file_.path(), false);
    ASSERT_TRUE(d) << d.error().message();
    options.io_engine = GetParam();
    auto dev = BlockDevice::create(std::move(*d), "quiesce", metrics_, options);
    ASSERT_TRUE(dev) << dev.error().message();
    device_ = std::move(*dev);
  }
  // Head i: an indirect OUT request of kDataLen bytes from its own buffer.
  void lay_out_requests() {
    auto put = [&](std::uint64_t at, std::uint64_t addr, std::uint32_t len, std::uint16_t flags,
                   std::uint16_t next) {
      ASSERT_TRUE(mem_.write_obj<std::uint64_t>(GuestAddress(at), addr));
      ASSERT_TRUE(mem_.write_obj<std::uint32_t>(GuestAddress(at + 8), len));
      ASSERT_TRUE(mem_.write_obj<std::uint16_t>(GuestAddress(at + 12), flags));
      ASSERT_TRUE(mem_.write_obj<std::uint16_t>(GuestAddress(at + 14), next));
    };
    for (std::uint16_t i = 0; i < kSize; ++i) {
      const std::uint64_t table = kTables + 48u * i;
      const RequestHeader h{kTypeOut, 0, (i % kSlots) * (kDataLen / kSectorSize)};
      ASSERT_TRUE(mem_.write_obj(GuestAddress(kHeaders + 16u * i), h));
      put(table, kHeaders + 16u * i, 16, kDescFlagNext, 1);
      put(table + 16, kData + std::uint64_t{kDataLen} * i, kDataLen, kDescFlagNext, 2);
      put(table + 32, kStatus + i, 1, kDescFlagWrite, 0);
      ring_.put_desc(i, table, 48, kDescFlagIndirect, 0);
    }
  }
  // A driver that republishes every completed request at once, each time
  // with new data, and notifies all the time.
  void start_driver() {
    driver_ = std::thread([this] {
      std::uint16_t published = 0;
      std::uint64_t counter = 0;
      while (!stop_.load()) {
        bool posted = false;
        while (static_cast<std::uint16_t>(published - ring_.used_idx()) < kSize) {
          const std::uint16_t head = published % kSize;
          (void)mem_.write_obj<std::uint64_t>(GuestAddress(kData + std::uint64_t{kDataLen} * head),
                                              ++counter);
          ring_.publish(head);
          ++published;
          posted = true;
        }
        // Notify even with nothing new, as a driver kicking a stuck
        // device would.
        (void)notify_->signal();
        notifies_.fetch_add(1);
        if (!posted) std::this_thread::sleep_for(1ms);
      }
    });
  }
  void stop_driver() {
    stop_.store(true);
    if (driver_.joinable()) driver_.join();
  }

  TempFile file_{kSlots * kDataLen};
  GuestMemory mem_ = make_memory();
  TestRing ring_{mem_, kRing, kSize, 0x1000};
  EpollLoop loop_{std::chrono::seconds(20)};
  std::shared_ptr<FakeInterrupt> irq_ = std::make_shared<FakeInterrupt>();
  std::optional<EventFd> notify_;
  metrics::Group metrics_{"block_quiesce_test"};
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> notifies_{0};
  std::thread driver_;
  std::unique_ptr<BlockDevice> device_;
};

INSTANTIATE_TEST_SUITE_P(Engines, BlockQuiesceTest,
                         ::testing::Values(IoEngine::kSync, IoEngine::kAsync), engine_name);

TEST_P(BlockQuiesceTest, NothingChangesWhileQuiescedThoughTheDriverKeepsRefilling) {
  make_device();
  lay_out_requests();
  device_->ack_features(kFeatureVersion1 | kFeatureIndirectDesc);
  ASSERT_TRUE(device_->activate(mem_, {ActiveQueue{&ring_.queue(), notify_->fd()}}, irq_, loop_));
  start_driver();
  ASSERT_TRUE(loop_.run_until([&] { return ring_.used_idx() > 2 * kSize; }, 10s));

  const auto start = std::chrono::steady_clock::now();
  device_->quiesce();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
  const std::uint16_t used = ring_.used_idx();
  const auto file = file_.read_all();
  const std::uint64_t notified = notifies_.load();
  // The loop keeps dispatching the driver's notifications meanwhile.
  loop_.run_for(200ms);
  EXPECT_GT(notifies_.load(), notified);
  EXPECT_EQ(ring_.used_idx(), used);
  EXPECT_EQ(file_.read_all(), file);
  // Every popped request was completed: the device owes the ring nothing.
  EXPECT_EQ(ring_.queue().next_avail(), ring_.queue().next_used());

  device_->unquiesce();
  EXPECT_TRUE(loop_.run_until(
      [&] { return static_cast<std::uint16_t>(ring_.used_idx() - used) > 2 * kSize; }, 10s));
  EXPECT_NE(file_.read_all(), file);
  stop_driver();
  EXPECT_EQ(irq_->needs_reset.load(), 0);
}

TEST_P(BlockQuiesceTest, QuiesceIsIdempotentAndResetEndsAParkedDevice) {
  make_device();
  lay_out_requests();
  device_->ack_features(kFeatureVersion1 | kFeatureIndirectDesc);
  ASSERT_TRUE(device_->activate(mem_, {ActiveQueue{&ring_.queue(), notify_->fd()}}, irq_, loop_));
  device_->quiesce();
  device_->quiesce();
  ring_.publish(0);
  ASSERT_TRUE(notify_->signal());
  loop_.run_for(100ms);
  EXPECT_EQ(ring_.used_idx(), 0);
  const auto start = std::chrono::steady_clock::now();
  device_->reset();  // joins the parked I/O thread
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
  device_->unquiesce();
  device_->unquiesce();
}

TEST_P(BlockQuiesceTest, ActivatedWhileQuiescedStartsParked) {
  make_device();
  lay_out_requests();
  device_->quiesce();
  device_->ack_features(kFeatureVersion1 | kFeatureIndirectDesc);
  ASSERT_TRUE(device_->activate(mem_, {ActiveQueue{&ring_.queue(), notify_->fd()}}, irq_, loop_));
  ring_.publish(0);
  ASSERT_TRUE(notify_->signal());
  loop_.run_for(100ms);
  EXPECT_EQ(ring_.used_idx(), 0);
  device_->unquiesce();
  EXPECT_TRUE(loop_.run_until([&] { return ring_.used_idx() == 1; }));
}

TEST_P(BlockQuiesceTest, AThrottledRequestGoesBackToTheRing) {
  BlockOptions options;
  // One request per 300 ms: the second waits for a token.
  options.ops = TokenBucketParams{1, 0, 300};
  make_device(options);
  lay_out_requests();
  device_->ack_features(kFeatureVersion1 | kFeatureIndirectDesc);
  ASSERT_TRUE(device_->activate(mem_, {ActiveQueue{&ring_.queue(), notify_->fd()}}, irq_, loop_));
  ring_.publish(0);
  ring_.publish(1);
  ASSERT_TRUE(notify_->signal());
  ASSERT_TRUE(loop_.run_until([&] { return ring_.used_idx() == 1; }));
  device_->quiesce();
  EXPECT_EQ(ring_.queue().next_avail(), 1);  // head 1 is the driver's again
  EXPECT_EQ(ring_.used_idx(), 1);
  device_->unquiesce();
  EXPECT_TRUE(loop_.run_until([&] { return ring_.used_idx() == 2; }));
  EXPECT_EQ(ring_.used(1).first, 1u);
}

}  // namespace
}  // namespace hvz::virtio::block
