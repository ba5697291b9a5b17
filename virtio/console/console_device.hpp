// ConsoleDevice: the virtio-console device (virtio 1.2 §5.3) with a single
// port and no MULTIPORT — feature bits, the read-only config space (window
// size), and the two queues' byte streams: transmitq (guest → host) is
// written to an output fd, bytes read from an input fd fill receiveq
// (host → guest).
//
// Threading: all queue work runs in EventLoop callbacks (TX notify fd, RX
// notify fd, output fd writable, input fd readable), never on a vCPU. A
// DeviceLifecycle holds what exists only while active (queues, interrupt,
// registrations, flow-control state); its mutex serialises the callbacks
// against ack_features(), activate() and reset() (vCPU threads), and a
// callback racing with reset() or the destructor returns without touching
// the device. A callback handles a bounded batch of output (chains and
// bytes) and comes back through the TX notify fd for more; reset() raises
// the lifecycle's stopping flag first, so a running batch ends after its
// current chain.
//
// Flow control: the input fd is polled only while the driver has RX buffers
// (a driver that posts none does not make the loop spin) and until it reads
// EOF. When the output fd would block, the chain being written is kept with
// its offset and the fd is polled for writability; no further TX chain is
// popped until it is written, so output keeps its order and is never
// dropped. A blocking output fd (a terminal, a file, the VMM's connected
// socket) is written with a plain blocking loop on the loop thread.
//
// Metrics group "console": in_bytes (host → guest), out_bytes (guest →
// host), beside counters().
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "virtio/config_space.hpp"
#include "virtio/device_lifecycle.hpp"
#include "virtio/virtio_device.hpp"
#include "vmm/core/event_registration.hpp"
#include "vmm/core/log.hpp"
#include "vmm/core/metrics.hpp"

namespace hvz::virtio::console {

// Device feature bits (§5.3.3).
inline constexpr std::uint64_t kFeatureSize = 1ull << 0;
inline constexpr std::uint64_t kFeatureMultiport = 1ull << 1;
inline constexpr std::uint64_t kFeatureEmergWrite = 1ull << 2;

inline constexpr std::uint16_t kQueueSize = 256;
inline constexpr std::size_t kRxQueue = 0;  // receiveq: host → guest
inline constexpr std::size_t kTxQueue = 1;  // transmitq: guest → host

// struct virtio_console_config (§5.3.4): cols, rows, max_nr_ports,
// emerg_wr. Only cols/rows carry meaning here (no MULTIPORT, no
// EMERG_WRITE); the rest reads as zero.
inline constexpr std::size_t kConfigCols = 0;
inline constexpr std::size_t kConfigRows = 2;
inline constexpr std::size_t kConfigSize = 12;

// The window size reported through CONSOLE_F_SIZE. The device has no way to
// learn a resize of the host terminal, so it reports a fixed size; 80x25 is
// what the Linux hvc driver assumes for a console of unknown size.
struct WindowSize {
  std::uint16_t cols = 80;
  std::uint16_t rows = 25;
};

struct ConsoleCounters {
  std::uint64_t tx_bytes = 0;    // guest → host, written to the output fd
  std::uint64_t rx_bytes = 0;    // host → guest, placed in RX buffers
  std::uint64_t tx_dropped = 0;  // guest output lost to a failing output fd
};

// The device's own state as data (snapshots); its queues are in the
// transport's state.
struct ConsoleDeviceState {
  static constexpr std::uint32_t kVersion = 1;
  std::uint32_t version = kVersion;
  std::uint64_t acked_features = 0;
  std::array<std::uint8_t, kConfigSize> config{};
  bool activated = false;
  // Bytes of the next transmit chain already written to the output (a
  // chain interrupted by quiesce() went back to the ring).
  std::uint64_t tx_resume_offset = 0;
  bool operator==(const ConsoleDeviceState&) const = default;
};

class ConsoleDevice : public VirtioDevice {
 public:
  // `output_fd` receives the guest's output; `input_fd` (or -1 for none)
  // feeds the guest. Both may be the same fd (a connected socket). Neither
  // is owned: they must outlive the device. `metrics` (the creator's
  // "console" group) receives in_bytes/out_bytes and must outlive it too.
  ConsoleDevice(int output_fd, int input_fd, metrics::Group& metrics, WindowSize size = {});
  ~ConsoleDevice() override;
  ConsoleDevice(const ConsoleDevice&) = delete;
  ConsoleDevice& operator=(const ConsoleDevice&) = delete;

