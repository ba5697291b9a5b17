// MmapRegion: mmap/munmap with errors as values.
#include "vmm/core/mmap_region.hpp"

#include <sys/mman.h>
#include <unistd.h>

namespace hvz {

MmapRegion& MmapRegion::operator=(MmapRegion&& other) noexcept {
  if (this != &other) {
    if (addr_ != nullptr) ::munmap(addr_, size_);
    addr_ = std::exchange(other.addr_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

MmapRegion::~MmapRegion() {
  if (addr_ != nullptr) ::munmap(addr_, size_);
}

Expected<MmapRegion> MmapRegion::anonymous(std::size_t size, std::size_t alignment) {
  if (size == 0) return make_error(Errc::kInvalidArgument, "mmap: zero-sized anonymous mapping");
  if (alignment & (alignment - 1)) {
    return make_error(Errc::kInvalidArgument, "mmap: alignment is not a power of two");
  }
  const std::size_t slack = alignment;
  if (size + slack < size) return make_error(Errc::kInvalidArgument, "mmap: size overflows");
  constexpr int kFlags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
  void* p = ::mmap(nullptr, size + slack, PROT_READ | PROT_WRITE, kFlags, -1, 0);
  if (p == MAP_FAILED) return sys_error("mmap anonymous");
  if (slack == 0) return MmapRegion(p, size);
  // Over-map by `alignment`, then give back the unaligned head and the tail.
  const std::uintptr_t base = reinterpret_cast<std::uintptr_t>(p);
  const std::uintptr_t aligned = (base + alignment - 1) & ~(std::uintptr_t{alignment} - 1);
  if (aligned > base) ::munmap(p, aligned - base);
  const std::uintptr_t end = base + size + slack;
  if (end > aligned + size) ::munmap(reinterpret_cast<void*>(aligned + size), end - aligned - size);
  return MmapRegion(reinterpret_cast<void*>(aligned), size);
}

Expected<MmapRegion> MmapRegion::of_fd(int fd, std::size_t size, int prot) {
  if (size == 0) return make_error(Errc::kInvalidArgument, "mmap: zero-sized fd mapping");
  void* p = ::mmap(nullptr, size, prot, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return sys_error("mmap fd");
  return MmapRegion(p, size);
}

Expected<MmapRegion> MmapRegion::private_file(int fd, std::uint64_t offset, std::size_t size) {
  if (size == 0) return make_error(Errc::kInvalidArgument, "mmap: zero-sized file mapping");
  const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  if (offset % page != 0) {
    return make_error(Errc::kInvalidArgument, "mmap: file offset is not page aligned");
  }
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd,
                   static_cast<off_t>(offset));
  if (p == MAP_FAILED) return sys_error("mmap file (private)");
  return MmapRegion(p, size);
}

}  // namespace hvz
