// AcpiPm: the hardware-reduced ACPI sleep control, sleep status and reset
// registers (three 1-byte ports, described in the FADT). A guest powering
// off writes SLP_TYP|SLP_EN to the control register; a guest rebooting
// writes the reset value to the reset register.
#pragma once

#include <cstdint>
#include <functional>

#include "vmm/core/bus.hpp"

namespace hvz::devices {

class AcpiPm : public BusDevice {
 public:
  static constexpr std::uint64_t kSleepControl = 0;
  static constexpr std::uint64_t kSleepStatus = 1;
  static constexpr std::uint64_t kReset = 2;
  static constexpr std::uint64_t kSize = 3;

  AcpiPm(std::uint8_t s5_sleep_type, std::uint8_t reset_value, std::function<void()> on_poweroff,
         std::function<void()> on_reset)
      : s5_sleep_type_(s5_sleep_type),
        reset_value_(reset_value),
        on_poweroff_(std::move(on_poweroff)),
        on_reset_(std::move(on_reset)) {}

  // Reads see 0: no wake status, nothing pending.
  void read(std::uint64_t, std::span<std::uint8_t> data) override;
  void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

 private:
  std::uint8_t s5_sleep_type_;
  std::uint8_t reset_value_;
  std::function<void()> on_poweroff_;
  std::function<void()> on_reset_;
};

}  // namespace hvz::devices
