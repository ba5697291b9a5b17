// The x86_64 guest physical memory map of an hvz microVM: where boot
// structures, ACPI tables, the kernel and the MMIO windows live. One place,
// so loaders, ACPI and the VM builder agree.
#pragma once

#include <cstdint>

namespace hvz::x86_64 {

// Low memory (below 1 MiB).
inline constexpr std::uint64_t kGdtStart = 0x500;       // boot GDT (4 entries)
inline constexpr std::uint64_t kIdtStart = 0x520;       // empty boot IDT
inline constexpr std::uint64_t kPvhStartInfo = 0x6000;  // hvm_start_info + memmap (PVH)
inline constexpr std::uint64_t kZeroPage = 0x7000;      // struct boot_params (Linux boot protocol)
inline constexpr std::uint64_t kBootStack = 0x8ff0;     // initial RSP
inline constexpr std::uint64_t kPml4Start = 0x9000;     // identity page tables: PML4,
inline constexpr std::uint64_t kPdptStart = 0xa000;     // one PDPT,
inline constexpr std::uint64_t kPdStart = 0xb000;       // four PDs (0xb000..0xefff) of 2 MiB pages
inline constexpr std::uint64_t kIdentityMapped = 4ull << 30;  // 4 GiB identity mapped at entry
inline constexpr std::uint64_t kCmdlineStart = 0x20000;
inline constexpr std::uint64_t kCmdlineMax =
    0x10000;  // bytes including the NUL (kernel may allow fewer)
inline constexpr std::uint64_t kEbdaStart = 0x9fc00;  // [kEbdaStart, 1 MiB) is reserved in e820
inline constexpr std::uint64_t kRsdpStart = 0xe0000;  // ACPI RSDP (found by the BIOS-area scan)
inline constexpr std::uint64_t kAcpiTablesStart = 0xe1000;  // XSDT, FADT, MADT, DSDT follow
inline constexpr std::uint64_t kAcpiTablesEnd = 0x100000;
inline constexpr std::uint64_t kHighMemStart = 0x100000;  // 1 MiB: kernel load address

// The 32-bit MMIO gap: RAM stops at 3 GiB and resumes at 4 GiB.
inline constexpr std::uint64_t kMmioGapStart = 3ull << 30;
inline constexpr std::uint64_t kMmioGapEnd = 4ull << 30;
inline constexpr std::uint64_t kVirtioMmioStart = 0xd0000000;  // virtio-mmio windows, 4 KiB each
inline constexpr std::uint64_t kVirtioMmioSize = 0x1000;
// Virtio devices get IOAPIC pins from here up (0-4 are legacy: timer,
// keyboard, cascade, COM2, COM1); the in-kernel IOAPIC has 24.
inline constexpr std::uint32_t kVirtioGsiBase = 5;
inline constexpr std::uint32_t kIoapicPins = 24;
inline constexpr std::uint64_t kIoapicAddress = 0xfec00000;
inline constexpr std::uint64_t kLapicAddress = 0xfee00000;

// Legacy port I/O.
inline constexpr std::uint16_t kCom1Port = 0x3f8;
inline constexpr std::uint32_t kCom1Irq = 4;
inline constexpr std::uint16_t kI8042Port = 0x60;  // 0x60 data, 0x64 command/status
inline constexpr std::uint16_t kI8042CommandPort = 0x64;
inline constexpr std::uint32_t kKeyboardIrq = 1;
inline constexpr std::uint16_t kCmosPort = 0x70;  // 0x70 index, 0x71 data
// ACPI hardware-reduced registers (FADT): sleep control/status and reset.
inline constexpr std::uint16_t kAcpiSleepControlPort = 0x600;
inline constexpr std::uint16_t kAcpiSleepStatusPort = 0x601;
inline constexpr std::uint16_t kAcpiResetPort = 0x602;
inline constexpr std::uint8_t kAcpiResetValue = 0x1;
inline constexpr std::uint8_t kAcpiS5SleepType = 5;  // SLP_TYP of \_S5_ in the DSDT

}  // namespace hvz::x86_64
