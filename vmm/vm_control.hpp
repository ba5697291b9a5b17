// VmControl: how a running VM is asked to stop and why. vCPU threads and
// devices call request_stop(); the VMM thread waits on event_fd(). The
// first request wins: its reason decides hvz's exit status. Also the
// outcome of a run (RunOutcome).
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include "vmm/core/event_fd.hpp"

namespace hvz::vmm {

enum class StopReason {
  kPowerOff,    // ACPI S5 from the guest
  kReset,       // guest reboot (i8042 or ACPI reset register)
  kGuestCrash,  // triple fault (KVM_EXIT_SHUTDOWN) or a failed vCPU entry
  kError,       // hvz itself failed
  kSignal,      // a stop signal (SIGTERM, SIGINT, SIGHUP) reached hvz
};

// How a run ended; `signal` is the stop signal's number for kSignal.
struct RunOutcome {
  StopReason reason;
  std::string detail;
  int signal = 0;
};

class VmControl {
 public:
  static Expected<std::unique_ptr<VmControl>> create() {
    auto fd = EventFd::create();
    if (!fd) return tl::unexpected(fd.error());
    return std::unique_ptr<VmControl>(new VmControl(std::move(*fd)));
  }

  void request_stop(StopReason reason, std::string detail) {
    {
      std::lock_guard lock(mutex_);
      if (stopping_.load()) return;
      reason_ = reason;
      detail_ = std::move(detail);
      stopping_.store(true);
    }
    (void)event_.signal();
  }
  bool stopping() const { return stopping_.load(std::memory_order_acquire); }
  StopReason reason() const {
    std::lock_guard lock(mutex_);
    return reason_;
  }
  std::string detail() const {
    std::lock_guard lock(mutex_);
    return detail_;
  }
  int event_fd() const { return event_.fd(); }

 private:
  explicit VmControl(EventFd event) : event_(std::move(event)) {}
  EventFd event_;
  mutable std::mutex mutex_;
  std::atomic<bool> stopping_{false};
  StopReason reason_ = StopReason::kError;
  std::string detail_;
};

}  // namespace hvz::vmm
