// MmioTransport: virtio-mmio v2 registers, status state machine, feature
// negotiation, queue layout registers and activation (see the header), and
// MmioInterrupt, the Interrupt the transport hands to the device.
#include "virtio/mmio_transport.hpp"

#include <algorithm>
#include <atomic>
#include <utility>

namespace hvz::virtio {

// The interrupt state shared by the transport (vCPU threads reading and
// acknowledging) and the device (its own thread signalling): atomics only,
// so a device never takes the transport's lock and cannot deadlock with a
// vCPU that holds it while calling into the device.
class MmioInterrupt : public Interrupt {
 public:
  explicit MmioInterrupt(std::shared_ptr<IrqLine> irq) : irq_(std::move(irq)) {}

  Expected<void> signal_used_queue() override { return raise(kInterruptUsedBuffer); }

  Expected<void> signal_config_change() override {
    // The device's configuration changed: a driver reading a multi-field
    // config compares ConfigGeneration before and after and retries.
    config_generation_.fetch_add(1);
    return raise(kInterruptConfigChange);
  }

  void set_needs_reset() override {
    // Only the first call interrupts: a device hitting the same error on
    // every notification must not turn it into an interrupt storm.
    if (needs_reset_.exchange(true)) return;
    auto r = raise(kInterruptConfigChange);
    if (!r && log_.allow()) {
      LOG_WARN("virtio-mmio: raising NEEDS_RESET interrupt: %s", r.error().message().c_str());
    }
  }

  std::uint32_t status() const { return status_.load(); }
  void ack(std::uint32_t bits) { status_.fetch_and(~bits); }
  bool needs_reset() const { return needs_reset_.load(); }
  std::uint32_t config_generation() const { return config_generation_.load(); }
  // Snapshot restore (nothing signals meanwhile: the device is inactive).
  void restore(std::uint32_t status, bool needs_reset, std::uint32_t generation) {
    status_.store(status & (kInterruptUsedBuffer | kInterruptConfigChange));
    needs_reset_.store(needs_reset);
    config_generation_.store(generation);
  }
  // Driver reset: the device has stopped, forget pending interrupts. The
  // config generation stays monotonic across resets.
  void clear() {
    status_.store(0);
    needs_reset_.store(false);
  }

 private:
  Expected<void> raise(std::uint32_t bit) {
    status_.fetch_or(bit);
    // Always trigger, even if the bit was already set: the driver may have
    // read the status before this bit's event and will ack what it read.
    return irq_->trigger();
  }

