// vCPU and VM state through real KVM: a real-mode program (a running sum in
// registers and memory, an x87 counter) is stopped half-way, its VM and
// vCPU state are saved and restored into a second VM with a copy of the
// memory, and the copy must finish with the same result as the original.
// Needs a usable /dev/kvm (the 'guest' suite, through scripts/kvm-run).
//
// Fields that legitimately differ between the saved state and the one read
// back from the restored VM, and are ignored:
// - MSR IA32_TSC (0x10): the restored TSC starts from the saved value and
//   runs on until the second save.
// - the kvmclock ("clock"): it runs, and a restore moves it on by the real
//   time that passed.
// - the PIT channels' count_load_time: host time at which KVM loaded the
//   counts, which a restore does again.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "vmm/core/bus.hpp"
#include "vmm/core/kvm.hpp"
#include "vmm/core/mmap_region.hpp"
#include "vmm/x86_64/cpuid.hpp"
#include "vmm/x86_64/msr_list.hpp"
#include "vmm/x86_64/vcpu_state.hpp"
#include "vmm/x86_64/vm_state.hpp"

namespace hvz::testing {
namespace {

using x86_64::VcpuState;
using x86_64::VmState;

constexpr std::uint64_t kMemorySize = 0x10000;
constexpr std::uint64_t kLoadAddress = 0x1000;
constexpr std::uint64_t kTssAddress = 0xfffbd000;
constexpr std::uint16_t kIterations = 3000;
constexpr std::uint16_t kTickPort = 0x80;
constexpr std::uint16_t kResultPort = 0x510;

// 16-bit real mode: for cx = 3000 down to 1 { ax:bx += cx; [0x3000] = ax;
// st0 += 1; out 0x80, al } then out 0x510 the sum (low, high), the x87
// count (stored through [0x3002]) and [0x3000]; hlt. (With the in-kernel
// irqchip a HLT does not exit: the run ends at the last result OUT.)
const std::vector<std::uint8_t> kProgram = {
    0xb9, kIterations & 0xff, kIterations >> 8,  // mov cx, 3000
    0x31, 0xc0,                                  // xor ax, ax
    0x31, 0xdb,                                  // xor bx, bx
    0xba, kTickPort, 0x00,                       // mov dx, 0x80
    0xdb, 0xe3,                                  // fninit
    0xd9, 0xee,                                  // fldz
    // loop (15 bytes):
    0x01, 0xc8,                                  // add ax, cx
    0x83, 0xd3, 0x00,                            // adc bx, 0
    0xa3, 0x00, 0x30,                            // mov [0x3000], ax
    0xd9, 0xe8,                                  // fld1
    0xde, 0xc1,                                  // faddp st1, st0
    0xee,                                        // out dx, al
    0xe2, 0xf1,                                  // loop loop
    0xba, kResultPort & 0xff, kResultPort >> 8,  // mov dx, 0x510
    0xef,                                        // out dx, ax
    0x89, 0xd8,                                  // mov ax, bx
    0xef,                                        // out dx, ax
    0xdf, 0x1e, 0x02, 0x30,                      // fistp word [0x3002]
    0xa1, 0x02, 0x30,                            // mov ax, [0x3002]
    0xef,                                        // out dx, ax
    0xa1, 0x00, 0x30,                            // mov ax, [0x3000]
    0xef,                                        // out dx, ax
    0xf4,                                        // hlt
};

// Records every byte written to it.
class Recorder : public BusDevice {
 public:
  void read(std::uint64_t, std::span<std::uint8_t> data) override {
    std::fill(data.begin(), data.end(), std::uint8_t{0});
  }
  void write(std::uint64_t, std::span<const std::uint8_t> data) override {
    bytes.insert(bytes.end(), data.begin(), data.end());
  }
  std::vector<std::uint8_t> bytes;
};

// One VM like hvz builds them (TSS, in-kernel irqchip and PIT), 64 KiB of
// RAM at 0 and one vCPU.
struct TestVm {
  TestVm(Kvm k, VmFd v, MmapRegion m) : kvm(std::move(k)), vm(std::move(v)), memory(std::move(m)) {}

  Kvm kvm;
  VmFd vm;
  MmapRegion memory;
  std::unique_ptr<VcpuFd> vcpu;
  std::shared_ptr<Recorder> ticks = std::make_shared<Recorder>();
  std::shared_ptr<Recorder> results = std::make_shared<Recorder>();
  std::unique_ptr<Bus> pio = std::make_unique<Bus>();  // a Bus cannot move

