// Initrd placement: where in guest RAM the initial ramdisk goes, and the copy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "vmm/core/guest_memory.hpp"

namespace hvz::x86_64 {

inline constexpr std::uint64_t kInitrdAlign = 0x1000;
// The PVH start info has no initrd_addr_max; stay below 4 GiB.
inline constexpr std::uint64_t kPvhInitrdAddrMax = 0xffffffff;

// Copies the initrd page-aligned to the highest address in the first RAM
// region such that it ends at or below both max_addr + 1 (max_addr is the
// highest byte address it may occupy: the header's initrd_addr_max) and the
// region's end, and starts at or above kernel_end (and 1 MiB). Returns its
// guest address.
Expected<GuestAddress> load_initrd(const GuestMemory& mem, std::span<const std::byte> initrd,
                                   GuestAddress kernel_end, std::uint64_t max_addr);

}  // namespace hvz::x86_64
