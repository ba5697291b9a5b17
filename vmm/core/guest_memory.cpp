// GuestMemory: region set-up and bounds-checked access (see guest_memory.hpp).
#include "vmm/core/guest_memory.hpp"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include <string>

namespace hvz {
namespace {

std::string range_text(GuestAddress addr, std::uint64_t len) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "[%#llx, +%#llx)", static_cast<unsigned long long>(addr.value()),
                static_cast<unsigned long long>(len));
  return buf;
}

// The ranges' layout rules: sorted, disjoint, non-empty, not wrapping.
Expected<void> check_ranges(const std::vector<MemoryRange>& ranges) {
  if (ranges.empty()) return make_error(Errc::kInvalidArgument, "guest memory has no ranges");
  std::optional<GuestAddress> prev_end;
  for (const auto& r : ranges) {
    auto end = r.start.checked_add(r.size);
    if (r.size == 0 || !end) {
      return make_error(Errc::kInvalidArgument,
                        "guest memory range " + range_text(r.start, r.size) + " is empty or wraps");
    }
    if (prev_end && r.start < *prev_end) {
      return make_error(Errc::kInvalidArgument, "guest memory ranges overlap or are unsorted");
    }
    prev_end = end;
  }
  return {};
}

// Guest RAM is never copied into a child: a fork would otherwise share
// KVM-mapped pages copy-on-write with it (QEMU does the same). It also
// keeps the mapping a VMA of its own (flag "dc" in /proc/PID/smaps), which
// is how the quiesce guest test finds and checksums guest RAM.
Expected<void> dont_fork(const MmapRegion& mapping) {
  if (::madvise(mapping.data(), mapping.size(), MADV_DONTFORK) < 0) {
    return sys_error("madvise(MADV_DONTFORK) on guest memory");
  }
  return {};
}

bool all_zero(std::span<const std::byte> bytes) {
  // Word at a time: the buffers are page aligned and a multiple of 8 long.
  const auto* p = reinterpret_cast<const std::uint64_t*>(bytes.data());
  std::uint64_t acc = 0;
  for (std::size_t i = 0; i < bytes.size() / 8; ++i) acc |= p[i];
  return acc == 0;
}

Expected<void> pwrite_all(int fd, std::span<const std::byte> data, std::uint64_t offset) {
  while (!data.empty()) {
    const ssize_t n = ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sys_error("write guest memory");
    if (n == 0) return make_error(Errc::kSystem, "write guest memory: no progress");
    data = data.subspan(static_cast<std::size_t>(n));
    offset += static_cast<std::uint64_t>(n);
  }
  return {};
}

}  // namespace

Expected<GuestMemory> GuestMemory::create(const std::vector<MemoryRange>& ranges, bool huge_pages) {
  if (auto r = check_ranges(ranges); !r) return tl::unexpected(r.error());
  std::vector<Region> regions;
  for (const auto& r : ranges) {
    auto mapping = MmapRegion::anonymous(r.size, huge_pages ? kHugePageSize : 0);
    if (!mapping) return tl::unexpected(mapping.error());
    if (huge_pages) {
      // Best effort: THP may be disabled on the host; the mapping still works.
      ::madvise(mapping->data(), mapping->size(), MADV_HUGEPAGE);
    }
    if (auto d = dont_fork(*mapping); !d) return tl::unexpected(d.error());
    regions.push_back(Region{r.start, std::move(*mapping)});
  }
  return GuestMemory(std::move(regions));
}

Expected<GuestMemory> GuestMemory::from_file(const std::vector<MemoryRange>& ranges, int fd) {
  if (auto r = check_ranges(ranges); !r) return tl::unexpected(r.error());
  struct stat st {};
  if (::fstat(fd, &st) < 0) return sys_error("memory file: fstat");
  if (!S_ISREG(st.st_mode)) {
    return make_error(Errc::kInvalidArgument, "memory file is not a regular file");
  }
  std::uint64_t total = 0;
  for (const auto& r : ranges) total += r.size;  // cannot wrap: ranges are disjoint
  if (static_cast<std::uint64_t>(st.st_size) != total) {
    return make_error(Errc::kInvalidArgument, "memory file holds " + std::to_string(st.st_size) +
                                                  " bytes, the guest's memory is " +
                                                  std::to_string(total));
  }
  std::vector<Region> regions;
  std::uint64_t offset = 0;
  for (const auto& r : ranges) {
    auto mapping = MmapRegion::private_file(fd, offset, r.size);
    if (!mapping) return tl::unexpected(mapping.error());
    if (auto d = dont_fork(*mapping); !d) return tl::unexpected(d.error());
    regions.push_back(Region{r.start, std::move(*mapping)});
    offset += r.size;
  }
  return GuestMemory(std::move(regions));
}

