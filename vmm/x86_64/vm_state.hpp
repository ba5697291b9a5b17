// VmState: the VM-wide state KVM holds for an x86_64 guest with the
// in-kernel irqchip (both PICs, the IOAPIC), the in-kernel PIT and the
// kvmclock base, as plain data to save from one VM and restore into a
// fresh one.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <string>
#include <vector>

#include "vmm/core/error.hpp"
#include "vmm/core/kvm.hpp"

namespace hvz::x86_64 {

struct VmState {
  static constexpr std::uint32_t kVersion = 1;

  kvm_irqchip pic_master{};
  kvm_irqchip pic_slave{};
  kvm_irqchip ioapic{};
  kvm_pit_state2 pit{};
  kvm_clock_data clock{};
};

// Byte-wise equality of every field.
bool operator==(const VmState& a, const VmState& b);

// Names of the fields that differ: "pic_master", "pic_slave", "ioapic",
// "pit" (the channels without their load times), "pit.count_load_time"
// (host time when a count was loaded: a restore reloads the counts, so it
// always differs) and "clock".
std::vector<std::string> differences(const VmState& a, const VmState& b);

// Refuses irqchip entries whose chip_id does not name the chip they are
// restored as.
Expected<void> validate(const VmState& state);

// Saves the VM's irqchips, PIT and clock. Call with every vCPU stopped.
Expected<VmState> save_vm_state(const VmFd& vm);

// Restores into `vm`, a VM with create_irqchip() and create_pit2() done,
// before its vCPUs are restored. The kvmclock continues from the saved
// value, moved on by the real time that passed since the save when the
// host supports it (KVM_CLOCK_REALTIME), so guest time keeps up with the
// wall clock as the CMOS RTC does.
Expected<void> restore_vm_state(const VmFd& vm, const VmState& state);

// The flags to pass to KVM_SET_CLOCK for a clock saved with `saved_flags`
// on a host whose KVM_CAP_ADJUST_CLOCK answers `host_flags`: only
// KVM_CLOCK_REALTIME is ever passed back, and only if the host takes it.
std::uint32_t clock_flags_for_restore(std::uint32_t saved_flags, int host_flags);

}  // namespace hvz::x86_64
