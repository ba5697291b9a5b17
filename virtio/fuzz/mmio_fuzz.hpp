// The common half of the virtio-mmio fuzz harnesses (mmio_<device>_fuzz.cpp):
// an MmioTransport on a Bus wrapping one device, driven by register reads
// and writes of any offset, size and value decoded from the input, with
// helpers a driver would use (the whole initialisation sequence up to
// DRIVER_OK, chains posted on the rings the driver registered, queue
// notifications) interleaved with guest memory writes, event-loop turns,
// resets and device-specific host events. Each harness supplies the device
// and its host side through MmioDeviceHooks.
//
// Input: u8 config (bits 0-1 memory layout; the rest is the device's), the
// device's own parameters, a u16-sized memory image, then operations (see
// MmioHarness::run). At the end the transport is destroyed, which must leave no fd
// registered with the loop.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "virtio/fuzz/fuzz_support.hpp"
#include "virtio/mmio_transport.hpp"
#include "virtio/rate_limiter.hpp"
#include "vmm/core/bus.hpp"

namespace hvz::virtio::fuzz {

inline constexpr std::uint64_t kMmioBase = 0xd0000000;
inline constexpr unsigned kMaxMmioOps = 192;

// Device-specific parts of a harness.
class MmioDeviceHooks {
 public:
  virtual ~MmioDeviceHooks() = default;
  // Something happens on the host side (a frame arrives, input is typed,
  // limits change...).
  virtual void host_event(FuzzInput&) {}
  // After the loop ran: let a device with its own thread catch up, drain
  // what the device produced. `status` is the transport's Status register
  // (NEEDS_RESET included).
  virtual void settle(const GuestMemory&, const std::vector<RingLayout>&,
                      std::uint32_t /*status*/) {}
};

// Token-bucket parameters from the input: small enough that a throttled
// device wakes up again within milliseconds.
inline std::optional<TokenBucketParams> fuzz_bucket(FuzzInput& in) {
  if (!in.flag()) return std::nullopt;
  TokenBucketParams p;
  p.size = in.u16();
  p.one_time_burst = in.u16();
  p.refill_time_ms = in.u8() % 8;
  return p;
}

class MmioHarness {
 public:
  MmioHarness(const GuestMemory& mem, std::shared_ptr<VirtioDevice> device)
      : mem_(mem), irq_(std::make_shared<CountingIrq>()) {
    auto t = MmioTransport::create(std::move(device), mem_, loop_, irq_);
    check(t.has_value(), "MmioTransport::create failed");
    transport_ = *t;
    check(bus_.insert(transport_, kMmioBase, kMmioSize).has_value(), "bus insert");
    queues_ = transport_->queue_notify_fds().size();
    rings_.resize(queues_);
  }

  void run(FuzzInput& in, MmioDeviceHooks& hooks) {
    for (unsigned op = 0; op < kMaxMmioOps && !in.empty(); ++op) {
      switch (in.u8() % kOpCount) {
        case kRead: {
          const std::uint64_t offset = decode_offset(in);
          std::vector<std::uint8_t> buf(decode_size(in));
          (void)bus_.read(kMmioBase + offset, buf);
          break;
        }
        case kWrite: {
          const std::uint64_t offset = decode_offset(in);
          const std::size_t size = decode_size(in);
          write(offset, size, in.u64());
          break;
        }
        case kInit:
          init(in);
          break;
        case kPostChain:
          if (queues_ > 0) post_chain(mem_, rings_[in.u8() % queues_], in);
          break;
        case kNotify:
          write(mmio_reg::kQueueNotify, 4, in.u8() % (queues_ + 1));
          break;
        case kMutate:
          mutate_memory(mem_, in, kSmallMemoryEnd);
          break;
        case kRunLoop:
          loop_.run();
          hooks.settle(mem_, rings_, transport_->status());
          break;
        case kHostEvent:
          hooks.host_event(in);
          break;
        case kReset:
          write(mmio_reg::kStatus, 4, 0);
          break;
        case kAckInterrupt: {
          std::uint32_t status = 0;
          (void)bus_.read(kMmioBase + mmio_reg::kInterruptStatus,
                          std::span(reinterpret_cast<std::uint8_t*>(&status), 4));
          write(mmio_reg::kInterruptAck, 4, status);
          break;
        }
      }
    }
    loop_.run();
    hooks.settle(mem_, rings_, transport_->status());
    // Teardown as the VMM does it: off the bus, then the transport resets
    // the device, which must unregister every fd it added.
    check(bus_.remove(kMmioBase).has_value(), "bus remove");
    transport_.reset();
    check(loop_.registered() == 0, "the device left fds registered with the loop after reset");
  }

 private:
  enum Op : std::uint8_t {
    kRead,
    kWrite,
    kInit,
    kPostChain,
    kNotify,
    kMutate,
    kRunLoop,
    kHostEvent,
    kReset,
    kAckInterrupt,
    kOpCount,
  };

  // Mostly registers (every 4-byte slot) and config bytes, sometimes any
  // offset, including accesses that straddle the window's end.
  static std::uint64_t decode_offset(FuzzInput& in) {
    const std::uint8_t sel = in.u8();
    if (sel < 0x40) return std::uint64_t{sel} * 4;
    if (sel < 0xc0) return mmio_reg::kConfig + (sel - 0x40);
    return in.u16() % (kMmioSize + 8);
  }
  static std::size_t decode_size(FuzzInput& in) {
    static constexpr std::size_t kSizes[] = {4, 4, 1, 2, 8};
    const std::uint8_t sel = in.u8();
    if (sel < 0xf0) return kSizes[sel % std::size(kSizes)];
    return sel % 9;
  }

