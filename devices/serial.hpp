// Serial: a 16550A UART (COM1 at 0x3f8, IRQ 4) as a KVM-free state machine.
// Guest register accesses come in through BusDevice; transmitted bytes go
// out to a SerialOutput sink, host input comes in through enqueue_input(),
// and interrupts leave as edges on an IrqLine. Modelled on rust-vmm
// vm-superio's serial.rs, with the extra pieces Linux's 8250 driver probes:
// loopback, the scratch register and the FIFO bits of IIR.
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

// Where the guest's transmitted bytes go (the VMM wires stdout or a file).
class SerialOutput {
 public:
  virtual ~SerialOutput() = default;
  // Receives every byte the guest writes to THR, in order, as soon as it is
  // written. Called with the Serial's lock held: it must not call back into
  // the Serial. It should not block for long (a vCPU is waiting).
  virtual void write(std::span<const std::uint8_t> bytes) = 0;
};

// The register layout (offsets from the base port) and bits the tests and
// the VMM may name.
namespace uart {
inline constexpr std::uint64_t kRegisterCount = 8;
inline constexpr std::size_t kFifoSize = 64;

inline constexpr std::uint64_t kData = 0;  // RBR (read) / THR (write); DLL with DLAB
inline constexpr std::uint64_t kIer = 1;   // DLM with DLAB
inline constexpr std::uint64_t kIir = 2;   // IIR (read) / FCR (write)
inline constexpr std::uint64_t kFcr = 2;
inline constexpr std::uint64_t kLcr = 3;
inline constexpr std::uint64_t kMcr = 4;
inline constexpr std::uint64_t kLsr = 5;
inline constexpr std::uint64_t kMsr = 6;
inline constexpr std::uint64_t kScr = 7;

inline constexpr std::uint8_t kIerRda = 0x01;   // received data available
inline constexpr std::uint8_t kIerThre = 0x02;  // transmitter holding register empty
inline constexpr std::uint8_t kIerRls = 0x04;   // receiver line status (overrun)
inline constexpr std::uint8_t kIerMsi = 0x08;   // modem status (never raised here)
inline constexpr std::uint8_t kIerMask = 0x0f;  // bits a 16550A implements

inline constexpr std::uint8_t kIirNone = 0x01;  // no interrupt pending
inline constexpr std::uint8_t kIirThre = 0x02;
inline constexpr std::uint8_t kIirRda = 0x04;
inline constexpr std::uint8_t kIirRls = 0x06;
inline constexpr std::uint8_t kIirFifoEnabled = 0xc0;  // "16550A with working FIFOs"

inline constexpr std::uint8_t kFcrEnableFifo = 0x01;
inline constexpr std::uint8_t kFcrClearRx = 0x02;
inline constexpr std::uint8_t kFcrClearTx = 0x04;

inline constexpr std::uint8_t kLcrDlab = 0x80;

inline constexpr std::uint8_t kMcrDtr = 0x01;
inline constexpr std::uint8_t kMcrRts = 0x02;
inline constexpr std::uint8_t kMcrOut1 = 0x04;
inline constexpr std::uint8_t kMcrOut2 = 0x08;
inline constexpr std::uint8_t kMcrLoop = 0x10;
inline constexpr std::uint8_t kMcrMask = 0x1f;  // bits a 16550A implements

inline constexpr std::uint8_t kLsrDataReady = 0x01;
inline constexpr std::uint8_t kLsrOverrun = 0x02;
inline constexpr std::uint8_t kLsrThrEmpty = 0x20;
inline constexpr std::uint8_t kLsrIdle = 0x40;  // TEMT: transmitter empty

inline constexpr std::uint8_t kMsrCts = 0x10;
inline constexpr std::uint8_t kMsrDsr = 0x20;
inline constexpr std::uint8_t kMsrRi = 0x40;
inline constexpr std::uint8_t kMsrDcd = 0x80;

// Reset values (as vm-superio: 9600 baud, 8N1, OUT2 set, modem lines up).
inline constexpr std::uint8_t kDefaultDll = 0x0c;
inline constexpr std::uint8_t kDefaultDlm = 0x00;
inline constexpr std::uint8_t kDefaultLcr = 0x03;
inline constexpr std::uint8_t kDefaultMcr = kMcrOut2;
inline constexpr std::uint8_t kDefaultMsr = kMsrDcd | kMsrDsr | kMsrCts;
}  // namespace uart

// Everything a 16550A holds that the guest can observe, as plain data: a
// Serial rebuilt from it answers every register access as the one it came
// from. IIR, LSR and MSR are not stored: they follow from these fields (the
// pending sources, the FIFO fill and overrun latch, MCR in loopback).
struct SerialState {
  static constexpr std::uint32_t kVersion = 1;

