// MmioTransport: the virtio-mmio transport, version 2 (modern only; virtio
// 1.2 §4.2.2). It owns the register file, the device status state machine,
// feature negotiation, the queues' layout registers, one notify eventfd per
// queue and the interrupt status, and wraps any VirtioDevice.
//
// Register accesses arrive on vCPU threads (any of them, concurrently) while
// an activated device signals interrupts from its own thread: register state
// sits behind a mutex, interrupt state in atomics (see MmioInterrupt in the
// .cpp). Every register value comes from a guest assumed malicious.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "virtio/queue.hpp"
#include "virtio/virtio_device.hpp"
#include "vmm/core/bus.hpp"
#include "vmm/core/error.hpp"
#include "vmm/core/event_fd.hpp"
#include "vmm/core/event_loop.hpp"
#include "vmm/core/guest_memory.hpp"
#include "vmm/core/irq.hpp"
#include "vmm/core/log.hpp"

namespace hvz::virtio {

// Size of one device's MMIO window (registers + config space).
inline constexpr std::uint64_t kMmioSize = 0x1000;
// The VMM registers each queue's notify fd as a KVM ioeventfd at this offset
// (4 bytes, datamatch = queue index).
inline constexpr std::uint64_t kQueueNotifyOffset = 0x050;

inline constexpr std::uint32_t kMmioMagicValue = 0x74726976;  // "virt"
inline constexpr std::uint32_t kMmioVersion = 2;
// Our own vendor id: "vz" in the low bytes. The spec leaves VendorID free;
// Linux's virtio-mmio driver only passes it to drivers as id.vendor and no
// in-tree driver matches on it.
inline constexpr std::uint32_t kMmioVendorId = 0x00007a76;

// InterruptStatus / InterruptACK bits.
inline constexpr std::uint32_t kInterruptUsedBuffer = 1;
inline constexpr std::uint32_t kInterruptConfigChange = 2;

// Register offsets (virtio 1.2 §4.2.2, table "MMIO Device Register Layout").
namespace mmio_reg {
inline constexpr std::uint64_t kMagicValue = 0x000;
inline constexpr std::uint64_t kVersion = 0x004;
inline constexpr std::uint64_t kDeviceId = 0x008;
inline constexpr std::uint64_t kVendorId = 0x00c;
inline constexpr std::uint64_t kDeviceFeatures = 0x010;
inline constexpr std::uint64_t kDeviceFeaturesSel = 0x014;
inline constexpr std::uint64_t kDriverFeatures = 0x020;
inline constexpr std::uint64_t kDriverFeaturesSel = 0x024;
inline constexpr std::uint64_t kQueueSel = 0x030;
inline constexpr std::uint64_t kQueueNumMax = 0x034;
inline constexpr std::uint64_t kQueueNum = 0x038;
inline constexpr std::uint64_t kQueueReady = 0x044;
inline constexpr std::uint64_t kQueueNotify = kQueueNotifyOffset;
inline constexpr std::uint64_t kInterruptStatus = 0x060;
inline constexpr std::uint64_t kInterruptAck = 0x064;
inline constexpr std::uint64_t kStatus = 0x070;
inline constexpr std::uint64_t kQueueDescLow = 0x080;
inline constexpr std::uint64_t kQueueDescHigh = 0x084;
inline constexpr std::uint64_t kQueueDriverLow = 0x090;
inline constexpr std::uint64_t kQueueDriverHigh = 0x094;
inline constexpr std::uint64_t kQueueDeviceLow = 0x0a0;
inline constexpr std::uint64_t kQueueDeviceHigh = 0x0a4;
inline constexpr std::uint64_t kShmSel = 0x0ac;
inline constexpr std::uint64_t kShmLenLow = 0x0b0;
inline constexpr std::uint64_t kShmLenHigh = 0x0b4;
inline constexpr std::uint64_t kShmBaseLow = 0x0b8;
inline constexpr std::uint64_t kShmBaseHigh = 0x0bc;
inline constexpr std::uint64_t kQueueReset = 0x0c0;
inline constexpr std::uint64_t kConfigGeneration = 0x0fc;
inline constexpr std::uint64_t kConfig = 0x100;
}  // namespace mmio_reg

class MmioInterrupt;

// The transport's whole state as data (snapshots): registers, negotiation,
// interrupt state and every queue. The device's own state is separate (see
// each device's save()); the transport's restore re-activates the device.
struct MmioTransportState {
  static constexpr std::uint32_t kVersion = 1;
  std::uint32_t version = kVersion;
  std::uint32_t device_type = 0;
  std::uint32_t status = 0;  // without NEEDS_RESET (see needs_reset)
  std::uint32_t device_features_sel = 0;
  std::uint32_t driver_features_sel = 0;
  std::uint64_t driver_features = 0;
  bool driver_features_beyond_64 = false;
  std::uint32_t queue_sel = 0;
  std::uint32_t interrupt_status = 0;
  bool needs_reset = false;
  std::uint32_t config_generation = 0;
  bool activated = false;  // the device runs on the queues
  std::vector<QueueState> queues;
  bool operator==(const MmioTransportState&) const = default;
};

class MmioTransport : public BusDevice {
  struct PrivateTag {};

