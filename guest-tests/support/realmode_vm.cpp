// RealModeVm: set-up and the exit loop (see realmode_vm.hpp).
#include "guest-tests/support/realmode_vm.hpp"

#include <algorithm>

namespace hvz::testing {

Expected<RealModeVm> RealModeVm::create(std::span<const std::uint8_t> code) {
  if (code.size() > kMemorySize - kLoadAddress) {
    return make_error(Errc::kInvalidArgument, "real-mode code larger than guest memory");
  }
  auto kvm = Kvm::open();
  if (!kvm) return tl::unexpected(kvm.error());
  auto vm = kvm->create_vm();
  if (!vm) return tl::unexpected(vm.error());
  auto memory = MmapRegion::anonymous(kMemorySize);
  if (!memory) return tl::unexpected(memory.error());
  std::copy(code.begin(), code.end(),
            reinterpret_cast<std::uint8_t*>(memory->bytes().data()) + kLoadAddress);
  if (auto r = vm->set_user_memory_region(0, 0, memory->bytes()); !r) {
    return tl::unexpected(r.error());
  }
  auto vcpu = vm->create_vcpu(0);
  if (!vcpu) return tl::unexpected(vcpu.error());

  auto sregs = vcpu->sregs();
  if (!sregs) return tl::unexpected(sregs.error());
  // Out of reset CS is 0xf000 with base 0xffff0000; flatten it to 0.
  sregs->cs.base = 0;
  sregs->cs.selector = 0;
  if (auto r = vcpu->set_sregs(*sregs); !r) return tl::unexpected(r.error());
  kvm_regs regs{};
  regs.rip = kLoadAddress;
  regs.rflags = 0x2;  // bit 1 is reserved and must be set
  if (auto r = vcpu->set_regs(regs); !r) return tl::unexpected(r.error());
  return RealModeVm(std::move(*kvm), std::move(*vm), std::move(*memory), std::move(*vcpu));
}

Expected<RunResult> RealModeVm::run(const Bus& pio, std::size_t max_exits) {
  RunResult result;
  while (result.exits.size() < max_exits) {
    if (auto r = vcpu_.run(); !r) {
      if (r.error().sys_errno() == EINTR) continue;
      return tl::unexpected(r.error());
    }
    kvm_run& run = vcpu_.run_state();
    Exit exit{run.exit_reason, 0, false};
    bool stop = true;
    if (run.exit_reason == KVM_EXIT_IO) {
      auto data = vcpu_.io_data();
      if (!data) return tl::unexpected(data.error());
      exit.address = run.io.port;
      exit.write = run.io.direction == KVM_EXIT_IO_OUT;
      // A string instruction (rep outsb) arrives as `count` accesses.
      for (std::uint32_t i = 0; i < run.io.count; ++i) {
        auto one = data->subspan(std::size_t{i} * run.io.size, run.io.size);
        if (exit.write) {
          pio.write(run.io.port, one);
        } else {
          pio.read(run.io.port, one);
        }
      }
      stop = false;
    } else if (run.exit_reason == KVM_EXIT_MMIO) {
      exit.address = run.mmio.phys_addr;
      exit.write = run.mmio.is_write != 0;
    }
    result.exits.push_back(exit);
    if (stop) break;
  }
  auto regs = vcpu_.regs();
  if (!regs) return tl::unexpected(regs.error());
  result.rip = regs->rip;
  return result;
}

}  // namespace hvz::testing
