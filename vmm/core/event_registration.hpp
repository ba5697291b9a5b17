// EventRegistration: an fd's place in an EventLoop, owned like any other
// resource — created by add(), removed by the destructor (or reset()). A
// device keeps one per fd in its active state, so dropping that state
// unregisters everything, in reverse order of registration, and an early
// error return cannot leak a registration. EventLoop::remove() waits out a
// running callback of that fd, so never destroy a registration while
// holding a lock the callback takes.
#pragma once

#include <cstdint>
#include <utility>

#include "vmm/core/error.hpp"
#include "vmm/core/event_loop.hpp"
#include "vmm/core/log.hpp"

namespace hvz {

class EventRegistration {
 public:
  EventRegistration() = default;
  static Expected<EventRegistration> add(EventLoop& loop, int fd, std::uint32_t events,
                                         EventLoop::Callback callback) {
    if (auto r = loop.add(fd, events, std::move(callback)); !r) return tl::unexpected(r.error());
    return EventRegistration(loop, fd);
  }
  ~EventRegistration() { reset(); }
  EventRegistration(EventRegistration&& other) noexcept
      : loop_(std::exchange(other.loop_, nullptr)), fd_(std::exchange(other.fd_, -1)) {}
  EventRegistration& operator=(EventRegistration&& other) noexcept {
    if (this != &other) {
      reset();
      loop_ = std::exchange(other.loop_, nullptr);
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  EventRegistration(const EventRegistration&) = delete;
  EventRegistration& operator=(const EventRegistration&) = delete;

  bool registered() const { return loop_ != nullptr; }
  int fd() const { return fd_; }
  Expected<void> modify(std::uint32_t events) const {
    if (loop_ == nullptr) return make_error(Errc::kInvalidArgument, "event loop: not registered");
    return loop_->modify(fd_, events);
  }
  // Unregisters now (a failure is logged: there is nothing else to do).
  void reset() {
    if (loop_ == nullptr) return;
    EventLoop* loop = std::exchange(loop_, nullptr);
    const int fd = std::exchange(fd_, -1);
    if (auto r = loop->remove(fd); !r) {
      LOG_WARN("event loop: removing fd %d: %s", fd, r.error().message().c_str());
    }
  }

 private:
  EventRegistration(EventLoop& loop, int fd) : loop_(&loop), fd_(fd) {}
  EventLoop* loop_ = nullptr;
  int fd_ = -1;
};

}  // namespace hvz
