// x86_64 boot state without KVM: GDT encoding, identity page tables, boot
// registers, CPUID topology, the RAM layout and config validation.
#include <gtest/gtest.h>

#include "vmm/config/vm_config.hpp"
#include "vmm/vm.hpp"
#include "vmm/x86_64/cpuid.hpp"
#include "vmm/x86_64/layout.hpp"
#include "vmm/x86_64/regs.hpp"

namespace hvz::x86_64 {
namespace {

TEST(Gdt, EncodesAndDecodesFlatSegments) {
  // The 64-bit code segment every x86 VMM boots Linux with.
  EXPECT_EQ(gdt_entry(0xa09b, 0, 0xfffff), 0x00af9b000000ffffull);
  EXPECT_EQ(gdt_entry(0xc093, 0, 0xfffff), 0x00cf93000000ffffull);
  kvm_segment code = segment_from_gdt(gdt_entry(0xa09b, 0, 0xfffff), 1);
  EXPECT_EQ(code.selector, 0x08);
  EXPECT_EQ(code.limit, 0xffffffffu);
  EXPECT_EQ(code.l, 1);
  EXPECT_EQ(code.db, 0);
  EXPECT_EQ(code.present, 1);
  EXPECT_EQ(code.type, 0xb);
  kvm_segment pvh_code = segment_from_gdt(gdt_entry(0xc09b, 0, 0xfffff), 1);
  EXPECT_EQ(pvh_code.l, 0);
  EXPECT_EQ(pvh_code.db, 1);
  kvm_segment base = segment_from_gdt(gdt_entry(0x008b, 0x12345678, 0x67), 3);
  EXPECT_EQ(base.base, 0x12345678u);
  EXPECT_EQ(base.limit, 0x67u);
  EXPECT_EQ(base.g, 0);
  EXPECT_EQ(segment_from_gdt(gdt_entry(0x808b, 0, 0x67), 3).limit, 0x67fffu);
}

TEST(BootTables, IdentityMapsFourGiB) {
  auto mem = GuestMemory::create({{GuestAddress(0), 64 << 20}});
  ASSERT_TRUE(mem);
  ASSERT_TRUE(write_boot_tables(*mem, EntryMode::kLinux64));
  EXPECT_EQ(*mem->read_obj<std::uint64_t>(GuestAddress(kPml4Start)), kPdptStart | 3);
  for (std::uint64_t i = 0; i < 4; ++i) {
    EXPECT_EQ(*mem->read_obj<std::uint64_t>(GuestAddress(kPdptStart + 8 * i)),
              (kPdStart + 0x1000 * i) | 3);
  }
  // The PD entry for 3 GiB + 2 MiB maps exactly that address.
  const std::uint64_t addr = (3ull << 30) + (2ull << 20);
  const std::uint64_t pde = *mem->read_obj<std::uint64_t>(
      GuestAddress(kPdStart + ((addr >> 30) * 0x1000) + ((addr >> 21) & 511) * 8));
  EXPECT_EQ(pde, addr | 0x83);
  EXPECT_EQ(*mem->read_obj<std::uint64_t>(GuestAddress(kGdtStart + 8)), 0x00af9b000000ffffull);
}

TEST(BootTables, FailOutsideGuestMemory) {
  auto mem = GuestMemory::create({{GuestAddress(0x100000), 1 << 20}});
  ASSERT_TRUE(mem);
  EXPECT_FALSE(write_boot_tables(*mem, EntryMode::kLinux64));
}

TEST(BootRegs, Linux64AndPvhEntryState) {
  kvm_sregs s = boot_sregs(kvm_sregs{}, EntryMode::kLinux64);
  EXPECT_EQ(s.cr3, kPml4Start);
  EXPECT_TRUE(s.cr0 & 1);
  EXPECT_TRUE(s.cr0 & (1ull << 31));
  EXPECT_TRUE(s.cr4 & (1ull << 5));
  EXPECT_EQ(s.efer & 0x500, 0x500u);
  EXPECT_EQ(s.cs.l, 1);
  kvm_regs r = boot_regs(EntryMode::kLinux64, 0x100200);
  EXPECT_EQ(r.rip, 0x100200u);
  EXPECT_EQ(r.rsi, kZeroPage);
  EXPECT_EQ(r.rflags, 2u);

  kvm_sregs p = boot_sregs(kvm_sregs{}, EntryMode::kPvh);
  EXPECT_EQ(p.cr0 & (1ull << 31), 0u);
  EXPECT_EQ(p.efer, 0u);
  EXPECT_EQ(p.cs.db, 1);
  EXPECT_EQ(boot_regs(EntryMode::kPvh, 0x1000000).rbx, kPvhStartInfo);
}

kvm_cpuid_entry2 leaf(std::uint32_t function, std::uint32_t index = 0) {
  kvm_cpuid_entry2 e{};
  e.function = function;
  e.index = index;
  return e;
}

TEST(Cpuid, SetsApicIdsTopologyAndHypervisorBit) {
  std::vector<kvm_cpuid_entry2> host = {leaf(1), leaf(0xb, 0), leaf(0xb, 1), leaf(0x80000008)};
  host[0].ebx = 0xff00ff08;  // stale APIC id and count from the host
  auto v = vcpu_cpuid(host, 3, 4);
  EXPECT_EQ(v[0].ebx >> 24, 3u);
  EXPECT_EQ((v[0].ebx >> 16) & 0xff, 4u);
  EXPECT_EQ(v[0].ebx & 0xffff, 0xff08u);
  EXPECT_TRUE(v[0].ecx & (1u << 31));
  EXPECT_TRUE(v[0].edx & (1u << 28));
  EXPECT_EQ(v[1].edx, 3u);
  EXPECT_EQ(v[1].ebx, 1u);
  EXPECT_EQ(v[2].ebx, 4u);
  EXPECT_EQ(v[2].eax, 2u);  // 4 vCPUs need 2 id bits
  EXPECT_EQ(v[3].ecx & 0xff, 3u);
  auto one = vcpu_cpuid(host, 0, 1);
  EXPECT_FALSE(one[0].edx & (1u << 28));
}

TEST(RamLayout, SplitsAroundTheMmioGap) {
  auto small = vmm::ram_layout(256);
  ASSERT_EQ(small.size(), 1u);
  EXPECT_EQ(small[0].size, 256ull << 20);
  auto big = vmm::ram_layout(4096);
  ASSERT_EQ(big.size(), 2u);
  EXPECT_EQ(big[0].size, kMmioGapStart);
  EXPECT_EQ(big[1].start, GuestAddress(kMmioGapEnd));
  EXPECT_EQ(big[1].size, (4096ull << 20) - kMmioGapStart);
}

TEST(VmConfig, ValidatesRanges) {
  config::VmConfig c;
  c.boot_source = config::BootSource{"/k", {}, {}};
  EXPECT_TRUE(config::validate(c));
  c.machine_config.vcpu_count = 0;
  EXPECT_FALSE(config::validate(c));
  c.machine_config.vcpu_count = 33;
  EXPECT_FALSE(config::validate(c));
  c.machine_config.vcpu_count = 32;
  EXPECT_TRUE(config::validate(c));
  c.machine_config.mem_size_mib = 8;
  EXPECT_FALSE(config::validate(c));
  c.machine_config.mem_size_mib = 129;
  c.machine_config.huge_pages = config::HugePages::k2M;
  EXPECT_FALSE(config::validate(c));
  c.machine_config.mem_size_mib = 128;
  EXPECT_TRUE(config::validate(c));
  c.boot_source.reset();
  EXPECT_FALSE(config::validate(c));
}

config::Drive drive(std::string id, std::string path, bool root, bool read_only) {
  config::Drive d;
  d.drive_id = std::move(id);
  d.path_on_host = std::move(path);
  d.is_root_device = root;
  d.is_read_only = read_only;
  return d;
}

TEST(VmConfig, ValidatesDrives) {
  config::VmConfig c;
  c.boot_source = config::BootSource{"/k", {}, {}};
  c.drives.push_back(drive("rootfs", "/r", true, false));
  EXPECT_TRUE(config::validate(c));
  c.drives.push_back(drive("rootfs", "/d", false, false));
  EXPECT_FALSE(config::validate(c));  // duplicate id
  c.drives.back().drive_id = "data";
  EXPECT_TRUE(config::validate(c));
  c.drives.back().is_root_device = true;
  EXPECT_FALSE(config::validate(c));  // two roots
  c.drives.back().is_root_device = false;
  c.drives.back().drive_id = "bad-id";
  EXPECT_FALSE(config::validate(c));
  c.drives.back().drive_id = std::string(65, 'a');
  EXPECT_FALSE(config::validate(c));
  c.drives.back().drive_id = "data";
  c.drives.back().path_on_host.clear();
  EXPECT_FALSE(config::validate(c));
}

TEST(VmConfig, RootDriveGoesOnTheCommandLine) {
  config::VmConfig c;
  c.boot_source = config::BootSource{"/k", {}, "console=ttyS0"};
  EXPECT_EQ(config::kernel_cmdline(c), "console=ttyS0");
  c.drives.push_back(drive("data", "/d", false, false));
  EXPECT_EQ(config::kernel_cmdline(c), "console=ttyS0");
  c.drives.push_back(drive("rootfs", "/r", true, true));
  EXPECT_EQ(config::kernel_cmdline(c), "console=ttyS0 root=/dev/vda ro");
}

}  // namespace
}  // namespace hvz::x86_64
