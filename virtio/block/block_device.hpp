// BlockDevice: the virtio-blk device (virtio 1.2 §5.2) — feature bits,
// read-only config space, and the request queue's processing with one of
// two I/O engines (Firecracker's drive "io_engine"):
//   kSync  — the I/O thread does each request itself (preadv, pwritev,
//            fdatasync) before taking the next;
//   kAsync — the I/O thread submits reads, writes and flushes to an
//            io_uring (up to a queue's worth in flight) and completes them
//            as the ring reports them; discard, write-zeroes and GET_ID run
//            synchronously on the I/O thread.
//
// Threading: the EventLoop thread only drains the queue's notify eventfd and
// wakes this device's I/O thread; the I/O thread alone owns the queue
// between activate() and reset() (pop, parse, rate limiting, disk I/O,
// add_used, interrupts). It sleeps in ppoll on its wake-up eventfd, the
// ring's completion eventfd (kAsync) and, when the rate limiter refused a
// request, a timeout until the tokens are there. A slow disk therefore
// stalls only this device's I/O thread, never the event loop or a vCPU.
// Each wake-up starts a bounded batch of requests (a count and a byte
// budget) and looks at the stop flag before every request, so a driver
// that refills the ring as fast as it drains cannot keep reset() waiting.
// The loop callback holds only the shared wake-up eventfd, not the device,
// so a callback racing with reset() touches nothing freed.
//
// swap_disk() and update_rate_limiter() may be called from any thread (the
// API); swap_disk() hands the new image to the I/O thread, which switches
// once no request is in flight.
#pragma once

#include <sys/uio.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "virtio/block/disk_image.hpp"
#include "virtio/block/request.hpp"
#include "virtio/config_space.hpp"
#include "virtio/rate_limiter.hpp"
#include "virtio/virtio_device.hpp"
#include "vmm/core/event_fd.hpp"
#include "vmm/core/event_registration.hpp"
#include "vmm/core/log.hpp"
#include "vmm/core/metrics.hpp"

namespace hvz::virtio::block {

class Uring;

// Device feature bits (§5.2.3).
inline constexpr std::uint64_t kFeatureSegMax = 1ull << 2;
inline constexpr std::uint64_t kFeatureRo = 1ull << 5;
inline constexpr std::uint64_t kFeatureBlkSize = 1ull << 6;
inline constexpr std::uint64_t kFeatureFlush = 1ull << 9;
inline constexpr std::uint64_t kFeatureDiscard = 1ull << 13;
inline constexpr std::uint64_t kFeatureWriteZeroes = 1ull << 14;

inline constexpr std::uint16_t kQueueSize = 256;
// Segments per request the driver may use: the queue size minus the header
// and status descriptors (as QEMU does); with indirect descriptors a request
// still fits.
inline constexpr std::uint32_t kSegMax = kQueueSize - 2;
inline constexpr std::uint32_t kMaxDiscardSectors = 1u << 22;  // 2 GiB
inline constexpr std::uint32_t kMaxDiscardSeg = 16;
inline constexpr std::uint32_t kDiscardSectorAlignment = 8;  // 4 KiB
inline constexpr std::uint32_t kMaxWriteZeroesSectors = 1u << 22;
inline constexpr std::uint32_t kMaxWriteZeroesSeg = 16;

// struct virtio_blk_config offsets (§5.2.4).
inline constexpr std::size_t kConfigCapacity = 0;
inline constexpr std::size_t kConfigSegMax = 12;
inline constexpr std::size_t kConfigBlkSize = 20;
inline constexpr std::size_t kConfigMaxDiscardSectors = 36;
inline constexpr std::size_t kConfigMaxDiscardSeg = 40;
inline constexpr std::size_t kConfigDiscardSectorAlignment = 44;
inline constexpr std::size_t kConfigMaxWriteZeroesSectors = 48;
inline constexpr std::size_t kConfigMaxWriteZeroesSeg = 52;
inline constexpr std::size_t kConfigWriteZeroesMayUnmap = 56;
inline constexpr std::size_t kConfigSize = 60;

// Firecracker's drive "io_engine": "Sync" or "Async" (io_uring).
enum class IoEngine { kSync, kAsync };
const char* to_string(IoEngine engine);

struct BlockOptions {
  IoEngine io_engine = IoEngine::kSync;
  // Rate limits (nullopt: unlimited): bytes of IN/OUT data, and requests.
  std::optional<TokenBucketParams> bandwidth;
  std::optional<TokenBucketParams> ops;
};

// The device's own state as data (snapshots); its queue is in the
// transport's state. Everything but `acked_features` and `activated` is
// identity: a restore checks it against the device built from the same
// drive configuration.
struct BlockDeviceState {
  static constexpr std::uint32_t kVersion = 1;
  std::uint32_t version = kVersion;
  std::string disk_path;  // informational: the VMM reopens the disk by it
  std::string drive_id;
  bool read_only = false;
  std::uint64_t capacity_sectors = 0;
  std::uint64_t acked_features = 0;
  std::array<std::uint8_t, kConfigSize> config{};
  bool activated = false;
  bool operator==(const BlockDeviceState&) const = default;
};

class BlockDevice : public VirtioDevice {
 public:
  // `drive_id` is what GET_ID returns (first 20 bytes, NUL padded);
  // `metrics` receives the device's counters (read_bytes, write_bytes,
  // read_count, write_count, flush_count, io_errors, invalid_reqs,
  // rate_limiter_throttled) and must outlive the device. Fails when the
  // Async engine's io_uring cannot be set up (the error names io_uring).
  static Expected<std::unique_ptr<BlockDevice>> create(DiskImage disk, std::string drive_id,
                                                       metrics::Group& metrics,
                                                       BlockOptions options = {});
  ~BlockDevice() override;
  BlockDevice(const BlockDevice&) = delete;
  BlockDevice& operator=(const BlockDevice&) = delete;