  // A register write through the bus; 4-byte writes of the queue layout
  // registers are remembered so chains can be posted where the device
  // will look.
  void write(std::uint64_t offset, std::size_t size, std::uint64_t value) {
    std::uint8_t buf[8];
    for (std::size_t i = 0; i < sizeof buf; ++i)
      buf[i] = static_cast<std::uint8_t>(value >> (8 * i));
    (void)bus_.write(kMmioBase + offset, std::span<const std::uint8_t>(buf, size));
    if (size != 4) return;
    const auto v = static_cast<std::uint32_t>(value);
    if (offset == mmio_reg::kQueueSel) {
      queue_sel_ = v;
      return;
    }
    if (offset == mmio_reg::kStatus && v == 0) queue_sel_ = 0;
    if (queue_sel_ >= rings_.size()) return;
    RingLayout& r = rings_[queue_sel_];
    auto low = [v](std::uint64_t& a) { a = (a & ~0xffffffffull) | v; };
    auto high = [v](std::uint64_t& a) { a = (a & 0xffffffffull) | (std::uint64_t{v} << 32); };
    switch (offset) {
      case mmio_reg::kQueueNum:
        r.size = static_cast<std::uint16_t>(v);
        break;
      case mmio_reg::kQueueDescLow:
        low(r.desc);
        break;
      case mmio_reg::kQueueDescHigh:
        high(r.desc);
        break;
      case mmio_reg::kQueueDriverLow:
        low(r.avail);
        break;
      case mmio_reg::kQueueDriverHigh:
        high(r.avail);
        break;
      case mmio_reg::kQueueDeviceLow:
        low(r.used);
        break;
      case mmio_reg::kQueueDeviceHigh:
        high(r.used);
        break;
      default:
        break;
    }
  }

  std::uint32_t read32(std::uint64_t offset) {
    std::uint32_t v = 0;
    (void)bus_.read(kMmioBase + offset, std::span(reinterpret_cast<std::uint8_t*>(&v), 4));
    return v;
  }

  // The driver's initialisation (virtio 1.2 §3.1.1) with the choices from
  // the input: which features to accept, each queue's size, whether to
  // enable it, and whether to stop early. Queue q's rings live at
  // 0x1000 + 0x3000 * q (descriptors), + 0x1000 (avail), + 0x2000 (used).
  void init(FuzzInput& in) {
    const std::uint8_t steps = in.u8();
    const std::uint64_t feature_mask = in.u64();
    write(mmio_reg::kStatus, 4, 0);
    write(mmio_reg::kStatus, 4, kStatusAcknowledge);
    write(mmio_reg::kStatus, 4, kStatusAcknowledge | kStatusDriver);
    write(mmio_reg::kDeviceFeaturesSel, 4, 0);
    std::uint64_t features = read32(mmio_reg::kDeviceFeatures);
    write(mmio_reg::kDeviceFeaturesSel, 4, 1);
    features |= std::uint64_t{read32(mmio_reg::kDeviceFeatures)} << 32;
    // VERSION_1 always (without it FEATURES_OK is refused), unless the
    // input insists on trying.
    features &= feature_mask | ((steps & 1) ? 0 : kFeatureVersion1);
    write(mmio_reg::kDriverFeaturesSel, 4, 0);
    write(mmio_reg::kDriverFeatures, 4, static_cast<std::uint32_t>(features));
    write(mmio_reg::kDriverFeaturesSel, 4, 1);
    write(mmio_reg::kDriverFeatures, 4, static_cast<std::uint32_t>(features >> 32));
    write(mmio_reg::kStatus, 4, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
    if (steps & 2) return;
    for (std::uint32_t q = 0; q < queues_; ++q) {
      const std::uint8_t qcfg = in.u8();
      write(mmio_reg::kQueueSel, 4, q);
      const std::uint32_t max = read32(mmio_reg::kQueueNumMax);
      const std::uint32_t size = std::min<std::uint32_t>(max, 1u << (qcfg % 9));
      const std::uint64_t base = 0x1000 + 0x3000ull * q;
      write(mmio_reg::kQueueNum, 4, size);
      write(mmio_reg::kQueueDescLow, 4, base);
      write(mmio_reg::kQueueDescHigh, 4, 0);
      write(mmio_reg::kQueueDriverLow, 4, base + 0x1000);
      write(mmio_reg::kQueueDriverHigh, 4, 0);
      write(mmio_reg::kQueueDeviceLow, 4, base + 0x2000);
      write(mmio_reg::kQueueDeviceHigh, 4, 0);
      if ((qcfg & 0x80) == 0) write(mmio_reg::kQueueReady, 4, 1);
    }
    if (steps & 4) return;
    write(mmio_reg::kStatus, 4,
          kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  }

  const GuestMemory& mem_;
  SyncLoop loop_;
  std::shared_ptr<CountingIrq> irq_;
  std::shared_ptr<MmioTransport> transport_;
  Bus bus_;
  std::uint32_t queues_ = 0;
  std::uint32_t queue_sel_ = 0;
  std::vector<RingLayout> rings_;
};

}  // namespace hvz::virtio::fuzz
