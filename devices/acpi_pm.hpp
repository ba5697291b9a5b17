// AcpiPm: the hardware-reduced ACPI sleep control, sleep status and reset
// registers (three 1-byte ports, described in the FADT). A guest powering
// off writes SLP_TYP|SLP_EN to the control register; a guest rebooting
// writes the reset value to the reset register.
#pragma once

#include <cstdint>
#include <functional>
#include <utility>

#include "vmm/core/bus.hpp"
#include "vmm/core/error.hpp"

namespace hvz::devices {

// The registers hold no guest-written state (reads see 0, writes act at
// once), so the state is the two values the guest learnt from the ACPI
// tables and must keep seeing after a restore, whatever the VMM's defaults
// have become.
struct AcpiPmState {
  static constexpr std::uint32_t kVersion = 1;
  static constexpr std::uint8_t kMaxSleepType = 7;  // SLP_TYP is 3 bits

  std::uint8_t s5_sleep_type = 0;  // SLP_TYP of \_S5 in the DSDT
  std::uint8_t reset_value = 0;    // FADT RESET_VALUE

  bool operator==(const AcpiPmState&) const = default;
};

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

  using State = AcpiPmState;
  State save() const { return State{.s5_sleep_type = s5_sleep_type_, .reset_value = reset_value_}; }
  // Refuses (Errc::kInvalidArgument) a sleep type that SLP_TYP cannot hold.
  // Call while no vCPU can access the device.
  Expected<void> restore(const State& state);

 private:
  std::uint8_t s5_sleep_type_;
  std::uint8_t reset_value_;
  std::function<void()> on_poweroff_;
  std::function<void()> on_reset_;
};

}  // namespace hvz::devices
