// bzImage parsing and loading per the Linux x86 boot protocol
// (Documentation/arch/x86/boot.rst). The image is untrusted: every field is
// bounds-checked against the file before it is used.
#pragma once

#include <asm/bootparam.h>

#include <cstddef>
#include <cstdint>
#include <span>

#include "vmm/core/guest_memory.hpp"

namespace hvz::x86_64 {

inline constexpr std::uint16_t kBootFlag = 0xaa55;
inline constexpr std::uint32_t kHdrSMagic = 0x53726448;  // "HdrS"
// 2.12 brings xloadflags (XLF_KERNEL_64) and the 64-bit entry point.
inline constexpr std::uint16_t kMinBootProtocol = 0x020c;
inline constexpr std::uint64_t kSetupHeaderOffset = 0x1f1;
inline constexpr std::uint64_t kEntry64Offset = 0x200;  // startup_64 from the load address

struct BzImage {
  setup_header header;                        // as in the image (bytes past its end zeroed)
  std::span<const std::byte> protected_mode;  // image[(setup_sects + 1) * 512 ..]
};

struct LoadedBzImage {
  GuestAddress entry;  // 64-bit entry point
  GuestAddress end;    // load address + max(protected-mode size, init_size)
  setup_header header;
};

// True when the image carries the boot sector signature of a bzImage (a cheap
// sniff for choosing a loader; parse_bzimage does the real checks).
bool looks_like_bzimage(std::span<const std::byte> image);

// Validates the setup header and locates the protected-mode kernel.
Expected<BzImage> parse_bzimage(std::span<const std::byte> image);

// Parses the image and copies its protected-mode part to kHighMemStart.
Expected<LoadedBzImage> load_bzimage(const GuestMemory& mem, std::span<const std::byte> image);

}  // namespace hvz::x86_64
