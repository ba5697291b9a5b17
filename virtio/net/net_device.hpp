// NetDevice: the virtio-net device (virtio 1.2 §5.1) backed by a Tap —
// feature bits (offloads only when the TAP supports them), the read-only
// config space (MAC, link status), and the RX/TX queues' packet work.
//
// Threading: all packet work runs in EventLoop callbacks (TX notify fd, RX
// notify fd, TAP readable), never on a vCPU. A DeviceLifecycle holds what
// exists only while active (queues, interrupt, registrations, per-run
// flags); its mutex serialises the callbacks against ack_features(),
// activate() and reset() (vCPU threads), and a callback racing with reset()
// or the destructor returns without touching the device. The TAP fd is polled only while RX buffers
// are available: a driver that posts none does not make the loop spin.
//
// Rate limiting: an RX and a TX RateLimiter (bytes including the vnet
// header, and one operation per frame), changeable at run time from any
// thread (the API's PATCH /network-interfaces/{id}). A TX frame the limiter
// refuses stays in the ring; an RX frame stays in the bounce buffer and the
// TAP is not read meanwhile (nothing is dropped for throttling). Each
// direction then sleeps on its ThrottleTimer, registered with the loop,
// until the limiter allows the frame; notifications meanwhile only drain
// their eventfd.
//
// Metrics group "net_<iface_id>": rx_bytes, rx_packets, tx_bytes,
// tx_packets (frames delivered, bytes without the vnet header), rx_dropped,
// tx_dropped, tx_malformed (guest frames refused as malformed),
// rx_rate_limiter_throttled, tx_rate_limiter_throttled (frames refused by a
// limiter, each time).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include <string>

#include "virtio/config_space.hpp"
#include "virtio/device_lifecycle.hpp"
#include "virtio/net/tap.hpp"
#include "virtio/rate_limiter.hpp"
#include "virtio/virtio_device.hpp"
#include "vmm/core/event_registration.hpp"
#include "vmm/core/log.hpp"
#include "vmm/core/metrics.hpp"

namespace hvz::virtio::net {

// Device feature bits (§5.1.3).
inline constexpr std::uint64_t kFeatureCsum = 1ull << 0;
inline constexpr std::uint64_t kFeatureGuestCsum = 1ull << 1;
inline constexpr std::uint64_t kFeatureMac = 1ull << 5;
inline constexpr std::uint64_t kFeatureGuestTso4 = 1ull << 7;
inline constexpr std::uint64_t kFeatureGuestTso6 = 1ull << 8;
inline constexpr std::uint64_t kFeatureHostTso4 = 1ull << 11;
inline constexpr std::uint64_t kFeatureHostTso6 = 1ull << 12;
inline constexpr std::uint64_t kFeatureMrgRxbuf = 1ull << 15;
inline constexpr std::uint64_t kFeatureStatus = 1ull << 16;

inline constexpr std::uint16_t kQueueSize = 256;
inline constexpr std::size_t kRxQueue = 0;
inline constexpr std::size_t kTxQueue = 1;

// Largest frame (without the vnet header) either way: 64 KiB covers a GSO
// super-frame of a maximal IP packet plus its Ethernet header.
inline constexpr std::size_t kMaxFrameSize = 64 * 1024;
inline constexpr std::size_t kMaxPacketSize = kVnetHdrSize + kMaxFrameSize;

// struct virtio_net_config (§5.1.4): mac[6], then status.
inline constexpr std::size_t kConfigMac = 0;
inline constexpr std::size_t kConfigStatus = 6;
inline constexpr std::size_t kConfigSize = 8;
inline constexpr std::uint16_t kStatusLinkUp = 1;

// Offsets inside struct virtio_net_hdr_v1.
inline constexpr std::size_t kHdrFlags = 0;
inline constexpr std::size_t kHdrGsoType = 1;
inline constexpr std::size_t kHdrNumBuffers = 10;
inline constexpr std::uint8_t kHdrFlagNeedsCsum = 1;
inline constexpr std::uint8_t kGsoTypeNone = 0;

using MacAddress = std::array<std::uint8_t, 6>;

// The device's own state as data (snapshots); its queues are in the
// transport's state. A frame read from the TAP but not yet delivered is not
// kept (a lossy link may drop it); rate-limiter buckets start full.
struct NetDeviceState {
  static constexpr std::uint32_t kVersion = 1;
  std::uint32_t version = kVersion;
  std::string iface_id;
  std::optional<MacAddress> mac;
  std::uint64_t acked_features = 0;
  std::array<std::uint8_t, kConfigSize> config{};
  bool activated = false;
  bool operator==(const NetDeviceState&) const = default;
};

class NetDevice : public VirtioDevice {
 public:
  // Counters since construction. Frames and bytes count delivered frames,
  // bytes without the vnet header. Drops count frames not delivered for
  // whatever reason; errors count the reasons that are faults: a malformed
  // or oversized guest frame, a frame from the TAP too big for the limit,
  // a failed TAP read or write.
  struct Metrics {
    std::uint64_t rx_frames = 0;
    std::uint64_t rx_bytes = 0;
    std::uint64_t rx_drops = 0;
    std::uint64_t rx_errors = 0;
    std::uint64_t tx_frames = 0;
    std::uint64_t tx_bytes = 0;
    std::uint64_t tx_drops = 0;
    std::uint64_t tx_errors = 0;
  };

