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
#include <tuple>
#include <utility>

#include "vmm/core/iovec.hpp"
#include "vmm/core/le.hpp"

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

// Empties a notify eventfd; nothing pending (EAGAIN) is fine.
void drain_eventfd(int fd) {
  std::uint64_t n = 0;
  [[maybe_unused]] auto got = ::read(fd, &n, sizeof n);
}

}  // namespace

ConsoleDevice::ConsoleDevice(int output_fd, int input_fd, metrics::Group& metrics, WindowSize size)
    : output_fd_(output_fd),
      input_fd_(input_fd),
      m_in_bytes_(metrics.counter("in_bytes")),
      m_out_bytes_(metrics.counter("out_bytes")) {
  put_le<std::uint16_t>(config_, kConfigCols, size.cols);
  put_le<std::uint16_t>(config_, kConfigRows, size.rows);
}

ConsoleDevice::~ConsoleDevice() {
  reset();
}

void ConsoleDevice::ack_features(std::uint64_t features) {
  auto lock = life_.lock();
  acked_ = features & kFeatures;
}

void ConsoleDevice::read_config(std::uint64_t offset, std::span<std::uint8_t> data) const {
  read_config_bytes(config_, offset, data);
}

ConsoleDeviceState ConsoleDevice::save() const {
  auto lock = life_.lock();
  ConsoleDeviceState s;
  s.acked_features = acked_;
  s.config = config_;
  s.activated = life_.active() != nullptr;
  s.tx_resume_offset = resume_offset_;
  return s;
}

Expected<void> ConsoleDevice::restore(const ConsoleDeviceState& state) {
  auto lock = life_.lock();
  auto invalid = [](const std::string& what) {
    return make_error(Errc::kInvalidArgument, "virtio-console restore: " + what);
  };
  if (state.version != ConsoleDeviceState::kVersion) {
    return invalid("state version " + std::to_string(state.version) + " unknown");
  }
  if (life_.active() != nullptr) {
    return make_error(Errc::kBusy, "virtio-console restore: the device is active");
  }
  if (state.config != config_) return invalid("the window size differs from the saved one");
  if ((state.acked_features & ~kFeatures) != 0) return invalid("features never offered were acked");
  acked_ = state.acked_features;
  // Untrusted, but harmless: an offset past the chain's end writes nothing.
  resume_offset_ = state.tx_resume_offset;
  return {};
}

void ConsoleDevice::quiesce() {
  auto lock = life_.lock();
  Active* a = life_.active();
  if (a == nullptr || !a->pending) return;
  // The chain being written is the last one popped.
  a->tx->undo_pop();
  resume_offset_ = a->pending_offset;
  a->pending.reset();
  a->pending_offset = 0;
  a->output_blocked = false;
  // The output fd stays registered for writability: unregistering here,
  // under the mutex, could wait for a callback waiting for it. Its next
  // callback finds nothing pending and drops the registration itself.
}

void ConsoleDevice::unquiesce() {
  auto lock = life_.lock();
  const Active* a = life_.active();
  if (a == nullptr || a->tx_notify_fd < 0) return;
  const std::uint64_t one = 1;
  [[maybe_unused]] auto w = ::write(a->tx_notify_fd, &one, sizeof one);
}

ConsoleCounters ConsoleDevice::counters() const {
  return ConsoleCounters{tx_bytes_.load(std::memory_order_relaxed),
                         rx_bytes_.load(std::memory_order_relaxed),
                         tx_dropped_.load(std::memory_order_relaxed)};
}

