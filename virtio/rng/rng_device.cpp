// virtio-rng device: fills the guest's buffers from getrandom(2) on the
// event loop thread, optionally rate-limited (see rng_device.hpp).
#include "virtio/rng/rng_device.hpp"

#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace hvz::virtio::rng {
namespace {

// Chains served per callback before yielding to the loop's other fds.
constexpr unsigned kBudget = 64;

ssize_t host_getrandom(void* buf, std::size_t len) {
  return ::getrandom(buf, len, 0);
}

void drain(int fd) {
  std::uint64_t n = 0;
  [[maybe_unused]] auto got = ::read(fd, &n, sizeof n);
}

}  // namespace

RngDevice::RngDevice(std::optional<TokenBucketParams> bandwidth,
                     std::optional<TokenBucketParams> ops, Source source)
    : source_(source ? std::move(source) : Source(host_getrandom)),
      limiter_(bandwidth, ops),
      timer_(ThrottleTimer::create()),
      m_event_count_(metrics::registry().group("entropy").counter("entropy_event_count")),
      m_bytes_(metrics::registry().group("entropy").counter("entropy_bytes")),
      m_host_fails_(metrics::registry().group("entropy").counter("host_rng_fails")),
      m_throttled_(metrics::registry().group("entropy").counter("entropy_rate_limiter_throttled")) {
}

RngDevice::~RngDevice() {
  reset();
}

void RngDevice::ack_features(std::uint64_t features) {
  std::lock_guard lock(guard_->mu);
  acked_ = features & kFeatures;
}

void RngDevice::read_config(std::uint64_t, std::span<std::uint8_t> data) const {
  std::fill(data.begin(), data.end(), std::uint8_t{0});
}

Expected<void> RngDevice::activate(const GuestMemory& mem, std::vector<ActiveQueue> queues,
                                   std::shared_ptr<Interrupt> interrupt, EventLoop& loop) {
  if (queues.size() != 1 || queues[0].queue == nullptr || !interrupt) {
    return make_error(Errc::kInvalidArgument, "virtio-rng activate: needs exactly one queue");
  }
  if (!timer_) return tl::unexpected(timer_.error());
  Queue* q = queues[0].queue->ready() ? queues[0].queue : nullptr;
  const int notify_fd = queues[0].notify_fd;
  {
    std::lock_guard lock(guard_->mu);
    if (guard_->active) return make_error(Errc::kBusy, "virtio-rng activate: already active");
    mem_ = &mem;
    queue_ = q;
    notify_fd_ = notify_fd;
    interrupt_ = std::move(interrupt);
    loop_ = &loop;
    if (q) q->set_features(acked_);
    broken_ = false;
    throttled_ = false;
    (void)timer_->disarm();
    guard_->active = true;
  }
  if (q == nullptr) return {};  // nothing will ever be asked for
  // Registered without the lock: a callback may run at once and takes it.
  auto callback = [this, guard = guard_](void (RngDevice::*handler)()) {
    return [this, guard, handler](std::uint32_t) {
      std::lock_guard lock(guard->mu);
      if (!guard->active) return;  // reset() ran or is running
      (this->*handler)();
    };
  };
  auto r = loop.add(notify_fd, EventLoop::kReadable, callback(&RngDevice::on_notify));
  const bool notify_added = r.has_value();
  if (r) r = loop.add(timer_->fd(), EventLoop::kReadable, callback(&RngDevice::on_timer));
  if (!r) {
    teardown(loop, notify_added, false);
    return r;
  }
  // The driver may have posted buffers before notifying: look once.
  (void)timer_->fire_now();
  return {};
}

void RngDevice::teardown(EventLoop& loop, bool notify_added, bool timer_added) {
  int notify_fd = -1;
  {
    std::lock_guard lock(guard_->mu);
    guard_->active = false;
    notify_fd = notify_fd_;
    mem_ = nullptr;
    queue_ = nullptr;
    notify_fd_ = -1;
    interrupt_.reset();
    loop_ = nullptr;
    broken_ = false;
    throttled_ = false;
  }
  // remove() waits out a running callback of that fd: never with the lock.
  if (notify_added) {
    if (auto r = loop.remove(notify_fd); !r) {
      LOG_WARN("virtio-rng: removing the notify fd: %s", r.error().message().c_str());
    }
  }
  if (timer_added) {
    if (auto r = loop.remove(timer_->fd()); !r) {
      LOG_WARN("virtio-rng: removing the timer fd: %s", r.error().message().c_str());
    }
  }
  if (timer_) (void)timer_->disarm();
}

void RngDevice::reset() {
  EventLoop* loop = nullptr;
  bool registered = false;
  {
    std::lock_guard lock(guard_->mu);
    if (guard_->active) {
      loop = loop_;
      registered = queue_ != nullptr;
    }
    acked_ = 0;
  }
  if (loop != nullptr) teardown(*loop, registered, registered);
}

