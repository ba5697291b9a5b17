// Which MSRs a vCPU snapshot holds: KVM's MSR index list narrowed to the
// architectural and KVM paravirtual MSRs whose values are guest state (not
// host facts such as VMX capabilities, nor performance counters), then to
// the ones this vCPU can actually read.
#pragma once

#include <linux/kvm.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "vmm/core/error.hpp"

namespace hvz::x86_64 {

// MSR indices the save/restore code must name (Intel SDM vol. 4, Linux's
// Documentation/virt/kvm/x86/msr.rst).
namespace msr {
inline constexpr std::uint32_t kTsc = 0x10;
inline constexpr std::uint32_t kKvmWallClock = 0x11;
inline constexpr std::uint32_t kKvmSystemTime = 0x12;
inline constexpr std::uint32_t kApicBase = 0x1b;
inline constexpr std::uint32_t kMcgCtl = 0x17b;
inline constexpr std::uint32_t kTscDeadline = 0x6e0;
inline constexpr std::uint32_t kEfer = 0xc0000080;
inline constexpr std::uint32_t kKvmWallClockNew = 0x4b564d00;
inline constexpr std::uint32_t kKvmSystemTimeNew = 0x4b564d01;
inline constexpr std::uint32_t kKvmAsyncPfAck = 0x4b564d07;
}  // namespace msr

// One saved MSR.
struct MsrEntry {
  std::uint32_t index = 0;
  std::uint64_t value = 0;
  bool operator==(const MsrEntry&) const = default;
};

// True for MSRs whose value belongs in a snapshot (see msr_list.cpp).
bool msr_should_save(std::uint32_t index);

// `kvm_list` (from Kvm::msr_index_list()) narrowed by msr_should_save, in
// KVM's order, duplicates dropped.
std::vector<std::uint32_t> msrs_to_save(std::span<const std::uint32_t> kvm_list);

// Reads `indices` through `read` (VcpuFd::get_msrs semantics: fills the
// leading entries it can and returns how many) and skips each MSR KVM
// refuses, so one unreadable MSR (a feature this vCPU's CPUID lacks) does
// not lose the others. The result keeps the order of `indices`.
using MsrReader = std::function<Expected<std::size_t>(std::span<kvm_msr_entry>)>;
Expected<std::vector<MsrEntry>> read_msrs(std::span<const std::uint32_t> indices,
                                          const MsrReader& read);

}  // namespace hvz::x86_64
