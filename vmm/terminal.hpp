// The host side of the serial console: the UART's sink (a non-blocking pipe
// that an OutputRelay carries to stdout or a file), stdin pumped into the UART's
// receive FIFO on a thread, and the controlling terminal in raw mode while
// the VM runs, restored on every exit path (normal return, fatal signal).
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include "devices/serial.hpp"
#include "vmm/core/event_fd.hpp"
#include "vmm/core/metrics.hpp"

namespace hvz::vmm {

// The UART's sink: writes to `fd` (an OutputRelay's non-blocking pipe)
// and never waits, since a vCPU holding the UART's lock is the caller:
// bytes that do not fit are dropped and counted in the metrics counter
// uart.missed_write_count.
class FdOutput : public devices::SerialOutput {
 public:
  explicit FdOutput(int fd);
  void write(std::span<const std::uint8_t> bytes) override;

 private:
  int fd_;
  metrics::Counter& missed_;
  metrics::Counter& written_;
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
  // pause() returns once the pump will not touch the UART (nor read `fd`)
  // until resume(): part of the VM's quiesce contract.
  void pause();
  void resume();

 private:
  InputPump(int fd, std::shared_ptr<devices::Serial> serial, EventFd stop, EventFd wake)
      : fd_(fd), serial_(std::move(serial)), stop_(std::move(stop)), wake_(std::move(wake)) {}
  void run();
  // Blocks while paused; false once the pump is stopping.
  bool wait_unpaused();
  int fd_;
  std::shared_ptr<devices::Serial> serial_;
  EventFd stop_;
  EventFd wake_;      // signalled by pause(): a thread in poll() comes to park
  std::mutex mutex_;  // held while bytes go into the UART
  std::condition_variable cv_;
  bool paused_ = false;    // under mutex_
  bool stopping_ = false;  // under mutex_
  std::thread thread_;
};

}  // namespace hvz::vmm
