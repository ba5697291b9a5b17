// virtio-blk: DiskImage I/O, request parsing and status codes, and the
// device processing a hand-built virtqueue through a small epoll EventLoop.
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "virtio/block/block_device.hpp"
#include "virtio/block/disk_image.hpp"
#include "virtio/block/request.hpp"
#include "virtio/queue.hpp"
#include "vmm/core/event_fd.hpp"
#include "vmm/core/event_loop.hpp"
#include "vmm/core/guest_memory.hpp"
#include "vmm/core/unique_fd.hpp"

namespace hvz::virtio::block {
namespace {

constexpr std::uint64_t kDiskSectors = 64;
constexpr std::uint64_t kDiskBytes = kDiskSectors * kSectorSize;

// A temporary file, removed on destruction.
class TempFile {
 public:
  explicit TempFile(std::uint64_t size) {
    const char* dir = std::getenv("TMPDIR");
    path_ = std::string(dir != nullptr ? dir : "/tmp") + "/hvz-blk-XXXXXX";
    UniqueFd fd(::mkstemp(path_.data()));
    EXPECT_TRUE(fd.valid());
    EXPECT_EQ(::ftruncate(fd.get(), static_cast<off_t>(size)), 0);
  }
  ~TempFile() { ::unlink(path_.c_str()); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }

  std::vector<std::uint8_t> read_all() const {
    std::vector<std::uint8_t> out;
    UniqueFd fd(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
    std::uint8_t buf[4096];
    ssize_t n;
    while ((n = ::read(fd.get(), buf, sizeof buf)) > 0) out.insert(out.end(), buf, buf + n);
    return out;
  }
  void write_at(std::uint64_t offset, const std::vector<std::uint8_t>& data) const {
    UniqueFd fd(::open(path_.c_str(), O_WRONLY | O_CLOEXEC));
    ASSERT_EQ(::pwrite(fd.get(), data.data(), data.size(), static_cast<off_t>(offset)),
              static_cast<ssize_t>(data.size()));
  }

 private:
  std::string path_;
};

std::vector<std::uint8_t> pattern(std::size_t len, std::uint8_t seed) {
  std::vector<std::uint8_t> v(len);
  for (std::size_t i = 0; i < len; ++i) v[i] = static_cast<std::uint8_t>(seed + i * 7 + (i >> 9));
  return v;
}

GuestMemory make_memory() {
  auto m = GuestMemory::create({{GuestAddress(0), 0x100000}});
  EXPECT_TRUE(m) << m.error().message();
  return std::move(*m);
}

// Builds descriptor chains in guest memory: header, data and status
// buffers are carved out of a bump allocator above 64 KiB.
class ChainBuilder {
 public:
  explicit ChainBuilder(const GuestMemory& mem) : mem_(mem) {}

  GuestAddress readable(std::span<const std::byte> data) {
    const GuestAddress a = alloc(data.size());
    EXPECT_TRUE(mem_.write(a, data));
    chain_.descriptors.push_back({a, static_cast<std::uint32_t>(data.size()), false});
    return a;
  }
  GuestAddress readable(const std::vector<std::uint8_t>& data) {
    return readable(std::as_bytes(std::span(data)));
  }
  GuestAddress header(std::uint32_t type, std::uint64_t sector) {
    const RequestHeader h{type, 0, sector};
    return readable(std::as_bytes(std::span(&h, 1)));
  }
  GuestAddress segments(const std::vector<DiscardSegment>& segs) {
    return readable(std::as_bytes(std::span(segs)));
  }
  // A writable buffer pre-filled with 0xee so untouched bytes are visible.
  GuestAddress writable(std::uint32_t len) {
    const GuestAddress a = alloc(len);
    std::vector<std::byte> fill(len, std::byte{0xee});
    EXPECT_TRUE(mem_.write(a, fill));
    chain_.descriptors.push_back({a, len, true});
    return a;
  }
  GuestAddress status() { return writable(1); }
  const DescriptorChain& chain() const { return chain_; }
  void reset() { chain_ = DescriptorChain{0, {}}; }