  static Expected<TestVm> create() {
    auto kvm = Kvm::open();
    if (!kvm) return tl::unexpected(kvm.error());
    auto vm = kvm->create_vm();
    if (!vm) return tl::unexpected(vm.error());
    if (auto r = vm->set_tss_address(kTssAddress); !r) return tl::unexpected(r.error());
    if (auto r = vm->create_irqchip(); !r) return tl::unexpected(r.error());
    if (auto r = vm->create_pit2(); !r) return tl::unexpected(r.error());
    auto memory = MmapRegion::anonymous(kMemorySize);
    if (!memory) return tl::unexpected(memory.error());
    if (auto r = vm->set_user_memory_region(0, 0, memory->bytes()); !r) {
      return tl::unexpected(r.error());
    }
    TestVm t(std::move(*kvm), std::move(*vm), std::move(*memory));
    if (auto r = t.pio->insert(t.ticks, kTickPort, 1); !r) return tl::unexpected(r.error());
    if (auto r = t.pio->insert(t.results, kResultPort, 2); !r) return tl::unexpected(r.error());
    return t;
  }

  Expected<void> create_vcpu() {
    auto fd = vm.create_vcpu(0);
    if (!fd) return tl::unexpected(fd.error());
    vcpu = std::make_unique<VcpuFd>(std::move(*fd));
    return {};
  }

  // Loads the program and points a fresh vCPU at it.
  Expected<void> boot() {
    std::memcpy(memory.bytes().data() + kLoadAddress, kProgram.data(), kProgram.size());
    if (auto r = create_vcpu(); !r) return r;
    auto supported = kvm.supported_cpuid();
    if (!supported) return tl::unexpected(supported.error());
    if (auto r = vcpu->set_cpuid(x86_64::vcpu_cpuid(*supported, 0, 1)); !r) return r;
    auto sregs = vcpu->sregs();
    if (!sregs) return tl::unexpected(sregs.error());
    sregs->cs.base = 0;  // flatten CS (reset: 0xf000 with base 0xffff0000)
    sregs->cs.selector = 0;
    if (auto r = vcpu->set_sregs(*sregs); !r) return r;
    kvm_regs regs{};
    regs.rip = kLoadAddress;
    regs.rflags = 0x2;
    return vcpu->set_regs(regs);
  }