Expected<void> GuestMemory::write_to(int fd) const {
  // Truncating first turns every page of an older, longer or overwritten
  // file into a hole, so skipped pages read back as zeros.
  if (::ftruncate(fd, 0) < 0 || ::ftruncate(fd, static_cast<off_t>(total_size())) < 0) {
    return sys_error("memory file: ftruncate");
  }
  constexpr std::size_t kPage = 4096;
  std::uint64_t file_offset = 0;
  for (const auto& region : regions_) {
    const auto bytes = region.mapping.bytes();
    // Runs of non-zero pages go out in one write each.
    std::size_t run_start = 0;
    std::size_t pos = 0;
    while (pos < bytes.size()) {
      const std::size_t len = std::min(kPage, bytes.size() - pos);
      if (all_zero(bytes.subspan(pos, len))) {
        if (pos > run_start) {
          auto w =
              pwrite_all(fd, bytes.subspan(run_start, pos - run_start), file_offset + run_start);
          if (!w) return w;
        }
        run_start = pos + len;
      }
      pos += len;
    }
    if (pos > run_start) {
      auto w = pwrite_all(fd, bytes.subspan(run_start, pos - run_start), file_offset + run_start);
      if (!w) return w;
    }
    file_offset += bytes.size();
  }
  return {};
}

std::uint64_t GuestMemory::total_size() const {
  std::uint64_t total = 0;
  for (const auto& r : regions_) total += r.size();
  return total;
}

const GuestMemory::Region* GuestMemory::find(GuestAddress addr, std::uint64_t len) const {
  for (const auto& r : regions_) {
    if (addr < r.start) continue;
    const std::uint64_t off = addr.value() - r.start.value();
    if (off <= r.size() && len <= r.size() - off) return &r;
  }
  return nullptr;
}

bool GuestMemory::contains(GuestAddress addr, std::uint64_t len) const {
  return find(addr, len) != nullptr;
}

Expected<std::span<std::byte>> GuestMemory::get_slice(GuestAddress addr, std::uint64_t len) const {
  const Region* r = find(addr, len);
  if (r == nullptr) {
    return make_error(Errc::kOutOfRange,
                      "guest range " + range_text(addr, len) + " is not inside guest RAM");
  }
  return r->mapping.bytes().subspan(addr.value() - r->start.value(), len);
}

Expected<void> GuestMemory::read(GuestAddress addr, std::span<std::byte> out) const {
  auto slice = get_slice(addr, out.size());
  if (!slice) return tl::unexpected(slice.error());
  if (!out.empty()) std::memcpy(out.data(), slice->data(), out.size());
  return {};
}

Expected<void> GuestMemory::write(GuestAddress addr, std::span<const std::byte> in) const {
  auto slice = get_slice(addr, in.size());
  if (!slice) return tl::unexpected(slice.error());
  if (!in.empty()) std::memcpy(slice->data(), in.data(), in.size());
  mark_dirty(addr, in.size());
  return {};
}

void GuestMemory::enable_dirty_tracking() {
  if (dirty_tracking()) return;
  for (const auto& r : regions_) {
    DirtyBits d;
    d.words = (r.size() / kDirtyPageSize + 63) / 64;
    d.bits = std::make_unique<std::atomic<std::uint64_t>[]>(d.words);  // zeroed
    dirty_.push_back(std::move(d));
  }
}

void GuestMemory::mark_dirty(GuestAddress addr, std::uint64_t len) const {
  if (dirty_.empty() || len == 0) return;
  for (std::size_t i = 0; i < regions_.size(); ++i) {
    const Region& r = regions_[i];
    const std::uint64_t start = r.start.value();
    const std::uint64_t end = start + r.size();
    // The part of [addr, addr + len) inside this region (len may run past
    // the end of the address space: clamp rather than wrap).
    const std::uint64_t from = std::max(addr.value(), start);
    const std::uint64_t last = addr.value() + std::min(len - 1, ~std::uint64_t{0} - addr.value());
    const std::uint64_t to = std::min(last, end - 1);
    if (from > to) continue;
    for (std::uint64_t page = (from - start) / kDirtyPageSize;
         page <= (to - start) / kDirtyPageSize; ++page) {
      dirty_[i].bits[page / 64].fetch_or(std::uint64_t{1} << (page % 64),
                                         std::memory_order_relaxed);
    }
  }
}

std::vector<std::vector<std::uint64_t>> GuestMemory::take_dirty_pages() const {
  std::vector<std::vector<std::uint64_t>> out;
  for (const auto& d : dirty_) {
    std::vector<std::uint64_t> words(d.words);
    for (std::size_t w = 0; w < d.words; ++w) {
      words[w] = d.bits[w].exchange(0, std::memory_order_relaxed);
    }
    out.push_back(std::move(words));
  }
  return out;
}

}  // namespace hvz
