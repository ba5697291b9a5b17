// CmosRtc: clock registers from an injected clock, register B modes, the
// index port and CMOS RAM.
#include "devices/cmos_rtc.hpp"

#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <limits>
#include <memory>

namespace hvz::devices_test {
namespace {

using namespace hvz::devices;

using namespace cmos;

constexpr std::int64_t kLeapDay = 1709214307;  // 2024-02-29 13:45:07 UTC, a Thursday

class CmosRtc : public ::testing::Test {
 protected:
  std::uint8_t reg(std::uint8_t index) {
    wr(kIndexOffset, index);
    return rd(kDataOffset);
  }
  void set_reg(std::uint8_t index, std::uint8_t value) {
    wr(kIndexOffset, index);
    wr(kDataOffset, value);
  }
  std::uint8_t rd(std::uint64_t offset) {
    std::uint8_t v = 0xee;
    rtc_.read(offset, std::span<std::uint8_t>(&v, 1));
    return v;
  }
  void wr(std::uint64_t offset, std::uint8_t v) {
    rtc_.write(offset, std::span<const std::uint8_t>(&v, 1));
  }

  std::shared_ptr<std::int64_t> now_ = std::make_shared<std::int64_t>(kLeapDay);
  devices::CmosRtc rtc_{[now = now_] { return *now; }};
};

TEST_F(CmosRtc, FixedClockGivesBcdDateAndTime) {
  EXPECT_EQ(reg(kSeconds), 0x07);
  EXPECT_EQ(reg(kMinutes), 0x45);
  EXPECT_EQ(reg(kHours), 0x13);
  EXPECT_EQ(reg(kDayOfWeek), 0x05);  // Thursday, Sunday = 1
  EXPECT_EQ(reg(kDayOfMonth), 0x29);
  EXPECT_EQ(reg(kMonth), 0x02);
  EXPECT_EQ(reg(kYear), 0x24);
  EXPECT_EQ(reg(kCentury), 0x20);
}

TEST_F(CmosRtc, CenturyRollsOverAtY2K) {
  *now_ = 946684799;  // 1999-12-31 23:59:59, a Friday
  EXPECT_EQ(reg(kCentury), 0x19);
  EXPECT_EQ(reg(kYear), 0x99);
  EXPECT_EQ(reg(kMonth), 0x12);
  EXPECT_EQ(reg(kDayOfMonth), 0x31);
  EXPECT_EQ(reg(kDayOfWeek), 0x06);
  EXPECT_EQ(reg(kHours), 0x23);
  EXPECT_EQ(reg(kMinutes), 0x59);
  EXPECT_EQ(reg(kSeconds), 0x59);
  *now_ += 1;  // the clock is read on every access
  EXPECT_EQ(reg(kCentury), 0x20);
  EXPECT_EQ(reg(kYear), 0x00);
  EXPECT_EQ(reg(kMonth), 0x01);
  EXPECT_EQ(reg(kDayOfMonth), 0x01);
  EXPECT_EQ(reg(kDayOfWeek), 0x07);  // Saturday
  EXPECT_EQ(reg(kHours), 0x00);
}

TEST_F(CmosRtc, BinaryModeWhenRegisterBAsksForIt) {
  set_reg(kRegB, kRegB24Hour | kRegBBinary);
  EXPECT_EQ(reg(kRegB), kRegB24Hour | kRegBBinary);
  EXPECT_EQ(reg(kSeconds), 7);
  EXPECT_EQ(reg(kMinutes), 45);
  EXPECT_EQ(reg(kHours), 13);
  EXPECT_EQ(reg(kDayOfWeek), 5);
  EXPECT_EQ(reg(kDayOfMonth), 29);
  EXPECT_EQ(reg(kMonth), 2);
  EXPECT_EQ(reg(kYear), 24);
  EXPECT_EQ(reg(kCentury), 20);
  set_reg(kRegB, kRegB24Hour);
  EXPECT_EQ(reg(kMinutes), 0x45) << "back to BCD";
}

TEST_F(CmosRtc, TwelveHourModeSetsThePmBit) {
  set_reg(kRegB, 0);                       // BCD, 12-hour
  EXPECT_EQ(reg(kHours), kHourPm | 0x01);  // 13:45 -> 1 PM
  *now_ = kLeapDay - 13 * 3600;            // 00:45 -> 12 AM
  EXPECT_EQ(reg(kHours), 0x12);
  *now_ = kLeapDay - 1 * 3600;  // 12:45 -> 12 PM
  EXPECT_EQ(reg(kHours), kHourPm | 0x12);
  *now_ = kLeapDay - 2 * 3600;  // 11:45 -> 11 AM
  EXPECT_EQ(reg(kHours), 0x11);
  set_reg(kRegB, kRegBBinary);
  EXPECT_EQ(reg(kHours), 11);
  *now_ = kLeapDay + 10 * 3600;  // 23:45 -> 11 PM
  EXPECT_EQ(reg(kHours), kHourPm | 11);
}

TEST_F(CmosRtc, IndexIgnoresTheNmiDisableBit) {
  wr(kIndexOffset, 0x80 | kYear);
  EXPECT_EQ(rd(kDataOffset), 0x24);
  EXPECT_EQ(rd(kIndexOffset), kYear);
  wr(kIndexOffset, 0x80 | 0x40);
  wr(kDataOffset, 0xa5);
  EXPECT_EQ(reg(0x40), 0xa5) << "0xC0 and 0x40 are the same byte";
  wr(kIndexOffset, 0xff);
  wr(kDataOffset, 0x3c);
  EXPECT_EQ(reg(0x7f), 0x3c);
}

TEST_F(CmosRtc, RamBytesReadBackWhatWasWritten) {
  auto is_special = [](int i) {
    return i <= kRegD || i == kCentury;  // clock, alarms excepted below
  };
  for (int i = 0; i < static_cast<int>(kRamSize); ++i) {
    if (is_special(i) && i != 0x01 && i != 0x03 && i != 0x05) continue;
    set_reg(static_cast<std::uint8_t>(i), static_cast<std::uint8_t>(i ^ 0x5a));
  }
  for (int i = 0; i < static_cast<int>(kRamSize); ++i) {
    if (is_special(i) && i != 0x01 && i != 0x03 && i != 0x05) continue;
    EXPECT_EQ(reg(static_cast<std::uint8_t>(i)), i ^ 0x5a) << "index 0x" << std::hex << i;
  }
  EXPECT_EQ(reg(0x0e), 0x0e ^ 0x5a);  // e.g. the diagnostic status byte
}

TEST_F(CmosRtc, StatusRegistersHaveSaneValues) {
  EXPECT_EQ(reg(kRegA), kDefaultRegA);
  EXPECT_EQ(reg(kRegA) & kRegAUip, 0);
  EXPECT_EQ(reg(kRegB), kDefaultRegB);
  EXPECT_EQ(reg(kRegC), 0);
  EXPECT_EQ(reg(kRegD), kRegDValidRam);
  set_reg(kRegA, 0xff);
  EXPECT_EQ(reg(kRegA), 0x7f) << "UIP is read-only and stays clear";
  set_reg(kRegC, 0xff);
  set_reg(kRegD, 0x00);
  EXPECT_EQ(reg(kRegC), 0);
  EXPECT_EQ(reg(kRegD), kRegDValidRam);
}

TEST_F(CmosRtc, TimeRegisterWritesAreIgnored) {
  for (std::uint8_t r :
       {kSeconds, kMinutes, kHours, kDayOfWeek, kDayOfMonth, kMonth, kYear, kCentury}) {
    set_reg(r, 0x00);
  }
  EXPECT_EQ(reg(kSeconds), 0x07);
  EXPECT_EQ(reg(kHours), 0x13);
  EXPECT_EQ(reg(kYear), 0x24);
  EXPECT_EQ(reg(kCentury), 0x20);
}

TEST_F(CmosRtc, OutOfRangeClockValuesAreClamped) {
  *now_ = std::numeric_limits<std::int64_t>::min();
  EXPECT_EQ(reg(kCentury), 0x19);
  EXPECT_EQ(reg(kYear), 0x70);
  EXPECT_EQ(reg(kMonth), 0x01);
  EXPECT_EQ(reg(kDayOfMonth), 0x01);
  *now_ = std::numeric_limits<std::int64_t>::max();
  EXPECT_EQ(reg(kCentury), 0x99);
  EXPECT_EQ(reg(kYear), 0x99);
  EXPECT_EQ(reg(kMonth), 0x12);
  EXPECT_EQ(reg(kDayOfMonth), 0x31);
  EXPECT_EQ(reg(kSeconds), 0x59);
}

TEST_F(CmosRtc, WideAccessesAndUnknownOffsetsAreHarmless) {
  wr(kIndexOffset, kYear);
  std::array<std::uint8_t, 4> buf = {9, 9, 9, 9};
  rtc_.read(kDataOffset, buf);
  EXPECT_EQ(buf, (std::array<std::uint8_t, 4>{0x24, 0, 0, 0}));
  const std::array<std::uint8_t, 2> w = {0x50, kYear};
  rtc_.write(kIndexOffset, w);
  EXPECT_EQ(rd(kIndexOffset), 0x50);
  EXPECT_EQ(rd(2), 0);
  wr(2, 0xff);
  EXPECT_EQ(rd(kIndexOffset), 0x50);
  rtc_.read(kDataOffset, std::span<std::uint8_t>());
  rtc_.write(kDataOffset, std::span<const std::uint8_t>());
}

TEST_F(CmosRtc, DefaultClockIsTheHostsRealTime) {
  devices::CmosRtc rtc;
  auto reg = [&](std::uint8_t index) {
    rtc.write(kIndexOffset, std::span<const std::uint8_t>(&index, 1));
    std::uint8_t v = 0;
    rtc.read(kDataOffset, std::span<std::uint8_t>(&v, 1));
    return (v >> 4) * 10 + (v & 0x0f);
  };
  using namespace std::chrono;
  auto host_year = [] {
    return static_cast<int>(year_month_day{floor<days>(system_clock::now())}.year());
  };
  const int before = host_year();
  const int year = reg(kCentury) * 100 + reg(kYear);
  const int after = host_year();
  EXPECT_GE(year, before);
  EXPECT_LE(year, after);
}

}  // namespace
}  // namespace hvz::devices_test