 private:
  GuestAddress alloc(std::size_t len) {
    const GuestAddress a(next_);
    next_ += (len + 15) / 16 * 16 + 16;
    return a;
  }
  const GuestMemory& mem_;
  std::uint64_t next_ = 0x10000;
  DescriptorChain chain_{0, {}};
};

std::vector<std::uint8_t> read_guest(const GuestMemory& mem, GuestAddress a, std::size_t len) {
  std::vector<std::uint8_t> out(len);
  EXPECT_TRUE(mem.read(a, std::as_writable_bytes(std::span(out))));
  return out;
}

std::uint8_t status_at(const GuestMemory& mem, GuestAddress a) {
  auto s = mem.read_obj<std::uint8_t>(a);
  EXPECT_TRUE(s);
  return s ? *s : 0xff;
}

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

constexpr std::uint16_t kRingSize = 16;
constexpr GuestAddress kDescTable(0x1000);
constexpr GuestAddress kAvailRing(0x2000);
constexpr GuestAddress kUsedRing(0x3000);

// Lays out desc/avail/used rings in guest memory and posts chains as a
// driver would.
class TestRing {
 public:
  explicit TestRing(const GuestMemory& mem) : mem_(mem), queue_(kRingSize) {
    queue_.set_desc_table(kDescTable);
    queue_.set_avail_ring(kAvailRing);
    queue_.set_used_ring(kUsedRing);
    queue_.set_ready(true);
    EXPECT_TRUE(queue_.validate(mem_));
  }
  Queue& queue() { return queue_; }

  // Writes `descs` as a chain starting at the next free table slot and
  // publishes its head. Returns the head.
  std::uint16_t post(const std::vector<Descriptor>& descs) {
    const std::uint16_t head = next_desc_;
    for (std::size_t i = 0; i < descs.size(); ++i) {
      const std::uint16_t idx = static_cast<std::uint16_t>((head + i) % kRingSize);
      const bool last = i + 1 == descs.size();
      put_desc(idx, descs[i].addr.value(), descs[i].len,
               static_cast<std::uint16_t>((descs[i].device_writable ? kDescFlagWrite : 0) |
                                          (last ? 0 : kDescFlagNext)),
               static_cast<std::uint16_t>((idx + 1) % kRingSize));
    }
    next_desc_ = static_cast<std::uint16_t>((head + descs.size()) % kRingSize);
    publish(head);
    return head;
  }
  void put_desc(std::uint16_t idx, std::uint64_t addr, std::uint32_t len, std::uint16_t flags,
                std::uint16_t next) {
    const GuestAddress d(kDescTable.value() + 16u * idx);
    EXPECT_TRUE(mem_.write_obj<std::uint64_t>(d, addr));
    EXPECT_TRUE(mem_.write_obj<std::uint32_t>(GuestAddress(d.value() + 8), len));
    EXPECT_TRUE(mem_.write_obj<std::uint16_t>(GuestAddress(d.value() + 12), flags));
    EXPECT_TRUE(mem_.write_obj<std::uint16_t>(GuestAddress(d.value() + 14), next));
  }
  void publish(std::uint16_t head) {
    EXPECT_TRUE(mem_.write_obj<std::uint16_t>(
        GuestAddress(kAvailRing.value() + 4 + 2u * (avail_idx_ % kRingSize)), head));
    ++avail_idx_;
    EXPECT_TRUE(mem_.write_obj<std::uint16_t>(GuestAddress(kAvailRing.value() + 2), avail_idx_));
  }
  std::uint16_t used_idx() const {
    return *mem_.read_obj<std::uint16_t>(GuestAddress(kUsedRing.value() + 2));
  }
  // (id, len) of used element `i`.
  std::pair<std::uint32_t, std::uint32_t> used(std::uint16_t i) const {
    const GuestAddress e(kUsedRing.value() + 4 + 8u * (i % kRingSize));
    return {*mem_.read_obj<std::uint32_t>(e),
            *mem_.read_obj<std::uint32_t>(GuestAddress(e.value() + 4))};
  }

 private:
  const GuestMemory& mem_;
  Queue queue_;
  std::uint16_t next_desc_ = 0;
  std::uint16_t avail_idx_ = 0;
};

class FakeInterrupt : public Interrupt {
 public:
  Expected<void> signal_used_queue() override {
    ++used;
    return {};
  }
  Expected<void> signal_config_change() override {
    ++config;
    return {};
  }
  void set_needs_reset() override { ++needs_reset; }
  std::atomic<int> used{0};
  std::atomic<int> config{0};
  std::atomic<int> needs_reset{0};
};

// A tiny level-triggered epoll EventLoop run by the test thread.
class EpollLoop : public EventLoop {
 public:
  EpollLoop() : epfd_(::epoll_create1(EPOLL_CLOEXEC)) {}
  Expected<void> add(int fd, std::uint32_t events, Callback cb) override {
    std::lock_guard lock(mu_);
    epoll_event ev{};
    ev.events = to_epoll(events);
    ev.data.fd = fd;
    if (::epoll_ctl(epfd_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) return sys_error("epoll add");
    callbacks_[fd] = std::move(cb);
    return {};
  }
  Expected<void> modify(int fd, std::uint32_t events) override {
    epoll_event ev{};
    ev.events = to_epoll(events);
    ev.data.fd = fd;
    if (::epoll_ctl(epfd_.get(), EPOLL_CTL_MOD, fd, &ev) != 0) return sys_error("epoll mod");
    return {};
  }
  Expected<void> remove(int fd) override {
    std::lock_guard lock(mu_);
    if (::epoll_ctl(epfd_.get(), EPOLL_CTL_DEL, fd, nullptr) != 0) return sys_error("epoll del");
    callbacks_.erase(fd);
    return {};
  }
  std::size_t registered() {
    std::lock_guard lock(mu_);
    return callbacks_.size();
  }
  // Dispatches events until `done()` holds or `timeout` passes.
  bool run_until(const std::function<bool()>& done,
                 std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      epoll_event ev{};
      if (::epoll_wait(epfd_.get(), &ev, 1, 5) == 1) {
        Callback cb;
        {
          std::lock_guard lock(mu_);
          auto it = callbacks_.find(ev.data.fd);
          if (it == callbacks_.end()) continue;
          cb = it->second;
        }
        cb(kReadable);
      }
    }
    return true;
  }

