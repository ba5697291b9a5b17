// EventFd: an owned eventfd(2), used as irqfd behind IrqLine and to wake
// threads.
#pragma once

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>

#include "vmm/core/error.hpp"
#include "vmm/core/irq.hpp"
#include "vmm/core/unique_fd.hpp"

namespace hvz {

class EventFd {
 public:
  static Expected<EventFd> create(int flags = EFD_CLOEXEC | EFD_NONBLOCK) {
    UniqueFd fd(::eventfd(0, flags));
    if (!fd) return sys_error("eventfd");
    return EventFd(std::move(fd));
  }
  int fd() const { return fd_.get(); }
  Expected<void> signal(std::uint64_t n = 1) const {
    if (::write(fd_.get(), &n, sizeof n) != sizeof n && errno != EAGAIN) {
      return sys_error("eventfd write");
    }
    return {};
  }
  // Returns the counter and resets it (0 when nothing was signalled).
  std::uint64_t consume() const {
    std::uint64_t n = 0;
    if (::read(fd_.get(), &n, sizeof n) != sizeof n) return 0;
    return n;
  }

 private:
  explicit EventFd(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

// An IrqLine backed by an eventfd registered as a KVM irqfd.
class EventFdIrqLine : public IrqLine {
 public:
  explicit EventFdIrqLine(EventFd fd) : fd_(std::move(fd)) {}
  Expected<void> trigger() override { return fd_.signal(); }
  int fd() const { return fd_.fd(); }

 private:
  EventFd fd_;
};

}  // namespace hvz
