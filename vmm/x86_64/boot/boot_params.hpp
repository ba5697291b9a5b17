// Boot-time data the kernel reads on entry: the Linux zero page (struct
// boot_params) with the command line, or the PVH hvm_start_info with its
// module list and memory map.
#pragma once

#include <optional>
#include <string_view>

#include "vmm/core/guest_memory.hpp"
#include "vmm/x86_64/boot/kernel_loader.hpp"

namespace hvz::x86_64 {

// Writes the zero page at kZeroPage and the NUL-terminated command line at
// kCmdlineStart for a kernel entered with the 64-bit Linux boot protocol.
// The setup header comes from the bzImage, or is constructed for an ELF
// kernel. `initrd` is where load_initrd put the ramdisk.
Expected<void> configure_linux_boot(const GuestMemory& mem, const LoadedKernel& kernel,
                                    std::string_view cmdline, std::optional<MemoryRange> initrd);

// Writes hvm_start_info at kPvhStartInfo, followed by the module list (the
// initrd) and the e820 memory map, all below kZeroPage, and the command line
// at kCmdlineStart.
Expected<void> configure_pvh_boot(const GuestMemory& mem, std::string_view cmdline,
                                  std::optional<MemoryRange> initrd);

}  // namespace hvz::x86_64
