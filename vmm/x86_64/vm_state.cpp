// Saving and restoring the VM-wide KVM state (see vm_state.hpp).
#include "vmm/x86_64/vm_state.hpp"

#include <cstring>
#include <type_traits>

namespace hvz::x86_64 {
namespace {

template <typename T>
bool same_bytes(const T& a, const T& b) {
  static_assert(std::is_trivially_copyable_v<T>);
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

// The PIT channels with their load times zeroed.
kvm_pit_state2 without_load_times(kvm_pit_state2 pit) {
  for (auto& channel : pit.channels) channel.count_load_time = 0;
  return pit;
}

Expected<void> check_chip(const kvm_irqchip& chip, std::uint32_t id, const char* name) {
  if (chip.chip_id == id) return {};
  return make_error(Errc::kInvalidArgument, std::string("VM state: ") + name + " has chip id " +
                                                std::to_string(chip.chip_id));
}

}  // namespace

bool operator==(const VmState& a, const VmState& b) {
  return differences(a, b).empty();
}

std::vector<std::string> differences(const VmState& a, const VmState& b) {
  std::vector<std::string> out;
  auto check = [&out](const char* name, bool same) {
    if (!same) out.emplace_back(name);
  };
  check("pic_master", same_bytes(a.pic_master, b.pic_master));
  check("pic_slave", same_bytes(a.pic_slave, b.pic_slave));
  check("ioapic", same_bytes(a.ioapic, b.ioapic));
  check("pit", same_bytes(without_load_times(a.pit), without_load_times(b.pit)));
  bool same_load_times = true;
  for (std::size_t i = 0; i < std::size(a.pit.channels); ++i) {
    same_load_times &= a.pit.channels[i].count_load_time == b.pit.channels[i].count_load_time;
  }
  check("pit.count_load_time", same_load_times);
  check("clock", same_bytes(a.clock, b.clock));
  return out;
}

Expected<void> validate(const VmState& state) {
  if (auto r = check_chip(state.pic_master, KVM_IRQCHIP_PIC_MASTER, "PIC master"); !r) return r;
  if (auto r = check_chip(state.pic_slave, KVM_IRQCHIP_PIC_SLAVE, "PIC slave"); !r) return r;
  return check_chip(state.ioapic, KVM_IRQCHIP_IOAPIC, "IOAPIC");
}

std::uint32_t clock_flags_for_restore(std::uint32_t saved_flags, int host_flags) {
  if (host_flags <= 0) return 0;
  return saved_flags & static_cast<std::uint32_t>(host_flags) & KVM_CLOCK_REALTIME;
}

Expected<VmState> save_vm_state(const VmFd& vm) {
  VmState state;
  auto master = vm.irqchip(KVM_IRQCHIP_PIC_MASTER);
  if (!master) return tl::unexpected(master.error());
  state.pic_master = *master;
  auto slave = vm.irqchip(KVM_IRQCHIP_PIC_SLAVE);
  if (!slave) return tl::unexpected(slave.error());
  state.pic_slave = *slave;
  auto ioapic = vm.irqchip(KVM_IRQCHIP_IOAPIC);
  if (!ioapic) return tl::unexpected(ioapic.error());
  state.ioapic = *ioapic;
  auto pit = vm.pit2();
  if (!pit) return tl::unexpected(pit.error());
  state.pit = *pit;
  auto clock = vm.clock();
  if (!clock) return tl::unexpected(clock.error());
  state.clock = *clock;
  return state;
}

Expected<void> restore_vm_state(const VmFd& vm, const VmState& state) {
  if (auto r = validate(state); !r) return r;
  if (auto r = vm.set_pit2(state.pit); !r) return r;
  kvm_clock_data clock{};
  clock.clock = state.clock.clock;
  clock.realtime = state.clock.realtime;
  clock.flags =
      clock_flags_for_restore(state.clock.flags, vm.check_extension(KVM_CAP_ADJUST_CLOCK));
  if (auto r = vm.set_clock(clock); !r) return r;
  if (auto r = vm.set_irqchip(state.pic_master); !r) return r;
  if (auto r = vm.set_irqchip(state.pic_slave); !r) return r;
  return vm.set_irqchip(state.ioapic);
}

}  // namespace hvz::x86_64
