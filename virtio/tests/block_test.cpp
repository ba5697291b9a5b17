// virtio-blk: DiskImage I/O, request parsing and status codes, and the
// device processing a hand-built virtqueue through a small epoll EventLoop
// with each I/O engine (Sync and Async): requests, metrics, backing image
// swap, rate limiting, and the Async engine without io_uring.
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "virtio/block/block_device.hpp"
#include "virtio/block/disk_image.hpp"
#include "virtio/block/request.hpp"
#include "virtio/queue.hpp"
#include "virtio/rate_limiter.hpp"
#include "virtio/tests/block_support.hpp"
#include "virtio/tests/support.hpp"
#include "vmm/core/event_fd.hpp"
#include "vmm/core/guest_memory.hpp"
#include "vmm/core/log.hpp"
#include "vmm/core/metrics.hpp"
#include "vmm/core/unique_fd.hpp"

namespace hvz::virtio::block {
namespace {

RequestLimits limits_for(const DiskImage& disk) {
  RequestLimits l;
  l.capacity_sectors = disk.sectors();
  l.read_only = disk.read_only();
  l.discard = !disk.read_only() && disk.discard_supported();
  l.write_zeroes = !disk.read_only() && disk.write_zeroes_supported();
  l.max_discard_sectors = kMaxDiscardSectors;
  l.max_discard_seg = 4;
  l.max_write_zeroes_sectors = kMaxWriteZeroesSectors;
  l.max_write_zeroes_seg = 4;
  return l;
}

// One disk and guest memory, with helpers to run a single request.
class BlockRequestTest : public ::testing::Test {
 protected:
  void SetUp() override { open_disk(false); }
  void open_disk(bool read_only) {
    auto d = DiskImage::open(file_.path(), read_only);
    ASSERT_TRUE(d) << d.error().message();
    disk_.emplace(std::move(*d));
    limits_ = limits_for(*disk_);
  }
  Completion run() {
    return process_request(mem_, chain_.chain(), *disk_, limits_,
                           format_drive_id("hvz-test-drive"));
  }
  // Writes `data` at `sector` through an OUT request; returns the status.
  std::uint8_t write(std::uint64_t sector, const std::vector<std::uint8_t>& data) {
    chain_.reset();
    chain_.header(kTypeOut, sector);
    chain_.readable(data);
    const GuestAddress st = chain_.status();
    const Completion c = run();
    EXPECT_TRUE(c.completed);
    EXPECT_EQ(c.used_len, 1u);
    EXPECT_EQ(status_at(mem_, st), c.status);
    return c.status;
  }
  // Reads `len` bytes at `sector` through an IN request split over two
  // descriptors; returns the status and fills `out`.
  std::uint8_t read(std::uint64_t sector, std::uint32_t len, std::vector<std::uint8_t>& out) {
    chain_.reset();
    chain_.header(kTypeIn, sector);
    const std::uint32_t first = len / 2;
    const GuestAddress a = chain_.writable(first);
    const GuestAddress b = chain_.writable(len - first);
    const GuestAddress st = chain_.status();
    const Completion c = run();
    EXPECT_TRUE(c.completed);
    EXPECT_EQ(status_at(mem_, st), c.status);
    if (c.status == kStatusOk) {
      EXPECT_EQ(c.used_len, len + 1);
      out = read_guest(mem_, a, first);
      auto rest = read_guest(mem_, b, len - first);
      out.insert(out.end(), rest.begin(), rest.end());
    }
    return c.status;
  }