  std::uint32_t device_type() const override { return kDeviceTypeBlock; }
  std::uint64_t features() const override { return features_; }
  void ack_features(std::uint64_t features) override { acked_ = features & features_; }
  std::vector<std::uint16_t> queue_max_sizes() const override { return {kQueueSize}; }
  void read_config(std::uint64_t offset, std::span<std::uint8_t> data) const override;
  // The config space is read-only (no writeback toggle offered): ignored.
  void write_config(std::uint64_t, std::span<const std::uint8_t>) override {}
  Expected<void> activate(const GuestMemory& mem, std::vector<ActiveQueue> queues,
                          std::shared_ptr<Interrupt> interrupt, EventLoop& loop) override;
  // Unregisters the notify fd, stops the I/O thread once every request in
  // flight has completed (their results are dropped), forgets the queue.
  // Also run by the destructor, so the EventLoop must outlive an active
  // device.
  void reset() override;
  // Parks the I/O thread: it starts no new request, waits for the io_uring
  // requests in flight (their used entries are written), puts a throttled
  // request back into the ring, signals what it completed and sleeps until
  // unquiesce(). Queue notifications meanwhile only count on the wake-up
  // eventfd. While quiesced, activate() starts the thread parked and
  // swap_disk() switches the image at once.
  void quiesce() override;
  void unquiesce() override;

  // Replaces the backing image (Firecracker's PATCH /drives path_on_host).
  // While the device is active, waits until no request is in flight, then
  // switches, updates the capacity in the config space and signals a
  // configuration change. The new image must have the same read-only
  // setting; the offered features stay as negotiated (discard on an image
  // that cannot punch holes then fails with IOERR). Any thread.
  Expected<void> swap_disk(DiskImage disk);
  // Replaces the rate limits (RateLimiter::update: nullopt = unlimited,
  // buckets start full); a request waiting for tokens is looked at again.
  // Any thread.
  void update_rate_limiter(std::optional<TokenBucketParams> bandwidth,
                           std::optional<TokenBucketParams> ops);

  // Whole state; take it while inactive or quiesced.
  BlockDeviceState save() const;
  // Takes the negotiated features from `state` (untrusted: version,
  // identity and features are checked) into an inactive device; the
  // transport's restore then activates it if it was. Nothing changes on
  // error.
  Expected<void> restore(const BlockDeviceState& state);

  IoEngine io_engine() const { return engine_; }
  // The capacity the config space announces, in 512-byte sectors.
  std::uint64_t capacity_sectors() const;

