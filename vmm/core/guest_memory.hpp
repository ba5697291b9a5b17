// GuestMemory: the guest's RAM as a set of disjoint regions, each an owned
// anonymous mapping at a guest physical address. Every access by the monitor
// goes through here and is bounds-checked: an access not wholly inside one
// region is an Errc::kOutOfRange error, never a wild pointer. Guest-writable
// data is copied out once (read_obj) rather than read twice in place.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <type_traits>
#include <vector>

#include "vmm/core/error.hpp"
#include "vmm/core/guest_address.hpp"
#include "vmm/core/mmap_region.hpp"

namespace hvz {

// The unit of dirty-page tracking (KVM's dirty log uses the same).
inline constexpr std::uint64_t kDirtyPageSize = 4096;

struct MemoryRange {
  GuestAddress start;
  std::uint64_t size;
};

class GuestMemory {
 public:
  struct Region {
    GuestAddress start;
    MmapRegion mapping;
    std::uint64_t size() const { return mapping.size(); }
  };

  // Maps each range (sorted, disjoint, non-empty). With `huge_pages`, the
  // mappings are 2 MiB aligned and advised for transparent huge pages.
  static Expected<GuestMemory> create(const std::vector<MemoryRange>& ranges,
                                      bool huge_pages = false);

  // Guest RAM restored from a memory file (GuestMemory::write_to's format:
  // the ranges' bytes back to back, nothing else): each range is a private
  // mapping of its part of `fd`, so pages are read when the guest first
  // touches them and its writes never reach the file (clones of one file
  // share the host's page cache). The file must hold exactly the ranges'
  // total size.
  static Expected<GuestMemory> from_file(const std::vector<MemoryRange>& ranges, int fd);

  // Writes every region, back to back, to `fd` from offset 0 and makes the
  // file exactly total_size() long. Pages that are all zeros are left as
  // holes (not written), so an idle guest's unused RAM costs no disk.
  Expected<void> write_to(int fd) const;

  // Dirty-page tracking of the monitor's own writes, for diff snapshots:
  // KVM's dirty log records what the guest writes, not what devices write
  // into guest RAM (used rings, read data, received frames). Once enabled
  // (before any device runs), write() and every slice a device takes to
  // write (virtio's Writer) mark their pages; take_dirty_pages() returns
  // and clears the marks. Any thread.
  void enable_dirty_tracking();
  bool dirty_tracking() const { return !dirty_.empty(); }
  // Marks the 4 KiB pages of [addr, addr + len) (the part inside RAM) as
  // written. Does nothing while tracking is off.
  void mark_dirty(GuestAddress addr, std::uint64_t len) const;
  // Per region (in regions() order), one bit per 4 KiB page (bit i of word
  // w: page 64 * w + i), set for the pages marked since the last call; the
  // marks are cleared. Empty when tracking is off.
  std::vector<std::vector<std::uint64_t>> take_dirty_pages() const;

  const std::vector<Region>& regions() const { return regions_; }
  std::uint64_t total_size() const;
  // True when [addr, addr + len) lies wholly inside one region.
  bool contains(GuestAddress addr, std::uint64_t len) const;

  // The host bytes backing [addr, addr + len), inside one region.
  Expected<std::span<std::byte>> get_slice(GuestAddress addr, std::uint64_t len) const;

  Expected<void> read(GuestAddress addr, std::span<std::byte> out) const;
  Expected<void> write(GuestAddress addr, std::span<const std::byte> in) const;

  template <typename T>
  Expected<T> read_obj(GuestAddress addr) const {
    static_assert(std::is_trivially_copyable_v<T>);
    T value;
    auto r = read(addr, std::as_writable_bytes(std::span<T, 1>(&value, 1)));
    if (!r) return tl::unexpected(r.error());
    return value;
  }
  template <typename T>
  Expected<void> write_obj(GuestAddress addr, const T& value) const {
    static_assert(std::is_trivially_copyable_v<T>);
    return write(addr, std::as_bytes(std::span<const T, 1>(&value, 1)));
  }

 private:
  explicit GuestMemory(std::vector<Region> regions) : regions_(std::move(regions)) {}
  const Region* find(GuestAddress addr, std::uint64_t len) const;
  std::vector<Region> regions_;
  // Per region, its pages' dirty bits (see enable_dirty_tracking); empty
  // while tracking is off.
  struct DirtyBits {
    std::size_t words = 0;
    std::unique_ptr<std::atomic<std::uint64_t>[]> bits;
  };
  std::vector<DirtyBits> dirty_;
};

}  // namespace hvz
