// MmioTransport: virtio-mmio v2 registers, feature negotiation, the status
// state machine and activation, queue notification, interrupts, config
// space forwarding and malformed accesses — with a recording fake device,
// no KVM.
#include "virtio/mmio_transport.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "devices/tests/test_irq_line.hpp"

namespace hvz::virtio_test {
namespace {

using namespace hvz::virtio;
using devices::testing::CountingIrqLine;

constexpr std::uint64_t kRamSize = 1 << 20;
constexpr std::uint64_t kFeatureBlkSizeMax = 1ull << 1;
constexpr std::uint64_t kFeatureBlkFlush = 1ull << 9;
constexpr std::uint64_t kOffered = kFeatureVersion1 | kFeatureEventIdx | kFeatureBlkFlush;

// What the device saw of one queue at activation.
struct QueueView {
  Queue* queue;
  int notify_fd;
  std::uint16_t size;
  bool ready;
  std::uint64_t desc;
  std::uint64_t avail;
  std::uint64_t used;
};

class FakeDevice : public VirtioDevice {
 public:
  std::uint32_t device_type() const override { return kDeviceTypeBlock; }
  std::uint64_t features() const override { return offered; }
  void ack_features(std::uint64_t f) override { acked.push_back(f); }
  std::vector<std::uint16_t> queue_max_sizes() const override { return max_sizes; }
  void read_config(std::uint64_t offset, std::span<std::uint8_t> data) const override {
    ++config_reads;
    for (std::size_t i = 0; i < data.size(); ++i) {
      data[i] = offset + i < config.size() ? config[offset + i] : 0;
    }
  }
  void write_config(std::uint64_t offset, std::span<const std::uint8_t> data) override {
    ++config_writes;
    for (std::size_t i = 0; i < data.size(); ++i) {
      if (offset + i < config.size()) config[offset + i] = data[i];
    }
  }
  Expected<void> activate(const GuestMemory& mem, std::vector<ActiveQueue> queues,
                          std::shared_ptr<Interrupt> irq, EventLoop&) override {
    ++activations;
    activated_mem = &mem;
    views.clear();
    for (const ActiveQueue& q : queues) {
      views.push_back(QueueView{q.queue, q.notify_fd, q.queue->size(), q.queue->ready(),
                                q.queue->desc_table().value(), q.queue->avail_ring().value(),
                                q.queue->used_ring().value()});
    }
    interrupt = std::move(irq);
    if (fail_activate) return make_error(Errc::kInvalidArgument, "fake activate");
    return {};
  }
  void reset() override {
    ++resets;
    interrupt.reset();
  }

  std::uint64_t offered = kOffered;
  std::vector<std::uint16_t> max_sizes{256, 128};
  std::vector<std::uint8_t> config{0x10, 0x11, 0x12, 0x13, 0x14, 0x15,
                                   0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b};
  bool fail_activate = false;

  std::vector<std::uint64_t> acked;
  int activations = 0;
  int resets = 0;
  mutable int config_reads = 0;
  int config_writes = 0;
  const GuestMemory* activated_mem = nullptr;
  std::vector<QueueView> views;
  std::shared_ptr<Interrupt> interrupt;
};

class NullLoop : public EventLoop {
 public:
  Expected<void> add(int, std::uint32_t, Callback) override { return {}; }
  Expected<void> modify(int, std::uint32_t) override { return {}; }
  Expected<void> remove(int) override { return {}; }
};

GuestMemory make_memory() {
  auto mem = GuestMemory::create({MemoryRange{GuestAddress(0), kRamSize}});
  EXPECT_TRUE(mem) << mem.error().message();
  return std::move(*mem);
}

// Reads an eventfd's counter without blocking (0 when unsignalled).
std::uint64_t drain(int fd) {
  std::uint64_t n = 0;
  if (::read(fd, &n, sizeof n) != sizeof n) return 0;
  return n;
}

class MmioTransport : public ::testing::Test {
 protected:
  void SetUp() override { make_transport(); }

  void make_transport() {
    transport_.reset();
    auto t = virtio::MmioTransport::create(device_, mem_, loop_, irq_);
    ASSERT_TRUE(t) << t.error().message();
    transport_ = *t;
  }

  std::uint32_t rd(std::uint64_t offset) {
    std::array<std::uint8_t, 4> b{0xee, 0xee, 0xee, 0xee};
    transport_->read(offset, b);
    std::uint32_t v;
    std::memcpy(&v, b.data(), 4);
    return v;
  }
  void wr(std::uint64_t offset, std::uint32_t v) {
    std::array<std::uint8_t, 4> b;
    std::memcpy(b.data(), &v, 4);
    transport_->write(offset, b);
  }

