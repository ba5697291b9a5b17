// DiskImage: raw image / block device I/O (see disk_image.hpp).
#include "virtio/block/disk_image.hpp"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <climits>
#include <vector>

#include "vmm/core/iovec.hpp"

namespace hvz::virtio::block {
namespace {

// The largest iovec count one preadv/pwritev accepts.
constexpr std::size_t kMaxIov = IOV_MAX;
// Hole punching is probed this far past the end of the file, where there is
// no data to lose.
constexpr std::uint64_t kProbeAlign = 4096;

// Drops the first `n` transferred bytes from the iovec array starting at
// `index`, advancing `index` past fully consumed entries.
void advance(std::vector<iovec>& iov, std::size_t& index, std::size_t n) {
  while (n > 0 && index < iov.size()) {
    if (n >= iov[index].iov_len) {
      n -= iov[index].iov_len;
      ++index;
    } else {
      iov[index].iov_base = static_cast<std::byte*>(iov[index].iov_base) + n;
      iov[index].iov_len -= n;
      n = 0;
    }
  }
}

template <typename Op>
Expected<void> transfer_all(std::vector<iovec> iov, std::uint64_t offset, const char* what, Op op) {
  std::size_t index = 0;
  while (index < iov.size()) {
    const int count = static_cast<int>(std::min(kMaxIov, iov.size() - index));
    const ssize_t n = op(&iov[index], count, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_error(what);
    }
    if (n == 0)
      return make_error(Errc::kOutOfRange, std::string(what) + ": unexpected end of file");
    offset += static_cast<std::uint64_t>(n);
    advance(iov, index, static_cast<std::size_t>(n));
  }
  return {};
}

}  // namespace

Expected<DiskImage> DiskImage::open(const std::string& path, bool read_only) {
  const int flags = (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
  UniqueFd fd(::open(path.c_str(), flags));
  if (!fd) return sys_error("open disk image " + path);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return sys_error("fstat disk image " + path);

  std::uint64_t size = 0;
  bool discard = false;
  if (S_ISREG(st.st_mode)) {
    size = static_cast<std::uint64_t>(st.st_size);
    if (!read_only) {
      // Punching a hole past the end of the file changes nothing but tells
      // whether the filesystem supports it.
      const std::uint64_t probe = (size + kProbeAlign - 1) / kProbeAlign * kProbeAlign;
      discard = ::fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                            static_cast<off_t>(probe), static_cast<off_t>(kProbeAlign)) == 0;
    }
  } else if (S_ISBLK(st.st_mode)) {
    if (::ioctl(fd.get(), BLKGETSIZE64, &size) != 0) {
      return sys_error("BLKGETSIZE64 on disk " + path);
    }
    // Not offered for block devices yet: their fallocate rejects probes past
    // the end, and a real probe would destroy data.
    discard = false;
  } else {
    return make_error(Errc::kInvalidArgument,
                      "disk image " + path + " is neither a regular file nor a block device");
  }
  if (size % kSectorSize != 0) {
    return make_error(Errc::kInvalidArgument, "disk image " + path + ": size " +
                                                  std::to_string(size) +
                                                  " bytes is not a multiple of 512");
  }
  return DiskImage(path, std::move(fd), size, read_only, discard);
}

Expected<void> DiskImage::check_range(std::uint64_t offset, std::uint64_t len,
                                      const char* what) const {
  if (offset > size_ || len > size_ - offset) {
    return make_error(Errc::kOutOfRange, std::string(what) + ": range past the end of the disk");
  }
  return {};
}

Expected<void> DiskImage::check_writable(const char* what) const {
  if (read_only_)
    return make_error(Errc::kInvalidArgument, std::string(what) + ": disk is read-only");
  return {};
}

Expected<void> DiskImage::check_access(std::uint64_t offset, std::uint64_t len, bool write) const {
  if (write) {
    if (auto r = check_writable("disk write"); !r) return r;
  }
  return check_range(offset, len, write ? "disk write" : "disk read");
}

Expected<void> DiskImage::read_at(std::uint64_t offset,
                                  std::span<const std::span<std::byte>> bufs) {
  std::uint64_t len = 0;
  for (const auto& b : bufs) len += b.size();
  if (auto r = check_range(offset, len, "disk read"); !r) return r;
  return transfer_all(
      to_iovecs(bufs), offset, "disk read",
      [this](const iovec* iov, int n, off_t off) { return ::preadv(fd_.get(), iov, n, off); });
}

Expected<void> DiskImage::write_at(std::uint64_t offset,
                                   std::span<const std::span<std::byte>> bufs) {
  if (auto r = check_writable("disk write"); !r) return r;
  std::uint64_t len = 0;
  for (const auto& b : bufs) len += b.size();
  if (auto r = check_range(offset, len, "disk write"); !r) return r;
  return transfer_all(
      to_iovecs(bufs), offset, "disk write",
      [this](const iovec* iov, int n, off_t off) { return ::pwritev(fd_.get(), iov, n, off); });
}

Expected<void> DiskImage::flush() {
  while (::fdatasync(fd_.get()) != 0) {
    if (errno != EINTR) return sys_error("fdatasync disk image");
  }
  return {};
}

Expected<void> DiskImage::discard(std::uint64_t offset, std::uint64_t len) {
  if (auto r = check_writable("disk discard"); !r) return r;
  if (auto r = check_range(offset, len, "disk discard"); !r) return r;
  if (!discard_supported_) return make_error(Errc::kUnsupported, "disk discard: not supported");
  if (len == 0) return {};
  while (::fallocate(fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                     static_cast<off_t>(offset), static_cast<off_t>(len)) != 0) {
    if (errno != EINTR) return sys_error("fallocate(PUNCH_HOLE) disk image");
  }
  return {};
}

Expected<void> DiskImage::write_zeroes(std::uint64_t offset, std::uint64_t len, bool may_unmap) {
  if (auto r = check_writable("disk write-zeroes"); !r) return r;
  if (auto r = check_range(offset, len, "disk write-zeroes"); !r) return r;
  if (len == 0) return {};
  if (may_unmap && discard_supported_) {
    // A punched hole reads back as zeroes and frees the space.
    if (discard(offset, len)) return {};
  }
  if (!zero_range_unsupported_) {
    for (;;) {
      if (::fallocate(fd_.get(), FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
                      static_cast<off_t>(offset), static_cast<off_t>(len)) == 0) {
        return {};
      }
      if (errno == EINTR) continue;
      if (errno == EOPNOTSUPP || errno == ENOSYS || errno == EINVAL) break;
      return sys_error("fallocate(ZERO_RANGE) disk image");
    }
    zero_range_unsupported_ = true;
  }
  return write_zero_buffer(offset, len);
}

Expected<void> DiskImage::write_zero_buffer(std::uint64_t offset, std::uint64_t len) {
  static constexpr std::size_t kChunk = 64 * 1024;
  std::vector<std::byte> zeroes(static_cast<std::size_t>(std::min<std::uint64_t>(len, kChunk)));
  while (len > 0) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(len, zeroes.size()));
    const std::array<std::span<std::byte>, 1> buf{std::span<std::byte>(zeroes.data(), n)};
    if (auto r = write_at(offset, buf); !r) return r;
    offset += n;
    len -= n;
  }
  return {};
}

}  // namespace hvz::virtio::block
