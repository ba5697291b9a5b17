// VmResources: the one VmConfig of an hvz process (Firecracker's
// VmResources) — what the command line or config file gave, what the API
// has changed before boot, and the post-boot updates. It lives on the VMM
// side (the composition root owns it; VmmLoop reads it) and is guarded by
// its own mutex rather than being changed through actions: the API thread
// is its only writer (the Controller checks a request, then commits with
// update()), other threads read it under the lock (snapshot(), read()), and
// the writer may read its own writes without the lock (view()). No lock is
// held while an action is posted, so the VMM thread may read it while
// executing one.
#pragma once

#include <mutex>
#include <utility>

#include "vmm/config/vm_config.hpp"

namespace hvz::vmm {

class VmResources {
 public:
  explicit VmResources(config::VmConfig initial = {}) : config_(std::move(initial)) {}
  VmResources(const VmResources&) = delete;
  VmResources& operator=(const VmResources&) = delete;

  // A copy, under the lock.
  config::VmConfig snapshot() const {
    std::lock_guard lock(mutex_);
    return config_;
  }
  // f(const VmConfig&) under the lock; returns what f returns.
  template <class F>
  decltype(auto) read(F&& f) const {
    std::lock_guard lock(mutex_);
    return std::forward<F>(f)(static_cast<const config::VmConfig&>(config_));
  }
  // The writer's thread only: f(VmConfig&) under the lock.
  template <class F>
  decltype(auto) update(F&& f) {
    std::lock_guard lock(mutex_);
    return std::forward<F>(f)(config_);
  }
  // The writer's thread only (no other thread changes it): the config
  // without the lock, valid until the writer's next update().
  const config::VmConfig& view() const { return config_; }

 private:
  mutable std::mutex mutex_;
  config::VmConfig config_;
};

}  // namespace hvz::vmm