  void write_features(std::uint64_t f) {
    wr(mmio_reg::kDriverFeaturesSel, 0);
    wr(mmio_reg::kDriverFeatures, static_cast<std::uint32_t>(f));
    wr(mmio_reg::kDriverFeaturesSel, 1);
    wr(mmio_reg::kDriverFeatures, static_cast<std::uint32_t>(f >> 32));
  }
  // ACKNOWLEDGE, DRIVER, features, FEATURES_OK as Linux does it.
  void negotiate(std::uint64_t f = kFeatureVersion1 | kFeatureBlkFlush) {
    wr(mmio_reg::kStatus, 0);
    wr(mmio_reg::kStatus, rd(mmio_reg::kStatus) | kStatusAcknowledge);
    wr(mmio_reg::kStatus, rd(mmio_reg::kStatus) | kStatusDriver);
    write_features(f);
    wr(mmio_reg::kStatus, rd(mmio_reg::kStatus) | kStatusFeaturesOk);
  }
  void setup_queue(std::uint32_t index, std::uint32_t size, std::uint64_t desc, std::uint64_t avail,
                   std::uint64_t used, bool ready = true) {
    wr(mmio_reg::kQueueSel, index);
    wr(mmio_reg::kQueueNum, size);
    wr(mmio_reg::kQueueDescLow, static_cast<std::uint32_t>(desc));
    wr(mmio_reg::kQueueDescHigh, static_cast<std::uint32_t>(desc >> 32));
    wr(mmio_reg::kQueueDriverLow, static_cast<std::uint32_t>(avail));
    wr(mmio_reg::kQueueDriverHigh, static_cast<std::uint32_t>(avail >> 32));
    wr(mmio_reg::kQueueDeviceLow, static_cast<std::uint32_t>(used));
    wr(mmio_reg::kQueueDeviceHigh, static_cast<std::uint32_t>(used >> 32));
    if (ready) wr(mmio_reg::kQueueReady, 1);
  }
  void setup_good_queues() {
    setup_queue(0, 256, 0x10000, 0x20000, 0x30000);
    setup_queue(1, 64, 0x40000, 0x41000, 0x42000);
  }
  void driver_ok() { wr(mmio_reg::kStatus, rd(mmio_reg::kStatus) | kStatusDriverOk); }
  void activate() {
    negotiate();
    setup_good_queues();
    driver_ok();
    ASSERT_TRUE(transport_->activated());
  }

