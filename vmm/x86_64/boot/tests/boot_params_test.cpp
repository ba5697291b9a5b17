// The Linux zero page and the PVH start info, read back from guest memory.
#include "vmm/x86_64/boot/boot_params.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "vmm/x86_64/boot/e820.hpp"
#include "vmm/x86_64/boot/pvh_start_info.hpp"
#include "vmm/x86_64/boot/tests/test_support.hpp"
#include "vmm/x86_64/layout.hpp"

namespace hvz::x86_64 {
namespace {

using test::make_memory;
using test::read_guest;

constexpr std::uint64_t kMiB = 1 << 20;

setup_header bzimage_header(std::uint16_t version = 0x020f, std::uint32_t cmdline_size = 2047) {
  setup_header hdr{};
  hdr.setup_sects = 27;
  hdr.boot_flag = 0xaa55;
  hdr.header = 0x53726448;
  hdr.version = version;
  hdr.loadflags = LOADED_HIGH;
  hdr.initrd_addr_max = 0x7fffffff;
  hdr.kernel_alignment = 0x1000000;
  hdr.xloadflags = XLF_KERNEL_64;
  hdr.cmdline_size = cmdline_size;
  hdr.init_size = 0x3000000;
  return hdr;
}

LoadedKernel bz_kernel(setup_header hdr = bzimage_header()) {
  return LoadedKernel{GuestAddress(kHighMemStart + 0x200), BootProtocol::kLinux64,
                      GuestAddress(kHighMemStart + hdr.init_size), hdr};
}

LoadedKernel elf_kernel() {
  return LoadedKernel{GuestAddress(0x1000000), BootProtocol::kLinux64, GuestAddress(0x2000000),
                      std::nullopt};
}

std::string guest_string(const GuestMemory& mem, std::uint64_t addr, std::size_t max) {
  std::string s;
  for (std::size_t i = 0; i < max; ++i) {
    const auto c = read_guest<char>(mem, addr + i);
    if (c == '\0') return s;
    s.push_back(c);
  }
  ADD_FAILURE() << "no NUL within " << max << " bytes";
  return s;
}

// boot_params is packed: gtest's assertions bind references, which a
// misaligned member cannot give (UBSan says so); compare copies.
template <typename T>
T val(T v) {
  return v;
}

boot_params zero_page(const GuestMemory& mem) {
  return read_guest<boot_params>(mem, kZeroPage);
}

TEST(LinuxBootParams, ZeroPageCarriesHeaderCmdlineInitrdAndE820) {
  auto mem = make_memory(128 * kMiB);
  // Stale bytes in the zero page must not survive.
  std::vector<std::byte> junk(sizeof(boot_params), std::byte{0x5a});
  ASSERT_TRUE(mem.write(GuestAddress(kZeroPage), junk));
  const MemoryRange initrd{GuestAddress(100 * kMiB), 0x123456};
  ASSERT_TRUE(configure_linux_boot(mem, bz_kernel(), "console=ttyS0 panic=-1", initrd));

  const auto bp = zero_page(mem);
  EXPECT_EQ(val(bp.hdr.boot_flag), 0xaa55);
  EXPECT_EQ(val(bp.hdr.header), 0x53726448u);
  EXPECT_EQ(val(bp.hdr.version), 0x020f);
  EXPECT_EQ(val(bp.hdr.setup_sects), 27);  // copied from the image's header
  EXPECT_EQ(val(bp.hdr.kernel_alignment), 0x1000000u);
  EXPECT_EQ(val(bp.hdr.type_of_loader), 0xff);
  EXPECT_EQ(val(bp.hdr.loadflags), LOADED_HIGH | CAN_USE_HEAP);
  EXPECT_NE(val(bp.hdr.heap_end_ptr), 0);
  EXPECT_EQ(val(bp.hdr.cmd_line_ptr), kCmdlineStart);
  EXPECT_EQ(val(bp.ext_cmd_line_ptr), 0u);
  EXPECT_EQ(guest_string(mem, bp.hdr.cmd_line_ptr, kCmdlineMax), "console=ttyS0 panic=-1");
  EXPECT_EQ(val(bp.hdr.ramdisk_image), 100 * kMiB);
  EXPECT_EQ(val(bp.hdr.ramdisk_size), 0x123456u);
  EXPECT_EQ(val(bp.ext_ramdisk_image), 0u);
  EXPECT_EQ(val(bp.ext_ramdisk_size), 0u);
  EXPECT_EQ(val(bp.acpi_rsdp_addr), kRsdpStart);
  EXPECT_EQ(val(bp.sentinel), 0);

  const auto e820 = build_e820(mem);
  ASSERT_EQ(bp.e820_entries, e820.size());
  ASSERT_EQ(bp.e820_entries, 3);
  for (std::size_t i = 0; i < e820.size(); ++i) {
    EXPECT_EQ(val(bp.e820_table[i].addr), val(e820[i].addr)) << i;
    EXPECT_EQ(val(bp.e820_table[i].size), val(e820[i].size)) << i;
    EXPECT_EQ(val(bp.e820_table[i].type), val(e820[i].type)) << i;
  }
  EXPECT_EQ(val(bp.e820_table[2].addr), kHighMemStart);
  EXPECT_EQ(val(bp.e820_table[2].size), 127 * kMiB);
  EXPECT_EQ(val(bp.e820_table[3].size), 0u);
}

TEST(LinuxBootParams, NoInitrdLeavesRamdiskFieldsZero) {
  auto mem = make_memory(64 * kMiB);
  ASSERT_TRUE(configure_linux_boot(mem, bz_kernel(), "", std::nullopt));
  const auto bp = zero_page(mem);
  EXPECT_EQ(val(bp.hdr.ramdisk_image), 0u);
  EXPECT_EQ(val(bp.hdr.ramdisk_size), 0u);
  EXPECT_EQ(guest_string(mem, kCmdlineStart, 1), "");
}

TEST(LinuxBootParams, InitrdAbove4GiBUsesExtFields) {
  auto mem = make_memory({{GuestAddress(0), 8 * kMiB}, {GuestAddress(kMmioGapEnd), 8 * kMiB}});
  const MemoryRange initrd{GuestAddress(kMmioGapEnd + 0x2000), 0x1000};
  ASSERT_TRUE(configure_linux_boot(mem, bz_kernel(), "x", initrd));
  const auto bp = zero_page(mem);
  EXPECT_EQ(val(bp.hdr.ramdisk_image), 0x2000u);
  EXPECT_EQ(val(bp.ext_ramdisk_image), 1u);
  EXPECT_EQ(val(bp.hdr.ramdisk_size), 0x1000u);
  ASSERT_EQ(bp.e820_entries, 4);
  EXPECT_EQ(val(bp.e820_table[3].addr), kMmioGapEnd);
}

TEST(LinuxBootParams, ElfKernelGetsAConstructedHeader) {
  auto mem = make_memory(64 * kMiB);
  ASSERT_TRUE(configure_linux_boot(mem, elf_kernel(), "root=/dev/vda", std::nullopt));
  const auto bp = zero_page(mem);
  EXPECT_EQ(val(bp.hdr.boot_flag), 0xaa55);
  EXPECT_EQ(val(bp.hdr.header), 0x53726448u);
  EXPECT_EQ(val(bp.hdr.version), 0x020c);
  EXPECT_EQ(val(bp.hdr.kernel_alignment), 2 * kMiB);
  EXPECT_EQ(val(bp.hdr.type_of_loader), 0xff);
  EXPECT_TRUE(bp.hdr.loadflags & CAN_USE_HEAP);
  EXPECT_EQ(val(bp.hdr.cmd_line_ptr), kCmdlineStart);
  EXPECT_EQ(guest_string(mem, kCmdlineStart, 64), "root=/dev/vda");
}

TEST(LinuxBootParams, RejectsCommandLineLongerThanTheKernelAccepts) {
  auto mem = make_memory(64 * kMiB);
  // cmdline_size counts characters without the NUL.
  EXPECT_TRUE(configure_linux_boot(mem, bz_kernel(), std::string(2047, 'a'), std::nullopt));
  EXPECT_EQ(guest_string(mem, kCmdlineStart, 4096).size(), 2047u);
  auto r = configure_linux_boot(mem, bz_kernel(), std::string(2048, 'a'), std::nullopt);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("command line"), std::string::npos);
  // Before 2.06 the limit is 255 whatever cmdline_size says.
  EXPECT_TRUE(configure_linux_boot(mem, bz_kernel(bzimage_header(0x0205, 0)), std::string(255, 'b'),
                                   std::nullopt));
  EXPECT_FALSE(configure_linux_boot(mem, bz_kernel(bzimage_header(0x0205, 0)),
                                    std::string(256, 'b'), std::nullopt));
  // Our own window caps a kernel that claims more.
  EXPECT_FALSE(configure_linux_boot(mem, bz_kernel(bzimage_header(0x020f, 0xffffffff)),
                                    std::string(kCmdlineMax, 'c'), std::nullopt));
  EXPECT_TRUE(
      configure_linux_boot(mem, elf_kernel(), std::string(kCmdlineMax - 1, 'c'), std::nullopt));
  EXPECT_FALSE(
      configure_linux_boot(mem, elf_kernel(), std::string(kCmdlineMax, 'c'), std::nullopt));
}

TEST(LinuxBootParams, RejectsNulInCommandLine) {
  auto mem = make_memory(64 * kMiB);
  EXPECT_FALSE(configure_linux_boot(mem, bz_kernel(), std::string("a\0b", 3), std::nullopt));
}

TEST(LinuxBootParams, RejectsInitrdOutsideRam) {
  auto mem = make_memory(64 * kMiB);
  EXPECT_FALSE(configure_linux_boot(mem, bz_kernel(), "",
                                    MemoryRange{GuestAddress(64 * kMiB - 0x1000), 0x2000}));
  EXPECT_FALSE(configure_linux_boot(mem, bz_kernel(), "", MemoryRange{GuestAddress(0), 0}));
}

TEST(LinuxBootParams, RejectsPvhKernel) {
  auto mem = make_memory(64 * kMiB);
  auto k = elf_kernel();
  k.protocol = BootProtocol::kPvh;
  EXPECT_FALSE(configure_linux_boot(mem, k, "", std::nullopt));
}

// Many small regions: an e820 map larger than the zero page and the PVH
// window hold.
GuestMemory fragmented_memory(std::size_t regions) {
  std::vector<MemoryRange> ranges{{GuestAddress(0), 2 * kMiB}};
  for (std::size_t i = 0; i < regions; ++i) {
    ranges.push_back({GuestAddress(4 * kMiB + i * 0x2000), 0x1000});
  }
  return make_memory(ranges);
}

TEST(LinuxBootParams, RejectsE820MapLargerThanZeroPage) {
  auto ok = fragmented_memory(E820_MAX_ENTRIES_ZEROPAGE - 3);  // 3 + 125 = 128 entries
  ASSERT_TRUE(configure_linux_boot(ok, bz_kernel(), "", std::nullopt));
  EXPECT_EQ(zero_page(ok).e820_entries, E820_MAX_ENTRIES_ZEROPAGE);
  auto too_many = fragmented_memory(E820_MAX_ENTRIES_ZEROPAGE - 2);
  EXPECT_FALSE(configure_linux_boot(too_many, bz_kernel(), "", std::nullopt));
}

TEST(LinuxBootParams, RealKernelHeaderReachesTheZeroPage) {
  std::vector<std::byte> image;
  HVZ_REQUIRE_GUEST_KERNEL(image);
  auto mem = make_memory(256 * kMiB);
  auto k = load_kernel(mem, image);
  ASSERT_TRUE(k) << k.error().message();
  ASSERT_TRUE(configure_linux_boot(mem, *k, "console=ttyS0", std::nullopt));
  const auto bp = zero_page(mem);
  EXPECT_EQ(val(bp.hdr.version), val(k->header->version));
  EXPECT_EQ(val(bp.hdr.init_size), val(k->header->init_size));
  EXPECT_EQ(val(bp.hdr.type_of_loader), 0xff);
  EXPECT_EQ(guest_string(mem, bp.hdr.cmd_line_ptr, 64), "console=ttyS0");
}

TEST(PvhStartInfo, FieldsReadBack) {
  auto mem = make_memory({{GuestAddress(0), 64 * kMiB}, {GuestAddress(kMmioGapEnd), 8 * kMiB}});
  const MemoryRange initrd{GuestAddress(60 * kMiB), 0x4321};
  ASSERT_TRUE(configure_pvh_boot(mem, "console=hvc0", initrd));
  const auto info = read_guest<HvmStartInfo>(mem, kPvhStartInfo);
  EXPECT_EQ(info.magic, 0x336ec578u);
  EXPECT_EQ(info.version, 1u);
  EXPECT_EQ(info.flags, 0u);
  EXPECT_EQ(info.cmdline_paddr, kCmdlineStart);
  EXPECT_EQ(guest_string(mem, info.cmdline_paddr, 64), "console=hvc0");
  EXPECT_EQ(info.rsdp_paddr, kRsdpStart);
  EXPECT_EQ(info.reserved, 0u);

  ASSERT_EQ(info.nr_modules, 1u);
  EXPECT_GE(info.modlist_paddr, kPvhStartInfo + sizeof(HvmStartInfo));
  const auto mod = read_guest<HvmModlistEntry>(mem, info.modlist_paddr);
  EXPECT_EQ(mod.paddr, 60 * kMiB);
  EXPECT_EQ(mod.size, 0x4321u);
  EXPECT_EQ(mod.cmdline_paddr, 0u);

  const auto e820 = build_e820(mem);
  ASSERT_EQ(info.memmap_entries, e820.size());
  ASSERT_EQ(info.memmap_entries, 4u);
  EXPECT_GE(info.memmap_paddr, info.modlist_paddr + sizeof(HvmModlistEntry));
  EXPECT_LE(info.memmap_paddr + info.memmap_entries * sizeof(HvmMemmapTableEntry), kZeroPage);
  for (std::size_t i = 0; i < e820.size(); ++i) {
    const auto e =
        read_guest<HvmMemmapTableEntry>(mem, info.memmap_paddr + i * sizeof(HvmMemmapTableEntry));
    EXPECT_EQ(e.addr, val(e820[i].addr)) << i;
    EXPECT_EQ(e.size, val(e820[i].size)) << i;
    EXPECT_EQ(e.type, val(e820[i].type)) << i;
    EXPECT_EQ(e.reserved, 0u);
  }
  EXPECT_EQ(read_guest<HvmMemmapTableEntry>(mem, info.memmap_paddr + 1 * 24).type, 2u);
  EXPECT_EQ(read_guest<HvmMemmapTableEntry>(mem, info.memmap_paddr + 3 * 24).addr, kMmioGapEnd);
}

TEST(PvhStartInfo, NoInitrdMeansNoModules) {
  auto mem = make_memory(64 * kMiB);
  ASSERT_TRUE(configure_pvh_boot(mem, "", std::nullopt));
  const auto info = read_guest<HvmStartInfo>(mem, kPvhStartInfo);
  EXPECT_EQ(info.nr_modules, 0u);
  EXPECT_EQ(info.modlist_paddr, 0u);
  EXPECT_EQ(info.memmap_entries, 3u);
}

TEST(PvhStartInfo, RejectsMemmapPastTheZeroPage) {
  // 56 + 32 + n * 24 bytes must fit in the 4 KiB below the zero page.
  const std::size_t fit =
      (kZeroPage - kPvhStartInfo - sizeof(HvmStartInfo) - sizeof(HvmModlistEntry)) /
      sizeof(HvmMemmapTableEntry);
  const MemoryRange initrd{GuestAddress(kHighMemStart), 0x1000};
  auto ok = fragmented_memory(fit - 3);
  EXPECT_TRUE(configure_pvh_boot(ok, "", initrd));
  auto too_many = fragmented_memory(fit - 2);
  auto r = configure_pvh_boot(too_many, "", initrd);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("PVH start info"), std::string::npos);
  EXPECT_EQ(read_guest<std::uint32_t>(too_many, kPvhStartInfo), 0u);  // nothing written
}

TEST(PvhStartInfo, RejectsTooLongCommandLine) {
  auto mem = make_memory(64 * kMiB);
  EXPECT_TRUE(configure_pvh_boot(mem, std::string(kCmdlineMax - 1, 'p'), std::nullopt));
  EXPECT_FALSE(configure_pvh_boot(mem, std::string(kCmdlineMax, 'p'), std::nullopt));
}

}  // namespace
}  // namespace hvz::x86_64
