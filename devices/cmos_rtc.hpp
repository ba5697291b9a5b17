// CmosRtc: the MC146818-style CMOS real-time clock and its 128 bytes of
// CMOS RAM at ports 0x70 (index) and 0x71 (data). The time registers are
// computed from a host clock on every read, so the guest sees wall-clock
// time without the device running a timer. No RTC interrupt (IRQ 8) is ever
// raised.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <mutex>
#include <span>

#include "vmm/core/bus.hpp"
#include "vmm/core/error.hpp"

namespace hvz::devices {

namespace cmos {
inline constexpr std::uint64_t kRegionSize = 2;
inline constexpr std::uint64_t kIndexOffset = 0;  // port 0x70
inline constexpr std::uint64_t kDataOffset = 1;   // port 0x71
inline constexpr std::size_t kRamSize = 128;
inline constexpr std::uint8_t kIndexMask = 0x7f;  // bit 7 of the index is NMI disable

inline constexpr std::uint8_t kSeconds = 0x00;
inline constexpr std::uint8_t kMinutes = 0x02;
inline constexpr std::uint8_t kHours = 0x04;
inline constexpr std::uint8_t kDayOfWeek = 0x06;  // 1 = Sunday
inline constexpr std::uint8_t kDayOfMonth = 0x07;
inline constexpr std::uint8_t kMonth = 0x08;
inline constexpr std::uint8_t kYear = 0x09;  // two digits
inline constexpr std::uint8_t kRegA = 0x0a;
inline constexpr std::uint8_t kRegB = 0x0b;
inline constexpr std::uint8_t kRegC = 0x0c;
inline constexpr std::uint8_t kRegD = 0x0d;
inline constexpr std::uint8_t kCentury = 0x32;

inline constexpr std::uint8_t kRegAUip = 0x80;             // update in progress: always 0 here
inline constexpr std::uint8_t kDefaultRegA = 0x26;         // 32.768 kHz divider, 1024 Hz rate
inline constexpr std::uint8_t kRegB24Hour = 0x02;          // 1 = 24-hour mode
inline constexpr std::uint8_t kRegBBinary = 0x04;          // DM: 1 = binary, 0 = BCD
inline constexpr std::uint8_t kDefaultRegB = kRegB24Hour;  // BCD, 24-hour
inline constexpr std::uint8_t kRegDValidRam = 0x80;        // VRT: battery good
inline constexpr std::uint8_t kHourPm = 0x80;              // in 12-hour mode
// Keeps the clock arithmetic in range: |clock_offset_seconds| may not
// exceed 9999 years' worth of seconds.
inline constexpr std::int64_t kMaxClockOffsetSeconds = 253402300799;
}  // namespace cmos

// The RTC's state as plain data. The clock registers are not stored: they
// are computed on every read from the host clock plus clock_offset_seconds,
// so a restored RTC keeps following wall-clock time (the time the VM spent
// saved passes for the guest too, as on a machine whose RTC runs on its
// battery while it is off).
struct CmosRtcState {
  static constexpr std::uint32_t kVersion = 1;

  std::uint8_t index = 0;     // selected register, 0-127
  bool nmi_disabled = false;  // bit 7 of the last index write (not modelled further)
  // CMOS RAM, registers A (0x0a) and B (0x0b) included. The bytes at the
  // clock and C/D indices are never read (those registers are computed).
  std::array<std::uint8_t, cmos::kRamSize> ram{};
  // Guest time = host time + this. 0 today (the guest cannot set the
  // clock); kept so a later settable clock needs no new version.
  std::int64_t clock_offset_seconds = 0;

  bool operator==(const CmosRtcState&) const = default;
};

// Register semantics:
// - Time registers read the clock now, in BCD or binary (register B DM bit)
//   and 24- or 12-hour form (register B bit 1; 12-hour sets bit 7 for PM).
//   Writes to them are ignored: the guest cannot move host time.
// - Register A reads UIP clear plus the divider/rate bits the guest wrote
//   (default 0x26); register B is read/write (default 0x02); C reads 0
//   (no interrupt flags); D reads 0x80 (valid RAM). C and D are read-only.
// - Every other index is plain RAM that reads back what was written.
// - The index port reads back the last index written (NMI bit dropped).
// - Accesses wider than one byte use data[0]; other read bytes are 0.
class CmosRtc : public BusDevice {
 public:
  // Unix seconds (UTC) now.
  using Clock = std::function<std::int64_t()>;

  // An empty `clock` means the host's real time. The clock is called with
  // the device's lock held, on a vCPU thread.
  explicit CmosRtc(Clock clock = {});

  void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
  void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

  using State = CmosRtcState;
  // The state now; call while no vCPU can access the device.
  State save() const;
  // Replaces the state with `state` (untrusted: an index above 127, an
  // offset beyond kMaxClockOffsetSeconds or register A with its
  // update-in-progress bit set are refused with Errc::kInvalidArgument and
  // nothing changes).
  Expected<void> restore(const State& state);

 private:
  std::uint8_t read_data();
  void write_data(std::uint8_t value);
  // `value` in the guest's chosen encoding (BCD unless register B says binary).
  std::uint8_t encode(unsigned value) const;

  // The guest's time now: clock_() + offset_seconds_, in Unix seconds.
  std::int64_t now() const;

  Clock clock_;
  mutable std::mutex mutex_;
  std::uint8_t index_ = 0;
  bool nmi_disabled_ = false;
  std::array<std::uint8_t, cmos::kRamSize> ram_{};
  std::int64_t offset_seconds_ = 0;
};

}  // namespace hvz::devices
