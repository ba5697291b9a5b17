// DeviceLifecycle: the inactive/active split every event-loop virtio
// device shares. The device keeps its configuration (features, config
// space, limits) itself; everything that exists only between activate() and
// reset() — guest memory, queues, interrupt, EventRegistrations, per-run
// flags — lives in one `Active` object that start() installs and stop()
// drops.
//
// Loop callbacks made by callback() hold the lifecycle's shared core, never
// the device: they run with its mutex held and only while the activation
// they were made for is current, so a callback racing with reset() or the
// destructor touches nothing. stop() first raises `stopping` (a running
// bounded batch ends after its current item), then detaches the Active
// object under the mutex and destroys it outside: its EventRegistrations
// remove their fds, and EventLoop::remove() waits out a running callback,
// which may itself be waiting for the mutex.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>

#include "vmm/core/error.hpp"
#include "vmm/core/event_loop.hpp"

namespace hvz::virtio {

template <typename Active>
class DeviceLifecycle {
 public:
  DeviceLifecycle() = default;
  ~DeviceLifecycle() { stop(); }
  DeviceLifecycle(const DeviceLifecycle&) = delete;
  DeviceLifecycle& operator=(const DeviceLifecycle&) = delete;

  // The mutex callbacks run under; hold it to read or change device state
  // from another thread (vCPU, API).
  std::unique_lock<std::mutex> lock() const { return std::unique_lock(core_->mu); }
  // The active state, or null; with lock() held (or from a callback).
  Active* active() const { return core_->current; }
  // Raised by stop() before it takes the mutex: a batch loop checks it
  // between items and returns early.
  bool stopping() const { return core_->stopping.load(std::memory_order_relaxed); }

  // Installs `active` (call with lock() held); kBusy when already active.
  // Callbacks made for it by callback() run from now on.
  Expected<void> start(std::unique_ptr<Active> active) {
    if (core_->current != nullptr)
      return make_error(Errc::kBusy, "virtio activate: already active");
    owned_ = std::move(active);
    core_->current = owned_.get();
    core_->stopping.store(false);
    ++core_->generation;
    return {};
  }

  // Drops the active state (no-op when inactive). Call WITHOUT lock() held.
  // Returns once no callback of this activation runs or will run.
  void stop() {
    core_->stopping.store(true);
    std::unique_ptr<Active> dropped;
    {
      std::lock_guard lock(core_->mu);
      core_->current = nullptr;
      ++core_->generation;
      dropped = std::move(owned_);
    }
    dropped.reset();  // registrations removed here, outside the mutex
  }

  // A loop callback running `fn(Active&, events)` with the mutex held,
  // only while the activation current now (at the call) is still current.
  // Call with lock() held, after start().
  template <typename Fn>
  EventLoop::Callback callback(Fn fn) const {
    return
        [core = core_, generation = core_->generation, fn = std::move(fn)](std::uint32_t events) {
          if (core->stopping.load(std::memory_order_relaxed)) return;
          std::lock_guard lock(core->mu);
          if (core->current == nullptr || core->generation != generation) return;
          fn(*core->current, events);
        };
  }

 private:
  struct Core {
    std::mutex mu;
    Active* current = nullptr;
    std::uint64_t generation = 0;
    std::atomic<bool> stopping{false};
  };
  const std::shared_ptr<Core> core_ = std::make_shared<Core>();
  std::unique_ptr<Active> owned_;
};

}  // namespace hvz::virtio
