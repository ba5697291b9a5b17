// DeviceManager: virtio-mmio devices placed (window and GSI in add order),
// wired (an interrupt line, one ioeventfd per queue), on the bus, updated
// by id and shut down — with a fake DeviceWiring instead of KVM, a real
// EpollLoop and guest memory, and real devices (entropy, block over a
// temporary file, console).
#include "vmm/device_manager.hpp"

#include <fcntl.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "devices/tests/test_irq_line.hpp"
#include "virtio/block/block_device.hpp"
#include "virtio/console/console_device.hpp"
#include "virtio/mmio_transport.hpp"
#include "virtio/rng/rng_device.hpp"
#include "virtio/tests/block_support.hpp"
#include "vmm/core/log.hpp"
#include "vmm/core/metrics.hpp"
#include "vmm/epoll_loop.hpp"
#include "vmm/tests/fake_wiring.hpp"
#include "vmm/x86_64/layout.hpp"

namespace hvz::vmm {
namespace {

using devices::testing::CountingIrqLine;
using testing::FakeWiring;
using testing::Ioeventfd;
using virtio::block::kDiskBytes;
using virtio::block::kDiskSectors;
using virtio::block::TempFile;
namespace reg = virtio::mmio_reg;

constexpr std::uint64_t kBase = x86_64::kVirtioMmioStart;
constexpr std::uint64_t kWindow = x86_64::kVirtioMmioSize;
constexpr std::uint32_t kFirstGsi = x86_64::kVirtioGsiBase;

// Status register bits (virtio 1.2 §2.1).
constexpr std::uint32_t kAcknowledge = 1;
constexpr std::uint32_t kDriver = 2;
constexpr std::uint32_t kDriverOk = 4;
constexpr std::uint32_t kFeaturesOk = 8;

std::unique_ptr<EpollLoop> make_loop() {
  auto loop = EpollLoop::create();
  EXPECT_TRUE(loop) << loop.error().message();
  return std::move(*loop);
}

class DeviceManagerTest : public ::testing::Test {
 protected:
  std::shared_ptr<virtio::rng::RngDevice> rng() {
    return std::make_shared<virtio::rng::RngDevice>(metrics::registry().group("entropy"));
  }
  config::Drive drive(const std::string& id, const TempFile& file) {
    config::Drive d;
    d.drive_id = id;
    d.path_on_host = file.path();
    return d;
  }

  // 32-bit register accesses through the bus, as a vCPU makes them.
  std::optional<std::uint32_t> read32(std::uint64_t addr) {
    std::uint8_t b[4];
    if (!manager_.bus()->read(addr, b)) return std::nullopt;
    return std::uint32_t{b[0]} | std::uint32_t{b[1]} << 8 | std::uint32_t{b[2]} << 16 |
           std::uint32_t{b[3]} << 24;
  }
  void write32(std::uint64_t addr, std::uint32_t value) {
    const std::uint8_t b[4] = {
        static_cast<std::uint8_t>(value), static_cast<std::uint8_t>(value >> 8),
        static_cast<std::uint8_t>(value >> 16), static_cast<std::uint8_t>(value >> 24)};
    EXPECT_TRUE(manager_.bus()->write(addr, b)) << std::hex << addr;
  }
  // The virtio-blk capacity (sectors) in the config space at `base`.
  std::uint64_t capacity_at(std::uint64_t base) {
    std::uint8_t b[8];
    EXPECT_TRUE(manager_.bus()->read(base + reg::kConfig + virtio::block::kConfigCapacity, b));
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = v << 8 | b[i];
    return v;
  }
  // What a driver does to bring up the one-queue device at `base` (queue
  // rings in guest RAM, VERSION_1 only).
  void activate(std::uint64_t base) {
    write32(base + reg::kStatus, kAcknowledge);
    write32(base + reg::kStatus, kAcknowledge | kDriver);
    write32(base + reg::kDriverFeaturesSel, 1);
    write32(base + reg::kDriverFeatures, 1);  // VIRTIO_F_VERSION_1 (bit 32)
    write32(base + reg::kDriverFeaturesSel, 0);
    write32(base + reg::kDriverFeatures, 0);
    write32(base + reg::kStatus, kAcknowledge | kDriver | kFeaturesOk);
    write32(base + reg::kQueueSel, 0);
    write32(base + reg::kQueueNum, 16);
    write32(base + reg::kQueueDescLow, 0x1000);
    write32(base + reg::kQueueDriverLow, 0x2000);
    write32(base + reg::kQueueDeviceLow, 0x3000);
    write32(base + reg::kQueueReady, 1);
    write32(base + reg::kStatus, kAcknowledge | kDriver | kFeaturesOk | kDriverOk);
  }

