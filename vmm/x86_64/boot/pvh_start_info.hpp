// The PVH boot ABI structures (Xen's public arch-x86/hvm/start_info.h,
// version 1): what a PVH guest finds at the address in EBX on entry.
#pragma once

#include <cstdint>
#include <type_traits>

namespace hvz::x86_64 {

inline constexpr std::uint32_t kHvmStartMagic = 0x336ec578;
inline constexpr std::uint32_t kHvmStartInfoVersion = 1;

struct HvmStartInfo {
  std::uint32_t magic;           // kHvmStartMagic
  std::uint32_t version;         // 1: memmap fields present
  std::uint32_t flags;           // SIF_xxx
  std::uint32_t nr_modules;      // entries at modlist_paddr
  std::uint64_t modlist_paddr;   // array of HvmModlistEntry
  std::uint64_t cmdline_paddr;   // NUL-terminated command line
  std::uint64_t rsdp_paddr;      // ACPI RSDP
  std::uint64_t memmap_paddr;    // array of HvmMemmapTableEntry
  std::uint32_t memmap_entries;  //
  std::uint32_t reserved;        // must be zero
};

struct HvmModlistEntry {
  std::uint64_t paddr;
  std::uint64_t size;
  std::uint64_t cmdline_paddr;  // 0: no module command line
  std::uint64_t reserved;
};

struct HvmMemmapTableEntry {
  std::uint64_t addr;
  std::uint64_t size;
  std::uint32_t type;  // e820 types: 1 RAM, 2 reserved
  std::uint32_t reserved;
};

// The ABI fixes these layouts; the natural alignment already matches it.
static_assert(sizeof(HvmStartInfo) == 56 && std::is_trivially_copyable_v<HvmStartInfo>);
static_assert(sizeof(HvmModlistEntry) == 32);
static_assert(sizeof(HvmMemmapTableEntry) == 24);

}  // namespace hvz::x86_64
