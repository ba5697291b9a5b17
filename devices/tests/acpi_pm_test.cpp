// AcpiPm: S5 through the sleep control register, reset through the reset
// register, and nothing else.
#include "devices/acpi_pm.hpp"

#include <gtest/gtest.h>

#include <array>

namespace hvz::devices {
namespace {

struct Counts {
  int poweroff = 0;
  int reset = 0;
};

AcpiPm make(Counts& c) {
  return AcpiPm(
      5, 1, [&c] { ++c.poweroff; }, [&c] { ++c.reset; });
}

void put(AcpiPm& pm, std::uint64_t offset, std::uint8_t v) {
  std::array<std::uint8_t, 1> b{v};
  pm.write(offset, b);
}

TEST(AcpiPm, SleepEnableWithS5TypePowersOff) {
  Counts c;
  AcpiPm pm = make(c);
  put(pm, AcpiPm::kSleepControl, (5 << 2) | (1 << 5));
  EXPECT_EQ(c.poweroff, 1);
  EXPECT_EQ(c.reset, 0);
}

TEST(AcpiPm, OtherSleepWritesAreIgnored) {
  Counts c;
  AcpiPm pm = make(c);
  put(pm, AcpiPm::kSleepControl, 5 << 2);               // type without SLP_EN
  put(pm, AcpiPm::kSleepControl, (3 << 2) | (1 << 5));  // S3 is not offered
  put(pm, AcpiPm::kSleepStatus, 0xff);
  std::array<std::uint8_t, 0> none{};
  pm.write(AcpiPm::kSleepControl, none);
  EXPECT_EQ(c.poweroff, 0);
  EXPECT_EQ(c.reset, 0);
}

TEST(AcpiPm, ResetValueResets) {
  Counts c;
  AcpiPm pm = make(c);
  put(pm, AcpiPm::kReset, 2);
  EXPECT_EQ(c.reset, 0);
  put(pm, AcpiPm::kReset, 1);
  EXPECT_EQ(c.reset, 1);
}

TEST(AcpiPm, ReadsSeeZero) {
  Counts c;
  AcpiPm pm = make(c);
  std::array<std::uint8_t, 2> b{0xaa, 0xbb};
  pm.read(AcpiPm::kSleepStatus, b);
  EXPECT_EQ(b[0], 0);
  EXPECT_EQ(b[1], 0);
}

}  // namespace
}  // namespace hvz::devices
