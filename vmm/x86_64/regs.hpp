// x86_64 vCPU boot state: the boot GDT/IDT and identity page tables in guest
// memory, segment and control registers for the 64-bit Linux entry or the
// 32-bit PVH entry, general registers, FPU, boot MSRs and the LAPIC's LINT
// pins. Mirrors what a firmware would leave behind, minus the firmware.
#pragma once

#include <linux/kvm.h>

#include <cstdint>

#include "vmm/core/error.hpp"
#include "vmm/core/guest_memory.hpp"
#include "vmm/core/kvm.hpp"

namespace hvz::x86_64 {

enum class EntryMode {
  kLinux64,  // 64-bit Linux boot protocol: long mode, paging on, RSI = zero page
  kPvh,      // PVH: 32-bit protected mode, paging off, EBX = hvm_start_info
};

// A GDT descriptor from flags (access byte + flags nibble, as 0xa09b), base
// and limit; and the kvm_segment KVM wants for it.
std::uint64_t gdt_entry(std::uint16_t flags, std::uint32_t base, std::uint32_t limit);
kvm_segment segment_from_gdt(std::uint64_t entry, std::uint8_t table_index);

// Writes the boot GDT and an empty IDT (and, for kLinux64, the identity page
// tables covering kIdentityMapped) into guest memory. Once per VM.
Expected<void> write_boot_tables(const GuestMemory& mem, EntryMode mode);

// The special registers for `mode`, starting from the vCPU's current ones.
kvm_sregs boot_sregs(kvm_sregs sregs, EntryMode mode);
kvm_regs boot_regs(EntryMode mode, std::uint64_t entry);

// Everything a vCPU needs before its first KVM_RUN, except CPUID.
Expected<void> configure_vcpu(const VcpuFd& vcpu, EntryMode mode, std::uint64_t entry);

}  // namespace hvz::x86_64
