// virtio-net device: features, config space, TX and RX packet work on the
// event loop thread (see net_device.hpp).
#include "virtio/net/net_device.hpp"

#include <unistd.h>

#include <cstring>

namespace hvz::virtio::net {
namespace {

// Chains (TX) or frames (RX) handled per callback before yielding to the
// loop's other fds; a guest that keeps posting cannot starve them.
constexpr unsigned kTxBudget = 256;
constexpr unsigned kRxBudget = 256;

// virtio_net_hdr gso_type values. The ECN bit (0x80) needs HOST_ECN, which
// we do not offer, so a type with it set is refused like any other.
constexpr std::uint8_t kGsoTcpV4 = 1;
constexpr std::uint8_t kGsoTcpV6 = 4;

void bump(std::atomic<std::uint64_t>& counter, std::uint64_t n = 1) {
  counter.fetch_add(n, std::memory_order_relaxed);
}

// The device's own counter and the registry's.
void bump(std::atomic<std::uint64_t>& counter, metrics::Counter& metric, std::uint64_t n = 1) {
  counter.fetch_add(n, std::memory_order_relaxed);
  metric.add(n);
}

void drain(int fd) {
  std::uint64_t n = 0;
  // One read resets the eventfd; nothing pending still warrants a look.
  [[maybe_unused]] auto got = ::read(fd, &n, sizeof n);
}

}  // namespace

NetDevice::Registry::Registry(metrics::Group& g)
    : rx_bytes(g.counter("rx_bytes")),
      rx_packets(g.counter("rx_packets")),
      tx_bytes(g.counter("tx_bytes")),
      tx_packets(g.counter("tx_packets")),
      rx_dropped(g.counter("rx_dropped")),
      tx_dropped(g.counter("tx_dropped")),
      tx_malformed(g.counter("tx_malformed")),
      rx_throttled(g.counter("rx_rate_limiter_throttled")),
      tx_throttled(g.counter("tx_rate_limiter_throttled")) {}

NetDevice::NetDevice(Tap tap, std::optional<MacAddress> mac, std::string iface_id,
                     metrics::Group& metrics, RateLimits rx, RateLimits tx)
    : tap_(std::move(tap)),
      iface_id_(std::move(iface_id)),
      rx_limiter_(rx.bandwidth, rx.ops),
      tx_limiter_(tx.bandwidth, tx.ops),
      rx_timer_(ThrottleTimer::create()),
      tx_timer_(ThrottleTimer::create()),
      rx_buffer_(kMaxPacketSize + 1),
      m_(metrics) {
  features_ = kFeatureVersion1 | kFeatureEventIdx | kFeatureIndirectDesc | kFeatureStatus |
              kFeatureMrgRxbuf;
  if (mac) {
    features_ |= kFeatureMac;
    std::memcpy(config_.data() + kConfigMac, mac->data(), mac->size());
  }
  if (tap_.supports_offloads()) {
    features_ |= kFeatureCsum | kFeatureGuestCsum | kFeatureHostTso4 | kFeatureHostTso6 |
                 kFeatureGuestTso4 | kFeatureGuestTso6;
  }
  // x86_64 is little-endian, as the config space is.
  const std::uint16_t status = kStatusLinkUp;
  std::memcpy(config_.data() + kConfigStatus, &status, sizeof status);
}

NetDevice::~NetDevice() {
  reset();
}

void NetDevice::ack_features(std::uint64_t features) {
  auto lock = life_.lock();
  acked_ = features & features_;
  if (!tap_.supports_offloads()) return;
  unsigned offloads = 0;
  // TSO without checksum offload means nothing to the kernel (nor to the
  // spec: GUEST_TSO4/6 require GUEST_CSUM).
  if (acked_ & kFeatureGuestCsum) {
    offloads |= kTunOffloadCsum;
    if (acked_ & kFeatureGuestTso4) offloads |= kTunOffloadTso4;
    if (acked_ & kFeatureGuestTso6) offloads |= kTunOffloadTso6;
  }
  if (auto r = tap_.set_offloads(offloads); !r) {
    LOG_WARN("virtio-net: setting TAP offloads 0x%x: %s", offloads, r.error().message().c_str());
  }
}

void NetDevice::read_config(std::uint64_t offset, std::span<std::uint8_t> data) const {
  read_config_bytes(config_, offset, data);
}

NetDevice::Metrics NetDevice::metrics() const {
  auto get = [](const std::atomic<std::uint64_t>& c) { return c.load(std::memory_order_relaxed); };
  Metrics m;
  m.rx_frames = get(counters_.rx_frames);
  m.rx_bytes = get(counters_.rx_bytes);
  m.rx_drops = get(counters_.rx_drops);
  m.rx_errors = get(counters_.rx_errors);
  m.tx_frames = get(counters_.tx_frames);
  m.tx_bytes = get(counters_.tx_bytes);
  m.tx_drops = get(counters_.tx_drops);
  m.tx_errors = get(counters_.tx_errors);
  return m;
}

NetDeviceState NetDevice::save() const {
  auto lock = life_.lock();
  NetDeviceState s;
  s.iface_id = iface_id_;
  if (features_ & kFeatureMac) {
    MacAddress mac;
    std::memcpy(mac.data(), config_.data() + kConfigMac, mac.size());
    s.mac = mac;
  }
  s.acked_features = acked_;
  s.config = config_;
  s.activated = life_.active() != nullptr;
  return s;
}

Expected<void> NetDevice::restore(const NetDeviceState& state) {
  {
    auto lock = life_.lock();
    auto invalid = [](const std::string& what) {
      return make_error(Errc::kInvalidArgument, "virtio-net restore: " + what);
    };
    if (state.version != NetDeviceState::kVersion) {
      return invalid("state version " + std::to_string(state.version) + " unknown");
    }
    if (life_.active() != nullptr) {
      return make_error(Errc::kBusy, "virtio-net restore: the device is active");
    }
    if (state.iface_id != iface_id_ || state.config != config_ ||
        state.mac.has_value() != ((features_ & kFeatureMac) != 0)) {
      return invalid("saved for another interface (id, MAC or config differ)");
    }
    if ((state.acked_features & ~features_) != 0) {
      return invalid("features never offered were acked");
    }
  }
  ack_features(state.acked_features);  // the TAP offloads follow
  return {};
}

bool NetDevice::tap_polling() const {
  auto lock = life_.lock();
  return life_.active() != nullptr && life_.active()->tap.registered();
}

bool NetDevice::rx_throttled() const {
  auto lock = life_.lock();
  return life_.active() != nullptr && life_.active()->rx_throttled;
}

bool NetDevice::tx_throttled() const {
  auto lock = life_.lock();
  return life_.active() != nullptr && life_.active()->tx_throttled;
}

void NetDevice::update_rx_rate_limiter(RateLimits limits) {
  rx_limiter_.update(limits.bandwidth, limits.ops);
  // The timer's callback retries a waiting frame (and does no harm when
  // none waits; activate() disarms a timer fired while inactive).
  if (rx_timer_) {
    if (auto r = rx_timer_->fire_now(); !r) {
      LOG_WARN("virtio-net: waking RX: %s", r.error().message().c_str());
    }
  }
}

void NetDevice::update_tx_rate_limiter(RateLimits limits) {
  tx_limiter_.update(limits.bandwidth, limits.ops);
  if (tx_timer_) {
    if (auto r = tx_timer_->fire_now(); !r) {
      LOG_WARN("virtio-net: waking TX: %s", r.error().message().c_str());
    }
  }
}

bool NetDevice::throttle(const RateLimiter& limiter, const ThrottleTimer& timer,
                         std::uint64_t bytes) {
  if (auto r = timer.arm_at(limiter.ready_at(bytes, 1)); !r) {
    // Nothing will wake the queue but its next notification.
    LOG_ERROR("virtio-net: arming the rate-limit timer: %s", r.error().message().c_str());
    return false;
  }
  return true;
}

EventLoop::Callback NetDevice::make_callback(void (NetDevice::*handler)(Active&)) {
  return life_.callback([this, handler](Active& a, std::uint32_t) { (this->*handler)(a); });
}

Expected<void> NetDevice::activate(const GuestMemory& mem, std::vector<ActiveQueue> queues,
                                   std::shared_ptr<Interrupt> interrupt, EventLoop& loop) {
  if (queues.size() != 2 || queues[kRxQueue].queue == nullptr ||
      queues[kTxQueue].queue == nullptr || !interrupt) {
    return make_error(Errc::kInvalidArgument, "virtio-net activate: needs an RX and a TX queue");
  }
  if (!rx_timer_) return tl::unexpected(rx_timer_.error());
  if (!tx_timer_) return tl::unexpected(tx_timer_.error());
  auto fresh = std::make_unique<Active>();
  fresh->mem = &mem;
  fresh->loop = &loop;
  fresh->rx = queues[kRxQueue].queue->ready() ? queues[kRxQueue].queue : nullptr;
  fresh->tx = queues[kTxQueue].queue->ready() ? queues[kTxQueue].queue : nullptr;
  fresh->rx_notify_fd = queues[kRxQueue].notify_fd;
  fresh->tx_notify_fd = queues[kTxQueue].notify_fd;
  fresh->interrupt = std::move(interrupt);
  Expected<void> r;
  int tx_kick = -1;
  {
    // Registered under the mutex: a callback that fires at once waits for
    // it (the loop's add() does not wait for callbacks).
    auto lock = life_.lock();
    if (fresh->rx) fresh->rx->set_features(acked_);
    if (fresh->tx) fresh->tx->set_features(acked_);
    (void)rx_timer_->disarm();
    (void)tx_timer_->disarm();
    if (auto s = life_.start(std::move(fresh)); !s) return s;
    Active& a = *life_.active();
    auto add = [&](EventRegistration& slot, int fd, void (NetDevice::*handler)(Active&)) {
      if (!r) return;
      auto got = EventRegistration::add(loop, fd, EventLoop::kReadable, make_callback(handler));
      if (got) {
        slot = std::move(*got);
      } else {
        r = tl::unexpected(got.error());
      }
    };
    if (a.rx) {
      add(a.tap, tap_.fd(), &NetDevice::on_tap_readable);
      add(a.rx_notify, a.rx_notify_fd, &NetDevice::on_rx_notify);
      add(a.rx_timer, rx_timer_->fd(), &NetDevice::on_rx_timer);
    }
    if (a.tx) {
      add(a.tx_notify, a.tx_notify_fd, &NetDevice::on_tx_notify);
      add(a.tx_timer, tx_timer_->fd(), &NetDevice::on_tx_timer);
      tx_kick = a.tx_notify_fd;
    }
  }
  if (!r) {
    reset_active();
    return r;
  }
  // The driver may have queued frames before notifying: look once.
  if (tx_kick >= 0) {
    const std::uint64_t one = 1;
    [[maybe_unused]] auto put = ::write(tx_kick, &one, sizeof one);
  }
  return {};
}

void NetDevice::reset_active() {
  life_.stop();  // unregisters every fd, waiting out running callbacks
  if (rx_timer_) (void)rx_timer_->disarm();
  if (tx_timer_) (void)tx_timer_->disarm();
}

void NetDevice::reset() {
  reset_active();
  auto lock = life_.lock();
  acked_ = 0;
  if (tap_.supports_offloads()) {
    if (auto r = tap_.set_offloads(0); !r) {
      LOG_WARN("virtio-net: clearing TAP offloads: %s", r.error().message().c_str());
    }
  }
}

void NetDevice::set_tap_polling(Active& a, bool on) {
  if (on == a.tap.registered()) return;
  if (!on) {
    a.tap.reset();
    return;
  }
  auto r = EventRegistration::add(*a.loop, tap_.fd(), EventLoop::kReadable,
                                  make_callback(&NetDevice::on_tap_readable));
  if (!r) {
    LOG_ERROR("virtio-net: resuming TAP polling: %s", r.error().message().c_str());
    return;
  }
  a.tap = std::move(*r);
}

void NetDevice::mark_broken(Active& a, const char* what, const Error& err) {
  a.pending_len = 0;
  if (a.broken) return;
  a.broken = true;
  report_needs_reset(broken_log_, "virtio-net", what, err, *a.interrupt);
}

void NetDevice::signal_used(Active& a, Queue& queue) {
  auto needed = queue.needs_notification(*a.mem);
  if (!needed) {
    mark_broken(a, "reading the used event", needed.error());
    return;
  }
  if (*needed) {
    if (auto r = a.interrupt->signal_used_queue(); !r) {
      LOG_WARN("virtio-net: signalling the used queue: %s", r.error().message().c_str());
    }
  }
}

// ---- TX ----

void NetDevice::on_tx_notify(Active& a) {
  drain(a.tx_notify_fd);
  // Throttled: the timer resumes TX; looking now would be refused again.
  if (a.broken || a.tx == nullptr || a.tx_throttled) return;
  process_tx(a);
  if (a.broken) set_tap_polling(a, false);
}

void NetDevice::on_tx_timer(Active& a) {
  tx_timer_->drain();
  a.tx_throttled = false;
  if (a.broken || a.tx == nullptr) return;
  process_tx(a);
  if (a.broken) set_tap_polling(a, false);
}

void NetDevice::process_tx(Active& a) {
  Queue& q = *a.tx;
  const bool event_idx = (acked_ & kFeatureEventIdx) != 0;
  const std::uint16_t used_before = q.next_used();
  for (unsigned done = 0;;) {
    if (done == kTxBudget) {
      // Come back through our own notify fd after the loop's other fds.
      const std::uint64_t one = 1;
      [[maybe_unused]] auto put = ::write(a.tx_notify_fd, &one, sizeof one);
      break;
    }
    auto popped = q.pop(*a.mem);
    if (!popped) {
      mark_broken(a, "malformed TX queue", popped.error());
      break;
    }
    if (!*popped) {
      if (!event_idx) break;
      // Re-arm, then look again: a chain published in between would
      // otherwise wait for a notification that never comes.
      auto more = q.enable_notification(*a.mem);
      if (!more) {
        mark_broken(a, "writing the TX avail event", more.error());
        break;
      }
      if (*more) continue;
      break;
    }
    // Well-formed frames pass the limiter first (malformed ones are dropped
    // without being sent). A refused frame stays in the ring.
    const std::uint64_t len = (*popped)->readable_bytes();
    if (len >= kVnetHdrSize && len <= kMaxPacketSize && !tx_limiter_.consume(len, 1)) {
      q.undo_pop();
      m_.tx_throttled.add();
      a.tx_throttled = throttle(tx_limiter_, *tx_timer_, len);
      break;
    }
    ++done;
    transmit(a, **popped);
    if (auto r = q.add_used(*a.mem, (*popped)->head, 0); !r) {
      mark_broken(a, "adding to the TX used ring", r.error());
      break;
    }
  }
  if (q.next_used() != used_before) signal_used(a, q);
}

void NetDevice::transmit(Active& a, const DescriptorChain& chain) {
  auto drop = [&](const char* why) {
    bump(counters_.tx_drops, m_.tx_dropped);
    bump(counters_.tx_errors, m_.tx_malformed);
    if (frame_log_.allow()) LOG_WARN("virtio-net: TX frame (head %u) dropped: %s", chain.head, why);
  };
  const std::uint64_t len = chain.readable_bytes();
  if (len < kVnetHdrSize) return drop("shorter than the virtio-net header");
  if (len > kMaxPacketSize) return drop("larger than 64 KiB");

  Reader reader(*a.mem, chain);
  // The header is copied out, checked, and sent from our copy: the guest
  // cannot change it between the check and the kernel reading it.
  std::array<std::byte, kVnetHdrSize> hdr;
  if (!reader.read(hdr)) return drop("header unreadable");
  const auto flags = static_cast<std::uint8_t>(hdr[kHdrFlags]);
  const auto gso = static_cast<std::uint8_t>(hdr[kHdrGsoType]);
  if ((flags & kHdrFlagNeedsCsum) && !(acked_ & kFeatureCsum)) {
    return drop("checksum offload requested but CSUM not negotiated");
  }
  if (gso != kGsoTypeNone) {
    const bool ok = (gso == kGsoTcpV4 && (acked_ & kFeatureHostTso4)) ||
                    (gso == kGsoTcpV6 && (acked_ & kFeatureHostTso6));
    if (!ok) return drop("segmentation offload not negotiated");
  }
  // num_buffers means nothing on TX.
  hdr[kHdrNumBuffers] = std::byte{0};
  hdr[kHdrNumBuffers + 1] = std::byte{0};

  auto body = reader.slices(len - kVnetHdrSize);
  if (!body) return drop("frame unreadable");
  std::vector<std::span<const std::byte>> bufs;
  bufs.reserve(body->size() + 1);
  bufs.emplace_back(hdr);
  for (const auto& s : *body) bufs.emplace_back(s);
  auto w = tap_.write_frame(bufs);
  if (!w) {
    bump(counters_.tx_drops, m_.tx_dropped);
    bump(counters_.tx_errors);
    if (frame_log_.allow()) {
      LOG_WARN("virtio-net: TX frame dropped: %s", w.error().message().c_str());
    }
    return;
  }
  bump(counters_.tx_frames, m_.tx_packets);
  bump(counters_.tx_bytes, m_.tx_bytes, len - kVnetHdrSize);
}

// ---- RX ----

void NetDevice::on_tap_readable(Active& a) {
  if (a.broken || a.rx == nullptr || a.rx_throttled) {
    set_tap_polling(a, false);
    return;
  }
  const Rx out = process_rx(a);
  if (out == Rx::kNoBuffers || out == Rx::kBroken || out == Rx::kTapError ||
      out == Rx::kThrottled) {
    set_tap_polling(a, false);
  }
}

void NetDevice::on_rx_notify(Active& a) {
  drain(a.rx_notify_fd);
  // Throttled: the timer resumes RX (and TAP polling).
  if (a.broken || a.rx == nullptr || a.rx_throttled) return;
  after_rx(a, process_rx(a));
}

void NetDevice::on_rx_timer(Active& a) {
  rx_timer_->drain();
  a.rx_throttled = false;
  if (a.broken || a.rx == nullptr) return;
  after_rx(a, process_rx(a));
}

void NetDevice::after_rx(Active& a, Rx out) {
  // Buffers (may) have come: resume polling, unless they are already all
  // used up or the limiter holds a frame.
  set_tap_polling(a, out != Rx::kNoBuffers && out != Rx::kBroken && out != Rx::kThrottled);
}

Expected<std::optional<DescriptorChain>> NetDevice::pop_rx(Active& a) {
  auto popped = a.rx->pop(*a.mem);
  if (!popped || *popped || !(acked_ & kFeatureEventIdx)) return popped;
  // Ask for a notification when buffers come, then look once more (see
  // process_tx).
  auto more = a.rx->enable_notification(*a.mem);
  if (!more) return tl::unexpected(more.error());
  if (!*more) return std::optional<DescriptorChain>();
  return a.rx->pop(*a.mem);
}

NetDevice::Rx NetDevice::process_rx(Active& a) {
  Queue& q = *a.rx;
  const std::uint16_t used_before = q.next_used();
  Rx out = Rx::kBudgetSpent;
  for (unsigned frames = 0; frames < kRxBudget; ++frames) {
    if (a.pending_len == 0) {
      // Read only with a buffer to put the frame in: otherwise the frame
      // stays in the TAP queue (where the kernel drops what overflows).
      auto first = pop_rx(a);
      if (!first) {
        mark_broken(a, "malformed RX queue", first.error());
        out = Rx::kBroken;
        break;
      }
      if (!*first) {
        out = Rx::kNoBuffers;
        break;
      }
      const std::uint64_t room = (*first)->writable_bytes();
      if (room < kVnetHdrSize) {
        mark_broken(a, "RX buffer smaller than the virtio-net header",
                    Error(Errc::kInvalidArgument, "RX chain " + std::to_string((*first)->head)));
        out = Rx::kBroken;
        break;
      }
      Rx step;
      if (room > kMaxPacketSize && rx_limiter_.unlimited()) {
        // A buffer that holds any frame: read straight into guest memory
        // (not with a limiter, which must see the frame before the guest).
        step = receive_direct(a, **first);
      } else {
        // Read into our buffer first: only the frame's length tells how many
        // buffers (MRG_RXBUF) it needs, or whether this one suffices.
        q.undo_pop();
        step = read_into_buffer(a);
      }
      if (step == Rx::kDelivered || step == Rx::kDropped) continue;
      if (step != Rx::kPending) {
        out = step;
        break;
      }
    }
    const Rx step = deliver_buffered(a);
    if (step == Rx::kNoBuffers || step == Rx::kBroken || step == Rx::kThrottled) {
      out = step;
      break;
    }
  }
  if (q.next_used() != used_before) signal_used(a, q);
  return out;
}

NetDevice::Rx NetDevice::receive_direct(Active& a, const DescriptorChain& chain) {
  Queue& q = *a.rx;
  Writer writer(*a.mem, chain);
  auto slices = writer.slices(kMaxPacketSize + 1);
  if (!slices) {
    mark_broken(a, "RX buffer outside guest memory", slices.error());
    return Rx::kBroken;
  }
  auto n = tap_.read_frame(*slices);
  if (!n || !*n) {
    q.undo_pop();
    if (n) return Rx::kTapEmpty;
    bump(counters_.rx_errors);
    if (frame_log_.allow()) LOG_WARN("virtio-net: TAP read: %s", n.error().message().c_str());
    return Rx::kTapError;
  }
  const std::size_t len = **n;
  if (len < kVnetHdrSize || len > kMaxPacketSize) {
    // The buffer stays the driver's: nothing was published.
    q.undo_pop();
    bump(counters_.rx_drops, m_.rx_dropped);
    bump(counters_.rx_errors);
    if (frame_log_.allow()) LOG_WARN("virtio-net: RX frame of %zu bytes dropped", len);
    return Rx::kDropped;
  }
  Writer header(*a.mem, chain);
  const std::uint16_t one = 1;
  if (auto skip = header.slices(kHdrNumBuffers); !skip || !header.write_obj(one)) {
    mark_broken(a, "writing num_buffers", Error(Errc::kOutOfRange, "RX header"));
    return Rx::kBroken;
  }
  if (auto r = q.add_used(*a.mem, chain.head, static_cast<std::uint32_t>(len)); !r) {
    mark_broken(a, "adding to the RX used ring", r.error());
    return Rx::kBroken;
  }
  bump(counters_.rx_frames, m_.rx_packets);
  bump(counters_.rx_bytes, m_.rx_bytes, len - kVnetHdrSize);
  return Rx::kDelivered;
}

NetDevice::Rx NetDevice::read_into_buffer(Active& a) {
  const std::array<std::span<std::byte>, 1> bufs{std::span(rx_buffer_)};
  auto n = tap_.read_frame(bufs);
  if (!n) {
    bump(counters_.rx_errors);
    if (frame_log_.allow()) LOG_WARN("virtio-net: TAP read: %s", n.error().message().c_str());
    return Rx::kTapError;
  }
  if (!*n) return Rx::kTapEmpty;
  const std::size_t len = **n;
  if (len < kVnetHdrSize || len > kMaxPacketSize) {
    bump(counters_.rx_drops, m_.rx_dropped);
    bump(counters_.rx_errors);
    if (frame_log_.allow()) LOG_WARN("virtio-net: RX frame of %zu bytes dropped", len);
    return Rx::kDropped;
  }
  a.pending_len = len;
  return Rx::kPending;
}

NetDevice::Rx NetDevice::deliver_buffered(Active& a) {
  Queue& q = *a.rx;
  const bool mergeable = (acked_ & kFeatureMrgRxbuf) != 0;
  std::vector<DescriptorChain> chains;
  std::uint64_t room = 0;
  while (room < a.pending_len) {
    auto next = pop_rx(a);
    if (!next) {
      mark_broken(a, "malformed RX queue", next.error());
      return Rx::kBroken;
    }
    if (!*next) {
      // Keep the frame until the driver posts more buffers.
      for (std::size_t i = 0; i < chains.size(); ++i) q.undo_pop();
      return Rx::kNoBuffers;
    }
    const std::uint64_t r = (*next)->writable_bytes();
    if (r < kVnetHdrSize) {
      mark_broken(a, "RX buffer smaller than the virtio-net header",
                  Error(Errc::kInvalidArgument, "RX chain " + std::to_string((*next)->head)));
      return Rx::kBroken;
    }
    room += r;
    chains.push_back(std::move(**next));
    if (!mergeable) break;
  }
  if (room < a.pending_len) {
    // Without MRG_RXBUF one buffer must hold the whole frame. The buffer
    // goes back to the ring for the next (perhaps smaller) frame.
    q.undo_pop();
    bump(counters_.rx_drops, m_.rx_dropped);
    if (frame_log_.allow()) {
      LOG_WARN("virtio-net: RX frame of %zu bytes dropped: the buffer holds %llu", a.pending_len,
               static_cast<unsigned long long>(room));
    }
    a.pending_len = 0;
    return Rx::kDropped;
  }
  // The frame fits: the limiter decides whether it goes now. When refused
  // it waits in rx_buffer_ (and the buffers in the ring) for the timer.
  if (!rx_limiter_.consume(a.pending_len, 1)) {
    for (std::size_t i = 0; i < chains.size(); ++i) q.undo_pop();
    m_.rx_throttled.add();
    a.rx_throttled = throttle(rx_limiter_, *rx_timer_, a.pending_len);
    return Rx::kThrottled;
  }
  const auto num_buffers = static_cast<std::uint16_t>(chains.size());
  std::memcpy(rx_buffer_.data() + kHdrNumBuffers, &num_buffers, sizeof num_buffers);
  std::size_t offset = 0;
  for (const DescriptorChain& chain : chains) {
    Writer writer(*a.mem, chain);
    const std::size_t n = static_cast<std::size_t>(
        std::min<std::uint64_t>(writer.remaining(), a.pending_len - offset));
    if (auto r = writer.write(std::span(rx_buffer_).subspan(offset, n)); !r) {
      mark_broken(a, "RX buffer outside guest memory", r.error());
      return Rx::kBroken;
    }
    if (auto r = q.add_used(*a.mem, chain.head, static_cast<std::uint32_t>(n)); !r) {
      mark_broken(a, "adding to the RX used ring", r.error());
      return Rx::kBroken;
    }
    offset += n;
  }
  bump(counters_.rx_frames, m_.rx_packets);
  bump(counters_.rx_bytes, m_.rx_bytes, a.pending_len - kVnetHdrSize);
  a.pending_len = 0;
  return Rx::kDelivered;
}

}  // namespace hvz::virtio::net
