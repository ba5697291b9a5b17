// RAII wrappers over the KVM ioctl interface: the system fd (/dev/kvm), a VM
// fd and a vCPU fd with its shared kvm_run page. Every failure is an Error
// naming the ioctl and carrying errno; nothing here throws.
#pragma once

#include <linux/kvm.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "vmm/core/error.hpp"
#include "vmm/core/mmap_region.hpp"
#include "vmm/core/unique_fd.hpp"

namespace hvz {

class VmFd;
class VcpuFd;

class Kvm {
 public:
  // Opens the KVM device and checks the API version is the stable one (12).
  static Expected<Kvm> open(const std::string& path = "/dev/kvm");

  int fd() const { return fd_.get(); }
  // KVM_CHECK_EXTENSION: 0 when absent, else a capability-specific value.
  int check_extension(int capability) const;
  // An error naming the capability when check_extension() is 0.
  Expected<void> require_extension(int capability, const char* name) const;
  Expected<int> vcpu_mmap_size() const;
  Expected<VmFd> create_vm() const;
  // KVM_GET_SUPPORTED_CPUID: every leaf this host's KVM can expose.
  Expected<std::vector<kvm_cpuid_entry2>> supported_cpuid() const;
  // KVM_GET_MSR_INDEX_LIST: the MSRs KVM_GET/SET_MSRS know on this host
  // (some of them may still be unreadable for a given vCPU).
  Expected<std::vector<std::uint32_t>> msr_index_list() const;

