// Serial: the 16550A UART register state machine (see serial.hpp).
#include "devices/serial.hpp"

#include <algorithm>
#include <string>
#include <utility>

namespace hvz::devices {

using namespace uart;

Serial::Serial(std::shared_ptr<IrqLine> irq, std::shared_ptr<SerialOutput> out)
    : irq_(std::move(irq)), out_(std::move(out)) {}

void Serial::read(std::uint64_t offset, std::span<std::uint8_t> data) {
  if (data.empty()) return;
  std::fill(data.begin(), data.end(), std::uint8_t{0});
  bool drained = false;
  std::function<void()> callback;
  {
    std::lock_guard lock(mutex_);
    const bool was_pending = pending_interrupt() != kIirNone;
    data[0] = read_register(offset, &drained);
    if (auto r = update_irq(was_pending); !r && irq_error_log_.allow()) {
      LOG_WARN("serial: interrupt failed: %s", r.error().message().c_str());
    }
    if (drained) callback = input_drained_;
  }
  if (callback) callback();
}

void Serial::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
  if (data.empty()) return;
  bool drained = false;
  std::function<void()> callback;
  {
    std::lock_guard lock(mutex_);
    const bool was_pending = pending_interrupt() != kIirNone;
    write_register(offset, data[0], &drained);
    if (auto r = update_irq(was_pending); !r && irq_error_log_.allow()) {
      LOG_WARN("serial: interrupt failed: %s", r.error().message().c_str());
    }
    if (drained) callback = input_drained_;
  }
  if (callback) callback();
}

std::uint8_t Serial::read_register(std::uint64_t offset, bool* drained) {
  switch (offset) {
    case kData: {
      if (dlab()) return dll_;
      if (rx_len_ == 0) return 0;
      const std::uint8_t byte = rx_[rx_head_];
      rx_head_ = (rx_head_ + 1) % kFifoSize;
      --rx_len_;
      *drained = rx_len_ == 0;
      return byte;
    }
    case kIer:
      return dlab() ? dlm_ : ier_;
    case kIir: {
      const std::uint8_t iir = pending_interrupt();
      // Reading IIR acknowledges a THRE interrupt, but only when IIR reports
      // it (a pending RDA hides it, as on the chip).
      if (iir == kIirThre) thre_pending_ = false;
      return static_cast<std::uint8_t>(iir | (fifo_enabled_ ? kIirFifoEnabled : 0));
    }
    case kLcr:
      return lcr_;
    case kMcr:
      return mcr_;
    case kLsr: {
      std::uint8_t lsr = kLsrThrEmpty | kLsrIdle;
      if (rx_len_ > 0) lsr |= kLsrDataReady;
      if (overrun_) lsr |= kLsrOverrun;
      overrun_ = false;
      return lsr;
    }
    case kMsr: {
      if (!loopback()) return kDefaultMsr;
      // In loopback the modem inputs are wired to the outputs.
      std::uint8_t msr = 0;
      if (mcr_ & kMcrDtr) msr |= kMsrDsr;
      if (mcr_ & kMcrRts) msr |= kMsrCts;
      if (mcr_ & kMcrOut1) msr |= kMsrRi;
      if (mcr_ & kMcrOut2) msr |= kMsrDcd;
      return msr;
    }
    case kScr:
      return scr_;
    default:
      return 0;
  }
}

void Serial::write_register(std::uint64_t offset, std::uint8_t value, bool* drained) {
  switch (offset) {
    case kData:
      if (dlab()) {
        dll_ = value;
      } else {
        transmit(value);
      }
      break;
    case kIer:
      if (dlab()) {
        dlm_ = value;
        break;
      }
      // THR is always empty, so turning the THRE interrupt on raises it.
      if ((value & kIerThre) && !(ier_ & kIerThre)) thre_pending_ = true;
      if (!(value & kIerThre)) thre_pending_ = false;
      ier_ = value & kIerMask;
      break;
    case kFcr: {
      const bool enable = (value & kFcrEnableFifo) != 0;
      // Switching the FIFOs on or off empties them; the clear bits only
      // count while the FIFOs are enabled (the TX FIFO is always empty).
      if (enable != fifo_enabled_ || (enable && (value & kFcrClearRx))) {
        *drained = rx_len_ > 0;
        clear_rx();
      }
      fifo_enabled_ = enable;
      break;
    }
    case kLcr:
      lcr_ = value;
      break;
    case kMcr:
      mcr_ = value & kMcrMask;
      break;
    case kScr:
      scr_ = value;
      break;
    default:  // LSR and MSR are read-only
      break;
  }
}

