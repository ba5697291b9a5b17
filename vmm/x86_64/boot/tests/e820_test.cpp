// The e820 map derived from guest memory.
#include "vmm/x86_64/boot/e820.hpp"

#include <gtest/gtest.h>

#include "vmm/x86_64/boot/tests/test_support.hpp"
#include "vmm/x86_64/layout.hpp"

namespace hvz::x86_64 {
namespace {

using test::make_memory;

constexpr std::uint64_t kMiB = 1 << 20;

void expect_entry(const boot_e820_entry& e, std::uint64_t addr, std::uint64_t size,
                  std::uint32_t type) {
  // boot_e820_entry is packed: copy the fields out before gtest binds
  // references to them (a misaligned reference is undefined behaviour).
  const std::uint64_t e_addr = e.addr;
  const std::uint64_t e_size = e.size;
  const std::uint32_t e_type = e.type;
  EXPECT_EQ(e_addr, addr);
  EXPECT_EQ(e_size, size);
  EXPECT_EQ(e_type, type);
}

TEST(E820, SingleRegionHasLowRamReservedHoleAndHighRam) {
  auto mem = make_memory(64 * kMiB);
  const auto map = build_e820(mem);
  ASSERT_EQ(map.size(), 3u);
  expect_entry(map[0], 0, kEbdaStart, kE820Ram);
  expect_entry(map[1], kEbdaStart, kHighMemStart - kEbdaStart, kE820Reserved);
  expect_entry(map[2], kHighMemStart, 64 * kMiB - kHighMemStart, kE820Ram);
}

TEST(E820, RegionAboveTheMmioGapIsRam) {
  auto mem = make_memory({{GuestAddress(0), 8 * kMiB}, {GuestAddress(kMmioGapEnd), 16 * kMiB}});
  const auto map = build_e820(mem);
  ASSERT_EQ(map.size(), 4u);
  expect_entry(map[2], kHighMemStart, 7 * kMiB, kE820Ram);
  expect_entry(map[3], kMmioGapEnd, 16 * kMiB, kE820Ram);
}

TEST(E820, MemoryEndingBelowOneMibHasNoHighEntry) {
  auto mem = make_memory(0x80000);
  const auto map = build_e820(mem);
  ASSERT_EQ(map.size(), 2u);
  expect_entry(map[0], 0, 0x80000, kE820Ram);
  EXPECT_EQ(map[1].type, kE820Reserved);
}

}  // namespace
}  // namespace hvz::x86_64
