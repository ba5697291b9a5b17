// I8042: the PS/2 controller state machine (see i8042.hpp).
#include "devices/i8042.hpp"

#include <algorithm>
#include <string>
#include <utility>

namespace hvz::devices {

using namespace i8042;

I8042::I8042(std::function<void()> reset, std::shared_ptr<IrqLine> kbd_irq)
    : reset_(std::move(reset)), irq_(std::move(kbd_irq)) {}

void I8042::read(std::uint64_t offset, std::span<std::uint8_t> data) {
  if (data.empty()) return;
  std::fill(data.begin(), data.end(), std::uint8_t{0});
  std::lock_guard lock(mutex_);
  switch (offset) {
    case kCommandOffset:
      data[0] = status();
      break;
    case kDataOffset:
      data[0] = pop();
      // Edge-triggered: the guest reads one byte per interrupt, so tell it
      // there is more.
      if (len_ > 0) kbd_interrupt_logged();
      break;
    default:
      break;
  }
}

void I8042::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
  if (data.empty()) return;
  bool reset = false;
  {
    std::lock_guard lock(mutex_);
    switch (offset) {
      case kCommandOffset:
        last_write_command_ = true;
        reset = command(data[0]);
        break;
      case kDataOffset:
        last_write_command_ = false;
        data_write(data[0]);
        break;
      default:
        break;
    }
  }
  // Outside the lock: the VMM may tear the VM down from here.
  if (reset && reset_) reset_();
}

std::uint8_t I8042::status() const {
  std::uint8_t s = kStatusKbdUnlocked;
  if (len_ > 0) s |= kStatusOutputFull;
  if (ctr_ & kCtrSystemFlag) s |= kStatusSystemFlag;
  if (last_write_command_) s |= kStatusCommand;
  return s;
}

bool I8042::command(std::uint8_t cmd) {
  // A new command abandons one still waiting for its parameter.
  pending_cmd_ = 0;
  switch (cmd) {
    case kCmdReadCtr:
      // Only the reply must be readable next, so drop anything stale.
      flush();
      push(ctr_);
      break;
    case kCmdReadOutputPort:
      flush();
      push(output_port_);
      break;
    case kCmdWriteCtr:
    case kCmdWriteOutputPort:
    case kCmdWriteKbdBuffer:
    case kCmdWriteAuxBuffer:
    case kCmdWriteAux:
      pending_cmd_ = cmd;
      break;
    case kCmdSelfTest:
      flush();
      push(kSelfTestOk);
      break;
    case kCmdKbdTest:
      flush();
      push(kInterfaceOk);
      break;
    case kCmdAuxTest:
      // There is no AUX (mouse) port; Linux takes a nonzero reply other
      // than 0xfa/0xff as "absent".
      flush();
      push(kAuxClockStuckLow);
      break;
    case kCmdKbdDisable:
      ctr_ |= kCtrKbdDisable;
      break;
    case kCmdKbdEnable:
      ctr_ &= static_cast<std::uint8_t>(~kCtrKbdDisable);
      break;
    case kCmdAuxDisable:
      ctr_ |= kCtrAuxDisable;
      break;
    case kCmdAuxEnable:
      ctr_ &= static_cast<std::uint8_t>(~kCtrAuxDisable);
      break;
    default:
      // 0xF0-0xFF pulse output port bits 0-3 low for those bits of the
      // command that are 0; bit 0 is the CPU reset line (0xFE is the usual
      // "reset" command, 0xFF pulses nothing).
      if ((cmd & 0xf0) == 0xf0 && (cmd & 0x01) == 0) return true;
      break;  // anything else is ignored
  }
  return false;
}

void I8042::data_write(std::uint8_t value) {
  const std::uint8_t cmd = std::exchange(pending_cmd_, 0);
  switch (cmd) {
    case kCmdWriteCtr:
      ctr_ = value;
      return;
    case kCmdWriteOutputPort:
      output_port_ = value;
      return;
    case kCmdWriteKbdBuffer:
      // The byte appears as if the keyboard had sent it.
      push(value);
      kbd_interrupt_logged();
      return;
    case kCmdWriteAuxBuffer:
      // Without an AUX port the loopback byte comes back as keyboard data
      // (status AUXDATA clear), without an interrupt; Linux's AUX loop test
      // then fails at once instead of timing out.
      push(value);
      return;
    case kCmdWriteAux:
      return;  // to a mouse that is not there
    default:
      break;
  }
  // A command for the keyboard itself: ours acknowledges anything.
  flush();
  push(kKbdAck);
  kbd_interrupt_logged();
}

void I8042::push(std::uint8_t byte) {
  if (len_ == kBufferSize) return;
  buffer_[(head_ + len_) % kBufferSize] = byte;
  ++len_;
}

std::uint8_t I8042::pop() {
  if (len_ == 0) return 0;
  const std::uint8_t byte = buffer_[head_];
  head_ = (head_ + 1) % kBufferSize;
  --len_;
  return byte;
}

Expected<void> I8042::kbd_interrupt() {
  if ((ctr_ & kCtrKbdInt) == 0 || !irq_) return {};
  return irq_->trigger();
}

void I8042::kbd_interrupt_logged() {
  if (auto r = kbd_interrupt(); !r && irq_error_log_.allow()) {
    LOG_WARN("i8042: keyboard interrupt failed: %s", r.error().message().c_str());
  }
}

Expected<void> I8042::trigger_ctrl_alt_del() {
  std::lock_guard lock(mutex_);
  if (free_space() < kCtrlAltDel.size()) {
    return make_error(Errc::kBusy, "i8042: keyboard buffer full for Ctrl-Alt-Del");
  }
  for (std::uint8_t byte : kCtrlAltDel) push(byte);
  // One interrupt per key (Ctrl, Alt, E0 Del), as a keyboard would send
  // them; all bytes are queued first so a failing line loses no key.
  for (int key = 0; key < 3; ++key) {
    if (auto r = kbd_interrupt(); !r) return r;
  }
  return {};
}

I8042State I8042::save() const {
  std::lock_guard lock(mutex_);
  I8042State state{
      .ctr = ctr_,
      .output_port = output_port_,
      .pending_command = pending_cmd_,
      .last_write_command = last_write_command_,
      .output_buffer = {},
  };
  state.output_buffer.reserve(len_);
  for (std::size_t i = 0; i < len_; ++i) {
    state.output_buffer.push_back(buffer_[(head_ + i) % kBufferSize]);
  }
  return state;
}

Expected<void> I8042::restore(const I8042State& state) {
  if (state.output_buffer.size() > kBufferSize) {
    return make_error(Errc::kInvalidArgument, "i8042 state: output buffer holds " +
                                                  std::to_string(state.output_buffer.size()) +
                                                  " bytes, more than " +
                                                  std::to_string(kBufferSize));
  }
  switch (state.pending_command) {
    case 0:
    case kCmdWriteCtr:
    case kCmdWriteOutputPort:
    case kCmdWriteKbdBuffer:
    case kCmdWriteAuxBuffer:
    case kCmdWriteAux:
      break;
    default:
      return make_error(Errc::kInvalidArgument, "i8042 state: pending command " +
                                                    std::to_string(state.pending_command) +
                                                    " takes no parameter");
  }
  std::lock_guard lock(mutex_);
  ctr_ = state.ctr;
  output_port_ = state.output_port;
  pending_cmd_ = state.pending_command;
  last_write_command_ = state.last_write_command;
  head_ = 0;
  len_ = state.output_buffer.size();
  std::copy(state.output_buffer.begin(), state.output_buffer.end(), buffer_.begin());
  return {};
}

}  // namespace hvz::devices