Expected<void> ConsoleDevice::activate(const GuestMemory& mem, std::vector<ActiveQueue> queues,
                                       std::shared_ptr<Interrupt> interrupt, EventLoop& loop) {
  if (queues.size() != 2 || queues[kRxQueue].queue == nullptr ||
      queues[kTxQueue].queue == nullptr || !interrupt) {
    return make_error(Errc::kInvalidArgument, "virtio-console activate: needs exactly two queues");
  }
  auto fresh = std::make_unique<Active>();
  fresh->mem = &mem;
  fresh->loop = &loop;
  fresh->rx = queues[kRxQueue].queue;
  fresh->tx = queues[kTxQueue].queue;
  fresh->rx_notify_fd = queues[kRxQueue].queue->ready() ? queues[kRxQueue].notify_fd : -1;
  fresh->tx_notify_fd = queues[kTxQueue].queue->ready() ? queues[kTxQueue].notify_fd : -1;
  fresh->interrupt = std::move(interrupt);
  fresh->input_open = input_fd_ >= 0;
  Expected<void> r{};
  int tx_kick = -1;
  {
    // Registered under the mutex: a callback that fires at once waits for
    // it (the loop's add() does not wait for callbacks).
    auto lock = life_.lock();
    fresh->event_idx = (acked_ & kFeatureEventIdx) != 0;
    fresh->rx->set_features(acked_);
    fresh->tx->set_features(acked_);
    if (auto s = life_.start(std::move(fresh)); !s) return s;
    Active& a = *life_.active();
    for (const auto& [slot, fd, is_tx] : {std::tuple{&a.tx_notify, a.tx_notify_fd, true},
                                          std::tuple{&a.rx_notify, a.rx_notify_fd, false}}) {
      if (fd < 0) continue;
      auto got = EventRegistration::add(
          loop, fd, EventLoop::kReadable,
          life_.callback([this, fd = fd, is_tx = is_tx](Active& x, std::uint32_t) {
            drain_eventfd(fd);
            if (is_tx) {
              on_tx_notify(x);
            } else {
              on_rx_notify(x);
            }
          }));
      if (!got) {
        r = tl::unexpected(got.error());
        break;
      }
      *slot = std::move(*got);
    }
    if (r) {
      sync_interest(a);
      tx_kick = a.tx_notify_fd;
    }
  }
  if (!r) {
    life_.stop();
    return r;
  }
  // The driver may have queued output before notifying: look once, on the
  // loop thread, as if it had notified.
  if (tx_kick >= 0) {
    const std::uint64_t one = 1;
    [[maybe_unused]] auto w = ::write(tx_kick, &one, sizeof one);
  }
  return {};
}

void ConsoleDevice::reset() {
  // A callback in the middle of a batch stops after its current chain;
  // every registration goes with the active state (outside the mutex: the
  // loop's remove() waits for a running callback, which may itself be
  // waiting for the mutex).
  life_.stop();
  auto lock = life_.lock();
  acked_ = 0;
  resume_offset_ = 0;
}

void ConsoleDevice::on_tx_notify(Active& a) {
  process_tx(a);
  sync_interest(a);
}

void ConsoleDevice::on_rx_notify(Active& a) {
  // New RX buffers: poll the input again (the readable callback fills them).
  a.rx_starved = false;
  sync_interest(a);
}

void ConsoleDevice::on_data_fd(Active& a, int fd, std::uint32_t events) {
  // A pending chain implies a non-blocking output fd, so trying to write
  // it is harmless even when the loop reported only readability.
  if (fd == output_fd_ && a.pending) process_tx(a);
  if (fd == input_fd_ && (events & EventLoop::kReadable) != 0 &&
      (wanted_events(a, fd) & EventLoop::kReadable) != 0) {
    receive_input(a);
  }
  sync_interest(a);
}

void ConsoleDevice::mark_broken(Active& a, const char* what, const Error& err) {
  if (a.broken) return;
  a.broken = true;
  a.pending.reset();
  report_needs_reset(broken_log_, "virtio-console", what, err, *a.interrupt);
}

bool ConsoleDevice::signal_if_needed(Active& a, Queue& queue) {
  auto needed = queue.needs_notification(*a.mem);
  if (!needed) {
    mark_broken(a, "reading the used event", needed.error());
    return false;
  }
  if (*needed) {
    if (auto r = a.interrupt->signal_used_queue(); !r && io_log_.allow()) {
      LOG_WARN("virtio-console: signalling the used queue: %s", r.error().message().c_str());
    }
  }
  return true;
}