 public:
  // Creates one Queue per device->queue_max_sizes() entry and one
  // non-blocking eventfd per queue. `mem` and `loop` must outlive the
  // transport. Fails when an eventfd cannot be created or an argument is
  // null.
  static Expected<std::shared_ptr<MmioTransport>> create(std::shared_ptr<VirtioDevice> device,
                                                         const GuestMemory& mem, EventLoop& loop,
                                                         std::shared_ptr<IrqLine> irq);
  // Use create(); public only for std::make_shared.
  MmioTransport(PrivateTag, std::shared_ptr<VirtioDevice> device, const GuestMemory& mem,
                EventLoop& loop, std::shared_ptr<IrqLine> irq, std::vector<EventFd> notify_fds);
  // Resets an activated device first so it stops using our queues and fds
  // (the EventLoop must still exist then, unless shutdown() ran).
  ~MmioTransport() override;
  MmioTransport(const MmioTransport&) = delete;
  MmioTransport& operator=(const MmioTransport&) = delete;

  void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
  void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

  // One fd per queue, index = queue index: register each as an ioeventfd on
  // base + kQueueNotifyOffset, 4 bytes, datamatch = index.
  std::vector<int> queue_notify_fds() const;

  // The Status register as the driver reads it (NEEDS_RESET included).
  std::uint32_t status() const;
  // Whether device->activate() succeeded and no reset happened since.
  bool activated() const;
  // Teardown: resets an activated device (its queue work stops, its
  // workers are joined, its event-loop registrations are removed) and
  // ignores every register access from then on. The VMM calls it once the
  // vCPUs are stopped and before the event loop and guest memory go; the
  // device then holds nothing of theirs.
  void shutdown();
  // VM pause: the device's own threads stop touching guest memory and
  // device state (VirtioDevice::quiesce); the VMM calls it once the vCPUs
  // and the event loop are parked, and unquiesce() before resuming them.
  void quiesce();
  void unquiesce();

  // Whole state; take it with the vCPUs parked and the device quiesced.
  MmioTransportState save() const;
  // Rebuilds the state of a transport nothing has touched yet (status 0)
  // from `state` (untrusted: version, device type, queue count and sizes,
  // status steps, features, queue layout via Queue::validate). The device
  // is restored first by the caller (its inactive part); when the saved
  // transport was activated, the device is activated again on the restored
  // queues. On error the transport is back at its reset state.
  Expected<void> restore(const MmioTransportState& state);
  const std::shared_ptr<VirtioDevice>& device() const { return device_; }

 private:
  std::uint32_t read_register(std::uint64_t offset);
  void write_register(std::uint64_t offset, std::uint32_t value);
  void read_config(std::uint64_t offset, std::span<std::uint8_t> data);
  void write_config(std::uint64_t offset, std::span<const std::uint8_t> data);
  void notify_queue(std::uint32_t index);

  // All below run with mutex_ held.
  std::uint32_t status_locked() const;
  Queue* selected_queue();
  // The queue a layout register write may change, or null (logged).
  Queue* writable_queue(std::uint64_t offset, bool ready_register);
  void write_driver_features(std::uint32_t value);
  void set_status(std::uint32_t value);
  bool features_acceptable() const;
  void activate();
  void reset();
  Expected<void> restore_locked(const MmioTransportState& state);
  void warn_bad_access(const char* what, std::uint64_t offset, std::size_t size);

  const std::shared_ptr<VirtioDevice> device_;
  const GuestMemory& mem_;
  EventLoop& loop_;
  const std::shared_ptr<MmioInterrupt> interrupt_;
  // Immutable after construction: notify_queue() uses them without the lock.
  const std::vector<EventFd> notify_fds_;
  const std::uint64_t device_features_;

  mutable std::mutex mutex_;
  // Never resized after construction: activated devices keep Queue* into it.
  std::vector<Queue> queues_;
  std::uint32_t status_ = 0;
  std::uint32_t device_features_sel_ = 0;
  std::uint32_t driver_features_sel_ = 0;
  std::uint64_t driver_features_ = 0;
  // The driver set a bit in a feature word beyond the two we offer.
  bool driver_features_beyond_64_ = false;
  std::uint32_t queue_sel_ = 0;
  // device->activate() was called (even if it failed): reset() owes the
  // device a reset() so it can drop whatever it set up.
  bool activate_called_ = false;
  bool activated_ = false;
  bool shut_down_ = false;  // shutdown() ran: registers are dead

  log::RateLimit access_log_{4};
  log::RateLimit state_log_{4};
};

}  // namespace hvz::virtio
