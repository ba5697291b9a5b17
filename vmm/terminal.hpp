// The host side of the serial console: stdout as the UART's sink (every byte
// written, blocking if need be, never dropped), stdin pumped into the UART's
// receive FIFO on a thread, and the controlling terminal in raw mode while
// the VM runs, restored on every exit path (normal return, fatal signal).
#pragma once

#include <atomic>
#include <memory>
#include <thread>

#include "devices/serial.hpp"
#include "vmm/core/event_fd.hpp"

namespace hvz::vmm {

// Writes everything it is given to `fd`, waiting out EAGAIN.
class FdOutput : public devices::SerialOutput {
 public:
  explicit FdOutput(int fd) : fd_(fd) {}
  void write(std::span<const std::uint8_t> bytes) override;

 private:
  int fd_;
};

// Puts `fd` (a tty) in raw mode until destroyed; no-op for a non-tty.
class RawTerminal {
 public:
  explicit RawTerminal(int fd);
  ~RawTerminal();
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;
};

// Feeds bytes read from `fd` into the serial's FIFO as space allows.
class InputPump {
 public:
  static Expected<std::unique_ptr<InputPump>> start(int fd,
                                                    std::shared_ptr<devices::Serial> serial);
  ~InputPump();

 private:
  InputPump(int fd, std::shared_ptr<devices::Serial> serial, EventFd stop)
      : fd_(fd), serial_(std::move(serial)), stop_(std::move(stop)) {}
  void run();
  int fd_;
  std::shared_ptr<devices::Serial> serial_;
  EventFd stop_;
  std::thread thread_;
};

}  // namespace hvz::vmm
