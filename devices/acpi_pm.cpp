// AcpiPm register decoding (see acpi_pm.hpp; ACPI 6.4 §4.8.3.7-8).
#include "devices/acpi_pm.hpp"

#include <algorithm>
#include <string>

namespace hvz::devices {
namespace {

constexpr std::uint8_t kSleepEnable = 1u << 5;  // SLP_EN
constexpr unsigned kSleepTypeShift = 2;         // SLP_TYP, bits 4:2
constexpr std::uint8_t kSleepTypeMask = 0x7;

}  // namespace

void AcpiPm::read(std::uint64_t, std::span<std::uint8_t> data) {
  std::fill(data.begin(), data.end(), std::uint8_t{0});
}

void AcpiPm::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
  if (data.empty()) return;
  const std::uint8_t v = data[0];
  if (offset == kSleepControl) {
    const std::uint8_t type = (v >> kSleepTypeShift) & kSleepTypeMask;
    if ((v & kSleepEnable) && type == s5_sleep_type_ && on_poweroff_) on_poweroff_();
  } else if (offset == kReset) {
    if (v == reset_value_ && on_reset_) on_reset_();
  }
}

Expected<void> AcpiPm::restore(const AcpiPmState& state) {
  if (state.s5_sleep_type > AcpiPmState::kMaxSleepType) {
    return make_error(Errc::kInvalidArgument, "ACPI PM state: S5 sleep type " +
                                                  std::to_string(state.s5_sleep_type) +
                                                  " does not fit SLP_TYP");
  }
  s5_sleep_type_ = state.s5_sleep_type;
  reset_value_ = state.reset_value;
  return {};
}

}  // namespace hvz::devices
