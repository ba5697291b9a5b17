// GuestMemory: layout rules and bounds-checked access.
#include "vmm/core/guest_memory.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>

namespace hvz {
namespace {

GuestMemory two_regions() {
  // 64 KiB at 0 and 64 KiB at 1 MiB, a hole between.
  auto m = GuestMemory::create({{GuestAddress(0), 0x10000}, {GuestAddress(0x100000), 0x10000}});
  EXPECT_TRUE(m) << m.error().message();
  return std::move(*m);
}

TEST(GuestAddress, CheckedAddRefusesWrap) {
  EXPECT_EQ(GuestAddress(10).checked_add(5), GuestAddress(15));
  EXPECT_FALSE(GuestAddress(~std::uint64_t{0}).checked_add(1));
  EXPECT_EQ(GuestAddress(~std::uint64_t{0}).checked_add(0), GuestAddress(~std::uint64_t{0}));
}

TEST(GuestMemory, RejectsBadLayouts) {
  EXPECT_FALSE(GuestMemory::create({}));
  EXPECT_FALSE(GuestMemory::create({{GuestAddress(0), 0}}));
  EXPECT_FALSE(GuestMemory::create({{GuestAddress(~std::uint64_t{0} - 10), 0x1000}}));
  EXPECT_FALSE(GuestMemory::create({{GuestAddress(0), 0x2000}, {GuestAddress(0x1000), 0x1000}}));
  EXPECT_FALSE(GuestMemory::create({{GuestAddress(0x10000), 0x1000}, {GuestAddress(0), 0x1000}}));
}

TEST(GuestMemory, ReadsBackWhatWasWritten) {
  auto m = two_regions();
  EXPECT_EQ(m.total_size(), 0x20000u);
  ASSERT_TRUE(m.write_obj<std::uint32_t>(GuestAddress(0x100ffc), 0xdeadbeef));
  auto v = m.read_obj<std::uint32_t>(GuestAddress(0x100ffc));
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, 0xdeadbeefu);
}

TEST(GuestMemory, RefusesAccessOutsideRam) {
  auto m = two_regions();
  std::array<std::byte, 8> buf{};
  // In the hole, past the end, straddling the end of a region, wrapping.
  EXPECT_FALSE(m.read(GuestAddress(0x20000), buf));
  EXPECT_FALSE(m.read(GuestAddress(0x110000), buf));
  auto r = m.write(GuestAddress(0xfffc), buf);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::kOutOfRange);
  EXPECT_FALSE(m.get_slice(GuestAddress(0x10), ~std::uint64_t{0}));
  EXPECT_FALSE(m.get_slice(GuestAddress(~std::uint64_t{0} - 2), 8));
  EXPECT_FALSE(m.read_obj<std::uint64_t>(GuestAddress(0x10fffc)));
}

TEST(GuestMemory, SliceCoversExactlyTheRange) {
  auto m = two_regions();
  auto s = m.get_slice(GuestAddress(0x100010), 0x20);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->size(), 0x20u);
  (*s)[0] = std::byte{0x7f};
  EXPECT_EQ(*m.read_obj<std::uint8_t>(GuestAddress(0x100010)), 0x7f);
  EXPECT_TRUE(m.get_slice(GuestAddress(0xffff), 1));
  EXPECT_TRUE(m.get_slice(GuestAddress(0x10000), 0));  // empty at the end is fine
}

TEST(GuestMemory, HugePageBackingIsAligned) {
  auto m = GuestMemory::create({{GuestAddress(0), 4 * kHugePageSize}}, true);
  ASSERT_TRUE(m) << m.error().message();
  EXPECT_EQ(m->regions()[0].mapping.host_address() % kHugePageSize, 0u);
}

}  // namespace
}  // namespace hvz
