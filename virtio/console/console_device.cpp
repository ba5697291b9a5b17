// virtio-console device: features, config space, and the byte streams of
// its two queues, run on the EventLoop (see console_device.hpp).
#include "virtio/console/console_device.hpp"

#include <limits.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace hvz::virtio::console {
namespace {

// writev/readv accept at most IOV_MAX segments; a longer chain is written
// in several calls.
constexpr std::size_t kMaxIov = IOV_MAX;
// Output handled per wake-up of the loop: a guest that refills the
// transmit ring as fast as it drains delays the loop's other fds (and a
// reset waiting for this callback) by one batch, never forever.
constexpr std::uint32_t kTxBatchChains = 64;
constexpr std::uint64_t kTxBatchBytes = 1ull << 20;

template <typename T>
void put_le(std::array<std::uint8_t, kConfigSize>& cfg, std::size_t offset, T value) {
  // x86_64 is little-endian, as the config space is.
  std::memcpy(cfg.data() + offset, &value, sizeof value);
}

std::vector<iovec> to_iovecs(const std::vector<std::span<std::byte>>& slices) {
  std::vector<iovec> iov;
  iov.reserve(std::min(slices.size(), kMaxIov));
  for (const auto& s : slices) {
    if (s.empty()) continue;
    if (iov.size() == kMaxIov) break;
    iov.push_back(iovec{s.data(), s.size()});
  }
  return iov;
}

// Empties a notify eventfd; nothing pending (EAGAIN) is fine.
void drain_eventfd(int fd) {
  std::uint64_t n = 0;
  [[maybe_unused]] auto got = ::read(fd, &n, sizeof n);
}

}  // namespace

ConsoleDevice::ConsoleDevice(int output_fd, int input_fd, WindowSize size)
    : output_fd_(output_fd),
      input_fd_(input_fd),
      m_in_bytes_(metrics::registry().group("console").counter("in_bytes")),
      m_out_bytes_(metrics::registry().group("console").counter("out_bytes")) {
  put_le<std::uint16_t>(config_, kConfigCols, size.cols);
  put_le<std::uint16_t>(config_, kConfigRows, size.rows);
}

ConsoleDevice::~ConsoleDevice() {
  reset();
}

void ConsoleDevice::ack_features(std::uint64_t features) {
  std::lock_guard lock(guard_->mu);
  acked_ = features & kFeatures;
}

void ConsoleDevice::read_config(std::uint64_t offset, std::span<std::uint8_t> data) const {
  for (std::size_t i = 0; i < data.size(); ++i) {
    // offset + i cannot wrap into range: compare without adding first.
    data[i] = (offset < kConfigSize && i < kConfigSize - offset) ? config_[offset + i] : 0;
  }
}

ConsoleCounters ConsoleDevice::counters() const {
  return ConsoleCounters{tx_bytes_.load(std::memory_order_relaxed),
                         rx_bytes_.load(std::memory_order_relaxed),
                         tx_dropped_.load(std::memory_order_relaxed)};
}

