// bzImage parsing and loading: a synthetic image exercises each header check;
// the real Debian kernel ($HVZ_GUEST_KERNEL) must load and every truncation
// or corruption of it must fail cleanly.
#include "vmm/x86_64/boot/bzimage.hpp"

#include <gtest/gtest.h>

#include <cstddef>
#include <string>
#include <vector>

#include "vmm/x86_64/boot/kernel_loader.hpp"
#include "vmm/x86_64/boot/tests/test_support.hpp"
#include "vmm/x86_64/layout.hpp"

namespace hvz::x86_64 {
namespace {

// setup_header is packed: gtest's assertions bind references, which a
// misaligned member cannot give (UBSan says so); compare copies.
template <typename T>
T val(T v) {
  return v;
}

using test::get;
using test::make_memory;
using test::put;

constexpr std::size_t kHdr = kSetupHeaderOffset;
constexpr std::size_t kSetupSects = 4;
constexpr std::size_t kSetupSize = (kSetupSects + 1) * 512;
constexpr std::size_t kPmSize = 0x3000;
constexpr std::size_t kInitSize = 0x20000;
constexpr std::uint64_t kMiB = 1 << 20;

// Offsets of setup_header fields inside the image.
#define HDR_OFF(field) (kHdr + offsetof(setup_header, field))

// A minimal well-formed bzImage: 4 setup sectors and a patterned
// protected-mode part.
std::vector<std::byte> synthetic_bzimage() {
  std::vector<std::byte> image(kSetupSize + kPmSize);
  for (std::size_t i = kSetupSize; i < image.size(); ++i) {
    image[i] = static_cast<std::byte>((i * 7 + 3) & 0xff);
  }
  setup_header hdr{};
  hdr.setup_sects = kSetupSects;
  hdr.syssize = kPmSize / 16;
  hdr.boot_flag = kBootFlag;
  // A short jump over the header to its end.
  hdr.jump = static_cast<std::uint16_t>(0xeb | ((kHdr + sizeof(setup_header) - 0x202) << 8));
  hdr.header = kHdrSMagic;
  hdr.version = 0x020f;
  hdr.loadflags = LOADED_HIGH;
  hdr.initrd_addr_max = 0x7fffffff;
  hdr.kernel_alignment = 0x200000;
  hdr.relocatable_kernel = 1;
  hdr.xloadflags = XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G;
  hdr.cmdline_size = 2047;
  hdr.init_size = kInitSize;
  std::memcpy(image.data() + kHdr, &hdr, sizeof hdr);
  return image;
}

std::string load_error(const GuestMemory& mem, const std::vector<std::byte>& image) {
  auto k = load_kernel(mem, image);
  if (k) return "";
  return k.error().message();
}

TEST(Bzimage, LoadsProtectedModePartAtOneMib) {
  auto mem = make_memory(4 * kMiB);
  const auto image = synthetic_bzimage();
  auto k = load_kernel(mem, image);
  ASSERT_TRUE(k) << k.error().message();
  EXPECT_EQ(k->protocol, BootProtocol::kLinux64);
  EXPECT_EQ(k->entry, GuestAddress(kHighMemStart + 0x200));
  EXPECT_EQ(k->end, GuestAddress(kHighMemStart + kInitSize));
  ASSERT_TRUE(k->header);
  EXPECT_EQ(val(k->header->version), 0x020f);
  EXPECT_EQ(val(k->header->cmdline_size), 2047u);
  std::vector<std::byte> loaded(kPmSize);
  ASSERT_TRUE(mem.read(GuestAddress(kHighMemStart), loaded));
  EXPECT_TRUE(std::equal(loaded.begin(), loaded.end(), image.begin() + kSetupSize));
}

TEST(Bzimage, EndCoversImageWhenLargerThanInitSize) {
  auto mem = make_memory(4 * kMiB);
  auto image = synthetic_bzimage();
  put<std::uint32_t>(image, HDR_OFF(init_size), 0x100);
  auto k = load_bzimage(mem, image);
  ASSERT_TRUE(k) << k.error().message();
  EXPECT_EQ(k->end, GuestAddress(kHighMemStart + kPmSize));
}

TEST(Bzimage, SetupSectsZeroMeansFour) {
  auto image = synthetic_bzimage();
  put<std::uint8_t>(image, HDR_OFF(setup_sects), 0);
  auto bz = parse_bzimage(image);
  ASSERT_TRUE(bz) << bz.error().message();
  EXPECT_EQ(bz->protected_mode.data(), image.data() + kSetupSize);
  EXPECT_EQ(bz->protected_mode.size(), kPmSize);
}

TEST(Bzimage, RejectsEveryTruncation) {
  auto mem = make_memory(4 * kMiB);
  const auto image = synthetic_bzimage();
  for (std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{0x1f0}, std::size_t{0x1ff},
                           std::size_t{0x201}, std::size_t{0x250}, kHdr + sizeof(setup_header) - 1,
                           kSetupSize - 1, kSetupSize, kSetupSize + 1, image.size() - 1}) {
    std::vector<std::byte> cut(image.begin(), image.begin() + static_cast<std::ptrdiff_t>(size));
    EXPECT_NE(load_error(mem, cut), "") << "size " << size;
    EXPECT_FALSE(parse_bzimage(cut)) << "size " << size;
  }
  std::vector<std::byte> cut(image.begin(), image.begin() + 0x250);
  EXPECT_NE(load_error(mem, cut).find("bzImage truncated"), std::string::npos)
      << load_error(mem, cut);
}

TEST(Bzimage, RejectsBadBootFlag) {
  auto mem = make_memory(4 * kMiB);
  auto image = synthetic_bzimage();
  put<std::uint16_t>(image, HDR_OFF(boot_flag), 0xaa56);
  EXPECT_EQ(load_error(mem, image), "not a bzImage or ELF kernel");
  EXPECT_FALSE(parse_bzimage(image));
}

TEST(Bzimage, RejectsMissingHdrSMagic) {
  auto mem = make_memory(4 * kMiB);
  auto image = synthetic_bzimage();
  put<std::uint32_t>(image, HDR_OFF(header), 0x53726449);
  EXPECT_NE(load_error(mem, image).find("HdrS"), std::string::npos) << load_error(mem, image);
}

TEST(Bzimage, RejectsProtocolOlderThan212) {
  auto mem = make_memory(4 * kMiB);
  auto image = synthetic_bzimage();
  put<std::uint16_t>(image, HDR_OFF(version), 0x020b);
  EXPECT_EQ(load_error(mem, image), "boot protocol 2.11 too old (need 2.12)");
  put<std::uint16_t>(image, HDR_OFF(version), 0x020c);
  EXPECT_EQ(load_error(mem, image), "");
}

TEST(Bzimage, RejectsKernelWithout64BitEntry) {
  auto mem = make_memory(4 * kMiB);
  auto image = synthetic_bzimage();
  put<std::uint16_t>(image, HDR_OFF(xloadflags), XLF_CAN_BE_LOADED_ABOVE_4G);
  EXPECT_NE(load_error(mem, image).find("XLF_KERNEL_64"), std::string::npos);
}

TEST(Bzimage, RejectsKernelNotLoadedHigh) {
  auto mem = make_memory(4 * kMiB);
  auto image = synthetic_bzimage();
  put<std::uint8_t>(image, HDR_OFF(loadflags), 0);
  EXPECT_NE(load_error(mem, image).find("LOADED_HIGH"), std::string::npos);
}

TEST(Bzimage, RejectsSetupSectsPastTheFile) {
  auto mem = make_memory(4 * kMiB);
  auto image = synthetic_bzimage();
  put<std::uint8_t>(image, HDR_OFF(setup_sects), 0xff);  // 128 KiB of setup in a 14 KiB file
  EXPECT_NE(load_error(mem, image).find("truncated"), std::string::npos) << load_error(mem, image);
  // Exactly the file's size leaves an empty protected-mode part.
  put<std::uint8_t>(image, HDR_OFF(setup_sects), (image.size() / 512) - 1);
  image.resize((image.size() / 512) * 512);
  EXPECT_NE(load_error(mem, image), "");
}

TEST(Bzimage, RejectsHeaderShorterThanProtocol212) {
  auto image = synthetic_bzimage();
  // The jump displacement says the header ends just before init_size.
  const std::size_t short_end = HDR_OFF(init_size);
  put<std::uint8_t>(image, 0x201, static_cast<std::uint8_t>(short_end - 0x202));
  auto bz = parse_bzimage(image);
  ASSERT_FALSE(bz);
  EXPECT_NE(bz.error().message().find("too short"), std::string::npos);
}

TEST(Bzimage, ZeroesFieldsPastTheHeaderEnd) {
  auto image = synthetic_bzimage();
  // A 2.12 header ends after init_size; what follows is setup code.
  const std::size_t end = HDR_OFF(init_size) + 4;
  put<std::uint8_t>(image, 0x201, static_cast<std::uint8_t>(end - 0x202));
  put<std::uint32_t>(image, HDR_OFF(handover_offset), 0xdeadbeef);
  put<std::uint32_t>(image, HDR_OFF(kernel_info_offset), 0xcafef00d);
  auto bz = parse_bzimage(image);
  ASSERT_TRUE(bz) << bz.error().message();
  EXPECT_EQ(val(bz->header.init_size), kInitSize);
  EXPECT_EQ(val(bz->header.handover_offset), 0u);
  EXPECT_EQ(val(bz->header.kernel_info_offset), 0u);
}

TEST(Bzimage, RejectsPayloadOutsideTheKernel) {
  auto image = synthetic_bzimage();
  put<std::uint32_t>(image, HDR_OFF(payload_offset), 0x100);
  put<std::uint32_t>(image, HDR_OFF(payload_length), kPmSize);
  EXPECT_FALSE(parse_bzimage(image));
  put<std::uint32_t>(image, HDR_OFF(payload_offset), 0xffffffff);
  put<std::uint32_t>(image, HDR_OFF(payload_length), 0xffffffff);
  EXPECT_FALSE(parse_bzimage(image));
}

// Found by boot_loader_fuzz: a protected-mode part shorter than the 64-bit
// entry's offset loaded, and the entry pointed past what was loaded.
TEST(Bzimage, RejectsKernelEndingBeforeIts64BitEntry) {
  auto mem = make_memory(4 * kMiB);
  auto image = synthetic_bzimage();
  image.resize(kSetupSize + kEntry64Offset);
  put<std::uint32_t>(image, HDR_OFF(syssize), kEntry64Offset / 16);
  put<std::uint32_t>(image, HDR_OFF(init_size), 0);
  EXPECT_FALSE(parse_bzimage(image));
  EXPECT_NE(load_error(mem, image).find("before its 64-bit entry"), std::string::npos)
      << load_error(mem, image);
  // One byte more and the entry is inside the loaded kernel.
  image.push_back(std::byte{0x90});
  auto k = load_kernel(mem, image);
  ASSERT_TRUE(k) << k.error().message();
  EXPECT_LT(k->entry, k->end);
}

TEST(Bzimage, RejectsKernelLargerThanGuestMemory) {
  auto mem = make_memory(2 * kMiB);
  auto image = synthetic_bzimage();
  put<std::uint32_t>(image, HDR_OFF(init_size), 0x100001);  // 1 MiB + 1 from 1 MiB
  EXPECT_NE(load_error(mem, image).find("more than the guest has"), std::string::npos)
      << load_error(mem, image);
  put<std::uint32_t>(image, HDR_OFF(init_size), 0x100000);  // exactly fits
  EXPECT_EQ(load_error(mem, image), "");
}

// --- The real Debian kernel -------------------------------------------------

std::size_t real_setup_end(const std::vector<std::byte>& image) {
  const auto sects = get<std::uint8_t>(image, HDR_OFF(setup_sects));
  return (std::size_t{sects == 0 ? 4u : sects} + 1) * 512;
}

TEST(BzimageGuestKernel, LoadsAtOneMibWith64BitEntry) {
  std::vector<std::byte> image;
  HVZ_REQUIRE_GUEST_KERNEL(image);
  auto mem = make_memory(256 * kMiB);
  auto k = load_kernel(mem, image);
  ASSERT_TRUE(k) << k.error().message();
  EXPECT_EQ(k->protocol, BootProtocol::kLinux64);
  EXPECT_EQ(k->entry, GuestAddress(kHighMemStart + 0x200));
  ASSERT_TRUE(k->header);
  EXPECT_GE(val(k->header->version), 0x020c);
  EXPECT_TRUE(k->header->xloadflags & XLF_KERNEL_64);
  const std::size_t setup_end = real_setup_end(image);
  const std::uint64_t pm_size = image.size() - setup_end;
  EXPECT_EQ(k->end.value(), kHighMemStart + std::max<std::uint64_t>(pm_size, k->header->init_size));
  // The whole protected-mode part is in guest memory at 1 MiB.
  auto slice = mem.get_slice(GuestAddress(kHighMemStart), pm_size);
  ASSERT_TRUE(slice);
  EXPECT_TRUE(std::equal(slice->begin(), slice->end(),
                         image.begin() + static_cast<std::ptrdiff_t>(setup_end)));
}

TEST(BzimageGuestKernel, EveryTruncationFailsCleanly) {
  std::vector<std::byte> image;
  HVZ_REQUIRE_GUEST_KERNEL(image);
  auto mem = make_memory(256 * kMiB);
  const std::size_t setup_end = real_setup_end(image);
  const std::size_t sys_end =
      setup_end + std::size_t{get<std::uint32_t>(image, HDR_OFF(syssize))} * 16;
  ASSERT_LE(sys_end, image.size());
  for (std::size_t size :
       {std::size_t{0}, std::size_t{1}, std::size_t{0x1f0}, std::size_t{0x1ff}, std::size_t{0x201},
        std::size_t{0x250}, setup_end - 1, setup_end, setup_end + 1, setup_end + 0x1000,
        (setup_end + sys_end) / 2, sys_end - 1}) {
    std::span<const std::byte> cut(image.data(), size);
    auto k = load_kernel(mem, cut);
    EXPECT_FALSE(k) << "truncated to " << size << " bytes";
  }
}

TEST(BzimageGuestKernel, CorruptedHeaderFieldsFail) {
  std::vector<std::byte> image;
  HVZ_REQUIRE_GUEST_KERNEL(image);
  auto mem = make_memory(256 * kMiB);
  struct Case {
    std::size_t offset;
    std::uint16_t value;
    const char* expect;
  };
  for (const Case& c : {Case{HDR_OFF(boot_flag), 0x55aa, "not a bzImage"},
                        Case{HDR_OFF(header), 0x6449, "HdrS"},  // "IdrS"
                        Case{HDR_OFF(version), 0x0208, "2.08 too old"},
                        Case{HDR_OFF(xloadflags), 0, "XLF_KERNEL_64"}}) {
    auto bad = image;
    put<std::uint16_t>(bad, c.offset, c.value);
    auto k = load_kernel(mem, bad);
    ASSERT_FALSE(k) << c.expect;
    EXPECT_NE(k.error().message().find(c.expect), std::string::npos) << k.error().message();
  }
}

TEST(BzimageGuestKernel, SetupSectsPastTheFileFails) {
  std::vector<std::byte> image;
  HVZ_REQUIRE_GUEST_KERNEL(image);
  auto mem = make_memory(256 * kMiB);
  auto bad = image;
  put<std::uint8_t>(bad, HDR_OFF(setup_sects), 0xff);
  EXPECT_FALSE(load_kernel(mem, bad));  // the rest is shorter than syssize says
  bad.resize(real_setup_end(image) + 0x1000);
  EXPECT_FALSE(load_kernel(mem, bad));  // 128 KiB of setup in a smaller file
}

TEST(BzimageGuestKernel, TooBigForSmallGuestMemoryFails) {
  std::vector<std::byte> image;
  HVZ_REQUIRE_GUEST_KERNEL(image);
  for (std::uint64_t size : {2 * kMiB, 16 * kMiB, 32 * kMiB}) {
    auto mem = make_memory(size);
    auto k = load_kernel(mem, image);
    ASSERT_FALSE(k) << size;
    EXPECT_EQ(k.error().code(), Errc::kOutOfRange);
  }
}

}  // namespace
}  // namespace hvz::x86_64