  // The manager uses these, so they are declared (and outlive it) first.
  std::unique_ptr<EpollLoop> loop_ = make_loop();
  GuestMemory mem_ = virtio::block::make_memory();
  FakeWiring wiring_;
  DeviceManager manager_{mem_, *loop_, wiring_,
                         MmioSlots(kBase, kWindow, kFirstGsi, x86_64::kIoapicPins)};
};

TEST_F(DeviceManagerTest, SlotsAndGsisFollowTheAddOrder) {
  TempFile disk(kDiskBytes);
  ASSERT_TRUE(manager_.add_device(rng()));
  ASSERT_TRUE(manager_.add_drive(drive("rootfs", disk)));
  ASSERT_TRUE(manager_.add_device(rng()));

  const auto& info = manager_.mmio_info();
  ASSERT_EQ(info.size(), 3u);
  for (std::uint32_t i = 0; i < 3; ++i) {
    EXPECT_EQ(info[i].base, kBase + i * kWindow) << i;
    EXPECT_EQ(info[i].size, kWindow) << i;
    EXPECT_EQ(info[i].gsi, kFirstGsi + i) << i;
  }
  EXPECT_EQ(wiring_.gsis(), (std::vector<std::uint32_t>{kFirstGsi, kFirstGsi + 1, kFirstGsi + 2}));
  ASSERT_EQ(manager_.transports().size(), 3u);
  EXPECT_EQ(manager_.transports()[1]->device()->device_type(), virtio::kDeviceTypeBlock);
}

TEST_F(DeviceManagerTest, OneIoeventfdPerQueueAtQueueNotifyWithItsIndex) {
  ASSERT_TRUE(manager_.add_device(rng()));  // one queue
  // Two queues; never activated, so its fds are never used.
  ASSERT_TRUE(manager_.add_device(std::make_shared<virtio::console::ConsoleDevice>(
      -1, -1, metrics::registry().group("console"))));

  ASSERT_EQ(wiring_.ioeventfds.size(), 3u);
  const auto rng_fds = manager_.transports()[0]->queue_notify_fds();
  const auto console_fds = manager_.transports()[1]->queue_notify_fds();
  ASSERT_EQ(rng_fds.size(), 1u);
  ASSERT_EQ(console_fds.size(), 2u);
  const Ioeventfd expected[] = {
      {rng_fds[0], kBase + virtio::kQueueNotifyOffset, 4, 0},
      {console_fds[0], kBase + kWindow + virtio::kQueueNotifyOffset, 4, 0},
      {console_fds[1], kBase + kWindow + virtio::kQueueNotifyOffset, 4, 1},
  };
  for (std::size_t i = 0; i < 3; ++i) {
    const Ioeventfd& got = wiring_.ioeventfds[i];
    EXPECT_EQ(got.fd, expected[i].fd) << i;
    EXPECT_EQ(got.addr, expected[i].addr) << i;
    EXPECT_EQ(got.len, expected[i].len) << i;
    EXPECT_EQ(got.datamatch, expected[i].datamatch) << i;
  }
}

TEST_F(DeviceManagerTest, EachWindowAnswersWithItsDevice) {
  TempFile disk(kDiskBytes);
  ASSERT_TRUE(manager_.add_device(rng()));
  ASSERT_TRUE(manager_.add_drive(drive("rootfs", disk)));

  EXPECT_EQ(read32(kBase + reg::kMagicValue), virtio::kMmioMagicValue);
  EXPECT_EQ(read32(kBase + reg::kMagicValue), 0x74726976u);
  EXPECT_EQ(read32(kBase + reg::kDeviceId), virtio::kDeviceTypeRng);
  EXPECT_EQ(read32(kBase + kWindow + reg::kMagicValue), virtio::kMmioMagicValue);
  EXPECT_EQ(read32(kBase + kWindow + reg::kDeviceId), virtio::kDeviceTypeBlock);
  EXPECT_EQ(capacity_at(kBase + kWindow), kDiskSectors);
  // Nothing beyond the devices added.
  EXPECT_EQ(read32(kBase + 2 * kWindow + reg::kMagicValue), std::nullopt);
  EXPECT_EQ(read32(kBase - kWindow + reg::kMagicValue), std::nullopt);
}

TEST_F(DeviceManagerTest, RunningOutOfPinsRegistersNothingMore) {
  const std::uint32_t room = x86_64::kIoapicPins - kFirstGsi;
  for (std::uint32_t i = 0; i < room; ++i) ASSERT_TRUE(manager_.add_device(rng())) << i;

  auto extra = manager_.add_device(rng());
  ASSERT_FALSE(extra);
  EXPECT_EQ(extra.error().message(), "too many virtio devices for the IOAPIC's pins");
  EXPECT_EQ(manager_.mmio_info().size(), room);
  EXPECT_EQ(manager_.transports().size(), room);
  EXPECT_EQ(wiring_.lines.size(), room);
  EXPECT_EQ(wiring_.ioeventfds.size(), room);
  EXPECT_EQ(read32(kBase + (room - 1) * kWindow + reg::kMagicValue), virtio::kMmioMagicValue);
  EXPECT_EQ(read32(kBase + room * kWindow + reg::kMagicValue), std::nullopt);
}

TEST_F(DeviceManagerTest, AFailingIrqLineLeavesNothingBehind) {
  wiring_.fail_irq_line = true;
  auto r = manager_.add_device(rng());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(), "fake irqfd: Device or resource busy");
  EXPECT_EQ(r.error().sys_errno(), EBUSY);
  EXPECT_TRUE(manager_.mmio_info().empty());
  EXPECT_TRUE(manager_.transports().empty());
  EXPECT_TRUE(wiring_.ioeventfds.empty());
  EXPECT_EQ(read32(kBase + reg::kMagicValue), std::nullopt);
  EXPECT_EQ(manager_.kernel_cmdline_args(), "");
}

TEST_F(DeviceManagerTest, AFailingIoeventfdLeavesNothingOnTheBusOrInTheLists) {
  // The console's second queue fails: its first is registered already.
  wiring_.ioeventfd_budget = 1;
  auto r = manager_.add_device(std::make_shared<virtio::console::ConsoleDevice>(
      -1, -1, metrics::registry().group("console")));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(), "fake ioeventfd: File exists");
  EXPECT_EQ(r.error().sys_errno(), EEXIST);
  EXPECT_TRUE(manager_.mmio_info().empty());
  EXPECT_TRUE(manager_.transports().empty());
  EXPECT_EQ(read32(kBase + reg::kMagicValue), std::nullopt);

