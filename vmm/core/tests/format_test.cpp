// hex(): the one spelling of addresses and sizes in messages.
#include "vmm/core/format.hpp"

#include <gtest/gtest.h>

namespace hvz {
namespace {

TEST(Hex, ZeroHasItsPrefix) {
  EXPECT_EQ(hex(0), "0x0");
}

TEST(Hex, LowercaseWithoutPadding) {
  EXPECT_EQ(hex(0x1), "0x1");
  EXPECT_EQ(hex(0xabc), "0xabc");
  EXPECT_EQ(hex(0x100000), "0x100000");
  EXPECT_EQ(hex(0xdeadbeef), "0xdeadbeef");
}

TEST(Hex, FullWidth) {
  EXPECT_EQ(hex(0xffffffffffffffffull), "0xffffffffffffffff");
  EXPECT_EQ(hex(0x8000000000000000ull), "0x8000000000000000");
}

}  // namespace
}  // namespace hvz