void ConsoleDevice::process_tx(Active& a) {
  if (a.broken || a.tx == nullptr || !a.tx->ready()) return;
  std::uint32_t completed = 0;
  std::uint64_t budget = kTxBatchBytes;
  for (;;) {
    if (life_.stopping()) break;  // reset() is waiting for us
    if (completed >= kTxBatchChains || budget == 0) {
      // Spent: come back through our own notify fd, after the loop's
      // other fds.
      const std::uint64_t one = 1;
      [[maybe_unused]] auto w = ::write(a.tx_notify_fd, &one, sizeof one);
      break;
    }
    if (a.pending) {
      if (flush_pending(a, budget) != Flush::kDone) break;  // blocked, spent or broken
      ++completed;
      continue;
    }
    auto popped = a.tx->pop(*a.mem);
    if (!popped) {
      mark_broken(a, "malformed transmit queue", popped.error());
      break;
    }
    if (!*popped) {
      if (!a.event_idx) break;
      // Re-arm notifications, then look again: a chain published between
      // the empty pop and the avail_event write would otherwise be missed.
      auto more = a.tx->enable_notification(*a.mem);
      if (!more) {
        mark_broken(a, "writing the transmit avail event", more.error());
        break;
      }
      if (*more) continue;
      break;
    }
    a.pending = std::move(**popped);
    a.pending_offset = std::exchange(resume_offset_, 0);
  }
  if (completed > 0 && !a.broken) signal_if_needed(a, *a.tx);
}

ConsoleDevice::Flush ConsoleDevice::flush_pending(Active& a, std::uint64_t& budget) {
  const std::uint64_t total = a.pending->readable_bytes();
  a.output_blocked = false;
  while (a.pending_offset < total) {
    if (budget == 0) return Flush::kBudgetSpent;
    Reader reader(*a.mem, *a.pending);
    if (a.pending_offset > 0) {
      if (auto skip = reader.slices(a.pending_offset); !skip) {
        mark_broken(a, "reading a transmit chain", skip.error());
        return Flush::kBroken;
      }
    }
    const std::uint64_t want = std::min(total - a.pending_offset, budget);
    auto slices = reader.slices(want);
    if (!slices) {
      mark_broken(a, "reading a transmit chain", slices.error());
      return Flush::kBroken;
    }
    std::vector<iovec> iov = to_iovecs(*slices, kMaxIov);
    ssize_t n = -1;
    if (a.output_is_socket) {
      // MSG_NOSIGNAL: a closed peer is an error to log, not a SIGPIPE.
      msghdr msg{};
      msg.msg_iov = iov.data();
      msg.msg_iovlen = iov.size();
      n = ::sendmsg(output_fd_, &msg, MSG_NOSIGNAL);
      if (n < 0 && errno == ENOTSOCK) {
        a.output_is_socket = false;
        continue;
      }
    } else {
      n = ::writev(output_fd_, iov.data(), static_cast<int>(iov.size()));
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      a.output_blocked = true;  // polled for writability (wanted_events)
      return Flush::kBlocked;
    }
    if (n <= 0) {
      // The output is gone (closed pipe, full disk...): nowhere to put the
      // bytes, so they are counted and logged rather than stalling the
      // guest's console forever.
      const int err = n < 0 ? errno : EIO;
      const std::uint64_t lost = total - a.pending_offset;
      tx_dropped_.fetch_add(lost, std::memory_order_relaxed);
      if (io_log_.allow()) {
        LOG_WARN("virtio-console: writing guest output: %s; %llu bytes lost", std::strerror(err),
                 static_cast<unsigned long long>(lost));
      }
      break;
    }
    const auto wrote = static_cast<std::uint64_t>(n);
    a.pending_offset += wrote;
    budget -= std::min(budget, wrote);
    tx_bytes_.fetch_add(wrote, std::memory_order_relaxed);
    m_out_bytes_.add(wrote);
  }
  const std::uint16_t head = a.pending->head;
  a.pending.reset();
  a.pending_offset = 0;
  if (auto r = a.tx->add_used(*a.mem, head, 0); !r) {
    mark_broken(a, "adding to the transmit used ring", r.error());
    return Flush::kBroken;
  }
  return Flush::kDone;
}

void ConsoleDevice::stop_input(Active& a, const char* why) {
  a.input_open = false;
  LOG_INFO("virtio-console: input %s; no longer reading it", why);
}

