// EventLoop: the interface devices use to wait for file descriptors (queue
// notifications, TAP readiness, I/O completions) without knowing how the
// VMM runs its loop. Callbacks run on the loop's thread, never on a vCPU.
#pragma once

#include <cstdint>
#include <functional>

#include "vmm/core/error.hpp"

namespace hvz {

class EventLoop {
 public:
  enum Events : std::uint32_t { kReadable = 1, kWritable = 2 };
  using Callback = std::function<void(std::uint32_t events)>;
  virtual ~EventLoop() = default;
  // Calls `callback` whenever `fd` is ready for `events` (level-triggered).
  virtual Expected<void> add(int fd, std::uint32_t events, Callback callback) = 0;
  virtual Expected<void> modify(int fd, std::uint32_t events) = 0;
  virtual Expected<void> remove(int fd) = 0;
};

}  // namespace hvz