  GuestMemory mem_ = make_memory();
  NullLoop loop_;
  std::shared_ptr<CountingIrqLine> irq_ = std::make_shared<CountingIrqLine>();
  std::shared_ptr<FakeDevice> device_ = std::make_shared<FakeDevice>();
  std::shared_ptr<virtio::MmioTransport> transport_;
};

constexpr std::uint32_t kAllInit =
    kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk;

TEST_F(MmioTransport, ReportsMagicVersionAndIds) {
  EXPECT_EQ(rd(mmio_reg::kMagicValue), 0x74726976u);
  EXPECT_EQ(rd(mmio_reg::kVersion), 2u);
  EXPECT_EQ(rd(mmio_reg::kDeviceId), kDeviceTypeBlock);
  EXPECT_EQ(rd(mmio_reg::kVendorId), kMmioVendorId);
  EXPECT_EQ(rd(mmio_reg::kStatus), 0u);
  EXPECT_EQ(rd(mmio_reg::kInterruptStatus), 0u);
  EXPECT_EQ(transport_->queue_notify_fds().size(), 2u);
}

TEST_F(MmioTransport, CreateRejectsDeviceWithoutVersion1AndNullArguments) {
  device_->offered = kFeatureBlkFlush;
  EXPECT_FALSE(virtio::MmioTransport::create(device_, mem_, loop_, irq_));
  device_->offered = kOffered;
  EXPECT_FALSE(virtio::MmioTransport::create(nullptr, mem_, loop_, irq_));
  EXPECT_FALSE(virtio::MmioTransport::create(device_, mem_, loop_, nullptr));
}

TEST_F(MmioTransport, OffersDeviceFeaturesThroughBothSelectors) {
  wr(mmio_reg::kDeviceFeaturesSel, 0);
  EXPECT_EQ(rd(mmio_reg::kDeviceFeatures), static_cast<std::uint32_t>(kOffered));
  wr(mmio_reg::kDeviceFeaturesSel, 1);
  EXPECT_EQ(rd(mmio_reg::kDeviceFeatures), static_cast<std::uint32_t>(kOffered >> 32));
  EXPECT_EQ(rd(mmio_reg::kDeviceFeatures), 1u);  // VERSION_1 is bit 32
  wr(mmio_reg::kDeviceFeaturesSel, 2);
  EXPECT_EQ(rd(mmio_reg::kDeviceFeatures), 0u);
  wr(mmio_reg::kDeviceFeaturesSel, 0xffffffff);
  EXPECT_EQ(rd(mmio_reg::kDeviceFeatures), 0u);
}

TEST_F(MmioTransport, AcceptsDriverFeatureSubsetAtFeaturesOk) {
  negotiate(kFeatureVersion1 | kFeatureBlkFlush);
  EXPECT_EQ(rd(mmio_reg::kStatus), kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  ASSERT_EQ(device_->acked.size(), 1u);
  EXPECT_EQ(device_->acked[0], kFeatureVersion1 | kFeatureBlkFlush);
}

TEST_F(MmioTransport, RefusesFeaturesNotOffered) {
  negotiate(kFeatureVersion1 | kFeatureBlkSizeMax);
  EXPECT_EQ(rd(mmio_reg::kStatus), kStatusAcknowledge | kStatusDriver);
  EXPECT_TRUE(device_->acked.empty());
}

TEST_F(MmioTransport, RefusesFeaturesWithoutVersion1) {
  negotiate(kFeatureBlkFlush);
  EXPECT_EQ(rd(mmio_reg::kStatus), kStatusAcknowledge | kStatusDriver);
  EXPECT_TRUE(device_->acked.empty());
}

TEST_F(MmioTransport, RefusesFeatureBitsBeyondTheOfferedWords) {
  wr(mmio_reg::kStatus, kStatusAcknowledge);
  wr(mmio_reg::kStatus, kStatusAcknowledge | kStatusDriver);
  write_features(kFeatureVersion1);
  wr(mmio_reg::kDriverFeaturesSel, 2);
  wr(mmio_reg::kDriverFeatures, 1);
  wr(mmio_reg::kStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  EXPECT_EQ(rd(mmio_reg::kStatus), kStatusAcknowledge | kStatusDriver);
  EXPECT_TRUE(device_->acked.empty());
}

TEST_F(MmioTransport, DriverFeaturesWrittenBeforeDriverOrAfterFeaturesOkAreIgnored) {
  // Before DRIVER: the write is dropped, so VERSION_1 is missing later.
  wr(mmio_reg::kStatus, kStatusAcknowledge);
  write_features(kFeatureVersion1);
  wr(mmio_reg::kStatus, kStatusAcknowledge | kStatusDriver);
  wr(mmio_reg::kStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  EXPECT_EQ(rd(mmio_reg::kStatus), kStatusAcknowledge | kStatusDriver);

  // After FEATURES_OK: the accepted set cannot change any more.
  negotiate(kFeatureVersion1);
  write_features(kFeatureVersion1 | kFeatureBlkFlush);
  setup_good_queues();
  driver_ok();
  ASSERT_EQ(device_->acked.size(), 1u);
  EXPECT_EQ(device_->acked[0], kFeatureVersion1);
}

TEST_F(MmioTransport, FullInitSequenceActivatesWithQueueLayout) {
  negotiate();
  wr(mmio_reg::kQueueSel, 0);
  EXPECT_EQ(rd(mmio_reg::kQueueNumMax), 256u);
  EXPECT_EQ(rd(mmio_reg::kQueueReady), 0u);
  wr(mmio_reg::kQueueSel, 1);
  EXPECT_EQ(rd(mmio_reg::kQueueNumMax), 128u);
  setup_queue(0, 256, 0x10000, 0x20000, 0x30000);
  setup_queue(1, 64, 0x40000, 0x41000, 0x42000);
  wr(mmio_reg::kQueueSel, 0);
  EXPECT_EQ(rd(mmio_reg::kQueueReady), 1u);
  EXPECT_EQ(device_->activations, 0);
  driver_ok();

  EXPECT_EQ(rd(mmio_reg::kStatus), kAllInit);
  EXPECT_TRUE(transport_->activated());
  ASSERT_EQ(device_->activations, 1);
  EXPECT_EQ(device_->activated_mem, &mem_);
  EXPECT_NE(device_->interrupt, nullptr);
  const std::vector<int> fds = transport_->queue_notify_fds();
  ASSERT_EQ(device_->views.size(), 2u);
  const QueueView& q0 = device_->views[0];
  EXPECT_TRUE(q0.ready);
  EXPECT_EQ(q0.size, 256);
  EXPECT_EQ(q0.desc, 0x10000u);
  EXPECT_EQ(q0.avail, 0x20000u);
  EXPECT_EQ(q0.used, 0x30000u);
  EXPECT_EQ(q0.notify_fd, fds[0]);
  const QueueView& q1 = device_->views[1];
  EXPECT_TRUE(q1.ready);
  EXPECT_EQ(q1.size, 64);
  EXPECT_EQ(q1.desc, 0x40000u);
  EXPECT_EQ(q1.avail, 0x41000u);
  EXPECT_EQ(q1.used, 0x42000u);
  EXPECT_EQ(q1.notify_fd, fds[1]);
  EXPECT_NE(fds[0], fds[1]);
}

TEST_F(MmioTransport, CombinesLowAndHighAddressHalves) {
  auto high = GuestMemory::create(
      {MemoryRange{GuestAddress(0), kRamSize}, MemoryRange{GuestAddress(0x1'0000'0000), kRamSize}});
  ASSERT_TRUE(high) << high.error().message();
  auto t = virtio::MmioTransport::create(device_, *high, loop_, irq_);
  ASSERT_TRUE(t);
  transport_ = *t;
  negotiate();
  setup_queue(0, 256, 0x1'0000'1000, 0x1'0000'2000, 0x1'0000'3000);
  wr(mmio_reg::kQueueSel, 1);
  wr(mmio_reg::kQueueDescHigh, 1);  // high first, then low: both kept
  wr(mmio_reg::kQueueDescLow, 0x4000);
  wr(mmio_reg::kQueueDriverHigh, 1);
  wr(mmio_reg::kQueueDriverLow, 0x5000);
  wr(mmio_reg::kQueueDeviceHigh, 1);
  wr(mmio_reg::kQueueDeviceLow, 0x6000);
  wr(mmio_reg::kQueueReady, 1);
  driver_ok();
  ASSERT_EQ(device_->activations, 1);
  EXPECT_EQ(device_->views[0].desc, 0x1'0000'1000u);
  EXPECT_EQ(device_->views[0].avail, 0x1'0000'2000u);
  EXPECT_EQ(device_->views[0].used, 0x1'0000'3000u);
  EXPECT_EQ(device_->views[1].desc, 0x1'0000'4000u);
  EXPECT_EQ(device_->views[1].avail, 0x1'0000'5000u);
  EXPECT_EQ(device_->views[1].used, 0x1'0000'6000u);
  transport_.reset();  // before `high` goes away
}

TEST_F(MmioTransport, UnreadyQueueIsPassedNotReady) {
  negotiate();
  setup_queue(0, 256, 0x10000, 0x20000, 0x30000);
  driver_ok();
  ASSERT_EQ(device_->activations, 1);
  ASSERT_EQ(device_->views.size(), 2u);
  EXPECT_TRUE(device_->views[0].ready);
  EXPECT_FALSE(device_->views[1].ready);
}

TEST_F(MmioTransport, RejectsOutOfOrderStatusWrites) {
  wr(mmio_reg::kStatus, kStatusDriver);  // ACKNOWLEDGE skipped
  EXPECT_EQ(rd(mmio_reg::kStatus), 0u);
  wr(mmio_reg::kStatus, kStatusAcknowledge);
  wr(mmio_reg::kStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);  // two at once
  EXPECT_EQ(rd(mmio_reg::kStatus), kStatusAcknowledge);
  wr(mmio_reg::kStatus, kStatusAcknowledge | kStatusDriver);
  write_features(kFeatureVersion1);
  wr(mmio_reg::kStatus, kStatusAcknowledge | kStatusDriver | kStatusDriverOk);  // no FEATURES_OK
  EXPECT_EQ(rd(mmio_reg::kStatus), kStatusAcknowledge | kStatusDriver);
  wr(mmio_reg::kStatus, kStatusAcknowledge);  // clearing a bit
  EXPECT_EQ(rd(mmio_reg::kStatus), kStatusAcknowledge | kStatusDriver);
  EXPECT_EQ(device_->activations, 0);
}

TEST_F(MmioTransport, QueueSizeNotPowerOfTwoNeedsResetWithoutActivation) {
  negotiate();
  setup_queue(0, 100, 0x10000, 0x20000, 0x30000);
  driver_ok();
  EXPECT_EQ(device_->activations, 0);
  EXPECT_FALSE(transport_->activated());
  EXPECT_EQ(rd(mmio_reg::kStatus), kAllInit | kStatusNeedsReset);
  EXPECT_EQ(rd(mmio_reg::kInterruptStatus), kInterruptConfigChange);
  EXPECT_EQ(irq_->take(), 1u);
}

TEST_F(MmioTransport, QueueSizeBeyondSixteenBitsIsNotTruncated) {
  negotiate();
  setup_queue(0, 0x10000 | 16, 0x10000, 0x20000, 0x30000);
  driver_ok();
  EXPECT_EQ(device_->activations, 0);
  EXPECT_EQ(rd(mmio_reg::kStatus) & kStatusNeedsReset, kStatusNeedsReset);
}

TEST_F(MmioTransport, QueueLargerThanMaxNeedsReset) {
  negotiate();
  setup_queue(1, 256, 0x10000, 0x20000, 0x30000);  // max 128
  driver_ok();
  EXPECT_EQ(device_->activations, 0);
  EXPECT_EQ(rd(mmio_reg::kStatus) & kStatusNeedsReset, kStatusNeedsReset);
}

TEST_F(MmioTransport, RingOutsideRamNeedsResetWithoutActivation) {
  negotiate();
  setup_queue(0, 256, 0x10000, 0x20000, kRamSize - 16);  // used ring straddles the end
  driver_ok();
  EXPECT_EQ(device_->activations, 0);
  EXPECT_EQ(rd(mmio_reg::kStatus), kAllInit | kStatusNeedsReset);

  wr(mmio_reg::kStatus, 0);
  negotiate();
  setup_queue(0, 256, 0xffff'ffff'ffff'ff00ull, 0x20000, 0x30000);  // wraps
  driver_ok();
  EXPECT_EQ(device_->activations, 0);
  EXPECT_EQ(rd(mmio_reg::kStatus), kAllInit | kStatusNeedsReset);
}

TEST_F(MmioTransport, OneBadQueueAmongGoodOnesPreventsActivation) {
  negotiate();
  setup_queue(0, 256, 0x10000, 0x20000, 0x30000);
  setup_queue(1, 64, 0x40000, 0x41000, 2 * kRamSize);
  driver_ok();
  EXPECT_EQ(device_->activations, 0);
  EXPECT_EQ(rd(mmio_reg::kStatus) & kStatusNeedsReset, kStatusNeedsReset);
}

TEST_F(MmioTransport, NoReadyQueueNeedsReset) {
  negotiate();
  setup_queue(0, 256, 0x10000, 0x20000, 0x30000, /*ready=*/false);
  driver_ok();
  EXPECT_EQ(device_->activations, 0);
  EXPECT_EQ(rd(mmio_reg::kStatus), kAllInit | kStatusNeedsReset);
}

TEST_F(MmioTransport, ActivateFailureNeedsReset) {
  device_->fail_activate = true;
  negotiate();
  setup_good_queues();
  driver_ok();
  EXPECT_EQ(device_->activations, 1);
  EXPECT_FALSE(transport_->activated());
  EXPECT_EQ(rd(mmio_reg::kStatus), kAllInit | kStatusNeedsReset);
  EXPECT_EQ(rd(mmio_reg::kInterruptStatus), kInterruptConfigChange);
  EXPECT_EQ(irq_->take(), 1u);
  // The failed activation may have set things up: the reset cleans up.
  wr(mmio_reg::kStatus, 0);
  EXPECT_EQ(device_->resets, 1);
  EXPECT_EQ(rd(mmio_reg::kStatus), 0u);
}

TEST_F(MmioTransport, DriverWritingNeedsResetBackIsIgnored) {
  device_->fail_activate = true;
  negotiate();
  setup_good_queues();
  driver_ok();
  wr(mmio_reg::kStatus, rd(mmio_reg::kStatus));  // echoes NEEDS_RESET
  EXPECT_EQ(rd(mmio_reg::kStatus), kAllInit | kStatusNeedsReset);
  EXPECT_EQ(device_->activations, 1);
}

TEST_F(MmioTransport, ResetCallsDeviceResetAndClearsQueues) {
  activate();
  ASSERT_TRUE(device_->interrupt->signal_used_queue());
  wr(mmio_reg::kQueueNotify, 0);  // a pending notification is dropped by the reset
  wr(mmio_reg::kStatus, 0);
  EXPECT_EQ(device_->resets, 1);
  EXPECT_FALSE(transport_->activated());
  EXPECT_EQ(rd(mmio_reg::kStatus), 0u);
  EXPECT_EQ(rd(mmio_reg::kInterruptStatus), 0u);
  EXPECT_EQ(drain(transport_->queue_notify_fds()[0]), 0u);
  for (std::uint32_t i = 0; i < 2; ++i) {
    wr(mmio_reg::kQueueSel, i);
    EXPECT_EQ(rd(mmio_reg::kQueueReady), 0u);
  }
  wr(mmio_reg::kQueueSel, 1);
  EXPECT_EQ(rd(mmio_reg::kQueueNumMax), 128u);

  // The queues start over: no size written means the maximum, and the
  // device is activated again with the new layout.
  negotiate();
  wr(mmio_reg::kQueueSel, 1);
  wr(mmio_reg::kQueueDescLow, 0x50000);
  wr(mmio_reg::kQueueDriverLow, 0x51000);
  wr(mmio_reg::kQueueDeviceLow, 0x52000);
  wr(mmio_reg::kQueueReady, 1);
  driver_ok();
  ASSERT_EQ(device_->activations, 2);
  EXPECT_FALSE(device_->views[0].ready);
  EXPECT_EQ(device_->views[0].desc, 0u);
  EXPECT_TRUE(device_->views[1].ready);
  EXPECT_EQ(device_->views[1].size, 128);
  EXPECT_EQ(device_->views[1].desc, 0x50000u);
}

TEST_F(MmioTransport, ResetBeforeActivationDoesNotResetDevice) {
  negotiate();
  wr(mmio_reg::kStatus, 0);
  wr(mmio_reg::kStatus, 0);
  EXPECT_EQ(device_->resets, 0);
  EXPECT_EQ(rd(mmio_reg::kStatus), 0u);
}

TEST_F(MmioTransport, ConfigGenerationSurvivesReset) {
  activate();
  const std::uint32_t before = rd(mmio_reg::kConfigGeneration);
  ASSERT_TRUE(device_->interrupt->signal_config_change());
  const std::uint32_t bumped = rd(mmio_reg::kConfigGeneration);
  EXPECT_NE(bumped, before);
  wr(mmio_reg::kStatus, 0);
  EXPECT_EQ(rd(mmio_reg::kConfigGeneration), bumped);
}

TEST_F(MmioTransport, DestructorResetsActivatedDevice) {
  activate();
  transport_.reset();
  EXPECT_EQ(device_->resets, 1);
}

TEST_F(MmioTransport, QueueNotifySignalsThatQueuesEventFd) {
  const std::vector<int> fds = transport_->queue_notify_fds();
  wr(mmio_reg::kQueueNotify, 1);
  wr(mmio_reg::kQueueNotify, 1);
  EXPECT_EQ(drain(fds[0]), 0u);
  EXPECT_EQ(drain(fds[1]), 2u);
  wr(mmio_reg::kQueueNotify, 0);
  EXPECT_EQ(drain(fds[0]), 1u);
  EXPECT_EQ(drain(fds[1]), 0u);
}

TEST_F(MmioTransport, QueueNotifyIgnoresOutOfRangeIndex) {
  const std::vector<int> fds = transport_->queue_notify_fds();
  wr(mmio_reg::kQueueNotify, 2);
  wr(mmio_reg::kQueueNotify, 0xffffffff);
  wr(mmio_reg::kQueueNotify, 0x10000);  // index 0 in the low 16 bits
  EXPECT_EQ(drain(fds[0]), 0u);
  EXPECT_EQ(drain(fds[1]), 0u);
}

TEST_F(MmioTransport, InterruptStatusAndAck) {
  activate();
  Interrupt& irq = *device_->interrupt;
  EXPECT_TRUE(irq.signal_used_queue());
  EXPECT_EQ(irq_->take(), 1u);
  EXPECT_EQ(rd(mmio_reg::kInterruptStatus), kInterruptUsedBuffer);
  EXPECT_TRUE(irq.signal_used_queue());  // still raises: the driver may have read already
  EXPECT_EQ(irq_->take(), 1u);
  EXPECT_TRUE(irq.signal_config_change());
  EXPECT_EQ(irq_->take(), 1u);
  EXPECT_EQ(rd(mmio_reg::kInterruptStatus), kInterruptUsedBuffer | kInterruptConfigChange);
  wr(mmio_reg::kInterruptAck, kInterruptUsedBuffer);
  EXPECT_EQ(rd(mmio_reg::kInterruptStatus), kInterruptConfigChange);
  wr(mmio_reg::kInterruptAck, kInterruptConfigChange);
  EXPECT_EQ(rd(mmio_reg::kInterruptStatus), 0u);
  EXPECT_EQ(irq_->take(), 0u);  // acking raises nothing
}

TEST_F(MmioTransport, InterruptReportsIrqLineFailure) {
  auto failing = std::make_shared<devices::testing::FailingIrqLine>();
  auto t = virtio::MmioTransport::create(device_, mem_, loop_, failing);
  ASSERT_TRUE(t);
  transport_ = *t;
  activate();
  EXPECT_FALSE(device_->interrupt->signal_used_queue());
  EXPECT_EQ(rd(mmio_reg::kInterruptStatus), kInterruptUsedBuffer);
  device_->interrupt->set_needs_reset();  // must not crash on the failure either
  EXPECT_EQ(rd(mmio_reg::kStatus), kAllInit | kStatusNeedsReset);
}

TEST_F(MmioTransport, SetNeedsResetSetsStatusAndSignalsConfigChangeOnce) {
  activate();
  device_->interrupt->set_needs_reset();
  device_->interrupt->set_needs_reset();
  EXPECT_EQ(rd(mmio_reg::kStatus), kAllInit | kStatusNeedsReset);
  EXPECT_EQ(rd(mmio_reg::kInterruptStatus), kInterruptConfigChange);
  EXPECT_EQ(irq_->take(), 1u);
  wr(mmio_reg::kStatus, 0);
  EXPECT_EQ(rd(mmio_reg::kStatus), 0u);
}

TEST_F(MmioTransport, ForwardsConfigSpaceReadsOfEachWidth) {
  std::array<std::uint8_t, 8> b{};
  transport_->read(0x100, std::span(b.data(), 1));
  EXPECT_EQ(b[0], 0x10);
  transport_->read(0x102, std::span(b.data(), 2));
  EXPECT_EQ(b[0], 0x12);
  EXPECT_EQ(b[1], 0x13);
  EXPECT_EQ(rd(0x104), 0x17161514u);
  transport_->read(0x100, std::span(b.data(), 8));
  EXPECT_EQ(b, (std::array<std::uint8_t, 8>{0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17}));
  // Past the device's 12 config bytes: zeros (partly and wholly).
  EXPECT_EQ(rd(0x10a), 0x00001b1au);
  EXPECT_EQ(rd(0x200), 0u);
  EXPECT_EQ(rd(0xffc), 0u);
}

TEST_F(MmioTransport, IgnoresConfigAccessesOfOddSizeOrPastTheWindow) {
  const int reads = device_->config_reads;
  std::array<std::uint8_t, 16> b;
  b.fill(0xee);
  transport_->read(0x100, std::span(b.data(), 3));
  EXPECT_EQ(b[0], 0);  // zero-filled, not forwarded
  transport_->read(0x100, std::span(b.data(), 16));
  transport_->read(0xffc, std::span(b.data(), 8));  // would cross 0x1000
  transport_->read(0xffff'ffff'ffff'fffcull, std::span(b.data(), 8));
  EXPECT_EQ(device_->config_reads, reads);
  negotiate();
  transport_->write(0xffc, std::span<const std::uint8_t>(b.data(), 8));
  transport_->write(0x100, std::span<const std::uint8_t>(b.data(), 5));
  EXPECT_EQ(device_->config_writes, 0);
}

TEST_F(MmioTransport, ConfigWritesNeedDriverStatus) {
  const std::array<std::uint8_t, 2> v{0xaa, 0xbb};
  transport_->write(0x100, v);
  EXPECT_EQ(device_->config_writes, 0);
  EXPECT_EQ(device_->config[0], 0x10);
  wr(mmio_reg::kStatus, kStatusAcknowledge);
  wr(mmio_reg::kStatus, kStatusAcknowledge | kStatusDriver);
  transport_->write(0x100, v);
  EXPECT_EQ(device_->config_writes, 1);
  EXPECT_EQ(device_->config[0], 0xaa);
  EXPECT_EQ(device_->config[1], 0xbb);
  // Past the device's config: forwarded, and the device ignores it.
  transport_->write(0x180, v);
  EXPECT_EQ(device_->config_writes, 2);
  wr(mmio_reg::kStatus, kStatusAcknowledge | kStatusDriver | kStatusFailed);
  transport_->write(0x100, std::array<std::uint8_t, 1>{0x01});
  EXPECT_EQ(device_->config_writes, 2);
}

TEST_F(MmioTransport, IgnoresUnalignedAndWrongSizeRegisterAccesses) {
  std::array<std::uint8_t, 8> b;
  for (std::size_t size : {1u, 2u, 8u}) {
    b.fill(0xee);
    transport_->read(mmio_reg::kMagicValue, std::span(b.data(), size));
    for (std::size_t i = 0; i < size; ++i) EXPECT_EQ(b[i], 0) << size;
  }
  EXPECT_EQ(rd(0x002), 0u);                // unaligned
  EXPECT_EQ(rd(0x0f0), 0u);                // unknown
  EXPECT_EQ(rd(mmio_reg::kQueueNum), 0u);  // write-only
  transport_->read(0x0ff, std::span(b.data(), 0));

  // A 1-byte or unaligned status write does not start initialisation.
  const std::array<std::uint8_t, 1> one{kStatusAcknowledge};
  transport_->write(mmio_reg::kStatus, one);
  wr(mmio_reg::kStatus + 1, kStatusAcknowledge);
  const std::array<std::uint8_t, 8> eight{kStatusAcknowledge};
  transport_->write(mmio_reg::kStatus, eight);
  EXPECT_EQ(rd(mmio_reg::kStatus), 0u);
  // Neither does a notify of the wrong size.
  const std::array<std::uint8_t, 2> two{0, 0};
  transport_->write(mmio_reg::kQueueNotify, two);
  EXPECT_EQ(drain(transport_->queue_notify_fds()[0]), 0u);
  // Writes to read-only registers change nothing.
  wr(mmio_reg::kMagicValue, 0);
  wr(mmio_reg::kInterruptStatus, 3);
  wr(mmio_reg::kConfigGeneration, 7);
  wr(0x0f0, 1);
  EXPECT_EQ(rd(mmio_reg::kMagicValue), kMmioMagicValue);
  EXPECT_EQ(rd(mmio_reg::kConfigGeneration), 0u);
}

TEST_F(MmioTransport, ReportsNoSharedMemoryRegions) {
  wr(mmio_reg::kShmSel, 0);
  EXPECT_EQ(rd(mmio_reg::kShmLenLow), 0xffffffffu);
  EXPECT_EQ(rd(mmio_reg::kShmLenHigh), 0xffffffffu);
}

TEST_F(MmioTransport, QueueNumMaxIsZeroForMissingQueue) {
  wr(mmio_reg::kQueueSel, 2);
  EXPECT_EQ(rd(mmio_reg::kQueueNumMax), 0u);
  EXPECT_EQ(rd(mmio_reg::kQueueReady), 0u);
  negotiate();
  setup_queue(2, 16, 0x1000, 0x2000, 0x3000);  // ignored, no crash
  wr(mmio_reg::kQueueSel, 0xffffffff);
  wr(mmio_reg::kQueueReady, 1);
  EXPECT_EQ(rd(mmio_reg::kQueueReady), 0u);
  driver_ok();
  EXPECT_EQ(device_->activations, 0);  // nothing ready
}

TEST_F(MmioTransport, QueueRegistersIgnoredBeforeFeaturesOk) {
  wr(mmio_reg::kStatus, kStatusAcknowledge);
  wr(mmio_reg::kStatus, kStatusAcknowledge | kStatusDriver);
  setup_queue(0, 16, 0x1000, 0x2000, 0x3000);
  wr(mmio_reg::kQueueSel, 0);
  EXPECT_EQ(rd(mmio_reg::kQueueReady), 0u);
}

TEST_F(MmioTransport, QueueLayoutFrozenWhileQueueReady) {
  negotiate();
  setup_queue(0, 256, 0x10000, 0x20000, 0x30000);
  // Ready: layout writes are ignored...
  wr(mmio_reg::kQueueDescLow, 0x90000);
  wr(mmio_reg::kQueueNum, 8);
  // ...until the driver clears QueueReady, then they take effect.
  setup_queue(1, 64, 0x40000, 0x41000, 0x42000);
  driver_ok();
  ASSERT_EQ(device_->activations, 1);
  EXPECT_EQ(device_->views[0].desc, 0x10000u);
  EXPECT_EQ(device_->views[0].size, 256);

  wr(mmio_reg::kStatus, 0);
  negotiate();
  setup_queue(0, 256, 0x10000, 0x20000, 0x30000);
  wr(mmio_reg::kQueueReady, 0);
  wr(mmio_reg::kQueueNum, 8);
  wr(mmio_reg::kQueueDescLow, 0x50000);
  wr(mmio_reg::kQueueReady, 1);
  driver_ok();
  ASSERT_EQ(device_->activations, 2);
  EXPECT_EQ(device_->views[0].desc, 0x50000u);
  EXPECT_EQ(device_->views[0].size, 8);
}

TEST_F(MmioTransport, QueueRegistersIgnoredAfterDriverOk) {
  activate();
  Queue* q0 = device_->views[0].queue;
  wr(mmio_reg::kQueueSel, 0);
  wr(mmio_reg::kQueueReady, 0);
  wr(mmio_reg::kQueueNum, 16);
  wr(mmio_reg::kQueueDescLow, 0x1000);
  wr(mmio_reg::kQueueDriverHigh, 1);
  wr(mmio_reg::kQueueDeviceLow, 0x3000);
  EXPECT_TRUE(q0->ready());
  EXPECT_EQ(q0->size(), 256);
  EXPECT_EQ(q0->desc_table().value(), 0x10000u);
  EXPECT_EQ(q0->avail_ring().value(), 0x20000u);
  EXPECT_EQ(q0->used_ring().value(), 0x30000u);
  // Nor can feature or status games re-activate the device.
  write_features(kFeatureVersion1);
  driver_ok();
  EXPECT_EQ(device_->activations, 1);
  EXPECT_EQ(device_->acked.size(), 1u);
}

TEST_F(MmioTransport, FailedBitSticksUntilReset) {
  negotiate();
  wr(mmio_reg::kStatus, rd(mmio_reg::kStatus) | kStatusFailed);
  EXPECT_EQ(rd(mmio_reg::kStatus),
            kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusFailed);
  setup_good_queues();  // ignored while FAILED
  wr(mmio_reg::kQueueSel, 0);
  EXPECT_EQ(rd(mmio_reg::kQueueReady), 0u);
  wr(mmio_reg::kStatus, kAllInit);
  EXPECT_EQ(device_->activations, 0);
  wr(mmio_reg::kStatus, 0);
  EXPECT_EQ(rd(mmio_reg::kStatus), 0u);
  activate();
  EXPECT_EQ(device_->activations, 1);
}

TEST_F(MmioTransport, ConcurrentSignalsAndRegisterAccessesStayConsistent) {
  activate();
  std::shared_ptr<Interrupt> irq = device_->interrupt;
  constexpr int kSignals = 20000;
  std::atomic<bool> go{false};
  std::atomic<bool> done{false};
  std::thread device_thread([&] {
    while (!go) std::this_thread::yield();
    for (int i = 0; i < kSignals; ++i) (void)irq->signal_used_queue();
    done = true;
  });
  std::thread vcpu([&] {
    go = true;
    while (!done) {
      const std::uint32_t s = rd(mmio_reg::kInterruptStatus);
      EXPECT_EQ(s & ~(kInterruptUsedBuffer | kInterruptConfigChange), 0u);
      wr(mmio_reg::kInterruptAck, s);
      EXPECT_EQ(rd(mmio_reg::kStatus), kAllInit);
      wr(mmio_reg::kQueueNotify, 0);
    }
  });
  device_thread.join();
  vcpu.join();
  EXPECT_EQ(irq_->take(), static_cast<std::uint64_t>(kSignals));
}

}  // namespace
}  // namespace hvz::virtio_test
