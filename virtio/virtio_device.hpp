// VirtioDevice: what a transport (virtio-mmio now, PCI later) needs from a
// device, and Interrupt: how a device tells the driver something happened.
// Transport register accesses arrive on vCPU threads; a device does its
// queue work on the EventLoop's thread (or its own I/O worker), never on a
// vCPU thread.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "virtio/queue.hpp"
#include "vmm/core/error.hpp"
#include "vmm/core/event_loop.hpp"
#include "vmm/core/guest_memory.hpp"
#include "vmm/core/log.hpp"

namespace hvz::virtio {

inline constexpr std::uint32_t kDeviceTypeNet = 1;
inline constexpr std::uint32_t kDeviceTypeBlock = 2;
inline constexpr std::uint32_t kDeviceTypeConsole = 3;
inline constexpr std::uint32_t kDeviceTypeRng = 4;

// Device status bits (virtio 1.2 §2.1).
inline constexpr std::uint32_t kStatusAcknowledge = 1;
inline constexpr std::uint32_t kStatusDriver = 2;
inline constexpr std::uint32_t kStatusDriverOk = 4;
inline constexpr std::uint32_t kStatusFeaturesOk = 8;
inline constexpr std::uint32_t kStatusNeedsReset = 64;
inline constexpr std::uint32_t kStatusFailed = 128;

class Interrupt {
 public:
  virtual ~Interrupt() = default;
  // Sets interrupt status bit 0 (used buffer) and raises the IRQ.
  virtual Expected<void> signal_used_queue() = 0;
  // Sets interrupt status bit 1 (configuration change) and raises the IRQ.
  virtual Expected<void> signal_config_change() = 0;
  // The device hit a driver error it cannot recover from: the transport
  // sets DEVICE_NEEDS_RESET in the status and signals a config change.
  virtual void set_needs_reset() = 0;
};

// One queue handed to the device at activation: the validated queue (owned
// by the transport, used only by the device until reset) and the eventfd
// the transport signals when the driver notifies that queue.
struct ActiveQueue {
  Queue* queue;
  int notify_fd;
};

// A device met a driver error it cannot recover from: it stops its queues
// (the caller's part), and this logs why and asks the driver for a reset
// (DEVICE_NEEDS_RESET). `limit` must outlive activations: a guest cycling
// reset -> bad ring -> DRIVER_OK would otherwise write a line per cycle.
inline void report_needs_reset(log::RateLimit& limit, const char* device, const char* what,
                               const Error& err, Interrupt& interrupt) {
  if (limit.allow()) {
    LOG_ERROR("%s: %s: %s; stopped until the driver resets the device", device, what,
              err.message().c_str());
  }
  interrupt.set_needs_reset();
}

class VirtioDevice {
 public:
  virtual ~VirtioDevice() = default;
  virtual std::uint32_t device_type() const = 0;
  // Offered feature bits; must include kFeatureVersion1.
  virtual std::uint64_t features() const = 0;
  // The subset the driver accepted (already checked against features()).
  virtual void ack_features(std::uint64_t features) = 0;
  // Maximum size of each queue; its length is the number of queues.
  virtual std::vector<std::uint16_t> queue_max_sizes() const = 0;
  // Device-specific configuration space; out-of-range bytes read as 0 and
  // writes to them are ignored.
  virtual void read_config(std::uint64_t offset, std::span<std::uint8_t> data) const = 0;
  virtual void write_config(std::uint64_t offset, std::span<const std::uint8_t> data) = 0;
  // The driver set DRIVER_OK. `queues` holds every queue in index order;
  // the ready ones are validated, the others have ready() == false.
  virtual Expected<void> activate(const GuestMemory& mem, std::vector<ActiveQueue> queues,
                                  std::shared_ptr<Interrupt> interrupt, EventLoop& loop) = 0;
  // The driver reset the device: stop all queue work and forget the queues
  // before returning (the transport reuses them afterwards).
  virtual void reset() = 0;
  // Quiesce (VM pause, before a snapshot): once quiesce() returns, no
  // thread of the device reads or writes guest memory or device state until
  // unquiesce(); requests already handed to the kernel are completed and
  // their used entries written first, within a bounded time whatever the
  // guest does. A request popped but not started goes back to the ring, so
  // the queues' state is all there is. Devices that work only in EventLoop
  // callbacks need nothing: the VMM parks its loop. Called by the VMM
  // thread with the vCPUs parked; both are idempotent.
  virtual void quiesce() {}
  virtual void unquiesce() {}
};

}  // namespace hvz::virtio
