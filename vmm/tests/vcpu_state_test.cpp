// vCPU and VM state without KVM: which MSRs a snapshot keeps, skipping MSRs
// KVM refuses, the MSR restore order and TSC-deadline fix-up, TSC scaling
// tolerance, equality and difference reports, and validation of untrusted
// states.
#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "vmm/x86_64/msr_list.hpp"
#include "vmm/x86_64/vcpu_state.hpp"
#include "vmm/x86_64/vm_state.hpp"

namespace hvz::x86_64 {
namespace {

TEST(MsrList, KeepsGuestStateMsrsInKvmOrder) {
  const std::vector<std::uint32_t> kvm_list = {
      msr::kKvmSystemTimeNew,
      msr::kTsc,
      msr::kEfer,
      0x277 /* PAT */,
      msr::kApicBase,
      msr::kTscDeadline,
      0xc0000102 /* KERNEL_GS_BASE */,
      msr::kKvmSystemTime,
  };
  EXPECT_EQ(msrs_to_save(kvm_list), kvm_list);
}

TEST(MsrList, DropsHostFactsCountersWriteOnlyAndMcgCtl) {
  const std::vector<std::uint32_t> kvm_list = {
      0x480,  // IA32_VMX_BASIC
      0xc1,   // IA32_PMC0
      0x186,  // IA32_PERFEVTSEL0
      0x49,   // IA32_PRED_CMD
      0x10a,  // IA32_ARCH_CAPABILITIES
      msr::kMcgCtl, msr::kKvmAsyncPfAck,
      0x40000000,  // Hyper-V guest OS id
  };
  EXPECT_TRUE(msrs_to_save(kvm_list).empty());
  EXPECT_TRUE(msr_should_save(0x17a)) << "MCG_STATUS stays";
}

TEST(MsrList, DropsDuplicates) {
  const std::vector<std::uint32_t> kvm_list = {msr::kTsc, msr::kEfer, msr::kTsc};
  EXPECT_EQ(msrs_to_save(kvm_list), (std::vector<std::uint32_t>{msr::kTsc, msr::kEfer}));
}

// A reader with KVM_GET_MSRS semantics that refuses the MSRs in `refused`
// and answers index * 2 for the others.
struct FakeMsrs {
  std::vector<std::uint32_t> refused;
  int calls = 0;
  Expected<std::size_t> operator()(std::span<kvm_msr_entry> entries) {
    ++calls;
    for (std::size_t i = 0; i < entries.size(); ++i) {
      if (std::find(refused.begin(), refused.end(), entries[i].index) != refused.end()) return i;
      entries[i].data = std::uint64_t{entries[i].index} * 2;
    }
    return entries.size();
  }
};

TEST(ReadMsrs, SkipsMsrsKvmRefusesAndKeepsTheRestInOrder) {
  FakeMsrs fake{.refused = {0x11, 0x13, 0x14}};
  const std::vector<std::uint32_t> indices = {0x10, 0x11, 0x12, 0x13, 0x14, 0x15};
  auto got = read_msrs(indices, std::ref(fake));
  ASSERT_TRUE(got) << got.error().message();
  EXPECT_EQ(*got, (std::vector<MsrEntry>{{0x10, 0x20}, {0x12, 0x24}, {0x15, 0x2a}}));
  EXPECT_EQ(fake.calls, 4);
}

TEST(ReadMsrs, ARefusedLastMsrEndsTheList) {
  FakeMsrs fake{.refused = {0x12}};
  const std::vector<std::uint32_t> indices = {0x10, 0x12};
  auto got = read_msrs(indices, std::ref(fake));
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, (std::vector<MsrEntry>{{0x10, 0x20}}));
}

TEST(ReadMsrs, PassesOnAnIoctlFailure) {
  const std::vector<std::uint32_t> indices = {0x10};
  auto got = read_msrs(indices, [](std::span<kvm_msr_entry>) -> Expected<std::size_t> {
    errno = EFAULT;
    return sys_error("KVM_GET_MSRS");
  });
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().operation(), "KVM_GET_MSRS");
}

kvm_lapic_state lapic_with_lvtt(std::uint32_t lvtt) {
  kvm_lapic_state lapic{};
  std::memcpy(lapic.regs + 0x320, &lvtt, sizeof lvtt);
  return lapic;
}

TEST(MsrsForRestore, WritesTheTscDeadlineLastAndAfterTheTsc) {
  const std::vector<MsrEntry> saved = {
      {msr::kTscDeadline, 5000}, {msr::kApicBase, 0xfee00900}, {msr::kTsc, 4000}, {msr::kEfer, 0}};
  const auto order = msrs_for_restore(saved, true);
  ASSERT_EQ(order.size(), 4u);
  EXPECT_EQ(order[0].first, msr::kApicBase);
  EXPECT_EQ(order[1], (std::pair<std::uint32_t, std::uint64_t>{msr::kTsc, 4000}));
  EXPECT_EQ(order[3], (std::pair<std::uint32_t, std::uint64_t>{msr::kTscDeadline, 5000}));
}

TEST(MsrsForRestore, AZeroDeadlineRearmsOnlyInTscDeadlineMode) {
  const std::vector<MsrEntry> saved = {{msr::kTsc, 4000}, {msr::kTscDeadline, 0}};
  EXPECT_EQ(msrs_for_restore(saved, true).back().second, 4000u);
  EXPECT_EQ(msrs_for_restore(saved, false).back().second, 0u);
}

