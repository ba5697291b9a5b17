// load_kernel: picks the loader for a kernel image by its magic (ELF vmlinux
// or bzImage) and says how to enter it.
#pragma once

#include <asm/bootparam.h>

#include <cstddef>
#include <optional>
#include <span>

#include "vmm/core/guest_memory.hpp"

namespace hvz::x86_64 {

enum class BootProtocol {
  kLinux64,  // 64-bit Linux boot protocol: zero page in RSI, long mode
  kPvh,      // PVH: hvm_start_info in EBX, 32-bit protected mode
};

struct LoadedKernel {
  GuestAddress entry;
  BootProtocol protocol;
  GuestAddress end;  // first byte past what was loaded, incl. init_size
  // The bzImage's setup header; nullopt for ELF (configure_linux_boot then
  // constructs one).
  std::optional<setup_header> header;
};

// ELF images prefer PVH when they carry the PVH entry note; bzImages boot
// with the 64-bit Linux protocol.
Expected<LoadedKernel> load_kernel(const GuestMemory& mem, std::span<const std::byte> image);

}  // namespace hvz::x86_64