  // That slot stays used (KVM may keep the first ioeventfd): the next
  // device takes the next window and GSI.
  wiring_.ioeventfd_budget.reset();
  ASSERT_TRUE(manager_.add_device(rng()));
  ASSERT_EQ(manager_.mmio_info().size(), 1u);
  EXPECT_EQ(manager_.mmio_info()[0].base, kBase + kWindow);
  EXPECT_EQ(manager_.mmio_info()[0].gsi, kFirstGsi + 1);
  EXPECT_EQ(read32(kBase + reg::kMagicValue), std::nullopt);
  EXPECT_EQ(read32(kBase + kWindow + reg::kDeviceId), virtio::kDeviceTypeRng);
}

TEST_F(DeviceManagerTest, ADriveThatFailedToWireIsNotKnownById) {
  TempFile disk(kDiskBytes);
  wiring_.ioeventfd_budget = 0;
  ASSERT_FALSE(manager_.add_drive(drive("rootfs", disk)));
  auto update = manager_.update_drive({"rootfs", disk.path(), std::nullopt}, false);
  ASSERT_FALSE(update);
  EXPECT_EQ(update.error().message(), "no drive with drive_id 'rootfs'");

  // Nor taken: adding it again is no duplicate.
  wiring_.ioeventfd_budget.reset();
  EXPECT_TRUE(manager_.add_drive(drive("rootfs", disk)));
}

TEST_F(DeviceManagerTest, ANullDeviceIsRefusedAndRegistersNothing) {
  ASSERT_FALSE(manager_.add_device(nullptr));
  EXPECT_TRUE(manager_.transports().empty());
  EXPECT_TRUE(manager_.mmio_info().empty());
  EXPECT_TRUE(wiring_.ioeventfds.empty());
  EXPECT_EQ(read32(kBase + reg::kMagicValue), std::nullopt);
}