Expected<void> ConsoleDevice::activate(const GuestMemory& mem, std::vector<ActiveQueue> queues,
                                       std::shared_ptr<Interrupt> interrupt, EventLoop& loop) {
  if (loop_ != nullptr) return make_error(Errc::kBusy, "virtio-console activate: already active");
  if (queues.size() != 2 || queues[kRxQueue].queue == nullptr ||
      queues[kTxQueue].queue == nullptr || !interrupt) {
    return make_error(Errc::kInvalidArgument, "virtio-console activate: needs exactly two queues");
  }
  // A fresh guard per activation: a callback of an earlier activation still
  // queued on the loop holds the old, inactive one.
  const std::uint64_t acked = acked_;
  guard_ = std::make_shared<Guard>();
  std::shared_ptr<Guard> guard = guard_;
  {
    std::lock_guard lock(guard->mu);
    acked_ = acked;
    mem_ = &mem;
    rx_ = queues[kRxQueue].queue;
    tx_ = queues[kTxQueue].queue;
    rx_notify_fd_ = queues[kRxQueue].queue->ready() ? queues[kRxQueue].notify_fd : -1;
    tx_notify_fd_ = queues[kTxQueue].queue->ready() ? queues[kTxQueue].notify_fd : -1;
    interrupt_ = std::move(interrupt);
    loop_ = &loop;
    event_idx_ = (acked_ & kFeatureEventIdx) != 0;
    rx_->set_features(acked_);
    tx_->set_features(acked_);
    broken_ = false;
    input_open_ = input_fd_ >= 0;
    rx_starved_ = false;
    output_is_socket_ = true;
    pending_.reset();
    pending_offset_ = 0;
    output_blocked_ = false;
    registered_.clear();
  }

  // Registered while the guard is inactive: a callback firing before the
  // device is ready only drains its eventfd.
  std::vector<int> added;
  Expected<void> r{};
  for (const auto& [fd, is_tx] :
       {std::pair{tx_notify_fd_, true}, std::pair{rx_notify_fd_, false}}) {
    if (fd < 0) continue;
    r = loop.add(fd, EventLoop::kReadable, [this, guard, fd = fd, is_tx = is_tx](std::uint32_t) {
      drain_eventfd(fd);
      if (guard->stopping.load()) return;
      std::lock_guard lock(guard->mu);
      if (!guard->active) return;
      if (is_tx) {
        on_tx_notify();
      } else {
        on_rx_notify();
      }
    });
    if (!r) break;
    added.push_back(fd);
  }
  if (!r) {
    for (int fd : added) (void)loop.remove(fd);
    {
      std::lock_guard lock(guard->mu);
      loop_ = nullptr;  // nothing left registered for reset() to remove
    }
    reset();
    return r;
  }

  {
    std::lock_guard lock(guard->mu);
    guard->active = true;
    sync_interest();
  }
  // The driver may have queued output before notifying: look once, on the
  // loop thread, as if it had notified.
  if (tx_notify_fd_ >= 0) {
    const std::uint64_t one = 1;
    [[maybe_unused]] auto w = ::write(tx_notify_fd_, &one, sizeof one);
  }
  return {};
}

void ConsoleDevice::reset() {
  std::vector<int> fds;
  EventLoop* loop = nullptr;
  {
    // First, without the lock: a callback in the middle of a batch stops
    // after its current chain instead of finishing the batch, and no new
    // one takes the lock before us.
    guard_->stopping.store(true);
    std::lock_guard lock(guard_->mu);
    guard_->active = false;
    loop = loop_;
    if (loop != nullptr) {
      if (tx_notify_fd_ >= 0) fds.push_back(tx_notify_fd_);
      if (rx_notify_fd_ >= 0) fds.push_back(rx_notify_fd_);
      for (const auto& [fd, events] : registered_) fds.push_back(fd);
    }
    acked_ = 0;
    mem_ = nullptr;
    rx_ = nullptr;
    tx_ = nullptr;
    rx_notify_fd_ = -1;
    tx_notify_fd_ = -1;
    interrupt_.reset();
    loop_ = nullptr;
    event_idx_ = false;
    broken_ = false;
    input_open_ = false;
    rx_starved_ = false;
    pending_.reset();
    pending_offset_ = 0;
    output_blocked_ = false;
    registered_.clear();
  }
  // Outside the guard: the loop's remove() waits for a running callback,
  // which may itself be waiting for the guard.
  for (int fd : fds) {
    if (auto r = loop->remove(fd); !r) {
      LOG_WARN("virtio-console: removing fd %d from the event loop: %s", fd,
               r.error().message().c_str());
    }
  }
}

void ConsoleDevice::on_tx_notify() {
  process_tx();
  sync_interest();
}

void ConsoleDevice::on_rx_notify() {
  // New RX buffers: poll the input again (the readable callback fills them).
  rx_starved_ = false;
  sync_interest();
}

void ConsoleDevice::on_data_fd(int fd, std::uint32_t events) {
  // A pending chain implies a non-blocking output fd, so trying to write
  // it is harmless even when the loop reported only readability.
  if (fd == output_fd_ && pending_) process_tx();
  if (fd == input_fd_ && (events & EventLoop::kReadable) != 0 &&
      (wanted_events(fd) & EventLoop::kReadable) != 0) {
    receive_input();
  }
  sync_interest();
}

void ConsoleDevice::mark_broken(const char* what, const Error& err) {
  if (broken_) return;
  broken_ = true;
  pending_.reset();
  report_needs_reset(broken_log_, "virtio-console", what, err, *interrupt_);
}

