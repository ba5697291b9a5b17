// The Linux zero page and the PVH start info (see boot_params.hpp).
#include "vmm/x86_64/boot/boot_params.hpp"

#include <asm/bootparam.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "vmm/core/format.hpp"
#include "vmm/x86_64/boot/bzimage.hpp"
#include "vmm/x86_64/boot/e820.hpp"
#include "vmm/x86_64/boot/pvh_start_info.hpp"
#include "vmm/x86_64/layout.hpp"

namespace hvz::x86_64 {
namespace {

constexpr std::uint8_t kLoaderTypeUndefined = 0xff;
// The end of the real-mode heap, relative to the real-mode code: the usual
// value for a setup at a 64 KiB segment. Unused on the 64-bit entry path but
// kernels check CAN_USE_HEAP before trusting heap_end_ptr.
constexpr std::uint16_t kHeapEndPtr = 0xfe00;
constexpr std::uint32_t kKernelAlignment = 0x200000;
constexpr std::uint32_t kLegacyCmdlineChars = 255;  // boot protocol < 2.06

// Writes `cmdline` and its NUL at kCmdlineStart; `max_chars` excludes the NUL.
Expected<void> write_cmdline(const GuestMemory& mem, std::string_view cmdline,
                             std::uint64_t max_chars) {
  max_chars = std::min<std::uint64_t>(max_chars, kCmdlineMax - 1);
  if (cmdline.size() > max_chars) {
    return make_error(Errc::kInvalidArgument,
                      "kernel command line is " + std::to_string(cmdline.size()) +
                          " bytes; the kernel accepts at most " + std::to_string(max_chars));
  }
  if (cmdline.find('\0') != std::string_view::npos) {
    return make_error(Errc::kInvalidArgument, "kernel command line contains a NUL byte");
  }
  auto dst = mem.get_slice(GuestAddress(kCmdlineStart), cmdline.size() + 1);
  if (!dst) return tl::unexpected(dst.error());
  std::memcpy(dst->data(), cmdline.data(), cmdline.size());
  (*dst)[cmdline.size()] = std::byte{0};
  return {};
}

Expected<void> check_initrd(const GuestMemory& mem, const std::optional<MemoryRange>& initrd) {
  if (initrd && (initrd->size == 0 || !mem.contains(initrd->start, initrd->size))) {
    return make_error(Errc::kOutOfRange, "initrd [" + hex(initrd->start.value()) + ", +" +
                                             hex(initrd->size) + ") is not inside guest RAM");
  }
  return {};
}

// A setup header for an ELF vmlinux, which has none: just what the 64-bit
// entry path reads.
setup_header constructed_header() {
  setup_header hdr{};
  hdr.boot_flag = kBootFlag;
  hdr.header = kHdrSMagic;
  hdr.version = kMinBootProtocol;
  hdr.loadflags = LOADED_HIGH;
  hdr.kernel_alignment = kKernelAlignment;
  hdr.cmdline_size = static_cast<std::uint32_t>(kCmdlineMax - 1);
  return hdr;
}

}  // namespace

Expected<void> configure_linux_boot(const GuestMemory& mem, const LoadedKernel& kernel,
                                    std::string_view cmdline, std::optional<MemoryRange> initrd) {
  if (kernel.protocol != BootProtocol::kLinux64) {
    return make_error(Errc::kInvalidArgument,
                      "kernel was loaded for PVH boot; its entry is not a Linux 64-bit entry");
  }
  if (auto r = check_initrd(mem, initrd); !r) return r;

  boot_params params{};
  params.hdr = kernel.header.value_or(constructed_header());
  setup_header& hdr = params.hdr;
  const std::uint64_t max_chars = hdr.version >= 0x0206 ? hdr.cmdline_size : kLegacyCmdlineChars;
  if (auto r = write_cmdline(mem, cmdline, max_chars); !r) return r;

  hdr.type_of_loader = kLoaderTypeUndefined;
  hdr.loadflags = static_cast<std::uint8_t>(hdr.loadflags | CAN_USE_HEAP);
  hdr.heap_end_ptr = kHeapEndPtr;
  hdr.cmd_line_ptr = static_cast<std::uint32_t>(kCmdlineStart);
  params.ext_cmd_line_ptr = static_cast<std::uint32_t>(kCmdlineStart >> 32);
  if (initrd) {
    hdr.ramdisk_image = static_cast<std::uint32_t>(initrd->start.value());
    params.ext_ramdisk_image = static_cast<std::uint32_t>(initrd->start.value() >> 32);
    hdr.ramdisk_size = static_cast<std::uint32_t>(initrd->size);
    params.ext_ramdisk_size = static_cast<std::uint32_t>(initrd->size >> 32);
  }

  const auto e820 = build_e820(mem);
  if (e820.size() > E820_MAX_ENTRIES_ZEROPAGE) {
    return make_error(Errc::kInvalidArgument, "e820 map has " + std::to_string(e820.size()) +
                                                  " entries; the zero page holds " +
                                                  std::to_string(E820_MAX_ENTRIES_ZEROPAGE));
  }
  std::copy(e820.begin(), e820.end(), params.e820_table);
  params.e820_entries = static_cast<std::uint8_t>(e820.size());
  params.acpi_rsdp_addr = kRsdpStart;

  return mem.write_obj(GuestAddress(kZeroPage), params);
}

Expected<void> configure_pvh_boot(const GuestMemory& mem, std::string_view cmdline,
                                  std::optional<MemoryRange> initrd) {
  if (auto r = check_initrd(mem, initrd); !r) return r;
  const auto e820 = build_e820(mem);

  // Start info, then the module list, then the memory map; all must end at
  // or before the zero page so nothing else we place is overwritten.
  const std::uint64_t modlist_at = kPvhStartInfo + sizeof(HvmStartInfo);
  const std::uint64_t nr_modules = initrd ? 1 : 0;
  const std::uint64_t memmap_at = modlist_at + nr_modules * sizeof(HvmModlistEntry);
  const std::uint64_t end = memmap_at + e820.size() * sizeof(HvmMemmapTableEntry);
  if (end > kZeroPage) {
    return make_error(Errc::kOutOfRange, "PVH start info with " + std::to_string(e820.size()) +
                                             " memory map entries ends at " + hex(end) + ", past " +
                                             hex(kZeroPage));
  }
  if (auto r = write_cmdline(mem, cmdline, kCmdlineMax - 1); !r) return r;

  HvmStartInfo info{};
  info.magic = kHvmStartMagic;
  info.version = kHvmStartInfoVersion;
  info.cmdline_paddr = kCmdlineStart;
  info.rsdp_paddr = kRsdpStart;
  info.memmap_paddr = memmap_at;
  info.memmap_entries = static_cast<std::uint32_t>(e820.size());
  if (initrd) {
    info.nr_modules = 1;
    info.modlist_paddr = modlist_at;
    const HvmModlistEntry mod{initrd->start.value(), initrd->size, 0, 0};
    if (auto r = mem.write_obj(GuestAddress(modlist_at), mod); !r) return r;
  }
  std::vector<HvmMemmapTableEntry> memmap;
  memmap.reserve(e820.size());
  for (const auto& e : e820) memmap.push_back(HvmMemmapTableEntry{e.addr, e.size, e.type, 0});
  if (auto r = mem.write(GuestAddress(memmap_at), std::as_bytes(std::span(memmap))); !r) return r;
  return mem.write_obj(GuestAddress(kPvhStartInfo), info);
}

}  // namespace hvz::x86_64
