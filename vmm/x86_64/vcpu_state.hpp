// VcpuState: everything KVM holds for one x86_64 vCPU, as plain data that
// can be saved from a vCPU and restored into a fresh one (of a new VM with
// the same memory contents), plus the ordering rules between the ioctls
// that make the restored vCPU continue exactly where the saved one stopped.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "vmm/core/error.hpp"
#include "vmm/core/kvm.hpp"
#include "vmm/x86_64/msr_list.hpp"

namespace hvz::x86_64 {

struct VcpuState {
  static constexpr std::uint32_t kVersion = 1;

  std::vector<kvm_cpuid_entry2> cpuid;  // what KVM_SET_CPUID2 installed
  std::vector<MsrEntry> msrs;           // in KVM's index-list order
  kvm_regs regs{};
  kvm_sregs sregs{};
  std::vector<std::uint32_t> xsave;  // KVM's XSAVE area, at least 4096 bytes
  kvm_xcrs xcrs{};
  kvm_debugregs debugregs{};
  kvm_lapic_state lapic{};
  kvm_mp_state mp_state{};
  kvm_vcpu_events events{};
  // Guest TSC frequency; absent when the host cannot say (then a restore
  // on a host with another TSC frequency shows the guest a jump in rate).
  std::optional<std::uint32_t> tsc_khz;
};

// Byte-wise equality of every field (the kernel structs have no implicit
// padding; they are value-initialised before KVM fills them).
bool operator==(const VcpuState& a, const VcpuState& b);

// The names of the fields that differ ("regs", "lapic", "msr 0x10", ...),
// for tests and diagnostics; empty when a == b.
std::vector<std::string> differences(const VcpuState& a, const VcpuState& b);

// Refuses states no save_vcpu_state() produces and that could make a
// restore misbehave: more than 256 CPUID leaves, an XSAVE area shorter than
// 4096 bytes. (Values KVM itself checks are left to KVM.)
Expected<void> validate(const VcpuState& state);

// Saves `vcpu`; `msrs` is msrs_to_save(kvm.msr_index_list()), computed once.
// Call with the vCPU stopped and its last exit completed (see
// complete_pending_exit): KVM finishes a PIO/MMIO exit only on the next
// KVM_RUN, and until then RIP and the I/O result are not in the state.
// Other vCPUs of the VM should be stopped too (vCPU events and the LAPIC
// can be changed by them).
Expected<VcpuState> save_vcpu_state(const VcpuFd& vcpu, std::span<const std::uint32_t> msrs);

// Restores `state` into `vcpu`, a vCPU that has never run, of a VM whose
// VM state (restore_vm_state) and memory are restored. Validates first.
// Every failure names the ioctl that failed.
Expected<void> restore_vcpu_state(const VcpuFd& vcpu, const VcpuState& state);

// Completes the vCPU's last PIO/MMIO exit without running guest code: a
// KVM_RUN with immediate_exit set (it returns EINTR once the exit is
// completed). For a PIO/MMIO read, the data must already be in kvm_run.
// Errc::kBusy when completing it produced another exit (a string I/O
// instruction's next round): handle that exit and call again.
Expected<void> complete_pending_exit(const VcpuFd& vcpu);

// Pure pieces of the restore, exposed for tests:

// True when the LAPIC timer is in TSC-deadline mode (LVTT bits 18:17 = 2).
bool lapic_timer_tsc_deadline(const kvm_lapic_state& lapic);
// The saved MSRs in the order to write them: IA32_TSC_DEADLINE last (KVM
// arms the timer from the TSC, which must be restored first). A zero
// deadline with the timer in TSC-deadline mode becomes the saved TSC so
// the timer fires once at once: a deadline interrupt lost at save time
// would otherwise stop the guest's timer for good (as Firecracker found);
// a spurious one is harmless.
std::vector<std::pair<std::uint32_t, std::uint64_t>> msrs_for_restore(
    const std::vector<MsrEntry>& saved, bool tsc_deadline_mode);
// True when the host's TSC frequency differs from the saved one by more
// than 250 ppm (calibration noise) and the vCPU's TSC must be scaled.
bool tsc_scaling_needed(std::uint32_t host_khz, std::uint32_t saved_khz);

}  // namespace hvz::x86_64