bool ConsoleDevice::signal_if_needed(Queue& queue) {
  auto needed = queue.needs_notification(*mem_);
  if (!needed) {
    mark_broken("reading the used event", needed.error());
    return false;
  }
  if (*needed) {
    if (auto r = interrupt_->signal_used_queue(); !r && io_log_.allow()) {
      LOG_WARN("virtio-console: signalling the used queue: %s", r.error().message().c_str());
    }
  }
  return true;
}

void ConsoleDevice::process_tx() {
  if (broken_ || tx_ == nullptr || !tx_->ready()) return;
  std::uint32_t completed = 0;
  std::uint64_t budget = kTxBatchBytes;
  for (;;) {
    if (guard_->stopping.load()) break;  // reset() is waiting for us
    if (completed >= kTxBatchChains || budget == 0) {
      // Spent: come back through our own notify fd, after the loop's
      // other fds.
      const std::uint64_t one = 1;
      [[maybe_unused]] auto w = ::write(tx_notify_fd_, &one, sizeof one);
      break;
    }
    if (pending_) {
      if (flush_pending(budget) != Flush::kDone) break;  // blocked, spent or broken
      ++completed;
      continue;
    }
    auto popped = tx_->pop(*mem_);
    if (!popped) {
      mark_broken("malformed transmit queue", popped.error());
      break;
    }
    if (!*popped) {
      if (!event_idx_) break;
      // Re-arm notifications, then look again: a chain published between
      // the empty pop and the avail_event write would otherwise be missed.
      auto more = tx_->enable_notification(*mem_);
      if (!more) {
        mark_broken("writing the transmit avail event", more.error());
        break;
      }
      if (*more) continue;
      break;
    }
    pending_ = std::move(**popped);
    pending_offset_ = 0;
  }
  if (completed > 0 && !broken_) signal_if_needed(*tx_);
}

ConsoleDevice::Flush ConsoleDevice::flush_pending(std::uint64_t& budget) {
  const std::uint64_t total = pending_->readable_bytes();
  output_blocked_ = false;
  while (pending_offset_ < total) {
    if (budget == 0) return Flush::kBudgetSpent;
    Reader reader(*mem_, *pending_);
    if (pending_offset_ > 0) {
      if (auto skip = reader.slices(pending_offset_); !skip) {
        mark_broken("reading a transmit chain", skip.error());
        return Flush::kBroken;
      }
    }
    const std::uint64_t want = std::min(total - pending_offset_, budget);
    auto slices = reader.slices(want);
    if (!slices) {
      mark_broken("reading a transmit chain", slices.error());
      return Flush::kBroken;
    }
    std::vector<iovec> iov = to_iovecs(*slices);
    ssize_t n = -1;
    if (output_is_socket_) {
      // MSG_NOSIGNAL: a closed peer is an error to log, not a SIGPIPE.
      msghdr msg{};
      msg.msg_iov = iov.data();
      msg.msg_iovlen = iov.size();
      n = ::sendmsg(output_fd_, &msg, MSG_NOSIGNAL);
      if (n < 0 && errno == ENOTSOCK) {
        output_is_socket_ = false;
        continue;
      }
    } else {
      n = ::writev(output_fd_, iov.data(), static_cast<int>(iov.size()));
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      output_blocked_ = true;  // polled for writability (wanted_events)
      return Flush::kBlocked;
    }
    if (n <= 0) {
      // The output is gone (closed pipe, full disk...): nowhere to put the
      // bytes, so they are counted and logged rather than stalling the
      // guest's console forever.
      const int err = n < 0 ? errno : EIO;
      const std::uint64_t lost = total - pending_offset_;
      tx_dropped_.fetch_add(lost, std::memory_order_relaxed);
      if (io_log_.allow()) {
        LOG_WARN("virtio-console: writing guest output: %s; %llu bytes lost", std::strerror(err),
                 static_cast<unsigned long long>(lost));
      }
      break;
    }
    const auto wrote = static_cast<std::uint64_t>(n);
    pending_offset_ += wrote;
    budget -= std::min(budget, wrote);
    tx_bytes_.fetch_add(wrote, std::memory_order_relaxed);
    m_out_bytes_.add(wrote);
  }
  const std::uint16_t head = pending_->head;
  pending_.reset();
  pending_offset_ = 0;
  if (auto r = tx_->add_used(*mem_, head, 0); !r) {
    mark_broken("adding to the transmit used ring", r.error());
    return Flush::kBroken;
  }
  return Flush::kDone;
}

