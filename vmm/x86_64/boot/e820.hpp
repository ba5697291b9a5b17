// The guest's e820 memory map: which guest physical ranges are RAM and which
// are reserved. The Linux zero page and the PVH start info both carry it.
#pragma once

#include <asm/bootparam.h>

#include <cstdint>
#include <vector>

#include "vmm/core/guest_memory.hpp"

namespace hvz::x86_64 {

inline constexpr std::uint32_t kE820Ram = 1;
inline constexpr std::uint32_t kE820Reserved = 2;

// RAM [0, kEbdaStart), reserved [kEbdaStart, 1 MiB), then every part of
// guest RAM at or above 1 MiB, in address order. Only RAM that exists is
// reported as RAM.
std::vector<boot_e820_entry> build_e820(const GuestMemory& mem);

}  // namespace hvz::x86_64
