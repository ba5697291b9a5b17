// build_e820: the guest memory map derived from GuestMemory's regions.
#include "vmm/x86_64/boot/e820.hpp"

#include <algorithm>

#include "vmm/x86_64/layout.hpp"

namespace hvz::x86_64 {
namespace {

// The part of [start, end) that lies inside [lo, hi), appended as `type`.
void add_clipped(std::vector<boot_e820_entry>& map, std::uint64_t start, std::uint64_t end,
                 std::uint64_t lo, std::uint64_t hi, std::uint32_t type) {
  const std::uint64_t s = std::max(start, lo);
  const std::uint64_t e = std::min(end, hi);
  if (s < e) map.push_back(boot_e820_entry{s, e - s, type});
}

}  // namespace

std::vector<boot_e820_entry> build_e820(const GuestMemory& mem) {
  std::vector<boot_e820_entry> map;
  // Regions are sorted and disjoint (GuestMemory::create guarantees it), so
  // three passes keep the map in address order.
  for (const auto& r : mem.regions()) {
    // GuestMemory refuses regions that wrap, so start + size does not overflow.
    add_clipped(map, r.start.value(), r.start.value() + r.size(), 0, kEbdaStart, kE820Ram);
  }
  // The EBDA, VGA hole and BIOS area: the guest must not use them as RAM (the
  // ACPI tables live there), whether or not memory backs them.
  map.push_back(boot_e820_entry{kEbdaStart, kHighMemStart - kEbdaStart, kE820Reserved});
  for (const auto& r : mem.regions()) {
    add_clipped(map, r.start.value(), r.start.value() + r.size(), kHighMemStart, ~std::uint64_t{0},
                kE820Ram);
  }
  return map;
}

}  // namespace hvz::x86_64
