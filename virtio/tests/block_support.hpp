// Helpers shared by the virtio-blk tests: a temporary disk file, data
// patterns, guest memory and a builder of request chains in it.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include "virtio/block/block_device.hpp"
#include "virtio/block/request.hpp"
#include "virtio/queue.hpp"
#include "vmm/core/guest_memory.hpp"
#include "vmm/core/unique_fd.hpp"

namespace hvz::virtio::block {

inline constexpr std::uint64_t kDiskSectors = 64;
inline constexpr std::uint64_t kDiskBytes = kDiskSectors * kSectorSize;

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

inline std::vector<std::uint8_t> pattern(std::size_t len, std::uint8_t seed) {
  std::vector<std::uint8_t> v(len);
  for (std::size_t i = 0; i < len; ++i) v[i] = static_cast<std::uint8_t>(seed + i * 7 + (i >> 9));
  return v;
}

// Names the parameterised tests after their I/O engine (".../Sync").
inline std::string engine_name(const ::testing::TestParamInfo<IoEngine>& info) {
  return to_string(info.param);
}

inline GuestMemory make_memory() {
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

inline std::vector<std::uint8_t> read_guest(const GuestMemory& mem, GuestAddress a,
                                            std::size_t len) {
  std::vector<std::uint8_t> out(len);
  EXPECT_TRUE(mem.read(a, std::as_writable_bytes(std::span(out))));
  return out;
}

inline std::uint8_t status_at(const GuestMemory& mem, GuestAddress a) {
  auto s = mem.read_obj<std::uint8_t>(a);
  EXPECT_TRUE(s);
  return s ? *s : 0xff;
}

}  // namespace hvz::virtio::block
