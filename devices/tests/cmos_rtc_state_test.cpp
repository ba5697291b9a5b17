// CmosRtcState: save() captures the index, NMI-disable bit, CMOS RAM and the
// clock offset; a restored RTC answers like the original (its clock follows
// the host clock); malformed states are refused.
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>

#include "devices/cmos_rtc.hpp"

namespace hvz::devices_test {
namespace {

using namespace hvz::devices;
using namespace cmos;

constexpr std::int64_t kLeapDay = 1709214307;  // 2024-02-29 13:45:07 UTC

struct Rtc {
  explicit Rtc(std::shared_ptr<std::int64_t> clock) : rtc([clock] { return *clock; }) {}
  devices::CmosRtc rtc;

  std::uint8_t rd(std::uint64_t offset) {
    std::uint8_t v = 0xee;
    rtc.read(offset, std::span<std::uint8_t>(&v, 1));
    return v;
  }
  void wr(std::uint64_t offset, std::uint8_t v) {
    rtc.write(offset, std::span<const std::uint8_t>(&v, 1));
  }
};

class CmosRtcState : public ::testing::Test {
 protected:
  // Binary 12-hour mode, custom register A, RAM bytes written, index left
  // on a RAM byte with NMIs disabled.
  void drive_original() {
    Rtc& r = original_;
    r.wr(kIndexOffset, kRegB);
    r.wr(kDataOffset, kRegBBinary);
    r.wr(kIndexOffset, kRegA);
    r.wr(kDataOffset, 0x2f);
    for (std::uint8_t i = 0x10; i < 0x20; ++i) {
      r.wr(kIndexOffset, i);
      r.wr(kDataOffset, static_cast<std::uint8_t>(i * 3));
    }
    r.wr(kIndexOffset, 0x80 | 0x15);
  }

  std::uint8_t rd_both(std::uint64_t offset) {
    const std::uint8_t a = original_.rd(offset);
    const std::uint8_t b = restored_.rd(offset);
    EXPECT_EQ(a, b) << "offset " << offset;
    return a;
  }
  void wr_both(std::uint64_t offset, std::uint8_t v) {
    original_.wr(offset, v);
    restored_.wr(offset, v);
  }

  std::shared_ptr<std::int64_t> now_ = std::make_shared<std::int64_t>(kLeapDay);
  Rtc original_{now_};
  Rtc restored_{now_};  // same host clock: the restore happens "now"
};

TEST_F(CmosRtcState, SaveRestoreSaveRoundTripsEveryField) {
  drive_original();
  const devices::CmosRtcState saved = original_.rtc.save();
  EXPECT_EQ(saved.index, 0x15);
  EXPECT_TRUE(saved.nmi_disabled);
  EXPECT_EQ(saved.ram[kRegA], 0x2f);
  EXPECT_EQ(saved.ram[kRegB], kRegBBinary);
  EXPECT_EQ(saved.ram[0x1f], 0x1f * 3);
  EXPECT_EQ(saved.clock_offset_seconds, 0);

  ASSERT_TRUE(restored_.rtc.restore(saved));
  EXPECT_EQ(restored_.rtc.save(), saved);
}

TEST_F(CmosRtcState, RestoredRtcAnswersLikeTheOriginal) {
  drive_original();
  ASSERT_TRUE(restored_.rtc.restore(original_.rtc.save()));

  EXPECT_EQ(rd_both(kIndexOffset), 0x15);
  EXPECT_EQ(rd_both(kDataOffset), 0x15 * 3);
  for (std::uint8_t index = 0; index < kRamSize; ++index) {
    wr_both(kIndexOffset, index);
    rd_both(kDataOffset);
  }
  wr_both(kIndexOffset, kHours);
  EXPECT_EQ(rd_both(kDataOffset), kHourPm | 1) << "binary, 12-hour: 13:45 is 1 PM";
  *now_ += 3600;  // the host clock moves on for both
  wr_both(kIndexOffset, kHours);
  EXPECT_EQ(rd_both(kDataOffset), kHourPm | 2);
  EXPECT_EQ(original_.rtc.save(), restored_.rtc.save());
}

TEST_F(CmosRtcState, ClockOffsetShiftsTheTimeTheGuestSees) {
  devices::CmosRtcState state = original_.rtc.save();
  state.clock_offset_seconds = -3600;  // one hour behind the host
  ASSERT_TRUE(restored_.rtc.restore(state));
  restored_.wr(kIndexOffset, kHours);
  EXPECT_EQ(restored_.rd(kDataOffset), 0x12) << "BCD 12 for 13:45 - 1 h";
  EXPECT_EQ(restored_.rtc.save().clock_offset_seconds, -3600);
}

TEST_F(CmosRtcState, RefusesOutOfRangeValues) {
  drive_original();
  const devices::CmosRtcState before = original_.rtc.save();
  devices::CmosRtcState bad_index = before;
  bad_index.index = 0x80;
  auto r = original_.rtc.restore(bad_index);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::kInvalidArgument);
  devices::CmosRtcState bad_offset = before;
  bad_offset.clock_offset_seconds = kMaxClockOffsetSeconds + 1;
  EXPECT_FALSE(original_.rtc.restore(bad_offset));
  bad_offset.clock_offset_seconds = -kMaxClockOffsetSeconds - 1;
  EXPECT_FALSE(original_.rtc.restore(bad_offset));
  devices::CmosRtcState bad_uip = before;
  bad_uip.ram[kRegA] |= kRegAUip;
  EXPECT_FALSE(original_.rtc.restore(bad_uip));
  EXPECT_EQ(original_.rtc.save(), before) << "a refused state changes nothing";
}

}  // namespace
}  // namespace hvz::devices_test