  std::uint8_t dll = uart::kDefaultDll;
  std::uint8_t dlm = uart::kDefaultDlm;
  std::uint8_t ier = 0;  // only kIerMask bits
  std::uint8_t lcr = uart::kDefaultLcr;
  std::uint8_t mcr = uart::kDefaultMcr;  // only kMcrMask bits
  std::uint8_t scr = 0;
  bool fifo_enabled = false;  // FCR bit 0: IIR reports 0xc0
  bool thre_pending = false;  // THRE interrupt latched, not yet acknowledged
  bool overrun = false;       // LSR OE, not yet read
  // The receive FIFO, oldest byte first; at most uart::kFifoSize bytes.
  std::vector<std::uint8_t> rx_fifo;

  bool operator==(const SerialState&) const = default;
};

// Register semantics worth knowing (see serial.cpp for the rest):
// - Accesses wider than one byte use data[0] as the register; the other
//   bytes of a read are filled with 0 and those of a write are ignored.
// - The interrupt output is computed from the state (RLS > RDA > THRE, as
//   IIR reports them) and an edge is sent on the IrqLine whenever it goes
//   from "nothing pending" to "something pending" within one access. The
//   IrqLine is triggered with the lock held.
// - The THR never fills: each byte goes to the sink at once, so LSR THRE and
//   TEMT are always set, and the THRE interrupt re-arms after every THR write
//   and whenever IER's THRE bit goes from 0 to 1 (as QEMU and real 16550As
//   do; Linux's THRE probe relies on it).
// - Loopback (MCR bit 4): THR bytes go to the receive FIFO instead of the
//   sink, MSR mirrors MCR (DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD) and host
//   input is not accepted (input_space() is 0), as the receiver is
//   disconnected from the line.
// - The receive FIFO holds 64 bytes whether or not FCR enables FIFOs; a
//   byte looped back into a full FIFO is dropped and sets LSR OE.
// - No modem-status interrupts are raised (MSR delta bits read 0).
class Serial : public BusDevice {
 public:
  // Either pointer may be null: no interrupts, or output discarded.
  Serial(std::shared_ptr<IrqLine> irq, std::shared_ptr<SerialOutput> out);

  void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
  void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

  // Queues host input for the guest: takes up to input_space() bytes and
  // returns how many it took (0 when the FIFO is full or in loopback). Raises
  // the RDA interrupt if the guest enabled it. An error means the IrqLine
  // failed; the bytes were queued all the same (see input_space()).
  Expected<std::size_t> enqueue_input(std::span<const std::uint8_t> bytes);
  // Free space in the receive FIFO (0 in loopback mode).
  std::size_t input_space() const;

  // `callback` runs (on the vCPU thread, without the lock held, so it may
  // call enqueue_input) each time the guest empties the receive FIFO: the
  // host input thread's cue to send more.
  void set_input_drained_callback(std::function<void()> callback);

  using State = SerialState;
  // The register state now. Call while no vCPU can access the device (the
  // VM is paused) so that the state is one a guest access left behind.
  State save() const;
  // Replaces the register state with `state`, which may come from an
  // untrusted snapshot: a FIFO longer than 64 bytes or bits a 16550A does
  // not implement are refused (Errc::kInvalidArgument) and nothing changes.
  // No interrupt is sent: an edge pending at save time was already
  // delivered to the interrupt controller, whose state is restored apart.
  Expected<void> restore(const State& state);

 private:
  std::uint8_t read_register(std::uint64_t offset, bool* drained);
  void write_register(std::uint64_t offset, std::uint8_t value, bool* drained);
  void transmit(std::uint8_t value);
  void push_rx(std::uint8_t value);
  void clear_rx();
  std::uint8_t pending_interrupt() const;  // kIirNone or the highest-priority source
  bool loopback() const { return (mcr_ & uart::kMcrLoop) != 0; }
  bool dlab() const { return (lcr_ & uart::kLcrDlab) != 0; }
  // Sends an edge when the interrupt output rose since `was_pending`.
  Expected<void> update_irq(bool was_pending);

  std::shared_ptr<IrqLine> irq_;
  std::shared_ptr<SerialOutput> out_;

  mutable std::mutex mutex_;
  std::function<void()> input_drained_;
  std::uint8_t dll_ = uart::kDefaultDll;
  std::uint8_t dlm_ = uart::kDefaultDlm;
  std::uint8_t ier_ = 0;
  std::uint8_t lcr_ = uart::kDefaultLcr;
  std::uint8_t mcr_ = uart::kDefaultMcr;
  std::uint8_t scr_ = 0;
  bool fifo_enabled_ = false;
  bool thre_pending_ = false;  // THRE interrupt latched; cleared by IIR read or THR write
  bool overrun_ = false;       // LSR OE; cleared by reading LSR
  std::array<std::uint8_t, uart::kFifoSize> rx_{};
  std::size_t rx_head_ = 0;
  std::size_t rx_len_ = 0;
  log::RateLimit irq_error_log_;
};

}  // namespace hvz::devices