TEST(LapicTimer, RecognisesTscDeadlineMode) {
  // LVTT timer mode in bits 18:17: 0 one-shot, 1 periodic, 2 TSC deadline.
  EXPECT_TRUE(lapic_timer_tsc_deadline(lapic_with_lvtt(0x4'00ec)));
  EXPECT_FALSE(lapic_timer_tsc_deadline(lapic_with_lvtt(0x2'00ec)));
  EXPECT_FALSE(lapic_timer_tsc_deadline(lapic_with_lvtt(0x0'00ec)));
  EXPECT_FALSE(lapic_timer_tsc_deadline(lapic_with_lvtt(0x1'0000)));  // masked, one-shot
}

TEST(TscScaling, IgnoresCalibrationNoiseBelow250Ppm) {
  EXPECT_FALSE(tsc_scaling_needed(2'000'000, 2'000'000));
  EXPECT_FALSE(tsc_scaling_needed(2'000'400, 2'000'000));  // 200 ppm
  EXPECT_FALSE(tsc_scaling_needed(1'999'500, 2'000'000));  // 250 ppm
  EXPECT_TRUE(tsc_scaling_needed(2'000'600, 2'000'000));   // 300 ppm
  EXPECT_TRUE(tsc_scaling_needed(3'000'000, 2'000'000));
}

VcpuState sample_vcpu_state() {
  VcpuState s;
  s.cpuid.resize(2);
  s.cpuid[1].function = 1;
  s.cpuid[1].eax = 0x806f8;
  s.msrs = {{msr::kTsc, 1234}, {msr::kEfer, 0x500}};
  s.regs.rip = 0x1000;
  s.sregs.cr0 = 0x60000010;
  s.xsave.assign(1024, 0);
  s.lapic.regs[0x20] = 1;
  s.tsc_khz = 2'000'000;
  return s;
}

TEST(VcpuState, EqualityCoversEveryFieldAndNamesTheDifferences) {
  const VcpuState a = sample_vcpu_state();
  VcpuState b = a;
  EXPECT_EQ(a, b);
  EXPECT_TRUE(differences(a, b).empty());
  b.regs.rax = 1;
  b.xsave[600] = 7;
  b.msrs[0].value = 1300;  // the TSC ran on
  b.events.nmi.pending = 1;
  EXPECT_FALSE(a == b);
  EXPECT_EQ(differences(a, b), (std::vector<std::string>{"regs", "xsave", "events", "msr 0x10"}));
  b = a;
  b.msrs.pop_back();
  EXPECT_EQ(differences(a, b), (std::vector<std::string>{"msr list"}));
  b = a;
  b.tsc_khz.reset();
  b.cpuid[1].eax = 0;
  EXPECT_EQ(differences(a, b), (std::vector<std::string>{"cpuid", "tsc_khz"}));
}

TEST(VcpuState, ValidateRefusesWhatNoSaveProduces) {
  VcpuState s = sample_vcpu_state();
  EXPECT_TRUE(validate(s));
  s.cpuid.resize(257);
  auto r = validate(s);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::kInvalidArgument);
  s = sample_vcpu_state();
  s.xsave.resize(1023);
  EXPECT_FALSE(validate(s)) << "an XSAVE area shorter than 4 KiB";
  s.xsave.resize(2048);
  EXPECT_TRUE(validate(s)) << "a larger area (XSAVE2, AMX) is fine here; KVM_SET_XSAVE checks";
}

VmState sample_vm_state() {
  VmState s;
  s.pic_master.chip_id = KVM_IRQCHIP_PIC_MASTER;
  s.pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
  s.ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
  s.pit.channels[0].count = 0x1234;
  s.pit.channels[0].count_load_time = 100;
  s.clock.clock = 5'000'000;
  return s;
}

TEST(VmState, DifferencesSeparateLoadTimesAndClockFromTheRest) {
  const VmState a = sample_vm_state();
  VmState b = a;
  EXPECT_EQ(a, b);
  b.pit.channels[0].count_load_time = 200;
  b.clock.clock += 10;
  EXPECT_EQ(differences(a, b), (std::vector<std::string>{"pit.count_load_time", "clock"}));
  b.pit.channels[2].gate = 1;
  b.ioapic.chip.ioapic.irr = 1;
  EXPECT_EQ(differences(a, b),
            (std::vector<std::string>{"ioapic", "pit", "pit.count_load_time", "clock"}));
}

TEST(VmState, ValidateRefusesMismatchedChipIds) {
  VmState s = sample_vm_state();
  EXPECT_TRUE(validate(s));
  s.pic_slave.chip_id = KVM_IRQCHIP_IOAPIC;
  auto r = validate(s);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::kInvalidArgument);
}

TEST(VmState, ClockFlagsPassOnlyRealtimeAndOnlyWhenTheHostTakesIt) {
  const std::uint32_t saved = KVM_CLOCK_TSC_STABLE | KVM_CLOCK_REALTIME | KVM_CLOCK_HOST_TSC;
  EXPECT_EQ(clock_flags_for_restore(saved,
                                    KVM_CLOCK_TSC_STABLE | KVM_CLOCK_REALTIME | KVM_CLOCK_HOST_TSC),
            std::uint32_t{KVM_CLOCK_REALTIME});
  EXPECT_EQ(clock_flags_for_restore(saved, KVM_CLOCK_TSC_STABLE), 0u) << "an older kernel";
  EXPECT_EQ(clock_flags_for_restore(saved, 0), 0u);
  EXPECT_EQ(clock_flags_for_restore(KVM_CLOCK_TSC_STABLE, KVM_CLOCK_REALTIME), 0u);
}

}  // namespace
}  // namespace hvz::x86_64
