// virtio-blk device: features, config space, queue processing on an I/O
// thread with the Sync or Async (io_uring) engine, rate limiting, backing
// image swap (see block_device.hpp).
#include "virtio/block/block_device.hpp"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>

#include "virtio/block/uring.hpp"
#include "vmm/core/iovec.hpp"
#include "vmm/core/le.hpp"

namespace hvz::virtio::block {
namespace {

using Clock = RateLimiter::Clock;

// Signal the driver at least this often during a long batch, so a slow disk
// does not hold back completions already in the used ring.
constexpr std::uint32_t kSignalBatch = 32;
// iovecs per readv/writev (the kernel's limit); longer lists go in parts.
constexpr std::size_t kMaxIov = IOV_MAX;
// An operation failing with EAGAIN/EINTR this many times in a row fails.
constexpr unsigned kMaxRetries = 64;
// How long to wait before retrying a refused io_uring_submit.
constexpr auto kSubmitRetry = std::chrono::milliseconds(1);
// The shortest wait for the rate limiter's tokens.
constexpr auto kMinThrottleWait = std::chrono::microseconds(100);
// Work started per wake-up of the I/O thread: a guest that refills its ring
// as fast as it drains gets at most this much before the thread looks at
// stop, swap and the ring's completions again (it wakes itself to go on).
constexpr std::uint32_t kBatchRequests = 64;
constexpr std::uint64_t kBatchBytes = 16ull << 20;

bool is_data(std::uint32_t type) {
  return type == kTypeIn || type == kTypeOut;
}

}  // namespace

const char* to_string(IoEngine engine) {
  return engine == IoEngine::kAsync ? "Async" : "Sync";
}

BlockDevice::Counters::Counters(metrics::Group& g)
    : read_bytes(g.counter("read_bytes")),
      write_bytes(g.counter("write_bytes")),
      read_count(g.counter("read_count")),
      write_count(g.counter("write_count")),
      flush_count(g.counter("flush_count")),
      io_errors(g.counter("io_errors")),
      invalid_reqs(g.counter("invalid_reqs")),
      rate_limiter_throttled(g.counter("rate_limiter_throttled")) {}

Expected<std::unique_ptr<BlockDevice>> BlockDevice::create(DiskImage disk, std::string drive_id,
                                                           metrics::Group& metrics,
                                                           BlockOptions options) {
  auto wake = EventFd::create();
  if (!wake) return tl::unexpected(wake.error());
  std::unique_ptr<Uring> uring;
  if (options.io_engine == IoEngine::kAsync) {
    auto u = Uring::create(kQueueSize);
    if (!u) {
      return in_context("virtio-blk Async I/O engine: ", u.error());
    }
    uring = std::move(*u);
  }
  return std::unique_ptr<BlockDevice>(
      new BlockDevice(std::move(disk), std::move(drive_id), metrics, std::move(options),
                      std::make_shared<EventFd>(std::move(*wake)), std::move(uring)));
}

BlockDevice::BlockDevice(DiskImage disk, std::string drive_id, metrics::Group& metrics,
                         BlockOptions options, std::shared_ptr<EventFd> wake,
                         std::unique_ptr<Uring> uring)
    : engine_(options.io_engine),
      disk_(std::move(disk)),
      read_only_(disk_.read_only()),
      drive_id_string_(drive_id),
      drive_id_(format_drive_id(drive_id)),
      counters_(metrics),
      limiter_(options.bandwidth, options.ops),
      wake_(std::move(wake)),
      uring_(std::move(uring)) {
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

  if (uring_) {
    // One slot per queue entry: the driver cannot have more requests out.
    slots_.resize(kQueueSize);
    free_slots_.reserve(kQueueSize);
    for (std::uint16_t i = kQueueSize; i > 0; --i) free_slots_.push_back(i - 1);
  }
}

BlockDevice::~BlockDevice() {
  reset();
}

void BlockDevice::read_config(std::uint64_t offset, std::span<std::uint8_t> data) const {
  std::lock_guard lock(config_mu_);
  read_config_bytes(config_, offset, data);
}

std::uint64_t BlockDevice::capacity_sectors() const {
  std::lock_guard lock(config_mu_);
  std::uint64_t v = 0;
  std::memcpy(&v, config_.data() + kConfigCapacity, sizeof v);
  return v;
}

BlockDeviceState BlockDevice::save() const {
  std::lock_guard control(control_mu_);
  BlockDeviceState s;
  s.disk_path = disk_.path();
  s.drive_id = drive_id_string_;
  s.read_only = read_only_;
  s.capacity_sectors = capacity_sectors();
  s.acked_features = acked_;
  {
    std::lock_guard lock(config_mu_);
    s.config = config_;
  }
  s.activated = active_;
  return s;
}

Expected<void> BlockDevice::restore(const BlockDeviceState& state) {
  std::lock_guard control(control_mu_);
  auto invalid = [](const std::string& what) {
    return make_error(Errc::kInvalidArgument, "virtio-blk restore: " + what);
  };
  if (state.version != BlockDeviceState::kVersion) {
    return invalid("state version " + std::to_string(state.version) + " unknown");
  }
  if (active_) return make_error(Errc::kBusy, "virtio-blk restore: the device is active");
  if (state.drive_id != drive_id_string_ || state.read_only != read_only_) {
    return invalid("saved for another drive (id or read-only differ)");
  }
  {
    std::lock_guard lock(config_mu_);
    if (state.capacity_sectors != limits_.capacity_sectors || state.config != config_) {
      return invalid("the disk's capacity or configuration differs from the saved one");
    }
  }
  if ((state.acked_features & ~features_) != 0) return invalid("features never offered were acked");
  acked_ = state.acked_features;
  return {};
}

Expected<void> BlockDevice::activate(const GuestMemory& mem, std::vector<ActiveQueue> queues,
                                     std::shared_ptr<Interrupt> interrupt, EventLoop& loop) {
  std::lock_guard control(control_mu_);
  if (active_) return make_error(Errc::kBusy, "virtio-blk activate: already active");
  if (queues.size() != 1 || queues[0].queue == nullptr || !interrupt) {
    return make_error(Errc::kInvalidArgument, "virtio-blk activate: needs exactly one queue");
  }
  mem_ = &mem;
  queue_ = queues[0].queue;
  interrupt_ = std::move(interrupt);
  event_idx_ = (acked_ & kFeatureEventIdx) != 0;
  queue_->set_features(acked_);
  broken_ = false;
  throttled_.reset();
  throttled_until_.reset();
  submit_retry_at_.reset();
  unsignalled_ = 0;

  // The callback captures only the shared wake-up and the fd number.
  const int fd = queues[0].notify_fd;
  auto r =
      EventRegistration::add(loop, fd, EventLoop::kReadable, [wake = wake_, fd](std::uint32_t) {
        std::uint64_t n = 0;
        // One read resets the eventfd counter; a failed read (nothing
        // pending) still warrants a look at the ring.
        [[maybe_unused]] auto got = ::read(fd, &n, sizeof n);
        [[maybe_unused]] auto s = wake->signal();
      });
  if (!r) {
    mem_ = nullptr;
    queue_ = nullptr;
    interrupt_.reset();
    return tl::unexpected(r.error());
  }
  notify_ = std::move(*r);
  active_ = true;
  stop_.store(false);
  worker_ = std::thread([this] { worker_main(); });
  // The driver may have queued requests before notifying: look once.
  if (auto s = wake_->signal(); !s) LOG_WARN("virtio-blk: %s", s.error().message().c_str());
  return {};
}

void BlockDevice::reset() {
  std::lock_guard control(control_mu_);
  if (active_) {
    notify_.reset();  // waits out a running notify callback
    {
      // Under park_mu_: a parked I/O thread checks stop_ before sleeping.
      std::lock_guard lock(park_mu_);
      stop_.store(true);
    }
    park_cv_.notify_all();
    if (auto s = wake_->signal(); !s) LOG_WARN("virtio-blk: %s", s.error().message().c_str());
    // The I/O thread returns once nothing is in flight: the kernel no
    // longer touches guest buffers the driver may reuse.
    if (worker_.joinable()) worker_.join();
  }
  active_ = false;
  mem_ = nullptr;
  queue_ = nullptr;
  interrupt_.reset();
  acked_ = 0;
  event_idx_ = false;
  broken_ = false;
  throttled_.reset();
  throttled_until_.reset();
  submit_retry_at_.reset();
  unsignalled_ = 0;
}

Expected<void> BlockDevice::swap_disk(DiskImage disk) {
  std::lock_guard control(control_mu_);
  if (disk.read_only() != read_only_) {
    return make_error(Errc::kInvalidArgument,
                      std::string("virtio-blk swap: the new image must be ") +
                          (read_only_ ? "read-only" : "writable") + " like the drive");
  }
  if (!active_) {
    install_disk(std::move(disk));
    return {};
  }
  if (quiesced_) {
    // The I/O thread is parked with nothing in flight: switch here.
    install_disk(std::move(disk));
    if (auto r = interrupt_->signal_config_change(); !r) {
      LOG_WARN("virtio-blk: signalling the config change: %s", r.error().message().c_str());
    }
    return {};
  }
  auto request = std::make_shared<SwapRequest>(std::move(disk));
  {
    std::lock_guard lock(swap_mu_);
    swap_ = request;
  }
  if (auto s = wake_->signal(); !s) return tl::unexpected(s.error());
  // The I/O thread cannot go away meanwhile: reset() waits for control_mu_.
  std::unique_lock lock(swap_mu_);
  swap_cv_.wait(lock, [&] { return request->done; });
  return {};
}

void BlockDevice::update_rate_limiter(std::optional<TokenBucketParams> bandwidth,
                                      std::optional<TokenBucketParams> ops) {
  limiter_.update(bandwidth, ops);
  // A throttled request may go now (or later than planned): look again.
  if (auto s = wake_->signal(); !s) LOG_WARN("virtio-blk: %s", s.error().message().c_str());
}

void BlockDevice::install_disk(DiskImage disk) {
  disk_ = std::move(disk);
  limits_.capacity_sectors = disk_.sectors();
  std::lock_guard lock(config_mu_);
  put_le<std::uint64_t>(config_, kConfigCapacity, limits_.capacity_sectors);
}

bool BlockDevice::swap_pending() {
  std::lock_guard lock(swap_mu_);
  return swap_ != nullptr;
}

void BlockDevice::run_swap() {
  std::shared_ptr<SwapRequest> request;
  {
    std::lock_guard lock(swap_mu_);
    request = swap_;
  }
  if (!request || in_flight_ > 0) return;
  install_disk(std::move(request->disk));
  LOG_INFO("virtio-blk: backing image swapped, %llu sectors",
           static_cast<unsigned long long>(limits_.capacity_sectors));
  if (auto r = interrupt_->signal_config_change(); !r) {
    LOG_WARN("virtio-blk: signalling the config change: %s", r.error().message().c_str());
  }
  {
    std::lock_guard lock(swap_mu_);
    request->done = true;
    swap_.reset();
  }
  swap_cv_.notify_all();
}

void BlockDevice::quiesce() {
  std::lock_guard control(control_mu_);
  if (quiesced_) return;
  quiesced_ = true;
  park_.store(true);
  if (!active_) return;  // activate() starts the thread parked
  if (auto s = wake_->signal(); !s) LOG_WARN("virtio-blk: %s", s.error().message().c_str());
  // Bounded: the thread ends its current request (Sync) or waits for the
  // kernel's completions (Async), then parks; reset() cannot run meanwhile
  // (control_mu_), so it does not exit instead.
  std::unique_lock lock(park_mu_);
  park_cv_.wait(lock, [&] { return parked_; });
}

void BlockDevice::unquiesce() {
  std::lock_guard control(control_mu_);
  if (!quiesced_) return;
  quiesced_ = false;
  {
    std::lock_guard lock(park_mu_);
    park_.store(false);
  }
  park_cv_.notify_all();
}

void BlockDevice::park() {
  if (throttled_) {
    // The last chain popped: back to the ring, so the queue's indices say
    // everything (a snapshot holds no half-started request).
    queue_->undo_pop();
    throttled_.reset();
    throttled_until_.reset();
  }
  flush_signal();
  std::unique_lock lock(park_mu_);
  parked_ = true;
  park_cv_.notify_all();
  park_cv_.wait(lock, [&] { return !park_.load() || stop_.load(); });
  parked_ = false;
  lock.unlock();
  // Notifications that came meanwhile are on the wake-up eventfd; look at
  // the ring once in any case.
  if (auto s = wake_->signal(); !s) LOG_WARN("virtio-blk: %s", s.error().message().c_str());
}

void BlockDevice::worker_main() {
  log::set_thread_name("virtio-blk");
  for (;;) {
    const bool stopping = stop_.load();
    const bool parking = park_.load();
    if (!stopping && !parking) {
      run_swap();
      // While a swap waits for the requests in flight, start no new ones.
      if (!swap_pending()) process_queue();
    }
    if (uring_ && uring_->unsubmitted() > 0) {
      if (auto r = uring_->submit(); !r) {
        if (request_log_.allow()) LOG_WARN("virtio-blk: %s", r.error().message().c_str());
        submit_retry_at_ = Clock::now() + kSubmitRetry;
      } else {
        submit_retry_at_.reset();
      }
      // What the kernel finished while submitting (reads from the page
      // cache) completes now, without a trip through ppoll; the freed
      // slots may take more requests.
      if (reap(stopping) > 0 && !stopping) {
        flush_signal();
        continue;
      }
    }
    flush_signal();
    if (stopping && in_flight_ == 0) return;
    if (parking && !stopping && in_flight_ == 0) {
      park();
      continue;
    }
    wait_for_events();
    if (uring_) reap(stopping || stop_.load());
    flush_signal();
  }
}

void BlockDevice::wait_for_events() {
  std::array<pollfd, 2> fds{};
  nfds_t n = 0;
  fds[n++] = pollfd{wake_->fd(), POLLIN, 0};
  if (uring_) fds[n++] = pollfd{uring_->event_fd(), POLLIN, 0};

  std::optional<Clock::time_point> deadline;
  // Tokens matter only when the request may start: not while a swap
  // waits for the requests in flight.
  if (throttled_ && throttled_until_ && !broken_ && !swap_pending()) deadline = throttled_until_;
  if (submit_retry_at_ && (!deadline || *submit_retry_at_ < *deadline)) {
    deadline = submit_retry_at_;
  }
  timespec ts{};
  const timespec* timeout = nullptr;
  if (deadline) {
    const auto left = std::max(Clock::duration::zero(), *deadline - Clock::now());
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
    ts.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
    ts.tv_nsec = static_cast<long>(ns % 1'000'000'000);
    timeout = &ts;
  }
  if (::ppoll(fds.data(), n, timeout, nullptr) < 0 && errno != EINTR) {
    // Cannot happen with valid descriptors; avoid spinning if it does.
    if (request_log_.allow()) LOG_WARN("virtio-blk: ppoll: %s", std::strerror(errno));
    ::usleep(1000);
  }
  if (fds[0].revents != 0) wake_->consume();
}

void BlockDevice::mark_broken(const char* what, const Error& err) {
  if (broken_) return;
  broken_ = true;
  report_needs_reset(broken_log_, "virtio-blk", what, err, *interrupt_);
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

void BlockDevice::flush_signal() {
  if (unsignalled_ == 0) return;
  unsignalled_ = 0;
  if (!broken_) signal_if_needed();
}

void BlockDevice::push_used(std::uint16_t head, std::uint32_t len) {
  if (broken_) return;
  if (auto r = queue_->add_used(*mem_, head, len); !r) {
    mark_broken("adding to the used ring", r.error());
    return;
  }
  if (++unsignalled_ >= kSignalBatch) {
    unsignalled_ = 0;
    signal_if_needed();
  }
}

void BlockDevice::process_queue() {
  std::uint32_t requests = 0;
  std::uint64_t bytes = 0;
  while (!broken_ && !stop_.load() && !park_.load()) {
    if (requests >= kBatchRequests || bytes >= kBatchBytes) {
      // Budget spent: come back after the checks of worker_main().
      if (auto s = wake_->signal(); !s) LOG_WARN("virtio-blk: %s", s.error().message().c_str());
      return;
    }
    if (throttled_) {
      if (!start(*throttled_)) return;  // woken again when the tokens are there
      ++requests;
      bytes += throttled_->prepared.request.data_len;
      throttled_.reset();
      throttled_until_.reset();
      continue;
    }
    // Every slot busy: a completion frees one and wakes this thread.
    if (uring_ && free_slots_.empty()) return;
    auto popped = queue_->pop(*mem_);
    if (!popped) {
      mark_broken("malformed queue", popped.error());
      return;
    }
    if (!*popped) {
      if (!event_idx_) return;
      // Re-arm notifications, then look again: a request published between
      // the empty pop and the avail_event write would otherwise be missed.
      auto more = queue_->enable_notification(*mem_);
      if (!more) {
        mark_broken("writing the avail event", more.error());
        return;
      }
      if (*more) continue;
      return;
    }
    ++requests;
    DescriptorChain chain = std::move(**popped);
    auto prepared = prepare_request(*mem_, chain, limits_);
    if (!prepared) {
      reject(chain, prepared.error());
      continue;
    }
    Work work{std::move(chain), std::move(*prepared)};
    if (!start(work)) {
      throttled_.emplace(std::move(work));
      return;
    }
    bytes += work.prepared.request.data_len;
  }
}

bool BlockDevice::start(Work& work) {
  const Request& req = work.prepared.request;
  // Every request takes an operation; only data requests take bandwidth.
  const std::uint64_t bytes = is_data(req.type) ? req.data_len : 0;
  const auto now = Clock::now();
  if (!limiter_.consume(bytes, 1, now)) {
    if (!work.throttled) {
      work.throttled = true;
      counters_.rate_limiter_throttled.add();
    }
    // At least a little later, so a limiter answering "now" cannot make
    // this thread spin.
    throttled_until_ = std::max(limiter_.ready_at(bytes, 1, now), now + kMinThrottleWait);
    return false;
  }
  if (uring_ && (is_data(req.type) || req.type == kTypeFlush)) {
    submit_async(work);
    return true;
  }
  const Result result = execute_request(*mem_, work.chain, work.prepared, disk_, drive_id_);
  finish(work.chain.head, req.type, req.data_len, req.status_addr, result);
  return true;
}

void BlockDevice::submit_async(Work& work) {
  const Request& req = work.prepared.request;
  const std::uint64_t offset = req.sector << kSectorShift;
  if (is_data(req.type)) {
    // The same checks read_at/write_at make (request.cpp checked already).
    if (!disk_.check_access(offset, req.data_len, req.type == kTypeOut)) {
      finish(work.chain.head, req.type, req.data_len, req.status_addr,
             tl::unexpected(RequestError::kIo));
      return;
    }
    if (req.data_len == 0) {
      finish(work.chain.head, req.type, 0, req.status_addr, used_len_for(req.type, 0));
      return;
    }
  }
  const std::uint16_t index = free_slots_.back();
  free_slots_.pop_back();
  ++in_flight_;
  InFlight& s = slots_[index];
  s.used = true;
  s.head = work.chain.head;
  s.type = req.type;
  s.status_addr = req.status_addr;
  s.data_len = req.data_len;
  s.iov = to_iovecs(work.prepared.data);
  s.iov_index = 0;
  s.offset = offset;
  s.retries = 0;
  if (!queue_slot(index)) {
    release_slot(index);
    finish(s.head, s.type, s.data_len, s.status_addr, tl::unexpected(RequestError::kIo));
  }
}

bool BlockDevice::queue_slot(std::uint16_t index) {
  InFlight& s = slots_[index];
  const int fd = disk_.fd();
  if (s.type == kTypeFlush) return uring_->queue_fdatasync(fd, index);
  const std::size_t n = std::min(kMaxIov, s.iov.size() - s.iov_index);
  const std::span<const iovec> iov(s.iov.data() + s.iov_index, n);
  return s.type == kTypeIn ? uring_->queue_readv(fd, iov, s.offset, index)
                           : uring_->queue_writev(fd, iov, s.offset, index);
}

void BlockDevice::release_slot(std::uint16_t index) {
  slots_[index].used = false;
  free_slots_.push_back(index);
  --in_flight_;
}

std::size_t BlockDevice::reap(bool stopping) {
  uring_->consume_event();
  std::array<Uring::Completion, 64> batch;
  std::size_t total = 0;
  for (;;) {
    const std::size_t n = uring_->reap(batch);
    for (std::size_t i = 0; i < n; ++i) on_completion(batch[i].user_data, batch[i].res, stopping);
    total += n;
    if (n < batch.size()) return total;
  }
}

void BlockDevice::on_completion(std::uint64_t user_data, int res, bool stopping) {
  if (user_data >= slots_.size() || !slots_[user_data].used) {
    LOG_ERROR("virtio-blk: io_uring completion for unknown operation %llu",
              static_cast<unsigned long long>(user_data));
    return;
  }
  const auto index = static_cast<std::uint16_t>(user_data);
  InFlight& s = slots_[index];
  // After reset() the results go nowhere: the driver has forgotten them.
  auto again = [&] {
    if (stopping) {
      release_slot(index);
    } else if (!queue_slot(index)) {
      release_slot(index);
      finish(s.head, s.type, s.data_len, s.status_addr, tl::unexpected(RequestError::kIo));
    }
  };
  auto done = [&](const Result& r) {
    release_slot(index);
    if (!stopping) finish(s.head, s.type, s.data_len, s.status_addr, r);
  };
  if (res == -EAGAIN || res == -EINTR) {
    if (++s.retries <= kMaxRetries) return again();
  }
  if (res < 0) {
    if (request_log_.allow()) {
      LOG_WARN("virtio-blk: %s: %s", s.type == kTypeFlush ? "flush" : "disk I/O",
               std::strerror(-res));
    }
    return done(tl::unexpected(RequestError::kIo));
  }
  if (s.type == kTypeFlush) return done(used_len_for(s.type, 0));
  if (res == 0) {
    // End of file before the request's end (the image shrank under us).
    if (request_log_.allow()) LOG_WARN("virtio-blk: disk I/O: unexpected end of file");
    return done(tl::unexpected(RequestError::kIo));
  }
  // Drop what was transferred; a short transfer continues with the rest.
  s.retries = 0;
  auto left = static_cast<std::size_t>(res);
  s.offset += left;
  while (left > 0 && s.iov_index < s.iov.size()) {
    iovec& v = s.iov[s.iov_index];
    if (left >= v.iov_len) {
      left -= v.iov_len;
      ++s.iov_index;
    } else {
      v.iov_base = static_cast<std::byte*>(v.iov_base) + left;
      v.iov_len -= left;
      left = 0;
    }
  }
  if (s.iov_index < s.iov.size()) return again();
  done(used_len_for(s.type, s.data_len));
}

void BlockDevice::finish(std::uint16_t head, std::uint32_t type, std::uint64_t data_len,
                         GuestAddress status_addr, const Result& result) {
  std::uint8_t status = kStatusOk;
  std::uint32_t used_len = 0;
  if (result) {
    used_len = *result;
    switch (type) {
      case kTypeIn:
        counters_.read_count.add();
        counters_.read_bytes.add(data_len);
        break;
      case kTypeOut:
        counters_.write_count.add();
        counters_.write_bytes.add(data_len);
        break;
      case kTypeFlush:
        counters_.flush_count.add();
        break;
      default:
        break;
    }
  } else {
    status = status_for(result.error());
    used_len = 1;
    counters_.io_errors.add();
    if (request_log_.allow()) {
      LOG_WARN("virtio-blk: request (head %u) failed: %s", head, to_string(result.error()));
    }
  }
  if (!mem_->write_obj<std::uint8_t>(status_addr, status)) {
    if (request_log_.allow()) {
      LOG_WARN("virtio-blk: request (head %u): status byte not writable; returned with length 0",
               head);
    }
    used_len = 0;
  }
  push_used(head, used_len);
}

void BlockDevice::reject(const DescriptorChain& chain, RequestError error) {
  counters_.invalid_reqs.add();
  if (error == RequestError::kNoStatusByte) {
    if (request_log_.allow()) {
      LOG_WARN("virtio-blk: request (head %u) cannot be completed: %s; returned with length 0",
               chain.head, to_string(error));
    }
    push_used(chain.head, 0);
    return;
  }
  // find_status_byte succeeded in prepare_request, or it would have said so.
  const auto status_addr = find_status_byte(chain);
  std::uint32_t used_len = 1;
  counters_.io_errors.add();
  if (request_log_.allow()) {
    LOG_WARN("virtio-blk: request (head %u) failed: %s", chain.head, to_string(error));
  }
  if (!status_addr || !mem_->write_obj<std::uint8_t>(*status_addr, status_for(error))) {
    used_len = 0;
  }
  push_used(chain.head, used_len);
}

}  // namespace hvz::virtio::block
