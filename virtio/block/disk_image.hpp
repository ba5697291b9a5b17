// DiskImage: the host side of a virtio-blk drive — a raw image file or a
// block device opened once, with positioned vectored I/O (retried on EINTR
// and short transfers), flush, discard and write-zeroes. It knows nothing
// about virtqueues; request.cpp checks guest requests before they get here,
// and every method here bounds-checks again.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "vmm/core/error.hpp"
#include "vmm/core/unique_fd.hpp"

namespace hvz::virtio::block {

inline constexpr std::uint64_t kSectorSize = 512;
inline constexpr unsigned kSectorShift = 9;

class DiskImage {
 public:
  // Opens `path` (O_CLOEXEC; O_RDONLY when `read_only`, else O_RDWR). Fails
  // unless it is a regular file or a block device whose size is a multiple
  // of 512 bytes.
  static Expected<DiskImage> open(const std::string& path, bool read_only);

  // The path it was opened with (a snapshot names its disk by it).
  const std::string& path() const { return path_; }
  std::uint64_t size() const { return size_; }
  std::uint64_t sectors() const { return size_ >> kSectorShift; }
  bool read_only() const { return read_only_; }
  // Whether discard (hole punching) works on this image; probed at open.
  bool discard_supported() const { return discard_supported_; }
  // Whether write-zeroes may be offered: any writable image (ZERO_RANGE when
  // the host supports it, otherwise written zeroes).
  bool write_zeroes_supported() const { return !read_only_; }

  // Fills `bufs` in order from `offset`; all or an error. Errors: range past
  // the end (kOutOfRange), end of file reached early, I/O error.
  Expected<void> read_at(std::uint64_t offset, std::span<const std::span<std::byte>> bufs);
  // Writes `bufs` in order at `offset`; all or an error.
  Expected<void> write_at(std::uint64_t offset, std::span<const std::span<std::byte>> bufs);
  // Makes written data durable (fdatasync).
  Expected<void> flush();
  // Deallocates [offset, offset + len); later reads of it return zeroes.
  Expected<void> discard(std::uint64_t offset, std::uint64_t len);
  // Zeroes [offset, offset + len); with `may_unmap` the range may be
  // deallocated instead (reads return zeroes either way).
  Expected<void> write_zeroes(std::uint64_t offset, std::uint64_t len, bool may_unmap);

  // What read_at / write_at check before any I/O: [offset, offset + len)
  // inside the disk, and a writable disk for writes. For engines that
  // submit I/O on fd() themselves.
  Expected<void> check_access(std::uint64_t offset, std::uint64_t len, bool write) const;
  int fd() const { return fd_.get(); }

 private:
  DiskImage(std::string path, UniqueFd fd, std::uint64_t size, bool read_only,
            bool discard_supported)
      : path_(std::move(path)),
        fd_(std::move(fd)),
        size_(size),
        read_only_(read_only),
        discard_supported_(discard_supported) {}
  Expected<void> check_range(std::uint64_t offset, std::uint64_t len, const char* what) const;
  Expected<void> check_writable(const char* what) const;
  Expected<void> write_zero_buffer(std::uint64_t offset, std::uint64_t len);

  std::string path_;
  UniqueFd fd_;
  std::uint64_t size_;
  bool read_only_;
  bool discard_supported_;
  // Set once the host refused FALLOC_FL_ZERO_RANGE, so later requests go
  // straight to writing zeroes.
  bool zero_range_unsupported_ = false;
};

}  // namespace hvz::virtio::block
