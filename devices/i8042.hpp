// I8042: the PS/2 keyboard controller, emulated just enough for a guest to
// probe it, to reboot through it (command 0xFE pulses the CPU reset line)
// and to receive Ctrl-Alt-Del from the host. Modelled on Firecracker's
// i8042 (src/vmm/src/devices/legacy/i8042.rs). Inserted at port 0x60 with
// length 5: offset 0 is the data port (0x60), offset 4 the status/command
// port (0x64); offsets 1-3 read 0 and ignore writes.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "vmm/core/bus.hpp"
#include "vmm/core/error.hpp"
#include "vmm/core/irq.hpp"
#include "vmm/core/log.hpp"

namespace hvz::devices {

namespace i8042 {
inline constexpr std::uint64_t kRegionSize = 5;
inline constexpr std::uint64_t kDataOffset = 0;     // port 0x60
inline constexpr std::uint64_t kCommandOffset = 4;  // port 0x64
inline constexpr std::size_t kBufferSize = 16;

// Controller commands (written to port 0x64).
inline constexpr std::uint8_t kCmdReadCtr = 0x20;
inline constexpr std::uint8_t kCmdWriteCtr = 0x60;
inline constexpr std::uint8_t kCmdAuxDisable = 0xa7;
inline constexpr std::uint8_t kCmdAuxEnable = 0xa8;
inline constexpr std::uint8_t kCmdAuxTest = 0xa9;
inline constexpr std::uint8_t kCmdSelfTest = 0xaa;
inline constexpr std::uint8_t kCmdKbdTest = 0xab;
inline constexpr std::uint8_t kCmdKbdDisable = 0xad;
inline constexpr std::uint8_t kCmdKbdEnable = 0xae;
inline constexpr std::uint8_t kCmdReadOutputPort = 0xd0;
inline constexpr std::uint8_t kCmdWriteOutputPort = 0xd1;
inline constexpr std::uint8_t kCmdWriteKbdBuffer = 0xd2;
inline constexpr std::uint8_t kCmdWriteAuxBuffer = 0xd3;
inline constexpr std::uint8_t kCmdWriteAux = 0xd4;
inline constexpr std::uint8_t kCmdResetCpu = 0xfe;

// Status register bits (read from port 0x64).
inline constexpr std::uint8_t kStatusOutputFull = 0x01;
inline constexpr std::uint8_t kStatusSystemFlag = 0x04;  // mirrors CTR bit 2
inline constexpr std::uint8_t kStatusCommand = 0x08;     // last write was to port 0x64
inline constexpr std::uint8_t kStatusKbdUnlocked = 0x10;
inline constexpr std::uint8_t kStatusAuxData = 0x20;  // never set: there is no AUX port

// Control register (command byte) bits.
inline constexpr std::uint8_t kCtrKbdInt = 0x01;
inline constexpr std::uint8_t kCtrAuxInt = 0x02;
inline constexpr std::uint8_t kCtrSystemFlag = 0x04;
inline constexpr std::uint8_t kCtrKbdDisable = 0x10;
inline constexpr std::uint8_t kCtrAuxDisable = 0x20;
inline constexpr std::uint8_t kDefaultCtr = kCtrKbdInt | kCtrSystemFlag;

// Replies.
inline constexpr std::uint8_t kSelfTestOk = 0x55;
inline constexpr std::uint8_t kInterfaceOk = 0x00;
inline constexpr std::uint8_t kAuxClockStuckLow = 0x01;  // "no AUX device here"
inline constexpr std::uint8_t kKbdAck = 0xfa;

// Ctrl-Alt-Del make codes in scan code set 2 (as Firecracker sends them).
inline constexpr std::array<std::uint8_t, 4> kCtrlAltDel = {0x14, 0x11, 0xe0, 0x71};
}  // namespace i8042

// The controller's state as plain data: an I8042 rebuilt from it answers
// every access as the one it came from (the status register follows from
// these fields).
struct I8042State {
  static constexpr std::uint32_t kVersion = 1;

  std::uint8_t ctr = i8042::kDefaultCtr;  // control register (command byte)
  std::uint8_t output_port = 0x03;
  // A command written to port 0x64 still waiting for its parameter on port
  // 0x60 (one of 0x60, 0xd1-0xd4), or 0.
  std::uint8_t pending_command = 0;
  bool last_write_command = false;  // status bit 3
  // The output buffer, next byte the guest reads first; at most
  // i8042::kBufferSize bytes.
  std::vector<std::uint8_t> output_buffer;

  bool operator==(const I8042State&) const = default;
};

// Behaviour in brief (details in i8042.cpp):
// - Accesses wider than one byte use data[0]; other read bytes are 0.
// - The output buffer holds 16 bytes; reading port 0x60 pops one (0 when
//   empty) and, if more remain, raises IRQ 1 again so the guest comes back.
// - A byte written to port 0x60 that is not a command's parameter is a
//   keyboard command: the keyboard acks it (0xFA) with IRQ 1.
// - IRQ 1 is raised only while the guest keeps CTR bit 0 set; the IrqLine
//   is triggered with the lock held. Controller replies (CTR, self-test...)
//   raise no interrupt: drivers poll for them.
// - 0xFE (and any 0xF0-0xFD pulse that includes bit 0, the reset line)
//   calls the reset callback, outside the lock.
// - Unknown commands are ignored.
class I8042 : public BusDevice {
 public:
  // `reset` runs on the vCPU thread when the guest pulses the reset line;
  // `kbd_irq` is IRQ 1. Either may be empty/null.
  I8042(std::function<void()> reset, std::shared_ptr<IrqLine> kbd_irq);

  void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
  void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

  // Queues Ctrl, Alt, Del (set 2 make codes: 14 11 E0 71) and raises IRQ 1
  // once per key. Fails with Errc::kBusy, queuing nothing, when the buffer
  // lacks room for all four bytes. If the IrqLine fails, the error is
  // returned but the keys stay queued. With the guest's keyboard interrupt
  // disabled (CTR bit 0) the bytes are queued without an interrupt.
  Expected<void> trigger_ctrl_alt_del();

  using State = I8042State;
  // The controller state now; call while no vCPU can access the device.
  State save() const;
  // Replaces the state with `state` (untrusted: an oversized buffer or a
  // pending command that takes no parameter is refused with
  // Errc::kInvalidArgument and nothing changes). Raises no interrupt: one
  // pending at save time already reached the interrupt controller.
  Expected<void> restore(const State& state);

 private:
  std::uint8_t status() const;
  // Returns true when the command pulses the reset line.
  bool command(std::uint8_t cmd);
  void data_write(std::uint8_t value);
  void push(std::uint8_t byte);  // drops the byte when the buffer is full
  std::uint8_t pop();
  void flush() { head_ = len_ = 0; }
  std::size_t free_space() const { return i8042::kBufferSize - len_; }
  Expected<void> kbd_interrupt();
  void kbd_interrupt_logged();

  std::function<void()> reset_;
  std::shared_ptr<IrqLine> irq_;

  mutable std::mutex mutex_;
  std::uint8_t ctr_ = i8042::kDefaultCtr;
  std::uint8_t output_port_ = 0x03;  // reset line inactive, A20 enabled
  std::uint8_t pending_cmd_ = 0;     // a command awaiting its parameter on port 0x60, or 0
  bool last_write_command_ = false;
  std::array<std::uint8_t, i8042::kBufferSize> buffer_{};
  std::size_t head_ = 0;
  std::size_t len_ = 0;
  log::RateLimit irq_error_log_;
};

}  // namespace hvz::devices