 private:
  static std::uint32_t to_epoll(std::uint32_t events) {
    return ((events & kReadable) ? EPOLLIN : 0u) | ((events & kWritable) ? EPOLLOUT : 0u);
  }
  UniqueFd epfd_;
  std::mutex mu_;
  std::map<int, Callback> callbacks_;
};

class BlockDeviceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto d = DiskImage::open(file_.path(), false);
    ASSERT_TRUE(d) << d.error().message();
    device_.emplace(std::move(*d), "serial-1234");
    auto n = EventFd::create();
    ASSERT_TRUE(n);
    notify_.emplace(std::move(*n));
  }
  void activate(std::uint64_t acked) {
    device_->ack_features(acked);
    ASSERT_TRUE(device_->activate(mem_, {ActiveQueue{&ring_.queue(), notify_->fd()}}, irq_, loop_));
  }
  // Posts the chain built so far, notifies, and waits for `n` used entries.
  bool submit_and_wait(std::uint16_t n) {
    ring_.post(chain_.chain().descriptors);
    chain_.reset();
    EXPECT_TRUE(notify_->signal());
    return loop_.run_until([&] { return irq_->used.load() > 0 && ring_.used_idx() >= n; });
  }

  TempFile file_{kDiskBytes};
  GuestMemory mem_ = make_memory();
  ChainBuilder chain_{mem_};
  TestRing ring_{mem_};
  EpollLoop loop_;
  std::shared_ptr<FakeInterrupt> irq_ = std::make_shared<FakeInterrupt>();
  std::optional<EventFd> notify_;
  std::optional<BlockDevice> device_;
};

TEST_F(BlockDeviceTest, OffersFeaturesAndReadOnlyConfig) {
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
  BlockDevice dev(std::move(*d), "ro");
  EXPECT_TRUE(dev.features() & kFeatureRo);
  EXPECT_FALSE(dev.features() & kFeatureDiscard);
  EXPECT_FALSE(dev.features() & kFeatureWriteZeroes);
}

TEST_F(BlockDeviceTest, ProcessesRequestsThroughTheEventLoop) {
  activate(kFeatureVersion1 | kFeatureFlush);
  const auto data = pattern(1024, 21);
  chain_.header(kTypeOut, 5);
  chain_.readable(data);
  const GuestAddress st1 = chain_.status();
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
  const auto got = read_guest(mem_, id, 20);
  EXPECT_EQ(std::memcmp(got.data(), "serial-1234\0\0\0\0\0\0\0\0\0", 20), 0);
  EXPECT_EQ(irq_->needs_reset.load(), 0);
}

TEST_F(BlockDeviceTest, ProcessesABatchWithEventIdx) {
  activate(kFeatureVersion1 | kFeatureEventIdx);
  std::vector<GuestAddress> statuses;
  for (int i = 0; i < 4; ++i) {
    chain_.header(kTypeOut, static_cast<std::uint64_t>(i));
    chain_.readable(pattern(512, static_cast<std::uint8_t>(i)));
    statuses.push_back(chain_.status());
    ring_.post(chain_.chain().descriptors);
    chain_.reset();
  }
  ASSERT_TRUE(notify_->signal());
  ASSERT_TRUE(loop_.run_until([&] { return irq_->used.load() > 0 && ring_.used_idx() >= 4; }));
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

TEST_F(BlockDeviceTest, ChainWithoutStatusIsReturnedWithLengthZero) {
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

TEST_F(BlockDeviceTest, MalformedChainSetsNeedsResetOnce) {
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

TEST_F(BlockDeviceTest, ResetUnregistersAndAllowsReactivation) {
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

TEST_F(BlockDeviceTest, RejectsActivationWithoutExactlyOneQueue) {
  EXPECT_FALSE(device_->activate(mem_, {}, irq_, loop_));
  EXPECT_EQ(loop_.registered(), 0u);
}

}  // namespace
}  // namespace hvz::virtio::block
