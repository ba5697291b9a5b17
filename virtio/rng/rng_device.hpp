// RngDevice: the virtio entropy device (virtio 1.2 §5.4) — one request
// queue whose device-writable buffers are filled from the host's
// getrandom(2), at most kMaxRequestBytes per chain, optionally slowed by a
// RateLimiter (bytes, and one operation per chain).
//
// A chain with a driver-readable descriptor (the spec forbids them here) or
// without writable bytes is returned unused (length 0), as Firecracker
// does; the queue keeps working. A malformed ring (bad index, loop,
// descriptor outside RAM) sets DEVICE_NEEDS_RESET like the other devices.
// A failing host source (host_rng_fails) also returns the chain with
// length 0.
//
// Threading: queue work runs in EventLoop callbacks (queue notify fd, and
// the ThrottleTimer's fd while the limiter refuses a request), never on a
// vCPU; the DeviceLifecycle's mutex serialises them against activate() and
// reset() (vCPU threads). While throttled, notifications only drain their
// eventfd: the timer resumes the queue when the limiter allows.
//
// Metrics group "entropy": entropy_event_count (queue notifications),
// entropy_bytes (bytes given to the guest), host_rng_fails,
// entropy_rate_limiter_throttled (requests refused by the limiter).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "virtio/config_space.hpp"
#include "virtio/device_lifecycle.hpp"
#include "virtio/rate_limiter.hpp"
#include "virtio/virtio_device.hpp"
#include "vmm/core/event_registration.hpp"
#include "vmm/core/log.hpp"
#include "vmm/core/metrics.hpp"

namespace hvz::virtio::rng {

inline constexpr std::uint16_t kQueueSize = 256;
// Bytes given per request at most (the Linux driver asks for at most a
// page or so; a huge guest buffer does not make the host read megabytes).
inline constexpr std::size_t kMaxRequestBytes = 64 * 1024;

// The device's own state as data (snapshots); its queue is in the
// transport's state. Rate-limiter buckets are configuration and start full.
struct RngDeviceState {
  static constexpr std::uint32_t kVersion = 1;
  std::uint32_t version = kVersion;
  std::uint64_t acked_features = 0;
  bool activated = false;
  bool operator==(const RngDeviceState&) const = default;
};

class RngDevice : public VirtioDevice {
 public:
  // getrandom(2)-like: fills up to `len` bytes at `buf`, returns how many,
  // or -1 with errno set (EINTR is retried).
  using Source = std::function<ssize_t(void* buf, std::size_t len)>;

  // Without limits the device is unlimited. `source` defaults to
  // getrandom(buf, len, 0). `metrics` (the creator's "entropy" group)
  // receives the counters and must outlive the device.
  explicit RngDevice(metrics::Group& metrics,
                     std::optional<TokenBucketParams> bandwidth = std::nullopt,
                     std::optional<TokenBucketParams> ops = std::nullopt, Source source = {});
  ~RngDevice() override;
  RngDevice(const RngDevice&) = delete;
  RngDevice& operator=(const RngDevice&) = delete;

  std::uint32_t device_type() const override { return kDeviceTypeRng; }
  std::uint64_t features() const override { return kFeatures; }
  void ack_features(std::uint64_t features) override;
  std::vector<std::uint16_t> queue_max_sizes() const override { return {kQueueSize}; }
  // No configuration space.
  void read_config(std::uint64_t offset, std::span<std::uint8_t> data) const override;
  void write_config(std::uint64_t, std::span<const std::uint8_t>) override {}
  Expected<void> activate(const GuestMemory& mem, std::vector<ActiveQueue> queues,
                          std::shared_ptr<Interrupt> interrupt, EventLoop& loop) override;
  // Unregisters the fds and forgets the queue. Also run by the destructor,
  // so the EventLoop must outlive an active device.
  void reset() override;

  // Replaces the limits (buckets start full); any thread. A throttled queue
  // is looked at again at once.
  void update_rate_limiter(std::optional<TokenBucketParams> bandwidth,
                           std::optional<TokenBucketParams> ops);
  // Whether a request waits for the rate limiter.
  bool throttled() const;

  // Whole state; take it while inactive or with the event loop parked.
  RngDeviceState save() const;
  // Takes the negotiated features from `state` (untrusted) into an
  // inactive device; the transport's restore then activates it if it was.
  Expected<void> restore(const RngDeviceState& state);

  static constexpr std::uint64_t kFeatures =
      kFeatureVersion1 | kFeatureEventIdx | kFeatureIndirectDesc;

 private:
  // What exists between activate() and reset().
  struct Active {
    const GuestMemory* mem = nullptr;
    Queue* queue = nullptr;  // null: the driver left it unready
    int notify_fd = -1;
    std::shared_ptr<Interrupt> interrupt;
    bool broken = false;
    bool throttled = false;
    EventRegistration notify;
    EventRegistration timer;
  };

  // Callbacks, on the loop thread with the lifecycle's mutex held.
  void on_notify(Active& a);
  void on_timer(Active& a);

  void process_queue(Active& a);
  Expected<std::optional<DescriptorChain>> pop(Active& a);
  // Fills up to `len` writable bytes of `chain`; the count filled, 0 when
  // the host source failed.
  std::uint32_t fill(Active& a, const DescriptorChain& chain, std::size_t len);
  void mark_broken(Active& a, const char* what, const Error& err);

  Source source_;
  RateLimiter limiter_;
  // Created once by the constructor (immutable after, so update_rate_limiter
  // may use it from any thread); an error is reported by activate().
  Expected<ThrottleTimer> timer_;
  std::uint64_t acked_ = 0;  // under life_.lock()

  metrics::Counter& m_event_count_;
  metrics::Counter& m_bytes_;
  metrics::Counter& m_host_fails_;
  metrics::Counter& m_throttled_;
  log::RateLimit log_;
  // Survives resets: one line per activation would let a guest flood the log.
  log::RateLimit broken_log_{4};
  // Last: destroyed first, while what the callbacks use still exists.
  DeviceLifecycle<Active> life_;
};

}  // namespace hvz::virtio::rng