void RngDevice::update_rate_limiter(std::optional<TokenBucketParams> bandwidth,
                                    std::optional<TokenBucketParams> ops) {
  limiter_.update(bandwidth, ops);
  // The timer callback retries whatever waits (harmless when nothing does,
  // or when the device is not active: activate() disarms it).
  if (timer_) {
    if (auto r = timer_->fire_now(); !r) {
      LOG_WARN("virtio-rng: waking the queue: %s", r.error().message().c_str());
    }
  }
}

bool RngDevice::throttled() const {
  std::lock_guard lock(guard_->mu);
  return throttled_;
}

void RngDevice::mark_broken(const char* what, const Error& err) {
  if (broken_) return;
  broken_ = true;
  report_needs_reset(broken_log_, "virtio-rng", what, err, *interrupt_);
}

void RngDevice::on_notify() {
  drain(notify_fd_);
  m_event_count_.add();
  // Throttled: the timer resumes the queue; looking now would only be
  // refused again.
  if (throttled_) return;
  process_queue();
}

void RngDevice::on_timer() {
  timer_->drain();
  throttled_ = false;
  process_queue();
}

Expected<std::optional<DescriptorChain>> RngDevice::pop() {
  auto popped = queue_->pop(*mem_);
  if (!popped || *popped || !(acked_ & kFeatureEventIdx)) return popped;
  // Ask for a notification when buffers come, then look once more: a chain
  // published in between would otherwise wait for one that never comes.
  auto more = queue_->enable_notification(*mem_);
  if (!more) return tl::unexpected(more.error());
  if (!*more) return std::optional<DescriptorChain>();
  return queue_->pop(*mem_);
}

void RngDevice::process_queue() {
  if (broken_ || queue_ == nullptr) return;
  Queue& q = *queue_;
  const std::uint16_t used_before = q.next_used();
  for (unsigned done = 0;; ++done) {
    if (done == kBudget) {
      // Come back after the loop's other fds.
      if (auto r = timer_->fire_now(); !r) {
        LOG_ERROR("virtio-rng: rearming: %s", r.error().message().c_str());
      }
      break;
    }
    auto popped = pop();
    if (!popped) {
      mark_broken("malformed request queue", popped.error());
      break;
    }
    if (!*popped) break;
    const DescriptorChain& chain = **popped;
    const bool has_readable = std::any_of(chain.descriptors.begin(), chain.descriptors.end(),
                                          [](const Descriptor& d) { return !d.device_writable; });
    const std::uint64_t room = chain.writable_bytes();
    std::uint32_t filled = 0;
    if (has_readable || room == 0) {
      if (log_.allow()) {
        LOG_WARN("virtio-rng: request (head %u) %s; returned unused", chain.head,
                 has_readable ? "has a driver-readable descriptor" : "has no writable byte");
      }
    } else {
      const auto len = static_cast<std::size_t>(std::min<std::uint64_t>(room, kMaxRequestBytes));
      if (!limiter_.consume(len, 1)) {
        // Keep the request for when the limiter allows it.
        q.undo_pop();
        throttled_ = true;
        m_throttled_.add();
        if (auto r = timer_->arm_at(limiter_.ready_at(len, 1)); !r) {
          // Without a timer, the next notification retries instead.
          throttled_ = false;
          LOG_ERROR("virtio-rng: arming the rate-limit timer: %s", r.error().message().c_str());
        }
        break;
      }
      filled = fill(chain, len);
    }
    if (auto r = q.add_used(*mem_, chain.head, filled); !r) {
      mark_broken("adding to the used ring", r.error());
      break;
    }
    m_bytes_.add(filled);
  }
  if (broken_ || q.next_used() == used_before) return;
  auto needed = q.needs_notification(*mem_);
  if (!needed) {
    mark_broken("reading the used event", needed.error());
    return;
  }
  if (*needed) {
    if (auto r = interrupt_->signal_used_queue(); !r && log_.allow()) {
      LOG_WARN("virtio-rng: signalling the used queue: %s", r.error().message().c_str());
    }
  }
}

std::uint32_t RngDevice::fill(const DescriptorChain& chain, std::size_t len) {
  Writer writer(*mem_, chain);
  auto slices = writer.slices(len);
  if (!slices) {
    // pop() checked every descriptor against guest RAM: not expected.
    if (log_.allow()) {
      LOG_WARN("virtio-rng: request (head %u): %s", chain.head, slices.error().message().c_str());
    }
    return 0;
  }
  std::size_t total = 0;
  for (const std::span<std::byte>& s : *slices) {
    std::size_t off = 0;
    while (off < s.size()) {
      const ssize_t n = source_(s.data() + off, s.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0 || static_cast<std::size_t>(n) > s.size() - off) {
        const int err = n < 0 ? errno : EIO;
        m_host_fails_.add();
        if (log_.allow()) {
          LOG_WARN("virtio-rng: getrandom: %s; request (head %u) returned unused",
                   std::strerror(err), chain.head);
        }
        return 0;
      }
      off += static_cast<std::size_t>(n);
    }
    total += s.size();
  }
  return static_cast<std::uint32_t>(total);
}

}  // namespace hvz::virtio::rng