  std::uint32_t device_type() const override { return kDeviceTypeConsole; }
  std::uint64_t features() const override { return kFeatures; }
  void ack_features(std::uint64_t features) override;
  std::vector<std::uint16_t> queue_max_sizes() const override { return {kQueueSize, kQueueSize}; }
  void read_config(std::uint64_t offset, std::span<std::uint8_t> data) const override;
  // Nothing in the config space is driver-writable without EMERG_WRITE.
  void write_config(std::uint64_t, std::span<const std::uint8_t>) override {}
  Expected<void> activate(const GuestMemory& mem, std::vector<ActiveQueue> queues,
                          std::shared_ptr<Interrupt> interrupt, EventLoop& loop) override;
  // Unregisters every fd from the loop and forgets the queues (a chain whose
  // output was still pending is abandoned with them). Also run by the
  // destructor, so the EventLoop must outlive an active device.
  void reset() override;

  ConsoleCounters counters() const;

  // The device works on the event loop, which the VMM parks first; a
  // transmit chain partly written (output blocked) goes back to the ring
  // with its offset kept, so the queue's state is all there is.
  // unquiesce() makes the device look at the transmit queue again.
  void quiesce() override;
  void unquiesce() override;

  // Whole state; take it while inactive or quiesced (event loop parked).
  ConsoleDeviceState save() const;
  // Takes the negotiated features from `state` (untrusted: version, config
  // and features are checked) into an inactive device; the transport's
  // restore then activates it if it was.
  Expected<void> restore(const ConsoleDeviceState& state);

  static constexpr std::uint64_t kFeatures = kFeatureVersion1 | kFeatureEventIdx | kFeatureSize;

 private:
  // What exists between activate() and reset().
  struct Active {
    const GuestMemory* mem = nullptr;
    EventLoop* loop = nullptr;
    Queue* rx = nullptr;
    Queue* tx = nullptr;
    int rx_notify_fd = -1;  // -1: the queue is not ready
    int tx_notify_fd = -1;
    std::shared_ptr<Interrupt> interrupt;
    bool event_idx = false;
    bool broken = false;
    bool input_open = false;                 // an input fd that has not reached EOF/error
    bool rx_starved = false;                 // no RX buffer: wait for an RX notify
    bool output_is_socket = true;            // until sendmsg says ENOTSOCK
    std::optional<DescriptorChain> pending;  // TX chain partly written
    std::uint64_t pending_offset = 0;
    bool output_blocked = false;  // the output said EAGAIN: wait for writability
    EventRegistration tx_notify;
    EventRegistration rx_notify;
    // Data fds in the loop, with the events asked for.
    std::map<int, std::pair<EventRegistration, std::uint32_t>> data;
  };

  // Loop callbacks (lifecycle mutex held, device active).
  void on_tx_notify(Active& a);
  void on_rx_notify(Active& a);
  void on_data_fd(Active& a, int fd, std::uint32_t events);

  // Handles at most a batch of output per call (see the .cpp).
  void process_tx(Active& a);
  enum class Flush { kDone, kBlocked, kBudgetSpent, kBroken };
  // Writes the pending chain's remaining bytes, at most `budget` of them
  // (deducted); kDone once the chain is returned to the driver.
  Flush flush_pending(Active& a, std::uint64_t& budget);
  void receive_input(Active& a);
  // Registers, modifies or unregisters the output and input fds so the loop
  // polls exactly what is wanted now.
  void sync_interest(Active& a);
  void sync_fd(Active& a, int fd);
  std::uint32_t wanted_events(const Active& a, int fd) const;
  bool signal_if_needed(Active& a, Queue& queue);
  void mark_broken(Active& a, const char* what, const Error& err);
  void stop_input(Active& a, const char* why);

  const int output_fd_;
  const int input_fd_;
  std::array<std::uint8_t, kConfigSize> config_{};

  std::uint64_t acked_ = 0;          // under life_.lock()
  std::uint64_t resume_offset_ = 0;  // for the next chain popped (see quiesce())

  std::atomic<std::uint64_t> tx_bytes_{0};
  std::atomic<std::uint64_t> rx_bytes_{0};
  std::atomic<std::uint64_t> tx_dropped_{0};
  metrics::Counter& m_in_bytes_;
  metrics::Counter& m_out_bytes_;
  log::RateLimit io_log_;
  // Survives resets: one line per activation would let a guest flood the log.
  log::RateLimit broken_log_{4};
  // Last: destroyed first, while what the callbacks use still exists.
  DeviceLifecycle<Active> life_;
};

}  // namespace hvz::virtio::console