  TempFile file_{kDiskBytes};
  GuestMemory mem_ = make_memory();
  ChainBuilder chain_{mem_};
  std::optional<DiskImage> disk_;
  RequestLimits limits_;
};

TEST(DiskImage, RejectsSizeNotMultipleOf512MissingFileAndDirectory) {
  EXPECT_FALSE(DiskImage::open("/nonexistent/hvz-disk.img", true));
  EXPECT_FALSE(DiskImage::open("/", true));
  TempFile f(1000);
  auto d = DiskImage::open(f.path(), false);
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().code(), Errc::kInvalidArgument);
  EXPECT_NE(d.error().message().find("512"), std::string::npos);
}

TEST(DiskImage, ReportsSizeAndRefusesIoPastTheEnd) {
  TempFile f(kDiskBytes);
  auto d = DiskImage::open(f.path(), false);
  ASSERT_TRUE(d) << d.error().message();
  EXPECT_EQ(d->size(), kDiskBytes);
  EXPECT_EQ(d->sectors(), kDiskSectors);
  std::vector<std::byte> buf(1024);
  const std::array<std::span<std::byte>, 1> bufs{std::span(buf)};
  EXPECT_TRUE(d->read_at(kDiskBytes - 1024, bufs));
  EXPECT_FALSE(d->read_at(kDiskBytes - 512, bufs));
  EXPECT_FALSE(d->write_at(~std::uint64_t{0} - 100, bufs));
  EXPECT_FALSE(d->write_zeroes(kDiskBytes, 512, false));
}

TEST(DiskImage, ReadOnlyImageRefusesWrites) {
  TempFile f(kDiskBytes);
  auto d = DiskImage::open(f.path(), true);
  ASSERT_TRUE(d);
  EXPECT_TRUE(d->read_only());
  EXPECT_FALSE(d->write_zeroes_supported());
  EXPECT_FALSE(d->discard_supported());
  std::vector<std::byte> buf(512, std::byte{1});
  const std::array<std::span<std::byte>, 1> bufs{std::span(buf)};
  EXPECT_FALSE(d->write_at(0, bufs));
}

TEST_F(BlockRequestTest, WriteThenReadRoundTripsAtSeveralSectors) {
  const std::uint64_t sectors[] = {0, 1, 7, 33, kDiskSectors - 2};
  std::uint8_t seed = 1;
  for (std::uint64_t s : sectors) {
    const auto data = pattern(1024, seed++);
    ASSERT_EQ(write(s, data), kStatusOk) << "sector " << s;
    std::vector<std::uint8_t> back;
    ASSERT_EQ(read(s, 1024, back), kStatusOk) << "sector " << s;
    EXPECT_EQ(back, data) << "sector " << s;
    const auto file = file_.read_all();
    EXPECT_TRUE(std::equal(data.begin(), data.end(), file.begin() + s * kSectorSize));
  }
}

TEST_F(BlockRequestTest, WriteDataSpreadOverSeveralDescriptors) {
  const auto data = pattern(2048, 9);
  chain_.header(kTypeOut, 4);
  chain_.readable(std::vector<std::uint8_t>(data.begin(), data.begin() + 100));
  chain_.readable(std::vector<std::uint8_t>(data.begin() + 100, data.begin() + 1500));
  chain_.readable(std::vector<std::uint8_t>(data.begin() + 1500, data.end()));
  chain_.status();
  EXPECT_EQ(run().status, kStatusOk);
  const auto file = file_.read_all();
  EXPECT_TRUE(std::equal(data.begin(), data.end(), file.begin() + 4 * kSectorSize));
}

TEST_F(BlockRequestTest, FlushSucceeds) {
  chain_.header(kTypeFlush, 0);
  const GuestAddress st = chain_.status();
  const Completion c = run();
  EXPECT_TRUE(c.completed);
  EXPECT_EQ(c.status, kStatusOk);
  EXPECT_EQ(c.used_len, 1u);
  EXPECT_EQ(status_at(mem_, st), kStatusOk);
}

TEST_F(BlockRequestTest, GetIdReturnsNulPaddedDriveId) {
  chain_.header(kTypeGetId, 0);
  const GuestAddress id = chain_.writable(20);
  const GuestAddress st = chain_.status();
  const Completion c = run();
  EXPECT_EQ(c.status, kStatusOk);
  EXPECT_EQ(c.used_len, 21u);
  EXPECT_EQ(status_at(mem_, st), kStatusOk);
  const auto got = read_guest(mem_, id, 20);
  std::vector<std::uint8_t> want(20, 0);
  std::memcpy(want.data(), "hvz-test-drive", 14);
  EXPECT_EQ(got, want);
  const auto long_id = format_drive_id("0123456789abcdefghijKLMN");  // truncated to 20
  EXPECT_EQ(std::memcmp(long_id.data(), "0123456789abcdefghij", 20), 0);
}

TEST_F(BlockRequestTest, GetIdWithTooSmallBufferIsIoErr) {
  chain_.header(kTypeGetId, 0);
  const GuestAddress id = chain_.writable(19);
  chain_.status();
  const Completion c = run();
  EXPECT_EQ(c.status, kStatusIoErr);
  EXPECT_EQ(c.error, RequestError::kGetIdBufferTooSmall);
  EXPECT_EQ(read_guest(mem_, id, 19), std::vector<std::uint8_t>(19, 0xee));
}

TEST_F(BlockRequestTest, ReadOnlyDriveRejectsWritesAndLeavesFileUntouched) {
  const auto before = pattern(kDiskBytes, 3);
  file_.write_at(0, before);
  open_disk(true);
  EXPECT_EQ(write(2, pattern(512, 99)), kStatusIoErr);
  chain_.reset();
  chain_.header(kTypeWriteZeroes, 0);
  chain_.segments({{0, 4, 0}});
  chain_.status();
  EXPECT_EQ(run().status, kStatusIoErr);
  chain_.reset();
  chain_.header(kTypeDiscard, 0);
  chain_.segments({{0, 4, 0}});
  chain_.status();
  EXPECT_EQ(run().status, kStatusIoErr);
  EXPECT_EQ(file_.read_all(), before);
  // Reads still work.
  std::vector<std::uint8_t> back;
  ASSERT_EQ(read(1, 512, back), kStatusOk);
  EXPECT_TRUE(std::equal(back.begin(), back.end(), before.begin() + 512));
}

TEST_F(BlockRequestTest, SectorRangePastTheEndIsIoErr) {
  std::vector<std::uint8_t> back;
  EXPECT_EQ(read(kDiskSectors, 512, back), kStatusIoErr);
  EXPECT_EQ(read(kDiskSectors - 1, 1024, back), kStatusIoErr);
  EXPECT_EQ(read(~std::uint64_t{0}, 1024, back), kStatusIoErr);
  EXPECT_EQ(write(kDiskSectors - 1, pattern(1024, 1)), kStatusIoErr);
  EXPECT_EQ(write(~std::uint64_t{0} >> 9, pattern(512, 1)), kStatusIoErr);
  EXPECT_EQ(file_.read_all(), std::vector<std::uint8_t>(kDiskBytes, 0));
  // The very last sector is fine.
  EXPECT_EQ(read(kDiskSectors - 1, 512, back), kStatusOk);
}

TEST_F(BlockRequestTest, DataLengthNotMultipleOf512IsIoErr) {
  std::vector<std::uint8_t> back;
  EXPECT_EQ(read(0, 700, back), kStatusIoErr);
  EXPECT_EQ(write(0, pattern(100, 1)), kStatusIoErr);
  EXPECT_EQ(file_.read_all(), std::vector<std::uint8_t>(kDiskBytes, 0));
}

TEST_F(BlockRequestTest, UnknownTypeIsUnsupp) {
  chain_.header(99, 0);
  const GuestAddress st = chain_.status();
  const Completion c = run();
  EXPECT_TRUE(c.completed);
  EXPECT_EQ(c.status, kStatusUnsupp);
  EXPECT_EQ(c.used_len, 1u);
  EXPECT_EQ(status_at(mem_, st), kStatusUnsupp);
}

TEST_F(BlockRequestTest, ShortHeaderIsIoErr) {
  chain_.readable(std::vector<std::uint8_t>(8, 0));
  chain_.status();
  EXPECT_EQ(run().status, kStatusIoErr);
}

TEST_F(BlockRequestTest, MissingStatusByteCannotComplete) {
  chain_.header(kTypeFlush, 0);
  const Completion c = run();
  EXPECT_FALSE(c.completed);
  EXPECT_EQ(c.used_len, 0u);
  EXPECT_EQ(c.error, RequestError::kNoStatusByte);
}

TEST_F(BlockRequestTest, StatusInReadableDescriptorCannotComplete) {
  chain_.header(kTypeOut, 0);
  chain_.readable(pattern(512, 5));
  const GuestAddress st = chain_.readable(std::vector<std::uint8_t>{0xee});
  const Completion c = run();
  EXPECT_FALSE(c.completed);
  EXPECT_EQ(c.used_len, 0u);
  EXPECT_EQ(status_at(mem_, st), 0xee);
  EXPECT_EQ(file_.read_all(), std::vector<std::uint8_t>(kDiskBytes, 0));
}

TEST_F(BlockRequestTest, StatusIsTheLastWritableByteEvenAfterEmptyDescriptors) {
  chain_.header(kTypeFlush, 0);
  const GuestAddress st = chain_.writable(4);
  chain_.writable(0);
  EXPECT_EQ(find_status_byte(chain_.chain()), st.checked_add(3));
  const Completion c = run();
  EXPECT_TRUE(c.completed);
  EXPECT_EQ(read_guest(mem_, st, 4), (std::vector<std::uint8_t>{0xee, 0xee, 0xee, kStatusOk}));
}

TEST_F(BlockRequestTest, WriteZeroesReadsBackZeroes) {
  file_.write_at(0, pattern(kDiskBytes, 11));
  for (std::uint32_t flags : {0u, kSegmentFlagUnmap}) {
    chain_.reset();
    chain_.header(kTypeWriteZeroes, 0);
    chain_.segments({{2, 3, flags}, {10, 1, flags}});
    chain_.status();
    const Completion c = run();
    EXPECT_EQ(c.status, kStatusOk) << (c.error ? to_string(*c.error) : "");
    std::vector<std::uint8_t> back;
    ASSERT_EQ(read(0, 12 * 512, back), kStatusOk);
    const auto orig = pattern(kDiskBytes, 11);
    for (std::size_t i = 0; i < back.size(); ++i) {
      const std::size_t sector = i / 512;
      const bool zeroed = (sector >= 2 && sector < 5) || sector == 10;
      ASSERT_EQ(back[i], zeroed ? 0 : orig[i]) << "byte " << i << " flags " << flags;
    }
  }
}

TEST_F(BlockRequestTest, DiscardReadsBackZeroes) {
  if (!disk_->discard_supported()) GTEST_SKIP() << "filesystem cannot punch holes";
  const auto orig = pattern(kDiskBytes, 13);
  file_.write_at(0, orig);
  chain_.header(kTypeDiscard, 0);
  chain_.segments({{8, 16, 0}});
  chain_.status();
  EXPECT_EQ(run().status, kStatusOk);
  const auto file = file_.read_all();
  ASSERT_EQ(file.size(), kDiskBytes);  // KEEP_SIZE
  for (std::size_t i = 0; i < file.size(); ++i) {
    const bool zeroed = i >= 8 * 512 && i < 24 * 512;
    ASSERT_EQ(file[i], zeroed ? 0 : orig[i]) << "byte " << i;
  }
}

TEST_F(BlockRequestTest, DiscardAndWriteZeroesSegmentsAreChecked) {
  struct Case {
    std::uint32_t type;
    std::vector<DiscardSegment> segs;
    std::uint8_t status;
  };
  const std::vector<Case> cases = {
      {kTypeWriteZeroes, {{kDiskSectors - 1, 2, 0}}, kStatusIoErr},   // past the end
      {kTypeWriteZeroes, {{~std::uint64_t{0}, 2, 0}}, kStatusIoErr},  // overflow
      {kTypeWriteZeroes, {{0, 1, 2}}, kStatusUnsupp},                 // unknown flag
      {kTypeWriteZeroes, {{0, 1, 0}, {1, 1, 0}, {2, 1, 0}, {3, 1, 0}, {4, 1, 0}}, kStatusIoErr},
      {kTypeWriteZeroes, {{0, kMaxWriteZeroesSectors + 1, 0}}, kStatusIoErr},  // too large
      {kTypeDiscard, {{0, 1, kSegmentFlagUnmap}}, kStatusUnsupp},              // unmap on discard
      {kTypeDiscard, {{kDiskSectors, 1, 0}}, kStatusIoErr},
  };
  const auto orig = pattern(kDiskBytes, 17);
  file_.write_at(0, orig);
  for (const auto& tc : cases) {
    if (tc.type == kTypeDiscard && !limits_.discard) continue;
    chain_.reset();
    chain_.header(tc.type, 0);
    chain_.segments(tc.segs);
    chain_.status();
    EXPECT_EQ(run().status, tc.status)
        << "type " << tc.type << " first sector " << tc.segs[0].sector;
  }
  // A segment list that is not a whole number of 16-byte segments.
  chain_.reset();
  chain_.header(kTypeWriteZeroes, 0);
  chain_.readable(std::vector<std::uint8_t>(15, 0));
  chain_.status();
  EXPECT_EQ(run().status, kStatusIoErr);
  EXPECT_EQ(file_.read_all(), orig);
}

TEST_F(BlockRequestTest, FeaturesTheDeviceLacksAreUnsupp) {
  limits_.discard = false;
  limits_.write_zeroes = false;
  for (std::uint32_t type : {kTypeDiscard, kTypeWriteZeroes}) {
    chain_.reset();
    chain_.header(type, 0);
    chain_.segments({{0, 1, 0}});
    chain_.status();
    EXPECT_EQ(run().status, kStatusUnsupp);
  }
}

// --- The device, through a hand-built split virtqueue and an epoll loop. ---

constexpr std::uint16_t kRingSize = 64;
constexpr GuestAddress kDescTable(0x1000);
constexpr GuestAddress kAvailRing(0x2000);
constexpr GuestAddress kUsedRing(0x3000);

using testing::EpollLoop;
using testing::FakeInterrupt;
using testing::TestRing;

// The device with the engine of the test parameter; every test runs with
// both engines.
class BlockDeviceTest : public ::testing::TestWithParam<IoEngine> {
 protected:
  void SetUp() override {
    auto n = EventFd::create();
    ASSERT_TRUE(n);
    notify_.emplace(std::move(*n));
    make_device(file_.path(), false);
  }
  void make_device(const std::string& path, bool read_only, BlockOptions options = {}) {
    device_.reset();
    auto d = DiskImage::open(path, read_only);
    ASSERT_TRUE(d) << d.error().message();
    options.io_engine = GetParam();
    auto dev = BlockDevice::create(std::move(*d), "serial-1234", metrics_, options);
    ASSERT_TRUE(dev) << dev.error().message();
    device_ = std::move(*dev);
    ASSERT_EQ(device_->io_engine(), GetParam());
  }
  void activate(std::uint64_t acked) {
    device_->ack_features(acked);
    ASSERT_TRUE(device_->activate(mem_, {ActiveQueue{&ring_.queue(), notify_->fd()}}, irq_, loop_));
  }
  // Posts the chain built so far (without notifying); returns its head.
  std::uint16_t post() {
    const std::uint16_t head = ring_.post(chain_.chain().descriptors);
    chain_.reset();
    return head;
  }
  bool wait_used(std::uint16_t n) {
    return loop_.run_until([&] { return irq_->used.load() > 0 && ring_.used_idx() >= n; });
  }
  // Posts the chain built so far, notifies, and waits for `n` used entries.
  bool submit_and_wait(std::uint16_t n) {
    post();
    EXPECT_TRUE(notify_->signal());
    return wait_used(n);
  }
  std::uint64_t count(const char* name) { return metrics_.counter(name).value(); }
  // A write of `data` at `sector`; returns the status address.
  GuestAddress add_write(std::uint64_t sector, const std::vector<std::uint8_t>& data) {
    chain_.header(kTypeOut, sector);
    chain_.readable(data);
    return chain_.status();
  }

