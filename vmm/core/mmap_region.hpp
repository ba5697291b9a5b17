// MmapRegion: an owned memory mapping (anonymous or of a file descriptor),
// unmapped on destruction. Exposes its extent as a span, never a bare pointer
// without its length.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>

#include "vmm/core/error.hpp"

namespace hvz {

inline constexpr std::size_t kHugePageSize = std::size_t{2} << 20;

class MmapRegion {
 public:
  MmapRegion() = default;
  MmapRegion(MmapRegion&& other) noexcept
      : addr_(std::exchange(other.addr_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  MmapRegion& operator=(MmapRegion&& other) noexcept;
  MmapRegion(const MmapRegion&) = delete;
  MmapRegion& operator=(const MmapRegion&) = delete;
  ~MmapRegion();

  // Private anonymous read-write memory, zero-filled, at an address that is
  // a multiple of `alignment` (a power of two; 0 = page size).
  static Expected<MmapRegion> anonymous(std::size_t size, std::size_t alignment = 0);
  // A shared mapping of `size` bytes of `fd` at offset 0.
  static Expected<MmapRegion> of_fd(int fd, std::size_t size, int prot);
  // A private, writable mapping of `size` bytes of `fd` from `offset` (a
  // multiple of the page size): pages are read from the file when first
  // touched and copied on the first write, which the file never sees.
  static Expected<MmapRegion> private_file(int fd, std::uint64_t offset, std::size_t size);

  std::span<std::byte> bytes() const { return {static_cast<std::byte*>(addr_), size_}; }
  std::size_t size() const { return size_; }
  std::uint64_t host_address() const { return reinterpret_cast<std::uintptr_t>(addr_); }
  void* data() const { return addr_; }

 private:
  MmapRegion(void* addr, std::size_t size) : addr_(addr), size_(size) {}
  void* addr_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace hvz