  // Without `mac` the MAC feature is not offered and the guest picks one.
  // `metrics` (the creator's "net_<iface_id>" group) receives the counters
  // and must outlive the device.
  NetDevice(Tap tap, std::optional<MacAddress> mac, std::string iface_id, metrics::Group& metrics,
            RateLimits rx = {}, RateLimits tx = {});
  ~NetDevice() override;
  NetDevice(const NetDevice&) = delete;
  NetDevice& operator=(const NetDevice&) = delete;

  std::uint32_t device_type() const override { return kDeviceTypeNet; }
  std::uint64_t features() const override { return features_; }
  // Records the accepted features and sets the TAP offloads to what the
  // guest can receive (GUEST_CSUM → CSUM, GUEST_TSO4/6 → TSO4/6).
  void ack_features(std::uint64_t features) override;
  std::vector<std::uint16_t> queue_max_sizes() const override { return {kQueueSize, kQueueSize}; }
  void read_config(std::uint64_t offset, std::span<std::uint8_t> data) const override;
  // MAC and status are read-only for a VERSION_1 driver: writes ignored.
  void write_config(std::uint64_t, std::span<const std::uint8_t>) override {}
  Expected<void> activate(const GuestMemory& mem, std::vector<ActiveQueue> queues,
                          std::shared_ptr<Interrupt> interrupt, EventLoop& loop) override;
  // Unregisters every fd from the loop, forgets the queues, drops a frame
  // held for want of RX buffers and clears the TAP offloads. Also run by the
  // destructor, so the EventLoop must outlive an active device.
  void reset() override;

  Metrics metrics() const;
  const Tap& tap() const { return tap_; }
  const std::string& iface_id() const { return iface_id_; }
  // Replace a direction's limits (buckets start full); any thread. A
  // throttled direction is looked at again at once.
  void update_rx_rate_limiter(RateLimits limits);
  void update_tx_rate_limiter(RateLimits limits);
  // Whether a frame waits for the RX / TX limiter.
  bool rx_throttled() const;
  bool tx_throttled() const;
  // Whole state; take it while inactive or with the event loop parked.
  NetDeviceState save() const;
  // Takes the negotiated features (and so the TAP offloads) from `state`
  // (untrusted: version, interface, MAC and features are checked) into an
  // inactive device; the transport's restore then activates it if it was.
  Expected<void> restore(const NetDeviceState& state);
  // Whether the TAP fd is registered with the loop (false while the guest
  // has no RX buffers, or when the device is not active).
  bool tap_polling() const;

