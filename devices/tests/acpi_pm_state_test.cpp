// AcpiPmState: the S5 sleep type and reset value survive save/restore, a
// restored device powers off and resets on the same writes as the
// original, and a sleep type SLP_TYP cannot hold is refused.
#include <gtest/gtest.h>

#include <array>
#include <cstdint>

#include "devices/acpi_pm.hpp"

namespace hvz::devices_test {
namespace {

using hvz::devices::AcpiPm;

struct Pm {
  Pm(std::uint8_t s5, std::uint8_t reset)
      : pm(
            s5, reset, [this] { ++poweroffs; }, [this] { ++resets; }) {}
  int poweroffs = 0;
  int resets = 0;
  AcpiPm pm;

  void wr(std::uint64_t offset, std::uint8_t v) {
    std::array<std::uint8_t, 1> b{v};
    pm.write(offset, b);
  }
};

TEST(AcpiPmState, RoundTripsAndRestoredDeviceActsOnTheSameWrites) {
  Pm original(3, 0x0e);
  Pm restored(5, 0x01);  // built with other defaults
  const devices::AcpiPmState saved = original.pm.save();
  EXPECT_EQ(saved.s5_sleep_type, 3);
  EXPECT_EQ(saved.reset_value, 0x0e);
  ASSERT_TRUE(restored.pm.restore(saved));
  EXPECT_EQ(restored.pm.save(), saved);

  for (std::uint8_t v : {std::uint8_t{0x20 | (5 << 2)}, std::uint8_t{0x20 | (3 << 2)}}) {
    original.wr(AcpiPm::kSleepControl, v);
    restored.wr(AcpiPm::kSleepControl, v);
  }
  for (std::uint8_t v : {std::uint8_t{0x01}, std::uint8_t{0x0e}}) {
    original.wr(AcpiPm::kReset, v);
    restored.wr(AcpiPm::kReset, v);
  }
  EXPECT_EQ(original.poweroffs, 1);
  EXPECT_EQ(restored.poweroffs, 1);
  EXPECT_EQ(original.resets, 1);
  EXPECT_EQ(restored.resets, 1);
}

TEST(AcpiPmState, RefusesASleepTypeWiderThanSlpTyp) {
  Pm pm(5, 1);
  auto r = pm.pm.restore(devices::AcpiPmState{.s5_sleep_type = 8, .reset_value = 1});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::kInvalidArgument);
  EXPECT_EQ(pm.pm.save(), (devices::AcpiPmState{.s5_sleep_type = 5, .reset_value = 1}));
}

}  // namespace
}  // namespace hvz::devices_test