 private:
  explicit Kvm(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

class VmFd {
 public:
  int fd() const { return fd_.get(); }
  // KVM_SET_USER_MEMORY_REGION for `host` at guest physical `guest_phys`.
  Expected<void> set_user_memory_region(std::uint32_t slot, std::uint64_t guest_phys,
                                        std::span<std::byte> host, std::uint32_t flags = 0) const;
  Expected<VcpuFd> create_vcpu(std::uint32_t id) const;
  Expected<void> set_tss_address(std::uint64_t addr) const;
  Expected<void> set_identity_map_address(std::uint64_t addr) const;
  // In-kernel IOAPIC + PIC + LAPICs, and the PIT (i8254) with its speaker
  // port left to user space.
  Expected<void> create_irqchip() const;
  Expected<void> create_pit2() const;
  // KVM_IRQFD: writing to `eventfd` raises `gsi` (an edge).
  Expected<void> register_irqfd(int eventfd, std::uint32_t gsi) const;
  // KVM_IOEVENTFD: a guest write of `datamatch` (`len` bytes) to MMIO
  // address `addr` signals `eventfd` in the kernel, without an exit.
  Expected<void> register_ioeventfd(int eventfd, std::uint64_t addr, std::uint32_t len,
                                    std::uint64_t datamatch) const;
  // KVM_CHECK_EXTENSION on this VM: 0 when absent (or when the kernel
  // cannot answer per VM), else a capability-specific value.
  int check_extension(int capability) const;

  // VM-wide state for save/restore (need create_irqchip / create_pit2).
  // `chip_id` is KVM_IRQCHIP_PIC_MASTER, _PIC_SLAVE or _IOAPIC.
  Expected<kvm_irqchip> irqchip(std::uint32_t chip_id) const;
  Expected<void> set_irqchip(const kvm_irqchip& chip) const;
  Expected<kvm_pit_state2> pit2() const;
  Expected<void> set_pit2(const kvm_pit_state2& pit) const;
  // KVM_GET_CLOCK / KVM_SET_CLOCK: the kvmclock base of the whole VM.
  Expected<kvm_clock_data> clock() const;
  Expected<void> set_clock(const kvm_clock_data& clock) const;

 private:
  friend class Kvm;
  VmFd(UniqueFd fd, int run_size) : fd_(std::move(fd)), run_size_(run_size) {}
  UniqueFd fd_;
  int run_size_;
};

class VcpuFd {
 public:
  int fd() const { return fd_.get(); }
  // One KVM_RUN; EINTR/EAGAIN come back as Errc::kSystem with that errno.
  Expected<void> run() const;
  kvm_run& run_state() const { return *static_cast<kvm_run*>(run_.data()); }

  Expected<kvm_regs> regs() const;
  Expected<void> set_regs(const kvm_regs& regs) const;
  Expected<kvm_sregs> sregs() const;
  Expected<void> set_sregs(const kvm_sregs& sregs) const;
  Expected<kvm_fpu> fpu() const;
  Expected<void> set_fpu(const kvm_fpu& fpu) const;
  Expected<void> set_cpuid(const std::vector<kvm_cpuid_entry2>& entries) const;
  // KVM_GET_CPUID2: the leaves set with set_cpuid() (empty before that).
  Expected<std::vector<kvm_cpuid_entry2>> cpuid() const;
  // KVM_SET_MSRS of (index, value) pairs, in KVM-sized batches and in
  // order; fails, naming the MSR, unless every one was set.
  Expected<void> set_msrs(const std::vector<std::pair<std::uint32_t, std::uint64_t>>& msrs) const;
  // KVM_GET_MSRS for the indices in `entries` (in KVM-sized batches): fills
  // their data and returns how many leading entries KVM could read; the
  // entry at that position (if any) is one KVM refused.
  Expected<std::size_t> get_msrs(std::span<kvm_msr_entry> entries) const;
  Expected<kvm_lapic_state> lapic() const;
  Expected<void> set_lapic(const kvm_lapic_state& lapic) const;
  Expected<kvm_mp_state> mp_state() const;
  Expected<void> set_mp_state(const kvm_mp_state& state) const;
  Expected<kvm_vcpu_events> events() const;
  Expected<void> set_events(const kvm_vcpu_events& events) const;
  Expected<kvm_xcrs> xcrs() const;
  Expected<void> set_xcrs(const kvm_xcrs& xcrs) const;
  Expected<kvm_debugregs> debugregs() const;
  Expected<void> set_debugregs(const kvm_debugregs& regs) const;
  // The XSAVE area as KVM lays it out, xsave_size() bytes: KVM_GET_XSAVE2
  // when the host has KVM_CAP_XSAVE2, else KVM_GET_XSAVE (4 KiB).
  Expected<std::vector<std::uint32_t>> xsave() const;
  // KVM_SET_XSAVE. An area larger than xsave_size() is refused (it holds
  // state this host cannot take); a smaller one is zero-padded.
  Expected<void> set_xsave(std::span<const std::uint32_t> area) const;
  // Bytes of the XSAVE area on this host (at least 4096).
  std::size_t xsave_size() const;
  // KVM_GET_TSC_KHZ / KVM_SET_TSC_KHZ: the guest TSC frequency.
  Expected<std::uint32_t> tsc_khz() const;
  Expected<void> set_tsc_khz(std::uint32_t khz) const;
  // KVM_KVMCLOCK_CTRL: tells the guest's kvmclock that the vCPU was stopped
  // on purpose (no soft-lockup warning). Fails with EINVAL when the guest
  // does not use kvmclock.
  Expected<void> kvmclock_ctrl() const;
  // kvm_run.immediate_exit: makes the next (or a signal-interrupted) KVM_RUN
  // return EINTR at once, so a kick cannot be lost.
  void set_immediate_exit(bool on) const { run_state().immediate_exit = on ? 1 : 0; }

  // For a KVM_EXIT_IO: the bytes of the access (size * count), bounds-checked
  // against the kvm_run mapping.
  Expected<std::span<std::uint8_t>> io_data() const;
  // For a KVM_EXIT_MMIO: the data bytes of the access.
  std::span<std::uint8_t> mmio_data() const;

 private:
  friend class VmFd;
  VcpuFd(UniqueFd fd, MmapRegion run, std::size_t xsave2_size)
      : fd_(std::move(fd)), run_(std::move(run)), xsave2_size_(xsave2_size) {}
  UniqueFd fd_;
  MmapRegion run_;
  std::size_t xsave2_size_;  // KVM_CAP_XSAVE2's answer, 0 without it
};

// "KVM_EXIT_IO" for KVM_EXIT_IO, else "exit reason N".
std::string exit_reason_name(std::uint32_t reason);

}  // namespace hvz
