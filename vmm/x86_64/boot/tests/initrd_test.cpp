// Initrd placement: highest page-aligned spot below the limits, above the
// kernel, in the first RAM region.
#include "vmm/x86_64/boot/initrd.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "vmm/x86_64/boot/tests/test_support.hpp"
#include "vmm/x86_64/layout.hpp"

namespace hvz::x86_64 {
namespace {

using test::make_memory;

constexpr std::uint64_t kMiB = 1 << 20;

std::vector<std::byte> initrd_bytes(std::size_t n) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>((i * 31 + 5) & 0xff);
  return v;
}

TEST(Initrd, PlacedPageAlignedAtTopOfFirstRegion) {
  auto mem = make_memory(16 * kMiB);
  const auto data = initrd_bytes(0x1801);  // not a page multiple
  auto at = load_initrd(mem, data, GuestAddress(4 * kMiB), 0x7fffffff);
  ASSERT_TRUE(at) << at.error().message();
  // The highest page boundary from which 0x1801 bytes end at or below 16 MiB.
  EXPECT_EQ(*at, GuestAddress(16 * kMiB - 0x2000));
  std::vector<std::byte> back(data.size());
  ASSERT_TRUE(mem.read(*at, back));
  EXPECT_EQ(back, data);
}

TEST(Initrd, RespectsInitrdAddrMax) {
  auto mem = make_memory(64 * kMiB);
  const auto data = initrd_bytes(0x3000);
  // initrd_addr_max is the highest byte the initrd may occupy.
  auto at = load_initrd(mem, data, GuestAddress(2 * kMiB), 16 * kMiB - 1);
  ASSERT_TRUE(at) << at.error().message();
  EXPECT_EQ(*at, GuestAddress(16 * kMiB - 0x3000));
  at = load_initrd(mem, data, GuestAddress(2 * kMiB), 16 * kMiB - 2);  // one byte lower
  ASSERT_TRUE(at);
  EXPECT_EQ(*at, GuestAddress(16 * kMiB - 0x4000));
}

TEST(Initrd, StaysInFirstRegionBelowTheMmioGap) {
  auto mem = make_memory({{GuestAddress(0), 8 * kMiB}, {GuestAddress(kMmioGapEnd), 8 * kMiB}});
  auto at = load_initrd(mem, initrd_bytes(0x1000), GuestAddress(2 * kMiB), kPvhInitrdAddrMax);
  ASSERT_TRUE(at) << at.error().message();
  EXPECT_EQ(*at, GuestAddress(8 * kMiB - 0x1000));
  at = load_initrd(mem, initrd_bytes(0x1000), GuestAddress(2 * kMiB), ~std::uint64_t{0});
  ASSERT_TRUE(at);
  EXPECT_EQ(*at, GuestAddress(8 * kMiB - 0x1000));
}

TEST(Initrd, FitsExactlyAboveKernelEnd) {
  auto mem = make_memory(8 * kMiB);
  auto at = load_initrd(mem, initrd_bytes(4 * kMiB), GuestAddress(4 * kMiB), 0x7fffffff);
  ASSERT_TRUE(at) << at.error().message();
  EXPECT_EQ(*at, GuestAddress(4 * kMiB));
}

TEST(Initrd, FailsWhenItOverlapsTheKernel) {
  auto mem = make_memory(8 * kMiB);
  auto at = load_initrd(mem, initrd_bytes(4 * kMiB), GuestAddress(4 * kMiB + 1), 0x7fffffff);
  ASSERT_FALSE(at);
  EXPECT_EQ(at.error().code(), Errc::kOutOfRange);
  EXPECT_NE(at.error().message().find("does not fit"), std::string::npos);
  // Larger than all memory below the limit.
  EXPECT_FALSE(load_initrd(mem, initrd_bytes(0x3000), GuestAddress(kHighMemStart), 0x1fff));
  // The kernel ends past the region.
  EXPECT_FALSE(load_initrd(mem, initrd_bytes(0x1000), GuestAddress(9 * kMiB), 0x7fffffff));
}

TEST(Initrd, NeverGoesBelowOneMib) {
  auto mem = make_memory(2 * kMiB);
  EXPECT_FALSE(load_initrd(mem, initrd_bytes(kMiB + 0x1000), GuestAddress(0), 0x7fffffff));
  EXPECT_FALSE(load_initrd(mem, initrd_bytes(0x1000), GuestAddress(0), kHighMemStart - 1));
}

TEST(Initrd, RejectsEmptyInitrd) {
  auto mem = make_memory(8 * kMiB);
  EXPECT_FALSE(load_initrd(mem, {}, GuestAddress(2 * kMiB), 0x7fffffff));
}

}  // namespace
}  // namespace hvz::x86_64
