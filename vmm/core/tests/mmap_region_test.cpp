// MmapRegion: owned mappings, zero-filled, rejected when empty.
#include "vmm/core/mmap_region.hpp"

#include <gtest/gtest.h>

namespace hvz {
namespace {

TEST(MmapRegion, AnonymousIsZeroedAndWritable) {
  auto m = MmapRegion::anonymous(8192);
  ASSERT_TRUE(m) << m.error().message();
  ASSERT_EQ(m->bytes().size(), 8192u);
  for (auto b : m->bytes()) ASSERT_EQ(b, std::byte{0});
  m->bytes()[8191] = std::byte{0x5a};
  EXPECT_EQ(m->bytes()[8191], std::byte{0x5a});
}

TEST(MmapRegion, RejectsZeroSize) {
  auto m = MmapRegion::anonymous(0);
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().code(), Errc::kInvalidArgument);
}

TEST(MmapRegion, MoveTransfersOwnership) {
  auto m = MmapRegion::anonymous(4096);
  ASSERT_TRUE(m);
  MmapRegion a = std::move(*m);
  EXPECT_EQ(m->size(), 0u);
  EXPECT_EQ(a.size(), 4096u);
  MmapRegion b;
  b = std::move(a);
  EXPECT_EQ(b.size(), 4096u);
  EXPECT_EQ(a.data(), nullptr);
}

}  // namespace
}  // namespace hvz