void ConsoleDevice::stop_input(const char* why) {
  input_open_ = false;
  LOG_INFO("virtio-console: input %s; no longer reading it", why);
}

void ConsoleDevice::receive_input() {
  if (broken_ || rx_ == nullptr || !rx_->ready()) return;
  // One read per readiness report: the input fd may be blocking, and the
  // loop is level-triggered, so remaining input reports readiness again.
  for (;;) {
    auto popped = rx_->pop(*mem_);
    if (!popped) {
      mark_broken("malformed receive queue", popped.error());
      return;
    }
    if (!*popped) {
      if (event_idx_) {
        auto more = rx_->enable_notification(*mem_);
        if (!more) {
          mark_broken("writing the receive avail event", more.error());
          return;
        }
        if (*more) continue;
      }
      // Stop polling the input until the driver posts buffers.
      rx_starved_ = true;
      return;
    }
    const DescriptorChain& chain = **popped;
    Writer writer(*mem_, chain);
    auto slices = writer.slices(writer.remaining());
    if (!slices) {
      mark_broken("writing a receive chain", slices.error());
      return;
    }
    std::vector<iovec> iov = to_iovecs(*slices);
    if (iov.empty()) {
      // No writable byte: nothing can go there; hand it back empty.
      if (auto r = rx_->add_used(*mem_, chain.head, 0); !r) {
        mark_broken("adding to the receive used ring", r.error());
        return;
      }
      if (!signal_if_needed(*rx_)) return;
      continue;
    }
    ssize_t n;
    do {
      n = ::readv(input_fd_, iov.data(), static_cast<int>(iov.size()));
    } while (n < 0 && errno == EINTR);
    if (n <= 0) {
      const int err = errno;
      rx_->undo_pop();
      if (n == 0) {
        stop_input("reached end of file");
      } else if (err != EAGAIN && err != EWOULDBLOCK) {
        if (io_log_.allow()) {
          LOG_WARN("virtio-console: reading input: %s", std::strerror(err));
        }
        stop_input("failed");
      }
      return;
    }
    rx_bytes_.fetch_add(static_cast<std::uint64_t>(n), std::memory_order_relaxed);
    m_in_bytes_.add(static_cast<std::uint64_t>(n));
    if (auto r = rx_->add_used(*mem_, chain.head, static_cast<std::uint32_t>(n)); !r) {
      mark_broken("adding to the receive used ring", r.error());
      return;
    }
    signal_if_needed(*rx_);
    return;
  }
}

std::uint32_t ConsoleDevice::wanted_events(int fd) const {
  std::uint32_t events = 0;
  if (broken_) return 0;
  if (fd == input_fd_ && input_open_ && !rx_starved_ && rx_ != nullptr && rx_->ready()) {
    events |= EventLoop::kReadable;
  }
  if (fd == output_fd_ && pending_ && output_blocked_) events |= EventLoop::kWritable;
  return events;
}

void ConsoleDevice::sync_interest() {
  sync_fd(output_fd_);
  if (input_fd_ != output_fd_) sync_fd(input_fd_);
}

void ConsoleDevice::sync_fd(int fd) {
  if (fd < 0) return;
  const std::uint32_t want = wanted_events(fd);
  const auto it = registered_.find(fd);
  const std::uint32_t have = it == registered_.end() ? 0 : it->second;
  if (want == have) return;
  Expected<void> r{};
  if (want == 0) {
    r = loop_->remove(fd);
    registered_.erase(fd);
  } else if (have == 0) {
    r = loop_->add(fd, want, [this, guard = guard_, fd](std::uint32_t events) {
      if (guard->stopping.load()) return;
      std::lock_guard lock(guard->mu);
      if (!guard->active) return;
      on_data_fd(fd, events);
    });
    if (r) registered_[fd] = want;
  } else {
    r = loop_->modify(fd, want);
    if (r) registered_[fd] = want;
  }
  if (!r) {
    LOG_ERROR("virtio-console: polling fd %d: %s", fd, r.error().message().c_str());
    // An input that cannot be polled (e.g. a regular file, which epoll
    // refuses) would otherwise be retried on every event.
    if (fd == input_fd_ && (want & EventLoop::kReadable) != 0 && have == 0) {
      stop_input("cannot be polled");
    }
  }
}

}  // namespace hvz::virtio::console