void ConsoleDevice::receive_input(Active& a) {
  if (a.broken || a.rx == nullptr || !a.rx->ready()) return;
  // One read per readiness report: the input fd may be blocking, and the
  // loop is level-triggered, so remaining input reports readiness again.
  for (;;) {
    auto popped = a.rx->pop(*a.mem);
    if (!popped) {
      mark_broken(a, "malformed receive queue", popped.error());
      return;
    }
    if (!*popped) {
      if (a.event_idx) {
        auto more = a.rx->enable_notification(*a.mem);
        if (!more) {
          mark_broken(a, "writing the receive avail event", more.error());
          return;
        }
        if (*more) continue;
      }
      // Stop polling the input until the driver posts buffers.
      a.rx_starved = true;
      return;
    }
    const DescriptorChain& chain = **popped;
    Writer writer(*a.mem, chain);
    auto slices = writer.slices(writer.remaining());
    if (!slices) {
      mark_broken(a, "writing a receive chain", slices.error());
      return;
    }
    std::vector<iovec> iov = to_iovecs(*slices, kMaxIov);
    if (iov.empty()) {
      // No writable byte: nothing can go there; hand it back empty.
      if (auto r = a.rx->add_used(*a.mem, chain.head, 0); !r) {
        mark_broken(a, "adding to the receive used ring", r.error());
        return;
      }
      if (!signal_if_needed(a, *a.rx)) return;
      continue;
    }
    ssize_t n;
    do {
      n = ::readv(input_fd_, iov.data(), static_cast<int>(iov.size()));
    } while (n < 0 && errno == EINTR);
    if (n <= 0) {
      const int err = errno;
      a.rx->undo_pop();
      if (n == 0) {
        stop_input(a, "reached end of file");
      } else if (err != EAGAIN && err != EWOULDBLOCK) {
        if (io_log_.allow()) {
          LOG_WARN("virtio-console: reading input: %s", std::strerror(err));
        }
        stop_input(a, "failed");
      }
      return;
    }
    rx_bytes_.fetch_add(static_cast<std::uint64_t>(n), std::memory_order_relaxed);
    m_in_bytes_.add(static_cast<std::uint64_t>(n));
    if (auto r = a.rx->add_used(*a.mem, chain.head, static_cast<std::uint32_t>(n)); !r) {
      mark_broken(a, "adding to the receive used ring", r.error());
      return;
    }
    signal_if_needed(a, *a.rx);
    return;
  }
}

std::uint32_t ConsoleDevice::wanted_events(const Active& a, int fd) const {
  std::uint32_t events = 0;
  if (a.broken) return 0;
  if (fd == input_fd_ && a.input_open && !a.rx_starved && a.rx != nullptr && a.rx->ready()) {
    events |= EventLoop::kReadable;
  }
  if (fd == output_fd_ && a.pending && a.output_blocked) events |= EventLoop::kWritable;
  return events;
}

void ConsoleDevice::sync_interest(Active& a) {
  sync_fd(a, output_fd_);
  if (input_fd_ != output_fd_) sync_fd(a, input_fd_);
}

void ConsoleDevice::sync_fd(Active& a, int fd) {
  if (fd < 0) return;
  const std::uint32_t want = wanted_events(a, fd);
  const auto it = a.data.find(fd);
  const std::uint32_t have = it == a.data.end() ? 0 : it->second.second;
  if (want == have) return;
  Expected<void> r{};
  if (want == 0) {
    a.data.erase(it);  // unregisters (from a callback: without waiting)
  } else if (have == 0) {
    auto got = EventRegistration::add(
        *a.loop, fd, want,
        life_.callback([this, fd](Active& x, std::uint32_t events) { on_data_fd(x, fd, events); }));
    if (got) {
      a.data.emplace(fd, std::pair{std::move(*got), want});
    } else {
      r = tl::unexpected(got.error());
    }
  } else {
    r = it->second.first.modify(want);
    if (r) it->second.second = want;
  }
  if (!r) {
    LOG_ERROR("virtio-console: polling fd %d: %s", fd, r.error().message().c_str());
    // An input that cannot be polled (e.g. a regular file, which epoll
    // refuses) would otherwise be retried on every event.
    if (fd == input_fd_ && (want & EventLoop::kReadable) != 0 && have == 0) {
      stop_input(a, "cannot be polled");
    }
  }
}

}  // namespace hvz::virtio::console
