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

}  // namespace

RngDevice::RngDevice(metrics::Group& metrics, std::optional<TokenBucketParams> bandwidth,
                     std::optional<TokenBucketParams> ops, Source source)
    : source_(source ? std::move(source) : Source(host_getrandom)),
      limiter_(bandwidth, ops),
      timer_(ThrottleTimer::create()),
      m_event_count_(metrics.counter("entropy_event_count")),
      m_bytes_(metrics.counter("entropy_bytes")),
      m_host_fails_(metrics.counter("host_rng_fails")),
      m_throttled_(metrics.counter("entropy_rate_limiter_throttled")) {}

RngDevice::~RngDevice() {
  reset();
}

void RngDevice::ack_features(std::uint64_t features) {
  auto lock = life_.lock();
  acked_ = features & kFeatures;
}

void RngDevice::read_config(std::uint64_t offset, std::span<std::uint8_t> data) const {
  read_config_bytes({}, offset, data);
}

Expected<void> RngDevice::activate(const GuestMemory& mem, std::vector<ActiveQueue> queues,
                                   std::shared_ptr<Interrupt> interrupt, EventLoop& loop) {
  if (queues.size() != 1 || queues[0].queue == nullptr || !interrupt) {
    return make_error(Errc::kInvalidArgument, "virtio-rng activate: needs exactly one queue");
  }
  if (!timer_) return tl::unexpected(timer_.error());
  auto a = std::make_unique<Active>();
  a->mem = &mem;
  a->queue = queues[0].queue->ready() ? queues[0].queue : nullptr;
  a->notify_fd = queues[0].notify_fd;
  a->interrupt = std::move(interrupt);
  const bool has_queue = a->queue != nullptr;
  Expected<void> r;
  {
    auto lock = life_.lock();
    if (a->queue) a->queue->set_features(acked_);
    (void)timer_->disarm();
    if (auto s = life_.start(std::move(a)); !s) return s;
    if (!has_queue) return {};  // nothing will ever be asked for
    // Added under the mutex: a callback that fires at once waits for it.
    Active& act = *life_.active();
    auto notify =
        EventRegistration::add(loop, act.notify_fd, EventLoop::kReadable,
                               life_.callback([this](Active& x, std::uint32_t) { on_notify(x); }));
    if (notify) {
      act.notify = std::move(*notify);
      auto timer =
          EventRegistration::add(loop, timer_->fd(), EventLoop::kReadable,
                                 life_.callback([this](Active& x, std::uint32_t) { on_timer(x); }));
      if (timer) {
        act.timer = std::move(*timer);
      } else {
        r = tl::unexpected(timer.error());
      }
    } else {
      r = tl::unexpected(notify.error());
    }
  }
  if (!r) {
    life_.stop();
    return r;
  }
  // The driver may have posted buffers before notifying: look once.
  (void)timer_->fire_now();
  return {};
}

void RngDevice::reset() {
  life_.stop();
  if (timer_) (void)timer_->disarm();
  auto lock = life_.lock();
  acked_ = 0;
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

RngDeviceState RngDevice::save() const {
  auto lock = life_.lock();
  RngDeviceState s;
  s.acked_features = acked_;
  s.activated = life_.active() != nullptr;
  return s;
}

Expected<void> RngDevice::restore(const RngDeviceState& state) {
  auto lock = life_.lock();
  if (state.version != RngDeviceState::kVersion) {
    return make_error(Errc::kInvalidArgument, "virtio-rng restore: state version " +
                                                  std::to_string(state.version) + " unknown");
  }
  if (life_.active() != nullptr) {
    return make_error(Errc::kBusy, "virtio-rng restore: the device is active");
  }
  if ((state.acked_features & ~kFeatures) != 0) {
    return make_error(Errc::kInvalidArgument, "virtio-rng restore: features never offered acked");
  }
  acked_ = state.acked_features;
  return {};
}

bool RngDevice::throttled() const {
  auto lock = life_.lock();
  return life_.active() != nullptr && life_.active()->throttled;
}

void RngDevice::mark_broken(Active& a, const char* what, const Error& err) {
  if (a.broken) return;
  a.broken = true;
  report_needs_reset(broken_log_, "virtio-rng", what, err, *a.interrupt);
}

void RngDevice::on_notify(Active& a) {
  std::uint64_t n = 0;
  [[maybe_unused]] auto got = ::read(a.notify_fd, &n, sizeof n);
  m_event_count_.add();
  // Throttled: the timer resumes the queue; looking now would only be
  // refused again.
  if (a.throttled) return;
  process_queue(a);
}

void RngDevice::on_timer(Active& a) {
  timer_->drain();
  a.throttled = false;
  process_queue(a);
}

Expected<std::optional<DescriptorChain>> RngDevice::pop(Active& a) {
  auto popped = a.queue->pop(*a.mem);
  if (!popped || *popped || !(acked_ & kFeatureEventIdx)) return popped;
  // Ask for a notification when buffers come, then look once more: a chain
  // published in between would otherwise wait for one that never comes.
  auto more = a.queue->enable_notification(*a.mem);
  if (!more) return tl::unexpected(more.error());
  if (!*more) return std::optional<DescriptorChain>();
  return a.queue->pop(*a.mem);
}

void RngDevice::process_queue(Active& a) {
  if (a.broken || a.queue == nullptr) return;
  Queue& q = *a.queue;
  const std::uint16_t used_before = q.next_used();
  for (unsigned done = 0;; ++done) {
    if (done == kBudget) {
      // Come back after the loop's other fds.
      if (auto r = timer_->fire_now(); !r) {
        LOG_ERROR("virtio-rng: rearming: %s", r.error().message().c_str());
      }
      break;
    }
    auto popped = pop(a);
    if (!popped) {
      mark_broken(a, "malformed request queue", popped.error());
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
        a.throttled = true;
        m_throttled_.add();
        if (auto r = timer_->arm_at(limiter_.ready_at(len, 1)); !r) {
          // Without a timer, the next notification retries instead.
          a.throttled = false;
          LOG_ERROR("virtio-rng: arming the rate-limit timer: %s", r.error().message().c_str());
        }
        break;
      }
      filled = fill(a, chain, len);
    }
    if (auto r = q.add_used(*a.mem, chain.head, filled); !r) {
      mark_broken(a, "adding to the used ring", r.error());
      break;
    }
    m_bytes_.add(filled);
  }
  if (a.broken || q.next_used() == used_before) return;
  auto needed = q.needs_notification(*a.mem);
  if (!needed) {
    mark_broken(a, "reading the used event", needed.error());
    return;
  }
  if (*needed) {
    if (auto r = a.interrupt->signal_used_queue(); !r && log_.allow()) {
      LOG_WARN("virtio-rng: signalling the used queue: %s", r.error().message().c_str());
    }
  }
}

std::uint32_t RngDevice::fill(Active& a, const DescriptorChain& chain, std::size_t len) {
  Writer writer(*a.mem, chain);
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
