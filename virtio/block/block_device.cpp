// virtio-blk device: features, config space, queue processing on an I/O
// worker thread (see block_device.hpp).
#include "virtio/block/block_device.hpp"

#include <unistd.h>

#include <cstring>

namespace hvz::virtio::block {
namespace {

// Signal the driver at least this often during a long batch, so a slow disk
// does not hold back completions already in the used ring.
constexpr std::uint32_t kSignalBatch = 32;

template <typename T>
void put_le(std::array<std::uint8_t, kConfigSize>& cfg, std::size_t offset, T value) {
  // x86_64 is little-endian, as the config space is.
  std::memcpy(cfg.data() + offset, &value, sizeof value);
}

}  // namespace

void BlockDevice::Kick::post() {
  {
    std::lock_guard lock(mu);
    pending = true;
  }
  cv.notify_one();
}

BlockDevice::BlockDevice(DiskImage disk, std::string drive_id)
    : disk_(std::move(disk)), drive_id_(format_drive_id(drive_id)) {
  limits_.capacity_sectors = disk_.sectors();
  limits_.read_only = disk_.read_only();
  limits_.discard = !disk_.read_only() && disk_.discard_supported();
  limits_.write_zeroes = !disk_.read_only() && disk_.write_zeroes_supported();
  limits_.max_discard_sectors = kMaxDiscardSectors;
  limits_.max_discard_seg = kMaxDiscardSeg;
  limits_.max_write_zeroes_sectors = kMaxWriteZeroesSectors;
  limits_.max_write_zeroes_seg = kMaxWriteZeroesSeg;

  features_ = kFeatureVersion1 | kFeatureEventIdx | kFeatureIndirectDesc | kFeatureFlush |
              kFeatureSegMax | kFeatureBlkSize;
  if (limits_.read_only) features_ |= kFeatureRo;
  if (limits_.discard) features_ |= kFeatureDiscard;
  if (limits_.write_zeroes) features_ |= kFeatureWriteZeroes;

  put_le<std::uint64_t>(config_, kConfigCapacity, limits_.capacity_sectors);
  put_le<std::uint32_t>(config_, kConfigSegMax, kSegMax);
  put_le<std::uint32_t>(config_, kConfigBlkSize, static_cast<std::uint32_t>(kSectorSize));
  if (limits_.discard) {
    put_le<std::uint32_t>(config_, kConfigMaxDiscardSectors, kMaxDiscardSectors);
    put_le<std::uint32_t>(config_, kConfigMaxDiscardSeg, kMaxDiscardSeg);
    put_le<std::uint32_t>(config_, kConfigDiscardSectorAlignment, kDiscardSectorAlignment);
  }
  if (limits_.write_zeroes) {
    put_le<std::uint32_t>(config_, kConfigMaxWriteZeroesSectors, kMaxWriteZeroesSectors);
    put_le<std::uint32_t>(config_, kConfigMaxWriteZeroesSeg, kMaxWriteZeroesSeg);
    put_le<std::uint8_t>(config_, kConfigWriteZeroesMayUnmap, limits_.discard ? 1 : 0);
  }
}

BlockDevice::~BlockDevice() {
  reset();
}

void BlockDevice::read_config(std::uint64_t offset, std::span<std::uint8_t> data) const {
  for (std::size_t i = 0; i < data.size(); ++i) {
    // offset + i cannot wrap into range: compare without adding first.
    data[i] = (offset < kConfigSize && i < kConfigSize - offset) ? config_[offset + i] : 0;
  }
}

Expected<void> BlockDevice::activate(const GuestMemory& mem, std::vector<ActiveQueue> queues,
                                     std::shared_ptr<Interrupt> interrupt, EventLoop& loop) {
  if (active_) return make_error(Errc::kBusy, "virtio-blk activate: already active");
  if (queues.size() != 1 || queues[0].queue == nullptr || !interrupt) {
    return make_error(Errc::kInvalidArgument, "virtio-blk activate: needs exactly one queue");
  }
  mem_ = &mem;
  queue_ = queues[0].queue;
  notify_fd_ = queues[0].notify_fd;
  interrupt_ = std::move(interrupt);
  loop_ = &loop;
  event_idx_ = (acked_ & kFeatureEventIdx) != 0;
  queue_->set_features(acked_);
  broken_ = false;
  kick_ = std::make_shared<Kick>();

  // The callback captures only the shared wake-up and the fd number.
  auto r =
      loop.add(notify_fd_, EventLoop::kReadable, [kick = kick_, fd = notify_fd_](std::uint32_t) {
        std::uint64_t n = 0;
        // One read resets the eventfd counter; a failed read
        // (nothing pending) still warrants a look at the ring.
        [[maybe_unused]] auto got = ::read(fd, &n, sizeof n);
        kick->post();
      });
  if (!r) {
    mem_ = nullptr;
    queue_ = nullptr;
    interrupt_.reset();
    loop_ = nullptr;
    kick_.reset();
    return r;
  }
  active_ = true;
  worker_ = std::jthread([this](std::stop_token stop) { worker_main(std::move(stop)); });
  // The driver may have queued requests before notifying: look once.
  kick_->post();
  return {};
}

void BlockDevice::reset() {
  if (active_) {
    if (auto r = loop_->remove(notify_fd_); !r) {
      LOG_WARN("virtio-blk: removing queue notify fd: %s", r.error().message().c_str());
    }
    worker_.request_stop();  // wakes the worker's stop-aware wait
    if (worker_.joinable()) worker_.join();
    worker_ = std::jthread();
  }
  active_ = false;
  mem_ = nullptr;
  queue_ = nullptr;
  notify_fd_ = -1;
  interrupt_.reset();
  loop_ = nullptr;
  kick_.reset();
  acked_ = 0;
  event_idx_ = false;
  broken_ = false;
}

void BlockDevice::worker_main(std::stop_token stop) {
  log::set_thread_name("virtio-blk");
  const std::shared_ptr<Kick> kick = kick_;
  for (;;) {
    {
      std::unique_lock lock(kick->mu);
      kick->cv.wait(lock, stop, [&] { return kick->pending; });
      if (stop.stop_requested()) return;
      kick->pending = false;
    }
    process_queue(stop);
  }
}

void BlockDevice::mark_broken(const char* what, const Error& err) {
  if (broken_) return;
  broken_ = true;
  LOG_ERROR("virtio-blk: %s: %s; the queue is stopped until the driver resets the device", what,
            err.message().c_str());
  interrupt_->set_needs_reset();
}

bool BlockDevice::signal_if_needed() {
  auto needed = queue_->needs_notification(*mem_);
  if (!needed) {
    mark_broken("reading the used event", needed.error());
    return false;
  }
  if (*needed) {
    if (auto r = interrupt_->signal_used_queue(); !r) {
      LOG_WARN("virtio-blk: signalling the used queue: %s", r.error().message().c_str());
    }
  }
  return true;
}

void BlockDevice::process_queue(const std::stop_token& stop) {
  if (broken_) return;
  std::uint32_t unsignalled = 0;
  while (!stop.stop_requested()) {
    auto popped = queue_->pop(*mem_);
    if (!popped) {
      mark_broken("malformed queue", popped.error());
      break;
    }
    if (!*popped) {
      if (!event_idx_) break;
      // Re-arm notifications, then look again: a request published between
      // the empty pop and the avail_event write would otherwise be missed.
      auto more = queue_->enable_notification(*mem_);
      if (!more) {
        mark_broken("writing the avail event", more.error());
        break;
      }
      if (*more) continue;
      break;
    }
    const DescriptorChain& chain = **popped;
    const Completion c = process_request(*mem_, chain, disk_, limits_, drive_id_);
    if (c.error && request_log_.allow()) {
      if (!c.completed) {
        LOG_WARN("virtio-blk: request (head %u) cannot be completed: %s; returned with length 0",
                 chain.head, to_string(*c.error));
      } else {
        LOG_WARN("virtio-blk: request (head %u) failed: %s", chain.head, to_string(*c.error));
      }
    }
    if (auto r = queue_->add_used(*mem_, chain.head, c.used_len); !r) {
      mark_broken("adding to the used ring", r.error());
      break;
    }
    if (++unsignalled >= kSignalBatch) {
      unsignalled = 0;
      if (!signal_if_needed()) return;
    }
  }
  if (unsignalled > 0) signal_if_needed();
}

}  // namespace hvz::virtio::block
