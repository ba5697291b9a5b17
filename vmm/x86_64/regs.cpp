// x86_64 boot register state (see regs.hpp). The values follow what
// Firecracker and Cloud Hypervisor hand a Linux kernel.
#include "vmm/x86_64/regs.hpp"

#include <array>
#include <cstring>
#include <vector>

#include "vmm/x86_64/layout.hpp"

namespace hvz::x86_64 {
namespace {

constexpr std::uint64_t kCr0Pe = 1ull << 0;
constexpr std::uint64_t kCr0Et = 1ull << 4;
constexpr std::uint64_t kCr0Pg = 1ull << 31;
constexpr std::uint64_t kCr4Pae = 1ull << 5;
constexpr std::uint64_t kEferLme = 1ull << 8;
constexpr std::uint64_t kEferLma = 1ull << 10;

// Boot GDT layouts: null, code, data, TSS. Selectors 0x08, 0x10, 0x18.
constexpr std::array<std::uint16_t, 4> kLinux64Flags = {0, 0xa09b, 0xc093, 0x808b};
constexpr std::array<std::uint16_t, 4> kPvhFlags = {0, 0xc09b, 0xc093, 0x008b};

std::array<std::uint64_t, 4> gdt_for(EntryMode mode) {
  const auto& flags = mode == EntryMode::kLinux64 ? kLinux64Flags : kPvhFlags;
  std::array<std::uint64_t, 4> gdt{};
  for (std::size_t i = 1; i < gdt.size(); ++i) gdt[i] = gdt_entry(flags[i], 0, 0xfffff);
  return gdt;
}

// MSR indices (Intel SDM vol. 4; AMD APM vol. 2).
constexpr std::uint32_t kMsrTsc = 0x10;
constexpr std::uint32_t kMsrSysenterCs = 0x174;
constexpr std::uint32_t kMsrSysenterEsp = 0x175;
constexpr std::uint32_t kMsrSysenterEip = 0x176;
constexpr std::uint32_t kMsrMiscEnable = 0x1a0;
constexpr std::uint32_t kMsrMtrrDefType = 0x2ff;
constexpr std::uint32_t kMsrStar = 0xc0000081;
constexpr std::uint32_t kMsrLstar = 0xc0000082;
constexpr std::uint32_t kMsrCstar = 0xc0000083;
constexpr std::uint32_t kMsrSyscallMask = 0xc0000084;
constexpr std::uint32_t kMsrKernelGsBase = 0xc0000102;
constexpr std::uint64_t kMiscEnableFastString = 1;
constexpr std::uint64_t kMtrrEnable = 1ull << 11;
constexpr std::uint64_t kMtrrWriteBack = 6;

// LAPIC register offsets and delivery modes for the LINT pins.
constexpr std::size_t kApicLvtLint0 = 0x350;
constexpr std::size_t kApicLvtLint1 = 0x360;
constexpr std::uint32_t kDeliveryExtInt = 7;
constexpr std::uint32_t kDeliveryNmi = 4;

std::uint32_t lapic_reg(const kvm_lapic_state& l, std::size_t off) {
  std::uint32_t v;
  std::memcpy(&v, l.regs + off, sizeof v);
  return v;
}
void set_lapic_reg(kvm_lapic_state& l, std::size_t off, std::uint32_t v) {
  std::memcpy(l.regs + off, &v, sizeof v);
}
std::uint32_t with_delivery_mode(std::uint32_t reg, std::uint32_t mode) {
  return (reg & ~0x700u) | (mode << 8);
}

}  // namespace

std::uint64_t gdt_entry(std::uint16_t flags, std::uint32_t base, std::uint32_t limit) {
  return ((std::uint64_t{base} & 0xff000000u) << 32) | ((std::uint64_t{flags} & 0xf0ff) << 40) |
         ((std::uint64_t{limit} & 0xf0000) << 32) | ((std::uint64_t{base} & 0x00ffffff) << 16) |
         (std::uint64_t{limit} & 0xffff);
}

kvm_segment segment_from_gdt(std::uint64_t entry, std::uint8_t table_index) {
  kvm_segment s{};
  s.base = ((entry >> 16) & 0xffffff) | (((entry >> 56) & 0xff) << 24);
  std::uint32_t limit =
      static_cast<std::uint32_t>((entry & 0xffff) | (((entry >> 48) & 0xf) << 16));
  s.g = static_cast<std::uint8_t>((entry >> 55) & 1);
  s.limit = s.g ? (limit << 12) | 0xfff : limit;
  s.selector = static_cast<std::uint16_t>(table_index * 8);
  s.type = static_cast<std::uint8_t>((entry >> 40) & 0xf);
  s.present = static_cast<std::uint8_t>((entry >> 47) & 1);
  s.dpl = static_cast<std::uint8_t>((entry >> 45) & 3);
  s.db = static_cast<std::uint8_t>((entry >> 54) & 1);
  s.s = static_cast<std::uint8_t>((entry >> 44) & 1);
  s.l = static_cast<std::uint8_t>((entry >> 53) & 1);
  s.avl = static_cast<std::uint8_t>((entry >> 52) & 1);
  s.unusable = s.present ? 0 : 1;
  return s;
}

Expected<void> write_boot_tables(const GuestMemory& mem, EntryMode mode) {
  const auto gdt = gdt_for(mode);
  if (auto r = mem.write(GuestAddress(kGdtStart), std::as_bytes(std::span(gdt))); !r) return r;
  if (auto r = mem.write_obj<std::uint64_t>(GuestAddress(kIdtStart), 0); !r) return r;
  if (mode != EntryMode::kLinux64) return {};

  // PML4[0] -> PDPT; PDPT[0..3] -> four PDs of 512 2 MiB pages: 4 GiB.
  constexpr std::uint64_t kPresentWritable = 0x3;
  constexpr std::uint64_t kHuge = 0x80;
  if (auto r = mem.write_obj(GuestAddress(kPml4Start), kPdptStart | kPresentWritable); !r) return r;
  constexpr std::size_t kPds = kIdentityMapped >> 30;
  for (std::size_t i = 0; i < kPds; ++i) {
    const std::uint64_t pd = kPdStart + i * 0x1000;
    if (auto r = mem.write_obj(GuestAddress(kPdptStart + i * 8), pd | kPresentWritable); !r) {
      return r;
    }
    std::array<std::uint64_t, 512> entries{};
    for (std::size_t j = 0; j < entries.size(); ++j) {
      entries[j] = ((i * 512 + j) << 21) | kHuge | kPresentWritable;
    }
    if (auto r = mem.write(GuestAddress(pd), std::as_bytes(std::span(entries))); !r) return r;
  }
  return {};
}

kvm_sregs boot_sregs(kvm_sregs sregs, EntryMode mode) {
  const auto gdt = gdt_for(mode);
  const kvm_segment code = segment_from_gdt(gdt[1], 1);
  const kvm_segment data = segment_from_gdt(gdt[2], 2);
  const kvm_segment tss = segment_from_gdt(gdt[3], 3);
  sregs.gdt.base = kGdtStart;
  sregs.gdt.limit = static_cast<std::uint16_t>(sizeof(std::uint64_t) * gdt.size() - 1);
  sregs.idt.base = kIdtStart;
  sregs.idt.limit = sizeof(std::uint64_t) - 1;
  sregs.cs = code;
  sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
  sregs.tr = tss;
  if (mode == EntryMode::kLinux64) {
    sregs.cr0 |= kCr0Pe | kCr0Pg;
    sregs.cr3 = kPml4Start;
    sregs.cr4 |= kCr4Pae;
    sregs.efer |= kEferLme | kEferLma;
  } else {
    sregs.cr0 = kCr0Pe | kCr0Et;
    sregs.cr3 = 0;
    sregs.cr4 = 0;
    sregs.efer = 0;
  }
  return sregs;
}

kvm_regs boot_regs(EntryMode mode, std::uint64_t entry) {
  kvm_regs regs{};
  regs.rflags = 0x2;
  regs.rip = entry;
  if (mode == EntryMode::kLinux64) {
    regs.rsp = kBootStack;
    regs.rbp = kBootStack;
    regs.rsi = kZeroPage;
  } else {
    regs.rbx = kPvhStartInfo;
  }
  return regs;
}

Expected<void> configure_vcpu(const VcpuFd& vcpu, EntryMode mode, std::uint64_t entry) {
  const std::vector<std::pair<std::uint32_t, std::uint64_t>> msrs = {
      {kMsrSysenterCs, 0},
      {kMsrSysenterEsp, 0},
      {kMsrSysenterEip, 0},
      {kMsrStar, 0},
      {kMsrCstar, 0},
      {kMsrKernelGsBase, 0},
      {kMsrSyscallMask, 0},
      {kMsrLstar, 0},
      {kMsrTsc, 0},
      {kMsrMiscEnable, kMiscEnableFastString},
      {kMsrMtrrDefType, kMtrrEnable | kMtrrWriteBack},
  };
  if (auto r = vcpu.set_msrs(msrs); !r) return r;

  kvm_fpu fpu{};
  fpu.fcw = 0x37f;
  fpu.mxcsr = 0x1f80;
  if (auto r = vcpu.set_fpu(fpu); !r) return r;

  auto sregs = vcpu.sregs();
  if (!sregs) return tl::unexpected(sregs.error());
  if (auto r = vcpu.set_sregs(boot_sregs(*sregs, mode)); !r) return r;
  if (auto r = vcpu.set_regs(boot_regs(mode, entry)); !r) return r;

  // LINT0 delivers the PIC's ExtINT, LINT1 NMIs, as a BIOS would set them.
  auto lapic = vcpu.lapic();
  if (!lapic) return tl::unexpected(lapic.error());
  set_lapic_reg(*lapic, kApicLvtLint0,
                with_delivery_mode(lapic_reg(*lapic, kApicLvtLint0), kDeliveryExtInt));
  set_lapic_reg(*lapic, kApicLvtLint1,
                with_delivery_mode(lapic_reg(*lapic, kApicLvtLint1), kDeliveryNmi));
  return vcpu.set_lapic(*lapic);
}

}  // namespace hvz::x86_64