void Serial::transmit(std::uint8_t value) {
  if (loopback()) {
    push_rx(value);
  } else if (out_) {
    out_->write(std::span<const std::uint8_t>(&value, 1));
  }
  // The byte left THR at once: THR is empty again, and if the guest wants to
  // hear about that, the THRE interrupt is (re)armed.
  thre_pending_ = (ier_ & kIerThre) != 0;
}

void Serial::push_rx(std::uint8_t value) {
  if (rx_len_ == kFifoSize) {
    overrun_ = true;  // the chip drops the new byte too
    return;
  }
  rx_[(rx_head_ + rx_len_) % kFifoSize] = value;
  ++rx_len_;
}

void Serial::clear_rx() {
  rx_head_ = 0;
  rx_len_ = 0;
}

std::uint8_t Serial::pending_interrupt() const {
  if ((ier_ & kIerRls) && overrun_) return kIirRls;
  if ((ier_ & kIerRda) && rx_len_ > 0) return kIirRda;
  if ((ier_ & kIerThre) && thre_pending_) return kIirThre;
  return kIirNone;
}

Expected<void> Serial::update_irq(bool was_pending) {
  if (was_pending || pending_interrupt() == kIirNone || !irq_) return {};
  return irq_->trigger();
}

Expected<std::size_t> Serial::enqueue_input(std::span<const std::uint8_t> bytes) {
  std::lock_guard lock(mutex_);
  if (loopback()) return std::size_t{0};
  const bool was_pending = pending_interrupt() != kIirNone;
  const std::size_t n = std::min(bytes.size(), kFifoSize - rx_len_);
  for (std::size_t i = 0; i < n; ++i) push_rx(bytes[i]);
  if (auto r = update_irq(was_pending); !r) return tl::unexpected(r.error());
  return n;
}

std::size_t Serial::input_space() const {
  std::lock_guard lock(mutex_);
  return loopback() ? 0 : kFifoSize - rx_len_;
}

void Serial::set_input_drained_callback(std::function<void()> callback) {
  std::lock_guard lock(mutex_);
  input_drained_ = std::move(callback);
}

SerialState Serial::save() const {
  std::lock_guard lock(mutex_);
  SerialState state{
      .dll = dll_,
      .dlm = dlm_,
      .ier = ier_,
      .lcr = lcr_,
      .mcr = mcr_,
      .scr = scr_,
      .fifo_enabled = fifo_enabled_,
      .thre_pending = thre_pending_,
      .overrun = overrun_,
      .rx_fifo = {},
  };
  state.rx_fifo.reserve(rx_len_);
  for (std::size_t i = 0; i < rx_len_; ++i)
    state.rx_fifo.push_back(rx_[(rx_head_ + i) % kFifoSize]);
  return state;
}

Expected<void> Serial::restore(const SerialState& state) {
  if (state.rx_fifo.size() > kFifoSize) {
    return make_error(Errc::kInvalidArgument, "serial state: receive FIFO holds " +
                                                  std::to_string(state.rx_fifo.size()) +
                                                  " bytes, more than " + std::to_string(kFifoSize));
  }
  if ((state.ier & ~kIerMask) != 0) {
    return make_error(Errc::kInvalidArgument, "serial state: IER has bits a 16550A lacks");
  }
  if ((state.mcr & ~kMcrMask) != 0) {
    return make_error(Errc::kInvalidArgument, "serial state: MCR has bits a 16550A lacks");
  }
  std::lock_guard lock(mutex_);
  dll_ = state.dll;
  dlm_ = state.dlm;
  ier_ = state.ier;
  lcr_ = state.lcr;
  mcr_ = state.mcr;
  scr_ = state.scr;
  fifo_enabled_ = state.fifo_enabled;
  thre_pending_ = state.thre_pending;
  overrun_ = state.overrun;
  rx_head_ = 0;
  rx_len_ = state.rx_fifo.size();
  std::copy(state.rx_fifo.begin(), state.rx_fifo.end(), rx_.begin());
  return {};
}

}  // namespace hvz::devices
