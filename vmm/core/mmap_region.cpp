// MmapRegion: mmap/munmap with errors as values.
#include "vmm/core/mmap_region.hpp"

#include <sys/mman.h>

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

Expected<MmapRegion> MmapRegion::anonymous(std::size_t size) {
  if (size == 0) return make_error(Errc::kInvalidArgument, "mmap: zero-sized anonymous mapping");
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return sys_error("mmap anonymous");
  return MmapRegion(p, size);
}

Expected<MmapRegion> MmapRegion::of_fd(int fd, std::size_t size, int prot) {
  if (size == 0) return make_error(Errc::kInvalidArgument, "mmap: zero-sized fd mapping");
  void* p = ::mmap(nullptr, size, prot, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return sys_error("mmap fd");
  return MmapRegion(p, size);
}

}  // namespace hvz
