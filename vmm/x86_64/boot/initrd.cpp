// Initrd placement and copy (see initrd.hpp).
#include "vmm/x86_64/boot/initrd.hpp"

#include <algorithm>
#include <string>

#include "vmm/core/format.hpp"
#include "vmm/x86_64/layout.hpp"

namespace hvz::x86_64 {

Expected<GuestAddress> load_initrd(const GuestMemory& mem, std::span<const std::byte> initrd,
                                   GuestAddress kernel_end, std::uint64_t max_addr) {
  if (initrd.empty()) return make_error(Errc::kInvalidArgument, "initrd is empty");
  const auto& first = mem.regions().front();  // GuestMemory always has a region
  const std::uint64_t region_end = first.start.value() + first.size();  // no wrap (create checks)
  // max_addr is inclusive; saturate so 2^64 - 1 means "no limit".
  const std::uint64_t limit_end =
      std::min(region_end, max_addr == ~std::uint64_t{0} ? max_addr : max_addr + 1);
  const std::uint64_t floor = std::max({kernel_end.value(), first.start.value(), kHighMemStart});
  const std::uint64_t size = initrd.size();
  if (size > limit_end) {
    return make_error(Errc::kOutOfRange, "initrd (" + hex(size) + " bytes) is larger than " +
                                             "the memory below " + hex(limit_end));
  }
  const std::uint64_t start = (limit_end - size) & ~(kInitrdAlign - 1);
  if (start < floor) {
    return make_error(Errc::kOutOfRange, "initrd (" + hex(size) +
                                             " bytes) does not fit between the kernel end " +
                                             hex(floor) + " and " + hex(limit_end));
  }
  auto w = mem.write(GuestAddress(start), initrd);
  if (!w) return tl::unexpected(w.error());
  return GuestAddress(start);
}

}  // namespace hvz::x86_64