 private:
  // What exists between activate() and reset().
  struct Active {
    const GuestMemory* mem = nullptr;
    EventLoop* loop = nullptr;
    Queue* rx = nullptr;  // null: the driver left the queue unready
    Queue* tx = nullptr;
    int rx_notify_fd = -1;
    int tx_notify_fd = -1;
    std::shared_ptr<Interrupt> interrupt;
    bool broken = false;
    bool rx_throttled = false;
    bool tx_throttled = false;
    std::size_t pending_len = 0;  // a frame in rx_buffer_ waits for RX buffers
    EventRegistration rx_notify;
    EventRegistration tx_notify;
    EventRegistration rx_timer;
    EventRegistration tx_timer;
    EventRegistration tap;  // registered while polling the TAP
  };
  // What one RX step ended with.
  enum class Rx {
    kDelivered,
    kDropped,
    kPending,  // a frame waits in rx_buffer_
    kTapEmpty,
    kTapError,
    kNoBuffers,
    kBroken,
    kBudgetSpent,
    kThrottled,  // the RX limiter refused the pending frame
  };

  // Callbacks, run on the loop thread with the lifecycle's mutex held.
  void on_tx_notify(Active& a);
  void on_rx_notify(Active& a);
  void on_tap_readable(Active& a);
  void on_tx_timer(Active& a);
  void on_rx_timer(Active& a);

  EventLoop::Callback make_callback(void (NetDevice::*handler)(Active&));
  void process_tx(Active& a);
  void transmit(Active& a, const DescriptorChain& chain);
  Rx process_rx(Active& a);
  Expected<std::optional<DescriptorChain>> pop_rx(Active& a);
  Rx receive_direct(Active& a, const DescriptorChain& chain);
  Rx read_into_buffer(Active& a);
  Rx deliver_buffered(Active& a);
  void set_tap_polling(Active& a, bool on);
  void signal_used(Active& a, Queue& queue);
  void mark_broken(Active& a, const char* what, const Error& err);
  void after_rx(Active& a, Rx out);
  // Drops the active state (every registration) and disarms the timers.
  void reset_active();
  // Arms `timer` for when `limiter` allows (bytes, 1 op); false if it
  // could not (then nothing waits for the limiter).
  bool throttle(const RateLimiter& limiter, const ThrottleTimer& timer, std::uint64_t bytes);

  Tap tap_;
  std::string iface_id_;
  std::uint64_t features_;
  RateLimiter rx_limiter_;
  RateLimiter tx_limiter_;
  // Created by the constructor, immutable after (used from any thread by
  // the update methods); an error is reported by activate().
  Expected<ThrottleTimer> rx_timer_;
  Expected<ThrottleTimer> tx_timer_;
  std::array<std::uint8_t, kConfigSize> config_{};
  std::uint64_t acked_ = 0;  // under life_.lock()
  // A frame read from the TAP that waits for RX buffers (bounce path);
  // Active::pending_len says whether one does.
  std::vector<std::byte> rx_buffer_;

  struct Counters {
    std::atomic<std::uint64_t> rx_frames{0}, rx_bytes{0}, rx_drops{0}, rx_errors{0};
    std::atomic<std::uint64_t> tx_frames{0}, tx_bytes{0}, tx_drops{0}, tx_errors{0};
  } counters_;
  // The registry's counters (group "net_<iface_id>").
  struct Registry {
    explicit Registry(metrics::Group& g);
    metrics::Counter &rx_bytes, &rx_packets, &tx_bytes, &tx_packets;
    metrics::Counter &rx_dropped, &tx_dropped, &tx_malformed;
    metrics::Counter &rx_throttled, &tx_throttled;
  } m_;
  log::RateLimit frame_log_;
  // Survives resets: one line per activation would let a guest flood the log.
  log::RateLimit broken_log_{4};
  // Last: destroyed first, while what the callbacks use still exists.
  DeviceLifecycle<Active> life_;
};

}  // namespace hvz::virtio::net