  const std::shared_ptr<IrqLine> irq_;
  std::atomic<std::uint32_t> status_{0};
  std::atomic<bool> needs_reset_{false};
  std::atomic<std::uint32_t> config_generation_{0};
  log::RateLimit log_{4};
};

namespace {

std::uint32_t load_le32(std::span<const std::uint8_t> d) {
  return static_cast<std::uint32_t>(d[0]) | (static_cast<std::uint32_t>(d[1]) << 8) |
         (static_cast<std::uint32_t>(d[2]) << 16) | (static_cast<std::uint32_t>(d[3]) << 24);
}

void store_le32(std::span<std::uint8_t> d, std::uint32_t v) {
  for (std::size_t i = 0; i < 4; ++i) d[i] = static_cast<std::uint8_t>(v >> (8 * i));
}

std::uint64_t with_low(std::uint64_t old, std::uint32_t v) {
  return (old & 0xffff'ffff'0000'0000ull) | v;
}
std::uint64_t with_high(std::uint64_t old, std::uint32_t v) {
  return (old & 0xffff'ffffull) | (static_cast<std::uint64_t>(v) << 32);
}

bool has(std::uint32_t status, std::uint32_t bits) {
  return (status & bits) == bits;
}

// The driver's initialisation steps (§3.1.1), each adding one bit.
constexpr std::uint32_t kInitSteps[] = {
    kStatusAcknowledge,
    kStatusAcknowledge | kStatusDriver,
    kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk,
    kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk,
};

}  // namespace

Expected<std::shared_ptr<MmioTransport>> MmioTransport::create(std::shared_ptr<VirtioDevice> device,
                                                               const GuestMemory& mem,
                                                               EventLoop& loop,
                                                               std::shared_ptr<IrqLine> irq) {
  if (!device || !irq) {
    return make_error(Errc::kInvalidArgument, "virtio-mmio: null device or irq line");
  }
  if ((device->features() & kFeatureVersion1) == 0) {
    // Version 2 of the transport is modern-only: a driver would refuse it.
    return make_error(Errc::kInvalidArgument, "virtio-mmio: device does not offer VERSION_1");
  }
  const std::vector<std::uint16_t> sizes = device->queue_max_sizes();
  std::vector<EventFd> fds;
  fds.reserve(sizes.size());
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    auto fd = EventFd::create();
    if (!fd) return tl::unexpected(fd.error());
    fds.push_back(std::move(*fd));
  }
  return std::make_shared<MmioTransport>(PrivateTag{}, std::move(device), mem, loop, std::move(irq),
                                         std::move(fds));
}

MmioTransport::MmioTransport(PrivateTag, std::shared_ptr<VirtioDevice> device,
                             const GuestMemory& mem, EventLoop& loop, std::shared_ptr<IrqLine> irq,
                             std::vector<EventFd> notify_fds)
    : device_(std::move(device)),
      mem_(mem),
      loop_(loop),
      interrupt_(std::make_shared<MmioInterrupt>(std::move(irq))),
      notify_fds_(std::move(notify_fds)),
      device_features_(device_->features()) {
  for (std::uint16_t max : device_->queue_max_sizes()) queues_.emplace_back(max);
}

MmioTransport::~MmioTransport() {
  std::lock_guard lock(mutex_);
  if (activate_called_) device_->reset();
}

std::vector<int> MmioTransport::queue_notify_fds() const {
  std::vector<int> fds;
  fds.reserve(notify_fds_.size());
  for (const EventFd& fd : notify_fds_) fds.push_back(fd.fd());
  return fds;
}

std::uint32_t MmioTransport::status() const {
  std::lock_guard lock(mutex_);
  return status_locked();
}

bool MmioTransport::activated() const {
  std::lock_guard lock(mutex_);
  return activated_;
}

void MmioTransport::shutdown() {
  std::lock_guard lock(mutex_);
  if (activate_called_) device_->reset();
  activate_called_ = false;
  activated_ = false;
  shut_down_ = true;
}

void MmioTransport::quiesce() {
  std::lock_guard lock(mutex_);
  if (!shut_down_) device_->quiesce();
}

void MmioTransport::unquiesce() {
  std::lock_guard lock(mutex_);
  if (!shut_down_) device_->unquiesce();
}

std::uint32_t MmioTransport::status_locked() const {
  return status_ | (interrupt_->needs_reset() ? kStatusNeedsReset : 0);
}

void MmioTransport::read(std::uint64_t offset, std::span<std::uint8_t> data) {
  std::fill(data.begin(), data.end(), std::uint8_t{0});
  if (offset >= mmio_reg::kConfig) {
    read_config(offset, data);
    return;
  }
  if (data.size() != 4 || offset % 4 != 0) {
    warn_bad_access("read", offset, data.size());
    return;
  }
  store_le32(data, read_register(offset));
}

void MmioTransport::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
  if (offset >= mmio_reg::kConfig) {
    write_config(offset, data);
    return;
  }
  if (data.size() != 4 || offset % 4 != 0) {
    warn_bad_access("write", offset, data.size());
    return;
  }
  const std::uint32_t value = load_le32(data);
  if (offset == mmio_reg::kQueueNotify) {
    notify_queue(value);  // hot path: no lock needed (only an eventfd)
    return;
  }
  std::lock_guard lock(mutex_);
  if (shut_down_) return;
  write_register(offset, value);
}

std::uint32_t MmioTransport::read_register(std::uint64_t offset) {
  std::lock_guard lock(mutex_);
  switch (offset) {
    case mmio_reg::kMagicValue:
      return kMmioMagicValue;
    case mmio_reg::kVersion:
      return kMmioVersion;
    case mmio_reg::kDeviceId:
      return device_->device_type();
    case mmio_reg::kVendorId:
      return kMmioVendorId;
    case mmio_reg::kDeviceFeatures:
      if (device_features_sel_ == 0) return static_cast<std::uint32_t>(device_features_);
      if (device_features_sel_ == 1) return static_cast<std::uint32_t>(device_features_ >> 32);
      return 0;
    case mmio_reg::kQueueNumMax: {
      const Queue* q = selected_queue();
      return q ? q->max_size() : 0;
    }
    case mmio_reg::kQueueReady: {
      const Queue* q = selected_queue();
      return q && q->ready() ? 1 : 0;
    }
    case mmio_reg::kInterruptStatus:
      return interrupt_->status();
    case mmio_reg::kStatus:
      return status_locked();
    case mmio_reg::kShmLenLow:
    case mmio_reg::kShmLenHigh:
    case mmio_reg::kShmBaseLow:
    case mmio_reg::kShmBaseHigh:
      // No shared memory regions: a length of -1 says "no such region".
      return 0xffff'ffff;
    case mmio_reg::kQueueReset:
      return 0;  // VIRTIO_F_RING_RESET is never offered
    case mmio_reg::kConfigGeneration:
      return interrupt_->config_generation();
    default:
      warn_bad_access("read of write-only or unknown register", offset, 4);
      return 0;
  }
}

void MmioTransport::write_register(std::uint64_t offset, std::uint32_t value) {
  switch (offset) {
    case mmio_reg::kDeviceFeaturesSel:
      device_features_sel_ = value;
      return;
    case mmio_reg::kDriverFeatures:
      write_driver_features(value);
      return;
    case mmio_reg::kDriverFeaturesSel:
      driver_features_sel_ = value;
      return;
    case mmio_reg::kQueueSel:
      queue_sel_ = value;
      return;
    case mmio_reg::kQueueNum:
      if (Queue* q = writable_queue(offset, false)) {
        // A size beyond 16 bits must not be truncated into a valid one: 0
        // fails validation at DRIVER_OK.
        q->set_size(value > 0xffff ? 0 : static_cast<std::uint16_t>(value));
      }
      return;
    case mmio_reg::kQueueReady:
      if (Queue* q = writable_queue(offset, true)) q->set_ready(value == 1);
      return;
    case mmio_reg::kInterruptAck:
      interrupt_->ack(value);
      return;
    case mmio_reg::kStatus:
      set_status(value);
      return;
    case mmio_reg::kQueueDescLow:
    case mmio_reg::kQueueDescHigh:
      if (Queue* q = writable_queue(offset, false)) {
        const std::uint64_t old = q->desc_table().value();
        q->set_desc_table(GuestAddress(offset == mmio_reg::kQueueDescLow ? with_low(old, value)
                                                                         : with_high(old, value)));
      }
      return;
    case mmio_reg::kQueueDriverLow:
    case mmio_reg::kQueueDriverHigh:
      if (Queue* q = writable_queue(offset, false)) {
        const std::uint64_t old = q->avail_ring().value();
        q->set_avail_ring(GuestAddress(
            offset == mmio_reg::kQueueDriverLow ? with_low(old, value) : with_high(old, value)));
      }
      return;
    case mmio_reg::kQueueDeviceLow:
    case mmio_reg::kQueueDeviceHigh:
      if (Queue* q = writable_queue(offset, false)) {
        const std::uint64_t old = q->used_ring().value();
        q->set_used_ring(GuestAddress(offset == mmio_reg::kQueueDeviceLow ? with_low(old, value)
                                                                          : with_high(old, value)));
      }
      return;
    case mmio_reg::kShmSel:
    case mmio_reg::kQueueReset:
      return;  // no shared memory regions; RING_RESET not offered
    default:
      warn_bad_access("write to read-only or unknown register", offset, 4);
      return;
  }
}

void MmioTransport::read_config(std::uint64_t offset, std::span<std::uint8_t> data) {
  const std::size_t size = data.size();
  if ((size != 1 && size != 2 && size != 4 && size != 8) || offset > kMmioSize - size) {
    warn_bad_access("config read", offset, size);
    return;
  }
  std::lock_guard lock(mutex_);
  device_->read_config(offset - mmio_reg::kConfig, data);
}

void MmioTransport::write_config(std::uint64_t offset, std::span<const std::uint8_t> data) {
  const std::size_t size = data.size();
  if ((size != 1 && size != 2 && size != 4 && size != 8) || offset > kMmioSize - size) {
    warn_bad_access("config write", offset, size);
    return;
  }
  std::lock_guard lock(mutex_);
  if (shut_down_) return;
  const std::uint32_t status = status_locked();
  if (!has(status, kStatusDriver) || (status & (kStatusFailed | kStatusNeedsReset)) != 0) {
    if (state_log_.allow()) {
      LOG_WARN("virtio-mmio(type %u): config write in status %#x ignored", device_->device_type(),
               status);
    }
    return;
  }
  device_->write_config(offset - mmio_reg::kConfig, data);
}

void MmioTransport::notify_queue(std::uint32_t index) {
  if (index >= notify_fds_.size()) {
    if (access_log_.allow()) {
      LOG_WARN("virtio-mmio(type %u): notify of non-existent queue %u ignored",
               device_->device_type(), index);
    }
    return;
  }
  auto r = notify_fds_[index].signal();
  if (!r && state_log_.allow()) {
    LOG_WARN("virtio-mmio: queue %u notify: %s", index, r.error().message().c_str());
  }
}

Queue* MmioTransport::selected_queue() {
  return queue_sel_ < queues_.size() ? &queues_[queue_sel_] : nullptr;
}

Queue* MmioTransport::writable_queue(std::uint64_t offset, bool ready_register) {
  // Queues are set up after FEATURES_OK and frozen from DRIVER_OK on: an
  // activated device uses them from its own thread. Layout registers of a
  // queue already marked ready are frozen too (the driver must clear
  // QueueReady first).
  const std::uint32_t status = status_locked();
  const bool state_ok = has(status, kStatusFeaturesOk) &&
                        (status & (kStatusDriverOk | kStatusFailed | kStatusNeedsReset)) == 0;
  Queue* q = selected_queue();
  if (!state_ok || q == nullptr || (!ready_register && q->ready())) {
    if (state_log_.allow()) {
      LOG_WARN("virtio-mmio(type %u): queue %u register %#llx write ignored (status %#x%s)",
               device_->device_type(), queue_sel_, static_cast<unsigned long long>(offset), status,
               q == nullptr ? ", no such queue" : "");
    }
    return nullptr;
  }
  return q;
}

void MmioTransport::write_driver_features(std::uint32_t value) {
  const std::uint32_t status = status_locked();
  if (!has(status, kStatusDriver) ||
      (status & (kStatusFeaturesOk | kStatusFailed | kStatusNeedsReset)) != 0) {
    if (state_log_.allow()) {
      LOG_WARN("virtio-mmio(type %u): DriverFeatures write in status %#x ignored",
               device_->device_type(), status);
    }
    return;
  }
  if (driver_features_sel_ == 0) {
    driver_features_ = with_low(driver_features_, value);
  } else if (driver_features_sel_ == 1) {
    driver_features_ = with_high(driver_features_, value);
  } else if (value != 0) {
    // Bits we never offered: remembered so FEATURES_OK is refused.
    driver_features_beyond_64_ = true;
  }
}

bool MmioTransport::features_acceptable() const {
  return !driver_features_beyond_64_ && (driver_features_ & ~device_features_) == 0 &&
         (driver_features_ & kFeatureVersion1) != 0;
}

void MmioTransport::set_status(std::uint32_t value) {
  if (value == 0) {
    reset();
    return;
  }
  // NEEDS_RESET is the device's bit; a driver that read it and ORs in its
  // next step writes it back, which is no request of its own.
  value &= ~kStatusNeedsReset;
  if ((value & kStatusFailed) != 0) {
    // The driver gave up (§2.1.1); it must reset before trying again. An
    // activated device keeps running until that reset.
    status_ |= kStatusFailed;
    return;
  }
  if (value == status_) return;
  std::size_t step = 0;
  while (step < std::size(kInitSteps) && kInitSteps[step] != value) ++step;
  const std::uint32_t expected_before = step == 0 ? 0 : kInitSteps[step - 1];
  if (step == std::size(kInitSteps) || status_ != expected_before) {
    if (state_log_.allow()) {
      LOG_WARN("virtio-mmio(type %u): invalid status transition %#x -> %#x", device_->device_type(),
               status_, value);
    }
    return;
  }
  if (value == kInitSteps[2]) {
    if (!features_acceptable()) {
      // FEATURES_OK stays clear: the driver reads it back and gives up.
      if (state_log_.allow()) {
        LOG_WARN("virtio-mmio(type %u): driver features %#llx refused (offered %#llx)",
                 device_->device_type(), static_cast<unsigned long long>(driver_features_),
                 static_cast<unsigned long long>(device_features_));
      }
      return;
    }
    device_->ack_features(driver_features_);
  }
  status_ = value;
  if (value == kInitSteps[3]) activate();
}

void MmioTransport::activate() {
  bool any_ready = false;
  bool all_valid = true;
  for (std::size_t i = 0; i < queues_.size(); ++i) {
    Queue& q = queues_[i];
    if (!q.ready()) continue;
    any_ready = true;
    q.set_features(driver_features_);
    auto r = q.validate(mem_);
    if (!r) {
      all_valid = false;
      if (state_log_.allow()) {
        LOG_WARN("virtio-mmio(type %u): queue %zu invalid: %s", device_->device_type(), i,
                 r.error().message().c_str());
      }
    }
  }
  if (!any_ready || !all_valid) {
    if (!any_ready && state_log_.allow()) {
      LOG_WARN("virtio-mmio(type %u): DRIVER_OK with no queue ready", device_->device_type());
    }
    interrupt_->set_needs_reset();
    return;
  }
  // Every queue is passed, in index order, so a device can index them by
  // queue number; one the driver left unready has ready() == false and must
  // not be used (e.g. an optional queue of a feature not negotiated).
  std::vector<ActiveQueue> active;
  active.reserve(queues_.size());
  for (std::size_t i = 0; i < queues_.size(); ++i) {
    active.push_back(ActiveQueue{&queues_[i], notify_fds_[i].fd()});
  }
  activate_called_ = true;
  auto r = device_->activate(mem_, std::move(active), interrupt_, loop_);
  if (!r) {
    if (state_log_.allow()) {
      LOG_ERROR("virtio-mmio(type %u): activation failed: %s", device_->device_type(),
                r.error().message().c_str());
    }
    interrupt_->set_needs_reset();
    return;
  }
  activated_ = true;
}

void MmioTransport::reset() {
  // The device stops all queue work before reset() returns, so the queues
  // and interrupt state are ours again afterwards.
  if (activate_called_) device_->reset();
  activate_called_ = false;
  activated_ = false;
  for (Queue& q : queues_) q.reset();
  // Stale notifications would only cause a spurious wake-up after the next
  // activation, but dropping them keeps the next start clean.
  for (const EventFd& fd : notify_fds_) (void)fd.consume();
  status_ = 0;
  device_features_sel_ = 0;
  driver_features_sel_ = 0;
  driver_features_ = 0;
  driver_features_beyond_64_ = false;
  queue_sel_ = 0;
  interrupt_->clear();
}

MmioTransportState MmioTransport::save() const {
  std::lock_guard lock(mutex_);
  MmioTransportState s;
  s.device_type = device_->device_type();
  s.status = status_;
  s.device_features_sel = device_features_sel_;
  s.driver_features_sel = driver_features_sel_;
  s.driver_features = driver_features_;
  s.driver_features_beyond_64 = driver_features_beyond_64_;
  s.queue_sel = queue_sel_;
  s.interrupt_status = interrupt_->status();
  s.needs_reset = interrupt_->needs_reset();
  s.config_generation = interrupt_->config_generation();
  s.activated = activated_;
  for (const Queue& q : queues_) s.queues.push_back(q.save());
  return s;
}

Expected<void> MmioTransport::restore(const MmioTransportState& state) {
  std::lock_guard lock(mutex_);
  if (shut_down_ || activate_called_ || status_ != 0) {
    return make_error(Errc::kBusy, "virtio-mmio restore: the transport is in use");
  }
  auto r = restore_locked(state);
  if (!r) reset();
  return r;
}

Expected<void> MmioTransport::restore_locked(const MmioTransportState& state) {
  auto invalid = [&](const std::string& what) {
    return make_error(
        Errc::kInvalidArgument,
        "virtio-mmio(type " + std::to_string(device_->device_type()) + ") restore: " + what);
  };
  if (state.version != MmioTransportState::kVersion) {
    return invalid("state version " + std::to_string(state.version) + " unknown");
  }
  if (state.device_type != device_->device_type()) {
    return invalid("saved for device type " + std::to_string(state.device_type));
  }
  if (state.queues.size() != queues_.size()) {
    return invalid(std::to_string(state.queues.size()) + " queues saved, the device has " +
                   std::to_string(queues_.size()));
  }
  // The status is one of the driver's initialisation steps, perhaps with
  // FAILED on top; NEEDS_RESET travels separately.
  const std::uint32_t steps = state.status & ~kStatusFailed;
  const bool step_ok = steps == 0 || std::find(std::begin(kInitSteps), std::end(kInitSteps),
                                               steps) != std::end(kInitSteps);
  if (!step_ok) return invalid("invalid status " + std::to_string(state.status));
  status_ = state.status;
  device_features_sel_ = state.device_features_sel;
  driver_features_sel_ = state.driver_features_sel;
  driver_features_ = state.driver_features;
  driver_features_beyond_64_ = state.driver_features_beyond_64;
  queue_sel_ = state.queue_sel;
  if (has(status_, kStatusFeaturesOk) && !features_acceptable()) {
    return invalid("driver features not acceptable with FEATURES_OK");
  }
  if (state.activated && (!has(status_, kInitSteps[3]) || state.needs_reset)) {
    return invalid("activated without DRIVER_OK, or with NEEDS_RESET");
  }
  bool any_ready = false;
  for (std::size_t i = 0; i < queues_.size(); ++i) {
    const bool active = state.activated && state.queues[i].ready;
    any_ready = any_ready || state.queues[i].ready;
    if (auto q = queues_[i].restore(state.queues[i], mem_, active); !q) {
      return invalid("queue " + std::to_string(i) + ": " + q.error().message());
    }
  }
  if (state.activated && !any_ready) return invalid("activated with no queue ready");
  interrupt_->restore(state.interrupt_status, state.needs_reset, state.config_generation);
  if (has(status_, kStatusFeaturesOk)) device_->ack_features(driver_features_);
  if (!state.activated) return {};
  std::vector<ActiveQueue> active;
  active.reserve(queues_.size());
  for (std::size_t i = 0; i < queues_.size(); ++i) {
    active.push_back(ActiveQueue{&queues_[i], notify_fds_[i].fd()});
  }
  activate_called_ = true;
  if (auto a = device_->activate(mem_, std::move(active), interrupt_, loop_); !a) {
    return invalid("activating the device: " + a.error().message());
  }
  activated_ = true;
  return {};
}

void MmioTransport::warn_bad_access(const char* what, std::uint64_t offset, std::size_t size) {
  if (!access_log_.allow()) return;
  LOG_WARN("virtio-mmio(type %u): ignored %s at %#llx (size %zu)", device_->device_type(), what,
           static_cast<unsigned long long>(offset), size);
}

}  // namespace hvz::virtio