TEST_F(DeviceManagerTest, ADuplicateDriveIdIsRefused) {
  TempFile first(kDiskBytes);
  TempFile second(kDiskBytes);
  ASSERT_TRUE(manager_.add_drive(drive("rootfs", first)));
  auto r = manager_.add_drive(drive("rootfs", second));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::kInvalidArgument);
  EXPECT_EQ(r.error().message(), "duplicate drive_id 'rootfs'");
  EXPECT_EQ(manager_.mmio_info().size(), 1u);
  EXPECT_EQ(wiring_.lines.size(), 1u);
  EXPECT_EQ(read32(kBase + kWindow + reg::kMagicValue), std::nullopt);
  // Another id is fine.
  EXPECT_TRUE(manager_.add_drive(drive("data", second)));
}

TEST_F(DeviceManagerTest, ADriveThatCannotBeOpenedIsNamedInTheError) {
  config::Drive d;
  d.drive_id = "rootfs";
  d.path_on_host = "/nonexistent/hvz-disk.img";
  auto r = manager_.add_drive(d);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message().rfind("drive 'rootfs' (/nonexistent/hvz-disk.img): ", 0), 0u)
      << r.error().message();
  // The system error is named once, at the end.
  const std::string tail = ": No such file or directory";
  EXPECT_EQ(r.error().message().find(tail), r.error().message().size() - tail.size())
      << r.error().message();
  EXPECT_TRUE(wiring_.lines.empty());
  EXPECT_TRUE(manager_.mmio_info().empty());
}

// An entropy device, then drive "rootfs" over a 64-sector file in the
// second window; a file twice as large to swap in.
class DriveUpdateTest : public DeviceManagerTest {
 protected:
  static constexpr std::uint64_t kDriveBase = kBase + kWindow;
  void SetUp() override {
    ASSERT_TRUE(manager_.add_device(rng()));
    ASSERT_TRUE(manager_.add_drive(drive("rootfs", small_)));
    ASSERT_EQ(capacity_at(kDriveBase), kDiskSectors);
  }
  TempFile small_{kDiskBytes};
  TempFile large_{2 * kDiskBytes};
};

TEST_F(DriveUpdateTest, AnUnknownIdFails) {
  auto r = manager_.update_drive({"data", large_.path(), std::nullopt}, false);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::kInvalidArgument);
  EXPECT_EQ(r.error().message(), "no drive with drive_id 'data'");
  EXPECT_EQ(capacity_at(kDriveBase), kDiskSectors);
}

TEST_F(DriveUpdateTest, ANewFileChangesTheCapacity) {
  ASSERT_TRUE(manager_.update_drive({"rootfs", large_.path(), std::nullopt}, false));
  EXPECT_EQ(capacity_at(kDriveBase), 2 * kDiskSectors);

  // A file that cannot be opened changes nothing.
  auto r = manager_.update_drive({"rootfs", "/nonexistent/hvz-disk.img", std::nullopt}, false);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message().rfind("drive 'rootfs' (/nonexistent/hvz-disk.img): ", 0), 0u)
      << r.error().message();
  EXPECT_EQ(capacity_at(kDriveBase), 2 * kDiskSectors);
  // Rate limits alone leave the file.
  config::RateLimiterConfig limits;
  limits.ops = config::TokenBucketConfig{100, 0, 1000};
  EXPECT_TRUE(manager_.update_drive({"rootfs", std::nullopt, limits}, false));
  EXPECT_EQ(capacity_at(kDriveBase), 2 * kDiskSectors);
}

TEST_F(DriveUpdateTest, SwappingAnActiveDriveRaisesItsGsi) {
  activate(kDriveBase);
  ASSERT_TRUE(manager_.transports()[1]->activated());

  ASSERT_TRUE(manager_.update_drive({"rootfs", large_.path(), std::nullopt}, false));
  EXPECT_EQ(capacity_at(kDriveBase), 2 * kDiskSectors);
  // The configuration change reaches the guest on the drive's line only.
  ASSERT_EQ(wiring_.lines.size(), 2u);
  EXPECT_EQ(wiring_.lines[1].first, kFirstGsi + 1);
  EXPECT_EQ(wiring_.lines[1].second->count(), 1u);
  EXPECT_EQ(wiring_.lines[0].second->count(), 0u);
  EXPECT_EQ(read32(kDriveBase + reg::kInterruptStatus), virtio::kInterruptConfigChange);
}

