// CmosRtc: CMOS RAM and the clock registers computed from the host clock
// (see cmos_rtc.hpp).
#include "devices/cmos_rtc.hpp"

#include <algorithm>
#include <chrono>
#include <string>
#include <utility>

namespace hvz::devices {

using namespace cmos;

namespace {

// Keeps the civil-date arithmetic in range whatever the clock returns:
// 1970-01-01 .. 9999-12-31 23:59:59.
constexpr std::int64_t kMaxSeconds = kMaxClockOffsetSeconds;

std::int64_t system_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct CivilTime {
  unsigned year, month, day, weekday;  // weekday 0 = Sunday
  unsigned hour, minute, second;
};

CivilTime civil_time(std::int64_t unix_seconds) {
  using namespace std::chrono;
  const std::int64_t clamped = std::clamp<std::int64_t>(unix_seconds, 0, kMaxSeconds);
  const sys_seconds t{seconds{clamped}};
  const sys_days day = floor<days>(t);
  const year_month_day ymd{day};
  const hh_mm_ss<seconds> hms{t - day};
  return CivilTime{
      .year = static_cast<unsigned>(static_cast<int>(ymd.year())),
      .month = static_cast<unsigned>(ymd.month()),
      .day = static_cast<unsigned>(ymd.day()),
      .weekday = weekday{day}.c_encoding(),
      .hour = static_cast<unsigned>(hms.hours().count()),
      .minute = static_cast<unsigned>(hms.minutes().count()),
      .second = static_cast<unsigned>(hms.seconds().count()),
  };
}

}  // namespace

CmosRtc::CmosRtc(Clock clock) : clock_(std::move(clock)) {
  if (!clock_) clock_ = system_seconds;
  ram_[kRegA] = kDefaultRegA;
  ram_[kRegB] = kDefaultRegB;
}

void CmosRtc::read(std::uint64_t offset, std::span<std::uint8_t> data) {
  if (data.empty()) return;
  std::fill(data.begin(), data.end(), std::uint8_t{0});
  std::lock_guard lock(mutex_);
  if (offset == kIndexOffset) {
    data[0] = index_;
  } else if (offset == kDataOffset) {
    data[0] = read_data();
  }
}

void CmosRtc::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
  if (data.empty()) return;
  std::lock_guard lock(mutex_);
  if (offset == kIndexOffset) {
    index_ = data[0] & kIndexMask;
    nmi_disabled_ = (data[0] & ~kIndexMask) != 0;  // kept, but NMIs are not ours to mask
  } else if (offset == kDataOffset) {
    write_data(data[0]);
  }
}

std::uint8_t CmosRtc::encode(unsigned value) const {
  value %= 100;
  if (ram_[kRegB] & kRegBBinary) return static_cast<std::uint8_t>(value);
  return static_cast<std::uint8_t>(((value / 10) << 4) | (value % 10));
}

std::uint8_t CmosRtc::read_data() {
  switch (index_) {
    case kSeconds:
    case kMinutes:
    case kHours:
    case kDayOfWeek:
    case kDayOfMonth:
    case kMonth:
    case kYear:
    case kCentury:
      break;  // computed below
    case kRegA:
      return static_cast<std::uint8_t>(ram_[kRegA] & ~kRegAUip);
    case kRegC:
      return 0;
    case kRegD:
      return kRegDValidRam;
    default:
      return ram_[index_];
  }
  const CivilTime now = civil_time(this->now());
  switch (index_) {
    case kSeconds:
      return encode(now.second);
    case kMinutes:
      return encode(now.minute);
    case kHours: {
      if (ram_[kRegB] & kRegB24Hour) return encode(now.hour);
      const unsigned h12 = now.hour % 12 == 0 ? 12 : now.hour % 12;
      return static_cast<std::uint8_t>(encode(h12) | (now.hour >= 12 ? kHourPm : 0));
    }
    case kDayOfWeek:
      return encode(now.weekday + 1);
    case kDayOfMonth:
      return encode(now.day);
    case kMonth:
      return encode(now.month);
    case kYear:
      return encode(now.year % 100);
    default:  // kCentury
      return encode(now.year / 100);
  }
}

void CmosRtc::write_data(std::uint8_t value) {
  switch (index_) {
    case kSeconds:
    case kMinutes:
    case kHours:
    case kDayOfWeek:
    case kDayOfMonth:
    case kMonth:
    case kYear:
    case kCentury:
    case kRegC:
    case kRegD:
      return;  // the clock follows the host; C and D are read-only
    case kRegA:
      ram_[kRegA] = static_cast<std::uint8_t>(value & ~kRegAUip);
      return;
    default:
      ram_[index_] = value;  // index_ < 128 by the mask
      return;
  }
}

std::int64_t CmosRtc::now() const {
  // Clamping first keeps the sum in range whatever the clock returns;
  // civil_time() clamps the result to the years it can show.
  return std::clamp<std::int64_t>(clock_(), -kMaxSeconds, kMaxSeconds) + offset_seconds_;
}

CmosRtcState CmosRtc::save() const {
  std::lock_guard lock(mutex_);
  return CmosRtcState{
      .index = index_,
      .nmi_disabled = nmi_disabled_,
      .ram = ram_,
      .clock_offset_seconds = offset_seconds_,
  };
}

Expected<void> CmosRtc::restore(const CmosRtcState& state) {
  if (state.index > kIndexMask) {
    return make_error(Errc::kInvalidArgument,
                      "CMOS state: index " + std::to_string(state.index) + " beyond 127");
  }
  if (state.clock_offset_seconds > kMaxClockOffsetSeconds ||
      state.clock_offset_seconds < -kMaxClockOffsetSeconds) {
    return make_error(Errc::kInvalidArgument, "CMOS state: clock offset " +
                                                  std::to_string(state.clock_offset_seconds) +
                                                  " s out of range");
  }
  if (state.ram[kRegA] & kRegAUip) {
    return make_error(Errc::kInvalidArgument, "CMOS state: register A has update-in-progress set");
  }
  std::lock_guard lock(mutex_);
  index_ = state.index;
  nmi_disabled_ = state.nmi_disabled;
  ram_ = state.ram;
  offset_seconds_ = state.clock_offset_seconds;
  return {};
}

}  // namespace hvz::devices