  TempFile file_{kDiskBytes};
  GuestMemory mem_ = make_memory();
  ChainBuilder chain_{mem_};
  TestRing ring_{mem_, kDescTable.value(), kRingSize, kAvailRing.value() - kDescTable.value()};
  EpollLoop loop_{std::chrono::seconds(20)};
  std::shared_ptr<FakeInterrupt> irq_ = std::make_shared<FakeInterrupt>();
  std::optional<EventFd> notify_;
  metrics::Group metrics_{"block_test"};
  std::unique_ptr<BlockDevice> device_;  // last: reset before the rest goes
};

INSTANTIATE_TEST_SUITE_P(Engines, BlockDeviceTest,
                         ::testing::Values(IoEngine::kSync, IoEngine::kAsync), engine_name);

TEST_P(BlockDeviceTest, OffersFeaturesAndReadOnlyConfig) {
  const std::uint64_t f = device_->features();
  EXPECT_EQ(device_->device_type(), 2u);
  EXPECT_TRUE(f & kFeatureVersion1);
  EXPECT_TRUE(f & kFeatureEventIdx);
  EXPECT_TRUE(f & kFeatureIndirectDesc);
  EXPECT_TRUE(f & kFeatureFlush);
  EXPECT_TRUE(f & kFeatureSegMax);
  EXPECT_TRUE(f & kFeatureWriteZeroes);
  EXPECT_FALSE(f & kFeatureRo);
  EXPECT_EQ(device_->queue_max_sizes(), std::vector<std::uint16_t>{256});

  auto config = [&](std::uint64_t offset, std::size_t len) {
    std::array<std::uint8_t, 8> raw{};
    device_->read_config(offset, std::span(raw.data(), len));
    std::uint64_t v = 0;
    std::memcpy(&v, raw.data(), len);
    return v;
  };
  EXPECT_EQ(config(kConfigCapacity, 8), kDiskSectors);
  EXPECT_EQ(device_->capacity_sectors(), kDiskSectors);
  EXPECT_EQ(config(kConfigSegMax, 4), kSegMax);
  EXPECT_EQ(config(kConfigBlkSize, 4), 512u);
  EXPECT_EQ(config(kConfigMaxWriteZeroesSeg, 4), kMaxWriteZeroesSeg);
  // Writes are ignored; reads past the end are zero.
  const std::array<std::uint8_t, 8> junk{1, 2, 3, 4, 5, 6, 7, 8};
  device_->write_config(0, junk);
  EXPECT_EQ(config(kConfigCapacity, 8), kDiskSectors);
  std::array<std::uint8_t, 4> far{9, 9, 9, 9};
  device_->read_config(kConfigSize - 2, far);
  EXPECT_EQ(far[2], 0);
  EXPECT_EQ(far[3], 0);
  device_->read_config(~std::uint64_t{0} - 1, far);
  EXPECT_EQ(far, (std::array<std::uint8_t, 4>{}));
}

TEST(BlockDevice, ReadOnlyImageOffersRoAndNoWriteFeatures) {
  TempFile f(kDiskBytes);
  auto d = DiskImage::open(f.path(), true);
  ASSERT_TRUE(d);
  metrics::Group g("ro");
  auto dev = BlockDevice::create(std::move(*d), "ro", g);
  ASSERT_TRUE(dev);
  EXPECT_EQ((*dev)->io_engine(), IoEngine::kSync);  // the default
  EXPECT_TRUE((*dev)->features() & kFeatureRo);
  EXPECT_FALSE((*dev)->features() & kFeatureDiscard);
  EXPECT_FALSE((*dev)->features() & kFeatureWriteZeroes);
}

TEST_P(BlockDeviceTest, ProcessesRequestsThroughTheEventLoop) {
  activate(kFeatureVersion1 | kFeatureFlush);
  const auto data = pattern(1024, 21);
  const GuestAddress st1 = add_write(5, data);
  ASSERT_TRUE(submit_and_wait(1));
  EXPECT_EQ(status_at(mem_, st1), kStatusOk);
  EXPECT_EQ(ring_.used(0), (std::pair<std::uint32_t, std::uint32_t>{0, 1}));

  chain_.header(kTypeIn, 5);
  const GuestAddress buf = chain_.writable(1024);
  const GuestAddress st2 = chain_.status();
  ASSERT_TRUE(submit_and_wait(2));
  EXPECT_EQ(status_at(mem_, st2), kStatusOk);
  EXPECT_EQ(ring_.used(1).second, 1025u);
  EXPECT_EQ(read_guest(mem_, buf, 1024), data);

  chain_.header(kTypeGetId, 0);
  const GuestAddress id = chain_.writable(20);
  chain_.status();
  ASSERT_TRUE(submit_and_wait(3));
  EXPECT_EQ(ring_.used(2).second, 21u);
  const auto got = read_guest(mem_, id, 20);
  EXPECT_EQ(std::memcmp(got.data(), "serial-1234\0\0\0\0\0\0\0\0\0", 20), 0);
  EXPECT_EQ(irq_->needs_reset.load(), 0);
}

TEST_P(BlockDeviceTest, ProcessesABatchWithEventIdx) {
  activate(kFeatureVersion1 | kFeatureEventIdx);
  std::vector<GuestAddress> statuses;
  for (int i = 0; i < 4; ++i) {
    statuses.push_back(
        add_write(static_cast<std::uint64_t>(i), pattern(512, static_cast<std::uint8_t>(i))));
    post();
  }
  ASSERT_TRUE(notify_->signal());
  ASSERT_TRUE(wait_used(4));
  for (auto st : statuses) EXPECT_EQ(status_at(mem_, st), kStatusOk);
  const auto file = file_.read_all();
  for (int i = 0; i < 4; ++i) {
    const auto want = pattern(512, static_cast<std::uint8_t>(i));
    EXPECT_TRUE(std::equal(want.begin(), want.end(), file.begin() + i * 512));
  }
  // The driver is asked to notify at the next available index.
  auto avail_event =
      mem_.read_obj<std::uint16_t>(GuestAddress(kUsedRing.value() + 4 + 8 * kRingSize));
  ASSERT_TRUE(avail_event);
  EXPECT_EQ(*avail_event, 4);
}

TEST_P(BlockDeviceTest, ManyRequestsInFlightAllComplete) {
  activate(kFeatureVersion1 | kFeatureEventIdx);
  constexpr int kN = 20;  // 3 descriptors each: 60 of the ring's 64
  std::vector<GuestAddress> statuses;
  for (int i = 0; i < kN; ++i) {
    statuses.push_back(add_write(static_cast<std::uint64_t>(2 * i),
                                 pattern(1024, static_cast<std::uint8_t>(40 + i))));
    post();
  }
  ASSERT_TRUE(notify_->signal());
  ASSERT_TRUE(wait_used(kN));
  for (auto st : statuses) EXPECT_EQ(status_at(mem_, st), kStatusOk);
  std::vector<GuestAddress> bufs;
  statuses.clear();
  for (int i = 0; i < kN; ++i) {
    chain_.header(kTypeIn, static_cast<std::uint64_t>(2 * i));
    bufs.push_back(chain_.writable(1024));
    statuses.push_back(chain_.status());
    post();
  }
  ASSERT_TRUE(notify_->signal());
  ASSERT_TRUE(wait_used(2 * kN));
  for (int i = 0; i < kN; ++i) {
    EXPECT_EQ(status_at(mem_, statuses[i]), kStatusOk);
    EXPECT_EQ(read_guest(mem_, bufs[i], 1024), pattern(1024, static_cast<std::uint8_t>(40 + i)));
  }
  EXPECT_EQ(count("write_count"), static_cast<std::uint64_t>(kN));
  EXPECT_EQ(count("read_count"), static_cast<std::uint64_t>(kN));
  EXPECT_EQ(count("read_bytes"), kN * 1024u);
}

TEST_P(BlockDeviceTest, RequestOverManyDescriptors) {
  activate(kFeatureVersion1);
  // 40 data descriptors of 512 bytes each plus header and status.
  const auto data = pattern(40 * 512, 77);
  chain_.header(kTypeOut, 3);
  for (int i = 0; i < 40; ++i) {
    chain_.readable(
        std::vector<std::uint8_t>(data.begin() + i * 512, data.begin() + (i + 1) * 512));
  }
  const GuestAddress st = chain_.status();
  ASSERT_TRUE(submit_and_wait(1));
  EXPECT_EQ(status_at(mem_, st), kStatusOk);
  const auto file = file_.read_all();
  EXPECT_TRUE(std::equal(data.begin(), data.end(), file.begin() + 3 * 512));

  chain_.header(kTypeIn, 3);
  std::vector<GuestAddress> parts;
  for (int i = 0; i < 40; ++i) parts.push_back(chain_.writable(512));
  chain_.status();
  ASSERT_TRUE(submit_and_wait(2));
  EXPECT_EQ(ring_.used(1).second, 40 * 512 + 1u);
  for (int i = 0; i < 40; ++i) {
    EXPECT_EQ(read_guest(mem_, parts[i], 512),
              std::vector<std::uint8_t>(data.begin() + i * 512, data.begin() + (i + 1) * 512));
  }
}

TEST_P(BlockDeviceTest, FlushCompletesAndIsCounted) {
  activate(kFeatureVersion1 | kFeatureFlush);
  add_write(0, pattern(512, 1));
  post();
  chain_.header(kTypeFlush, 0);
  const GuestAddress st = chain_.status();
  ASSERT_TRUE(submit_and_wait(2));
  EXPECT_EQ(status_at(mem_, st), kStatusOk);
  EXPECT_EQ(count("flush_count"), 1u);
  EXPECT_EQ(count("write_count"), 1u);
  EXPECT_EQ(count("io_errors"), 0u);
}

TEST_P(BlockDeviceTest, DiscardAndWriteZeroesThroughTheDevice) {
  const auto orig = pattern(kDiskBytes, 31);
  file_.write_at(0, orig);
  activate(kFeatureVersion1 | kFeatureDiscard | kFeatureWriteZeroes);
  chain_.header(kTypeWriteZeroes, 0);
  chain_.segments({{2, 2, 0}, {6, 1, kSegmentFlagUnmap}});
  const GuestAddress st1 = chain_.status();
  ASSERT_TRUE(submit_and_wait(1));
  EXPECT_EQ(status_at(mem_, st1), kStatusOk);
  std::vector<bool> zeroed(kDiskSectors, false);
  zeroed[2] = zeroed[3] = zeroed[6] = true;
  if (device_->features() & kFeatureDiscard) {
    chain_.header(kTypeDiscard, 0);
    chain_.segments({{16, 8, 0}});
    const GuestAddress st2 = chain_.status();
    ASSERT_TRUE(submit_and_wait(2));
    EXPECT_EQ(status_at(mem_, st2), kStatusOk);
    for (int s = 16; s < 24; ++s) zeroed[s] = true;
  }
  const auto file = file_.read_all();
  ASSERT_EQ(file.size(), kDiskBytes);
  for (std::size_t i = 0; i < file.size(); ++i) {
    ASSERT_EQ(file[i], zeroed[i / 512] ? 0 : orig[i]) << "byte " << i;
  }
  EXPECT_EQ(count("io_errors"), 0u);
}

TEST_P(BlockDeviceTest, ReadOnlyDeviceRejectsWritesAndStillReads) {
  const auto orig = pattern(kDiskBytes, 5);
  file_.write_at(0, orig);
  make_device(file_.path(), true);
  EXPECT_TRUE(device_->features() & kFeatureRo);
  activate(kFeatureVersion1 | kFeatureRo);
  const GuestAddress st1 = add_write(0, pattern(512, 99));
  ASSERT_TRUE(submit_and_wait(1));
  EXPECT_EQ(status_at(mem_, st1), kStatusIoErr);
  chain_.header(kTypeWriteZeroes, 0);
  chain_.segments({{0, 1, 0}});
  const GuestAddress st2 = chain_.status();
  ASSERT_TRUE(submit_and_wait(2));
  EXPECT_NE(status_at(mem_, st2), kStatusOk);
  chain_.header(kTypeIn, 1);
  const GuestAddress buf = chain_.writable(512);
  const GuestAddress st3 = chain_.status();
  ASSERT_TRUE(submit_and_wait(3));
  EXPECT_EQ(status_at(mem_, st3), kStatusOk);
  EXPECT_EQ(read_guest(mem_, buf, 512),
            std::vector<std::uint8_t>(orig.begin() + 512, orig.begin() + 1024));
  EXPECT_EQ(file_.read_all(), orig);
  EXPECT_EQ(count("invalid_reqs"), 2u);
  EXPECT_EQ(count("io_errors"), 2u);
  EXPECT_EQ(count("read_count"), 1u);
}

TEST_P(BlockDeviceTest, BadRequestsCompleteWithAStatusAndTheQueueGoesOn) {
  activate(kFeatureVersion1);
  struct Bad {
    std::uint32_t type;
    std::uint64_t sector;
    std::uint32_t data_len;  // readable for OUT, writable otherwise
    std::uint8_t status;
  };
  const std::vector<Bad> bad = {
      {kTypeIn, kDiskSectors, 512, kStatusIoErr},             // past the end
      {kTypeIn, kDiskSectors - 1, 1024, kStatusIoErr},        // straddles the end
      {kTypeOut, ~std::uint64_t{0} >> 9, 512, kStatusIoErr},  // overflowing byte offset
      {kTypeIn, 0, 700, kStatusIoErr},                        // not a multiple of 512
      {kTypeOut, 0, 100, kStatusIoErr},
      {kTypeGetId, 0, 19, kStatusIoErr},  // too small
      {99, 0, 0, kStatusUnsupp},          // unknown type
  };
  std::vector<GuestAddress> statuses;
  for (const Bad& b : bad) {
    chain_.header(b.type, b.sector);
    if (b.data_len > 0) {
      if (b.type == kTypeOut) {
        chain_.readable(pattern(b.data_len, 1));
      } else {
        chain_.writable(b.data_len);
      }
    }
    statuses.push_back(chain_.status());
    post();
  }
  // No status byte at all: returned with length 0.
  chain_.header(kTypeFlush, 0);
  const std::uint16_t no_status = post();
  // A short header.
  chain_.readable(std::vector<std::uint8_t>(8, 0));
  const GuestAddress short_st = chain_.status();
  post();
  ASSERT_TRUE(notify_->signal());
  const auto n = static_cast<std::uint16_t>(bad.size() + 2);
  ASSERT_TRUE(wait_used(n));
  for (std::size_t i = 0; i < bad.size(); ++i) {
    EXPECT_EQ(status_at(mem_, statuses[i]), bad[i].status) << "case " << i;
  }
  EXPECT_EQ(status_at(mem_, short_st), kStatusIoErr);
  EXPECT_EQ(ring_.used_len_of(no_status, n), 0u);
  EXPECT_EQ(file_.read_all(), std::vector<std::uint8_t>(kDiskBytes, 0));
  EXPECT_EQ(count("invalid_reqs"), bad.size() + 2);
  EXPECT_EQ(count("io_errors"), bad.size() + 1);  // every non-OK status
  EXPECT_EQ(count("read_count") + count("write_count"), 0u);

  // The queue keeps working.
  const GuestAddress st = add_write(0, pattern(512, 3));
  ASSERT_TRUE(submit_and_wait(n + 1));
  EXPECT_EQ(status_at(mem_, st), kStatusOk);
  EXPECT_EQ(irq_->needs_reset.load(), 0);
}

TEST_P(BlockDeviceTest, ReadPastTheEndOfAShrunkImageIsIoErr) {
  activate(kFeatureVersion1);
  // The image shrinks behind the device's back: the end of file comes early.
  ASSERT_EQ(::truncate(file_.path().c_str(), kDiskBytes / 2), 0);
  chain_.header(kTypeIn, kDiskSectors - 2);
  chain_.writable(1024);
  const GuestAddress st = chain_.status();
  ASSERT_TRUE(submit_and_wait(1));
  EXPECT_EQ(status_at(mem_, st), kStatusIoErr);
  EXPECT_EQ(count("io_errors"), 1u);
  EXPECT_EQ(count("invalid_reqs"), 0u);
}

TEST_P(BlockDeviceTest, CountsBytesAndRequests) {
  activate(kFeatureVersion1 | kFeatureFlush);
  add_write(0, pattern(1024, 1));
  post();
  add_write(8, pattern(2048, 2));
  post();
  chain_.header(kTypeIn, 0);
  chain_.writable(512);
  chain_.status();
  post();
  chain_.header(kTypeGetId, 0);
  chain_.writable(20);
  chain_.status();
  ASSERT_TRUE(submit_and_wait(4));
  EXPECT_EQ(count("write_count"), 2u);
  EXPECT_EQ(count("write_bytes"), 3072u);
  EXPECT_EQ(count("read_count"), 1u);
  EXPECT_EQ(count("read_bytes"), 512u);
  EXPECT_EQ(count("flush_count"), 0u);
  EXPECT_EQ(count("io_errors"), 0u);
  EXPECT_EQ(count("invalid_reqs"), 0u);
  EXPECT_EQ(count("rate_limiter_throttled"), 0u);
}

TEST_P(BlockDeviceTest, ChainWithoutStatusIsReturnedWithLengthZero) {
  activate(kFeatureVersion1);
  chain_.header(kTypeFlush, 0);
  ASSERT_TRUE(submit_and_wait(1));
  EXPECT_EQ(ring_.used(0).second, 0u);
  // The queue keeps working.
  chain_.header(kTypeFlush, 0);
  const GuestAddress st = chain_.status();
  ASSERT_TRUE(submit_and_wait(2));
  EXPECT_EQ(status_at(mem_, st), kStatusOk);
  EXPECT_EQ(irq_->needs_reset.load(), 0);
}

TEST_P(BlockDeviceTest, MalformedChainSetsNeedsResetOnce) {
  activate(kFeatureVersion1);
  // A descriptor pointing outside guest RAM.
  ring_.put_desc(0, 0x10000, 16, kDescFlagNext, 1);
  ring_.put_desc(1, 0x4000'0000, 1, kDescFlagWrite, 0);
  ring_.publish(0);
  ASSERT_TRUE(notify_->signal());
  ASSERT_TRUE(loop_.run_until([&] { return irq_->needs_reset.load() > 0; }));
  // Further notifications do not process the broken queue again.
  ASSERT_TRUE(notify_->signal());
  loop_.run_until([] { return false; }, std::chrono::milliseconds(100));
  EXPECT_EQ(irq_->needs_reset.load(), 1);
  EXPECT_EQ(ring_.used_idx(), 0);
}

// A driver cycling reset -> malformed ring -> DRIVER_OK makes the device
// stop its queue on every activation; the log must not get a line per
// cycle (the rate limit survives resets).
TEST_P(BlockDeviceTest, DriverCyclingBrokenRingsDoesNotFloodTheLog) {
  TempFile log_file(0);
  UniqueFd log_fd(::open(log_file.path().c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
  ASSERT_TRUE(log_fd.valid());
  log::set_output(log_fd.get());
  constexpr int kCycles = 200;
  for (int i = 0; i < kCycles; ++i) {
    ring_.queue().reset();
    ASSERT_TRUE(mem_.write_obj<std::uint16_t>(GuestAddress(kAvailRing.value() + 2), 0));
    ASSERT_TRUE(mem_.write_obj<std::uint16_t>(GuestAddress(kUsedRing.value() + 2), 0));
    ring_.queue().set_desc_table(kDescTable);
    ring_.queue().set_avail_ring(kAvailRing);
    ring_.queue().set_used_ring(kUsedRing);
    ring_.queue().set_ready(true);
    // A chain whose status descriptor lies outside guest RAM.
    ring_.put_desc(0, 0x10000, 16, kDescFlagNext, 1);
    ring_.put_desc(1, 0x4000'0000, 1, kDescFlagWrite, 0);
    ASSERT_TRUE(mem_.write_obj<std::uint16_t>(GuestAddress(kAvailRing.value() + 4), 0));
    ASSERT_TRUE(mem_.write_obj<std::uint16_t>(GuestAddress(kAvailRing.value() + 2), 1));
    const int before = irq_->needs_reset.load();
    activate(kFeatureVersion1);
    // The I/O thread looks at the ring once on activation.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (irq_->needs_reset.load() == before && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    ASSERT_EQ(irq_->needs_reset.load(), before + 1) << "cycle " << i;
    device_->reset();
  }
  log::reset_output();
  std::size_t lines = 0;
  for (std::uint8_t c : log_file.read_all()) lines += c == '\n' ? 1 : 0;
  EXPECT_GT(lines, 0u);
  EXPECT_LE(lines, 8u) << "log lines for " << kCycles << " broken activations";
}

TEST_P(BlockDeviceTest, ResetUnregistersAndAllowsReactivation) {
  activate(kFeatureVersion1);
  EXPECT_EQ(loop_.registered(), 1u);
  EXPECT_FALSE(device_->activate(mem_, {ActiveQueue{&ring_.queue(), notify_->fd()}}, irq_, loop_));
  device_->reset();
  EXPECT_EQ(loop_.registered(), 0u);
  device_->reset();  // idempotent

  ring_.queue().reset();
  ASSERT_TRUE(mem_.write_obj<std::uint16_t>(GuestAddress(kAvailRing.value() + 2), 0));
  ASSERT_TRUE(mem_.write_obj<std::uint16_t>(GuestAddress(kUsedRing.value() + 2), 0));
  ring_.queue().set_desc_table(kDescTable);
  ring_.queue().set_avail_ring(kAvailRing);
  ring_.queue().set_used_ring(kUsedRing);
  ring_.queue().set_ready(true);
  activate(kFeatureVersion1);
  EXPECT_EQ(loop_.registered(), 1u);
}

TEST_P(BlockDeviceTest, ResetWithRequestsInFlightWaitsForThem) {
  activate(kFeatureVersion1 | kFeatureEventIdx);
  for (int i = 0; i < 16; ++i) {
    add_write(static_cast<std::uint64_t>(i), pattern(512, static_cast<std::uint8_t>(i)));
    post();
  }
  ASSERT_TRUE(notify_->signal());
  // Let the loop pass the notification on, then reset at once: whatever
  // was in flight has finished when reset() returns.
  loop_.run_until([&] { return ring_.used_idx() > 0; }, std::chrono::milliseconds(200));
  device_->reset();
  EXPECT_EQ(loop_.registered(), 0u);
  const std::uint16_t used = ring_.used_idx();
  loop_.run_until([] { return false; }, std::chrono::milliseconds(50));
  EXPECT_EQ(ring_.used_idx(), used);  // nothing completes after reset
}

// A hostile driver that re-posts every request as soon as it completes, so
// the ring never runs empty: reset() must still return promptly, because
// the I/O thread handles a bounded batch per wake-up and looks at its stop
// flag between batches. Each request is one indirect descriptor, so all 256
// entries of the ring can be outstanding; they write 448 KiB and flush it
// in turn, so (on a disk-backed TMPDIR) the device is slower than the
// driver by a wide margin and the ring does not drain even when the
// driver's thread waits for a CPU.
TEST_P(BlockDeviceTest, ResetReturnsWhileTheDriverRefillsTheRingForever) {
  TempFile big(16ull << 20);
  make_device(big.path(), false);
  constexpr std::uint16_t kSize = kQueueSize;
  TestRing ring{mem_, 0x10000, kSize, 0x1000};
  constexpr std::uint64_t kTables = 0x20000;
  constexpr std::uint64_t kHeaders = 0x24000;
  constexpr std::uint64_t kStatus = 0x25000;
  constexpr std::uint64_t kData = 0x80000;
  constexpr std::uint32_t kDataLen = 0x70000;
  auto put = [&](std::uint64_t at, std::uint64_t addr, std::uint32_t len, std::uint16_t flags,
                 std::uint16_t next) {
    ASSERT_TRUE(mem_.write_obj<std::uint64_t>(GuestAddress(at), addr));
    ASSERT_TRUE(mem_.write_obj<std::uint32_t>(GuestAddress(at + 8), len));
    ASSERT_TRUE(mem_.write_obj<std::uint16_t>(GuestAddress(at + 12), flags));
    ASSERT_TRUE(mem_.write_obj<std::uint16_t>(GuestAddress(at + 14), next));
  };
  for (std::uint16_t i = 0; i < kSize; ++i) {
    const std::uint64_t table = kTables + 48u * i;
    const bool flush = i % 2 == 1;
    const RequestHeader h{flush ? kTypeFlush : kTypeOut, 0, (i % 16u) * (kDataLen / kSectorSize)};
    ASSERT_TRUE(mem_.write_obj(GuestAddress(kHeaders + 16u * i), h));
    if (flush) {
      put(table, kHeaders + 16u * i, 16, kDescFlagNext, 1);
      put(table + 16, kStatus + i, 1, kDescFlagWrite, 0);
      ring.put_desc(i, table, 32, kDescFlagIndirect, 0);
    } else {
      put(table, kHeaders + 16u * i, 16, kDescFlagNext, 1);
      put(table + 16, kData, kDataLen, kDescFlagNext, 2);
      put(table + 32, kStatus + i, 1, kDescFlagWrite, 0);
      ring.put_desc(i, table, 48, kDescFlagIndirect, 0);
    }
  }
  device_->ack_features(kFeatureVersion1 | kFeatureIndirectDesc | kFeatureFlush);
  ASSERT_TRUE(device_->activate(mem_, {ActiveQueue{&ring.queue(), notify_->fd()}}, irq_, loop_));
  std::atomic<bool> stop_driver{false};
  std::thread driver([&] {
    std::uint16_t published = 0;
    while (!stop_driver.load()) {
      // Everything completed is posted again at once (heads in order).
      bool posted = false;
      while (static_cast<std::uint16_t>(published - ring.used_idx()) < kSize) {
        ring.publish(static_cast<std::uint16_t>(published % kSize));
        ++published;
        posted = true;
      }
      if (posted) (void)notify_->signal();
    }
  });
  loop_.run_until([&] { return ring.used_idx() > 2 * kSize; }, std::chrono::seconds(10));
  // Before the fix reset() would wait for an empty ring forever: the
  // watchdog stops the driver after 10 s so the test ends either way.
  std::thread watchdog([&] {
    for (int i = 0; i < 1000 && !stop_driver.load(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    stop_driver.store(true);
  });
  const auto start = std::chrono::steady_clock::now();
  device_->reset();
  const auto took = std::chrono::steady_clock::now() - start;
  stop_driver.store(true);
  driver.join();
  watchdog.join();
  EXPECT_LT(took, std::chrono::seconds(1))
      << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms";
  EXPECT_EQ(irq_->needs_reset.load(), 0);
}

TEST_P(BlockDeviceTest, RejectsActivationWithoutExactlyOneQueue) {
  EXPECT_FALSE(device_->activate(mem_, {}, irq_, loop_));
  EXPECT_EQ(loop_.registered(), 0u);
}

// --- Backing image swap. ---

constexpr std::uint64_t kBigSectors = 2 * kDiskSectors;

TEST_P(BlockDeviceTest, SwapDiskWhileActiveUpdatesCapacityAndSignalsConfigChange) {
  TempFile big(kBigSectors * kSectorSize);
  const auto big_data = pattern(kBigSectors * kSectorSize, 9);
  big.write_at(0, big_data);
  activate(kFeatureVersion1);
  // Sector 100 is past the end of the first image.
  chain_.header(kTypeIn, 100);
  chain_.writable(512);
  const GuestAddress st1 = chain_.status();
  ASSERT_TRUE(submit_and_wait(1));
  EXPECT_EQ(status_at(mem_, st1), kStatusIoErr);

  auto disk = DiskImage::open(big.path(), false);
  ASSERT_TRUE(disk);
  ASSERT_TRUE(device_->swap_disk(std::move(*disk)));
  EXPECT_EQ(device_->capacity_sectors(), kBigSectors);
  std::array<std::uint8_t, 8> raw{};
  device_->read_config(kConfigCapacity, raw);
  std::uint64_t cap = 0;
  std::memcpy(&cap, raw.data(), 8);
  EXPECT_EQ(cap, kBigSectors);
  EXPECT_EQ(irq_->config.load(), 1);

  chain_.header(kTypeIn, 100);
  const GuestAddress buf = chain_.writable(512);
  const GuestAddress st2 = chain_.status();
  ASSERT_TRUE(submit_and_wait(2));
  EXPECT_EQ(status_at(mem_, st2), kStatusOk);
  EXPECT_EQ(read_guest(mem_, buf, 512),
            std::vector<std::uint8_t>(big_data.begin() + 100 * 512, big_data.begin() + 101 * 512));
  // Writes go to the new image; the old one is left alone.
  const GuestAddress st3 = add_write(0, pattern(512, 44));
  ASSERT_TRUE(submit_and_wait(3));
  EXPECT_EQ(status_at(mem_, st3), kStatusOk);
  const auto now_big = big.read_all();
  const auto want = pattern(512, 44);
  EXPECT_TRUE(std::equal(want.begin(), want.end(), now_big.begin()));
  EXPECT_EQ(file_.read_all(), std::vector<std::uint8_t>(kDiskBytes, 0));
}

TEST_P(BlockDeviceTest, SwapDiskWhileInactiveChangesCapacityWithoutInterrupt) {
  TempFile big(kBigSectors * kSectorSize);
  auto disk = DiskImage::open(big.path(), false);
  ASSERT_TRUE(disk);
  ASSERT_TRUE(device_->swap_disk(std::move(*disk)));
  EXPECT_EQ(device_->capacity_sectors(), kBigSectors);
  EXPECT_EQ(irq_->config.load(), 0);
  activate(kFeatureVersion1);
  const GuestAddress st = add_write(kBigSectors - 1, pattern(512, 8));
  ASSERT_TRUE(submit_and_wait(1));
  EXPECT_EQ(status_at(mem_, st), kStatusOk);
}

TEST_P(BlockDeviceTest, SwapDiskRefusesAnImageOfTheOtherReadOnlyKind) {
  TempFile other(kDiskBytes);
  auto disk = DiskImage::open(other.path(), true);
  ASSERT_TRUE(disk);
  auto r = device_->swap_disk(std::move(*disk));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::kInvalidArgument);
  EXPECT_EQ(device_->capacity_sectors(), kDiskSectors);
}

TEST_P(BlockDeviceTest, SwapDiskWithRequestsInFlight) {
  TempFile big(kBigSectors * kSectorSize);
  activate(kFeatureVersion1 | kFeatureEventIdx);
  constexpr int kN = 20;
  std::vector<GuestAddress> statuses;
  for (int i = 0; i < kN; ++i) {
    statuses.push_back(
        add_write(static_cast<std::uint64_t>(i), pattern(512, static_cast<std::uint8_t>(60 + i))));
    post();
  }
  ASSERT_TRUE(notify_->signal());
  auto disk = DiskImage::open(big.path(), false);
  ASSERT_TRUE(disk);
  std::atomic<bool> swapped{false};
  bool ok = false;
  std::thread api([&] {
    ok = device_->swap_disk(std::move(*disk)).has_value();
    swapped = true;
  });
  const bool done = wait_used(kN) && loop_.run_until([&] { return swapped.load(); });
  api.join();
  ASSERT_TRUE(done);
  EXPECT_TRUE(ok);
  EXPECT_EQ(device_->capacity_sectors(), kBigSectors);
  EXPECT_EQ(irq_->config.load(), 1);
  // Every write completed, on one image or the other.
  const auto old_file = file_.read_all();
  const auto new_file = big.read_all();
  for (int i = 0; i < kN; ++i) {
    EXPECT_EQ(status_at(mem_, statuses[i]), kStatusOk);
    const auto want = pattern(512, static_cast<std::uint8_t>(60 + i));
    const bool in_old = std::equal(want.begin(), want.end(), old_file.begin() + i * 512);
    const bool in_new = std::equal(want.begin(), want.end(), new_file.begin() + i * 512);
    EXPECT_TRUE(in_old != in_new) << "sector " << i;
  }
}

// --- Rate limiting. ---

TEST_P(BlockDeviceTest, RateLimitedRequestsWaitAndComplete) {
  BlockOptions options;
  // One request per 500 ms: of three requests posted together, the later
  // two wait for tokens.
  options.ops = TokenBucketParams{1, 0, 500};
  make_device(file_.path(), false, options);
  activate(kFeatureVersion1);
  std::vector<GuestAddress> statuses;
  for (int i = 0; i < 3; ++i) {
    statuses.push_back(add_write(static_cast<std::uint64_t>(i), pattern(512, 1)));
    post();
  }
  ASSERT_TRUE(notify_->signal());
  ASSERT_TRUE(wait_used(3));
  for (auto st : statuses) EXPECT_EQ(status_at(mem_, st), kStatusOk);
  EXPECT_GE(count("rate_limiter_throttled"), 1u);
  EXPECT_EQ(count("write_count"), 3u);
}

TEST_P(BlockDeviceTest, UpdateRateLimiterReleasesAThrottledRequest) {
  BlockOptions options;
  // 4 KiB per hour: the first 4 KiB read goes, the next waits.
  options.bandwidth = TokenBucketParams{4096, 0, 3'600'000};
  make_device(file_.path(), false, options);
  activate(kFeatureVersion1);
  chain_.header(kTypeIn, 0);
  chain_.writable(4096);
  chain_.status();
  post();
  chain_.header(kTypeIn, 8);
  chain_.writable(512);
  const GuestAddress st = chain_.status();
  post();
  ASSERT_TRUE(notify_->signal());
  ASSERT_TRUE(loop_.run_until(
      [&] { return ring_.used_idx() >= 1 && count("rate_limiter_throttled") >= 1; }));
  loop_.run_until([] { return false; }, std::chrono::milliseconds(50));
  EXPECT_EQ(ring_.used_idx(), 1);
  EXPECT_EQ(count("rate_limiter_throttled"), 1u);
  device_->update_rate_limiter(std::nullopt, std::nullopt);
  ASSERT_TRUE(wait_used(2));
  EXPECT_EQ(status_at(mem_, st), kStatusOk);
}

TEST_P(BlockDeviceTest, ResetWhileThrottledDoesNotWaitForTokens) {
  BlockOptions options;
  options.ops = TokenBucketParams{1, 0, 3'600'000};
  make_device(file_.path(), false, options);
  activate(kFeatureVersion1);
  add_write(0, pattern(512, 1));
  post();
  add_write(1, pattern(512, 2));
  post();
  ASSERT_TRUE(notify_->signal());
  ASSERT_TRUE(loop_.run_until(
      [&] { return ring_.used_idx() >= 1 && count("rate_limiter_throttled") >= 1; }));
  device_->reset();  // returns promptly (the test's timeout guards)
  EXPECT_EQ(ring_.used_idx(), 1);
}

// --- The Async engine without io_uring. ---

sock_filter bpf_stmt(std::uint16_t code, std::uint32_t k) {
  return sock_filter{code, 0, 0, k};
}
sock_filter bpf_jeq(std::uint32_t k, std::uint8_t jt, std::uint8_t jf) {
  return sock_filter{static_cast<std::uint16_t>(BPF_JMP | BPF_JEQ | BPF_K), jt, jf, k};
}

// Makes io_uring_setup fail with ENOSYS in this process, as an old kernel
// or a seccomp policy would.
bool deny_io_uring_setup() {
  std::array<sock_filter, 4> filter{
      bpf_stmt(static_cast<std::uint16_t>(BPF_LD | BPF_W | BPF_ABS),
               static_cast<std::uint32_t>(offsetof(seccomp_data, nr))),
      bpf_jeq(__NR_io_uring_setup, 0, 1),
      bpf_stmt(static_cast<std::uint16_t>(BPF_RET | BPF_K), SECCOMP_RET_ERRNO | ENOSYS),
      bpf_stmt(static_cast<std::uint16_t>(BPF_RET | BPF_K), SECCOMP_RET_ALLOW),
  };
  sock_fprog prog{static_cast<unsigned short>(filter.size()), filter.data()};
  return ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
         ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0;
}

TEST(BlockDeviceDeathTest, AsyncEngineWithoutIoUringFailsCreationNamingIt) {
  TempFile f(kDiskBytes);
  EXPECT_EXIT(
      {
        if (!deny_io_uring_setup()) std::_Exit(2);
        auto d = DiskImage::open(f.path(), false);
        if (!d) std::_Exit(3);
        metrics::Group g("no_uring");
        BlockOptions options;
        options.io_engine = IoEngine::kAsync;
        auto dev = BlockDevice::create(std::move(*d), "x", g, options);
        if (dev) std::_Exit(4);
        std::fprintf(stderr, "%s\n", dev.error().message().c_str());
        std::_Exit(0);
      },
      ::testing::ExitedWithCode(0),
      "Async I/O engine: io_uring_queue_init.*Function not implemented");
}

}  // namespace
}  // namespace hvz::virtio::block