  // Runs until the program has written its four results (kProgramDone),
  // another exit than PIO, or `max_exits` PIO exits; returns the reason.
  static constexpr std::uint32_t kProgramDone = ~std::uint32_t{0};
  Expected<std::uint32_t> run(std::size_t max_exits) {
    for (std::size_t exits = 0; exits < max_exits;) {
      if (auto r = vcpu->run(); !r) {
        if (r.error().sys_errno() == EINTR) continue;
        return tl::unexpected(r.error());
      }
      kvm_run& run = vcpu->run_state();
      if (run.exit_reason != KVM_EXIT_IO) return run.exit_reason;
      auto data = vcpu->io_data();
      if (!data) return tl::unexpected(data.error());
      for (std::uint32_t i = 0; i < run.io.count; ++i) {
        auto one = data->subspan(std::size_t{i} * run.io.size, run.io.size);
        if (run.io.direction == KVM_EXIT_IO_OUT) {
          pio->write(run.io.port, one);
        } else {
          pio->read(run.io.port, one);
        }
      }
      ++exits;
      if (results->bytes.size() >= 8) return kProgramDone;
    }
    return std::uint32_t{KVM_EXIT_IO};
  }
};

std::vector<std::string> without(std::vector<std::string> names,
                                 const std::vector<std::string>& ignored) {
  std::erase_if(names, [&](const std::string& n) {
    return std::find(ignored.begin(), ignored.end(), n) != ignored.end();
  });
  return names;
}

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += n + " ";
  return out;
}

TEST(VcpuState, RestoredVcpuFinishesTheProgramLikeTheOriginal) {
  auto original = TestVm::create();
  ASSERT_TRUE(original) << original.error().message();
  ASSERT_TRUE(original->boot());
  auto msr_index = original->kvm.msr_index_list();
  ASSERT_TRUE(msr_index) << msr_index.error().message();
  const std::vector<std::uint32_t> msrs = x86_64::msrs_to_save(*msr_index);

  // Half-way through the loop; complete the last OUT before saving.
  constexpr std::size_t kTicksBeforeSave = 1000;
  auto stopped = original->run(kTicksBeforeSave);
  ASSERT_TRUE(stopped) << stopped.error().message();
  ASSERT_EQ(*stopped, std::uint32_t{KVM_EXIT_IO});
  ASSERT_TRUE(x86_64::complete_pending_exit(*original->vcpu));
  auto vm_state = x86_64::save_vm_state(original->vm);
  ASSERT_TRUE(vm_state) << vm_state.error().message();
  auto vcpu_state = x86_64::save_vcpu_state(*original->vcpu, msrs);
  ASSERT_TRUE(vcpu_state) << vcpu_state.error().message();
  EXPECT_FALSE(vcpu_state->cpuid.empty());
  EXPECT_FALSE(vcpu_state->msrs.empty());
  // The 1000th OUT completed; its LOOP, which decrements cx, has not run.
  EXPECT_EQ(vcpu_state->regs.rcx, kIterations - kTicksBeforeSave + 1u) << "cx counts down";

  // A second VM with a copy of the memory, rebuilt from the state.
  auto copy = TestVm::create();
  ASSERT_TRUE(copy) << copy.error().message();
  std::memcpy(copy->memory.bytes().data(), original->memory.bytes().data(), kMemorySize);
  auto restored_vm = x86_64::restore_vm_state(copy->vm, *vm_state);
  ASSERT_TRUE(restored_vm) << restored_vm.error().message();
  ASSERT_TRUE(copy->create_vcpu());
  auto restored_vcpu = x86_64::restore_vcpu_state(*copy->vcpu, *vcpu_state);
  ASSERT_TRUE(restored_vcpu) << restored_vcpu.error().message();

  // Saved again, the copy's state is the one it was built from.
  auto vm_again = x86_64::save_vm_state(copy->vm);
  ASSERT_TRUE(vm_again) << vm_again.error().message();
  EXPECT_EQ(without(differences(*vm_state, *vm_again), {"clock", "pit.count_load_time"}),
            std::vector<std::string>{})
      << joined(differences(*vm_state, *vm_again));
  auto vcpu_again = x86_64::save_vcpu_state(*copy->vcpu, msrs);
  ASSERT_TRUE(vcpu_again) << vcpu_again.error().message();
  EXPECT_EQ(without(differences(*vcpu_state, *vcpu_again), {"msr 0x10"}),
            std::vector<std::string>{})
      << joined(differences(*vcpu_state, *vcpu_again));

  // Both finish the program with the same result.
  auto original_end = original->run(kIterations + 10);
  ASSERT_TRUE(original_end) << original_end.error().message();
  auto copy_end = copy->run(kIterations + 10);
  ASSERT_TRUE(copy_end) << copy_end.error().message();
  EXPECT_EQ(*original_end, TestVm::kProgramDone) << exit_reason_name(*original_end);
  EXPECT_EQ(*copy_end, TestVm::kProgramDone) << exit_reason_name(*copy_end);

  // sum(1..3000) = 4501500 = 0x44affc; the x87 counted 3000 = 0xbb8.
  const std::vector<std::uint8_t> expected = {0xfc, 0xaf, 0x44, 0x00, 0xb8, 0x0b, 0xfc, 0xaf};
  EXPECT_EQ(original->results->bytes, expected);
  EXPECT_EQ(copy->results->bytes, expected);
  EXPECT_EQ(original->ticks->bytes.size(), kIterations);
  EXPECT_EQ(copy->ticks->bytes.size(), kIterations - kTicksBeforeSave);
  EXPECT_TRUE(std::equal(copy->ticks->bytes.begin(), copy->ticks->bytes.end(),
                         original->ticks->bytes.begin() + kTicksBeforeSave))
      << "the copy's OUTs continue the original's sequence";
  auto original_regs = original->vcpu->regs();
  auto copy_regs = copy->vcpu->regs();
  ASSERT_TRUE(original_regs && copy_regs);
  EXPECT_EQ(copy_regs->rip, original_regs->rip);
  EXPECT_EQ(copy_regs->rax, original_regs->rax);
  EXPECT_EQ(copy_regs->rbx, original_regs->rbx);
  EXPECT_EQ(copy_regs->rcx, 0u);
  EXPECT_EQ(std::memcmp(copy->memory.bytes().data(), original->memory.bytes().data(), kMemorySize),
            0);
}

TEST(VcpuState, RestoreNamesTheIoctlThatRefusedTheState) {
  auto vm = TestVm::create();
  ASSERT_TRUE(vm) << vm.error().message();
  ASSERT_TRUE(vm->boot());
  auto msr_index = vm->kvm.msr_index_list();
  ASSERT_TRUE(msr_index);
  auto state = x86_64::save_vcpu_state(*vm->vcpu, x86_64::msrs_to_save(*msr_index));
  ASSERT_TRUE(state) << state.error().message();

  auto other = TestVm::create();
  ASSERT_TRUE(other);
  ASSERT_TRUE(other->create_vcpu());
  VcpuState bad = *state;
  bad.xcrs.flags = 1;  // KVM refuses any flag here
  auto r = x86_64::restore_vcpu_state(*other->vcpu, bad);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("KVM_SET_XCRS"), std::string::npos) << r.error().message();

  VmState bad_vm;  // chip ids all 0
  auto rv = x86_64::restore_vm_state(other->vm, bad_vm);
  ASSERT_FALSE(rv);
  EXPECT_EQ(rv.error().code(), Errc::kInvalidArgument);
}

}  // namespace
}  // namespace hvz::testing
