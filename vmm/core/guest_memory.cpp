// GuestMemory: region set-up and bounds-checked access (see guest_memory.hpp).
#include "vmm/core/guest_memory.hpp"

#include <sys/mman.h>

#include <string>

namespace hvz {
namespace {

std::string range_text(GuestAddress addr, std::uint64_t len) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "[%#llx, +%#llx)", static_cast<unsigned long long>(addr.value()),
                static_cast<unsigned long long>(len));
  return buf;
}

}  // namespace

Expected<GuestMemory> GuestMemory::create(const std::vector<MemoryRange>& ranges, bool huge_pages) {
  std::vector<Region> regions;
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
    auto mapping = MmapRegion::anonymous(r.size, huge_pages ? kHugePageSize : 0);
    if (!mapping) return tl::unexpected(mapping.error());
    if (huge_pages) {
      // Best effort: THP may be disabled on the host; the mapping still works.
      ::madvise(mapping->data(), mapping->size(), MADV_HUGEPAGE);
    }
    // Guest RAM is never copied into a child: a fork would otherwise share
    // KVM-mapped pages copy-on-write with it (QEMU does the same). It also
    // keeps the mapping a VMA of its own (flag "dc" in /proc/PID/smaps),
    // which is how the quiesce guest test finds and checksums guest RAM.
    if (::madvise(mapping->data(), mapping->size(), MADV_DONTFORK) < 0) {
      return sys_error("madvise(MADV_DONTFORK) on guest memory");
    }
    regions.push_back(Region{r.start, std::move(*mapping)});
  }
  if (regions.empty()) return make_error(Errc::kInvalidArgument, "guest memory has no ranges");
  return GuestMemory(std::move(regions));
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
  return {};
}

}  // namespace hvz
