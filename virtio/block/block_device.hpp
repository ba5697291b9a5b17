// BlockDevice: the virtio-blk device (virtio 1.2 §5.2) — feature bits,
// read-only config space, and the request queue's processing.
//
// Threading: the EventLoop thread only drains the queue's notify eventfd and
// wakes this device's I/O worker thread; the worker alone owns the queue
// between activate() and reset() (pop, parse, disk I/O, add_used, interrupt).
// A slow disk therefore stalls only this device's worker, never the event
// loop or a vCPU. The loop callback holds only a shared wake-up object, not
// the device, so a callback racing with reset() touches nothing freed.
#pragma once

#include <array>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stop_token>
#include <string>
#include <thread>

#include "virtio/block/disk_image.hpp"
#include "virtio/block/request.hpp"
#include "virtio/virtio_device.hpp"
#include "vmm/core/log.hpp"

namespace hvz::virtio::block {

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

class BlockDevice : public VirtioDevice {
 public:
  // `drive_id` is what GET_ID returns (first 20 bytes, NUL padded).
  BlockDevice(DiskImage disk, std::string drive_id);
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
  // Unregisters the notify fd, stops and joins the worker, forgets the queue.
  // Also run by the destructor, so the EventLoop must outlive an active
  // device.
  void reset() override;

  const RequestLimits& limits() const { return limits_; }

 private:
  // Wake-up shared between the loop callback and the worker.
  struct Kick {
    std::mutex mu;
    std::condition_variable_any cv;
    bool pending = false;
    void post();
  };

  void worker_main(std::stop_token stop);
  void process_queue(const std::stop_token& stop);
  bool signal_if_needed();
  void mark_broken(const char* what, const Error& err);

  DiskImage disk_;
  std::array<std::byte, kDriveIdLen> drive_id_;
  std::uint64_t features_;
  std::uint64_t acked_ = 0;
  RequestLimits limits_;
  std::array<std::uint8_t, kConfigSize> config_{};

  // Set by activate(), cleared by reset(); used by the worker in between.
  bool active_ = false;
  const GuestMemory* mem_ = nullptr;
  Queue* queue_ = nullptr;
  int notify_fd_ = -1;
  std::shared_ptr<Interrupt> interrupt_;
  EventLoop* loop_ = nullptr;
  std::shared_ptr<Kick> kick_;
  bool event_idx_ = false;
  bool broken_ = false;  // worker-only: the queue failed, stop processing
  log::RateLimit request_log_;
  std::jthread worker_;
};

}  // namespace hvz::virtio::block