 private:
  struct Counters {
    explicit Counters(metrics::Group& g);
    metrics::Counter& read_bytes;
    metrics::Counter& write_bytes;
    metrics::Counter& read_count;
    metrics::Counter& write_count;
    metrics::Counter& flush_count;
    metrics::Counter& io_errors;
    metrics::Counter& invalid_reqs;
    metrics::Counter& rate_limiter_throttled;
  };
  // A checked request not yet started (kept while the rate limiter refuses).
  struct Work {
    DescriptorChain chain;
    PreparedRequest prepared;
    bool throttled = false;
  };
  // An io_uring operation in flight; its index is the ring's user_data.
  struct InFlight {
    bool used = false;
    std::uint16_t head = 0;
    std::uint32_t type = 0;
    GuestAddress status_addr;
    std::uint64_t data_len = 0;
    std::vector<iovec> iov;     // guest buffers still to transfer, from iov_index
    std::size_t iov_index = 0;  // first iovec not yet fully transferred
    std::uint64_t offset = 0;   // disk offset of iov[iov_index]
    unsigned retries = 0;       // consecutive EAGAIN/EINTR resubmissions
  };
  struct SwapRequest {
    explicit SwapRequest(DiskImage d) : disk(std::move(d)) {}
    DiskImage disk;
    bool done = false;
  };
  using Result = tl::expected<std::uint32_t, RequestError>;

  BlockDevice(DiskImage disk, std::string drive_id, metrics::Group& metrics, BlockOptions options,
              std::shared_ptr<EventFd> wake, std::unique_ptr<Uring> uring);

  // All on the I/O thread.
  void worker_main();
  void process_queue();
  bool start(Work& work);
  void submit_async(Work& work);
  bool queue_slot(std::uint16_t index);
  // Completes what the ring reports; returns the number of completions.
  std::size_t reap(bool stopping);
  void on_completion(std::uint64_t user_data, int res, bool stopping);
  void release_slot(std::uint16_t index);
  void finish(std::uint16_t head, std::uint32_t type, std::uint64_t data_len,
              GuestAddress status_addr, const Result& result);
  void reject(const DescriptorChain& chain, RequestError error);
  void push_used(std::uint16_t head, std::uint32_t len);
  void flush_signal();
  bool signal_if_needed();
  void mark_broken(const char* what, const Error& err);
  bool swap_pending();
  void run_swap();
  void wait_for_events();
  // Sleeps until unquiesce() or reset(); see quiesce().
  void park();
  // I/O thread while active, else under control_mu_.
  void install_disk(DiskImage disk);

  const IoEngine engine_;
  DiskImage disk_;
  const bool read_only_;
  const std::string drive_id_string_;
  std::array<std::byte, kDriveIdLen> drive_id_;
  std::uint64_t features_;
  std::uint64_t acked_ = 0;
  RequestLimits limits_;
  mutable std::mutex config_mu_;  // vCPU reads vs swap_disk
  std::array<std::uint8_t, kConfigSize> config_{};
  Counters counters_;
  RateLimiter limiter_;
  const std::shared_ptr<EventFd> wake_;  // signalled by the loop callback and other threads
  const std::unique_ptr<Uring> uring_;   // kAsync only

  // Serialises activate(), reset() and swap_disk().
  mutable std::mutex control_mu_;
  // Set by activate(), cleared by reset(); used by the I/O thread in between.
  bool active_ = false;
  const GuestMemory* mem_ = nullptr;
  Queue* queue_ = nullptr;
  std::shared_ptr<Interrupt> interrupt_;
  EventRegistration notify_;  // the queue's notify fd, while active
  bool event_idx_ = false;
  std::atomic<bool> stop_{false};
  std::thread worker_;
  // quiesce() ran and unquiesce() not yet (under control_mu_); park_ is its
  // copy the I/O thread reads between requests.
  bool quiesced_ = false;
  std::atomic<bool> park_{false};
  std::mutex park_mu_;
  std::condition_variable park_cv_;
  bool parked_ = false;  // under park_mu_: the I/O thread sleeps in park()

  // I/O thread only.
  bool broken_ = false;  // the queue failed: stop processing until reset
  std::optional<Work> throttled_;
  std::optional<RateLimiter::Clock::time_point> throttled_until_;
  std::optional<RateLimiter::Clock::time_point> submit_retry_at_;
  std::vector<InFlight> slots_;
  std::vector<std::uint16_t> free_slots_;
  std::uint32_t in_flight_ = 0;
  std::uint32_t unsignalled_ = 0;
  log::RateLimit request_log_;
  // Survives resets: one line per activation would let a guest flood the log.
  log::RateLimit broken_log_{4};

  std::mutex swap_mu_;
  std::condition_variable swap_cv_;
  std::shared_ptr<SwapRequest> swap_;  // pending, handed over by swap_disk()
};

}  // namespace hvz::virtio::block