TEST_F(DeviceManagerTest, UpdateNetworkInterfaceWithAnUnknownIdFails) {
  config::RateLimiterConfig limits;
  limits.bandwidth = config::TokenBucketConfig{4096, 0, 100};
  auto r = manager_.update_network_interface({"eth0", limits, std::nullopt});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::kInvalidArgument);
  EXPECT_EQ(r.error().message(), "no network interface with iface_id 'eth0'");
}

TEST_F(DeviceManagerTest, KernelCmdlineNamesEveryWindowAndGsi) {
  EXPECT_EQ(manager_.kernel_cmdline_args(), "");
  TempFile disk(kDiskBytes);
  ASSERT_TRUE(manager_.add_drive(drive("rootfs", disk)));
  ASSERT_TRUE(manager_.add_device(rng()));
  EXPECT_EQ(manager_.kernel_cmdline_args(),
            " virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6");
}

TEST_F(DeviceManagerTest, QuiesceUnquiesceAndShutdownRepeatAndShutdownKillsTheRegisters) {
  TempFile disk(kDiskBytes);
  ASSERT_TRUE(manager_.add_drive(drive("rootfs", disk)));
  ASSERT_TRUE(manager_.add_device(rng()));
  const std::uint64_t rng_base = kBase + kWindow;
  activate(kBase);
  ASSERT_TRUE(manager_.transports()[0]->activated());

  manager_.quiesce();
  manager_.quiesce();
  manager_.unquiesce();
  manager_.unquiesce();
  // Registers still live: the driver's status steps are taken.
  write32(rng_base + reg::kStatus, kAcknowledge);
  EXPECT_EQ(read32(rng_base + reg::kStatus), kAcknowledge);

  manager_.shutdown();
  manager_.shutdown();
  // The active drive was reset; writes change nothing any more.
  EXPECT_FALSE(manager_.transports()[0]->activated());
  write32(rng_base + reg::kStatus, kAcknowledge | kDriver);
  EXPECT_EQ(read32(rng_base + reg::kStatus), kAcknowledge);
  write32(kBase + reg::kStatus, 0);  // a reset would re-arm the drive
  EXPECT_NE(read32(kBase + reg::kStatus), 0u);
  manager_.quiesce();
  manager_.unquiesce();
  EXPECT_FALSE(manager_.transports()[0]->activated());
}

TEST_F(DeviceManagerTest, DumpStateLogsOneLinePerDevice) {
  TempFile disk(kDiskBytes);
  ASSERT_TRUE(manager_.add_device(rng()));
  ASSERT_TRUE(manager_.add_drive(drive("rootfs", disk)));
  activate(kBase + kWindow);

  TempFile log_file(0);
  UniqueFd log_fd(::open(log_file.path().c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
  ASSERT_TRUE(log_fd.valid());
  log::set_output(log_fd.get());
  manager_.dump_state();
  log::reset_output();
  const auto bytes = log_file.read_all();
  const std::string text(bytes.begin(), bytes.end());
  EXPECT_NE(text.find("state: virtio-mmio@0xd0000000 type 4 status 0\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("state: virtio-mmio@0xd0001000 type 2 status 0xf active\n"),
            std::string::npos)
      << text;
}

TEST(RateLimits, ConfigBucketsBecomeDeviceBuckets) {
  EXPECT_FALSE(rate_limits(std::nullopt).bandwidth);
  EXPECT_FALSE(rate_limits(std::nullopt).ops);
  config::RateLimiterConfig c;
  c.bandwidth = config::TokenBucketConfig{4096, 512, 100};
  const virtio::RateLimits l = rate_limits(c);
  ASSERT_TRUE(l.bandwidth);
  EXPECT_EQ(l.bandwidth->size, 4096u);
  EXPECT_EQ(l.bandwidth->one_time_burst, 512u);
  EXPECT_EQ(l.bandwidth->refill_time_ms, 100u);
  EXPECT_FALSE(l.ops);
}

}  // namespace
}  // namespace hvz::vmm
