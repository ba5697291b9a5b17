// Fuzz harness for virtio-net's packet paths (virtio/net/net_device.hpp)
// without the transport: the device is activated on two rings in a small
// guest memory, with one end of a SOCK_SEQPACKET socketpair as its TAP.
// TX chains (vnet header + frame) are built in guest memory from the input
// and the frames the device sends are checked at the peer; frames from the
// input are injected at the peer for RX into the buffers the input posted.
// Rate limits, notifications, loop turns, memory writes and resets come in
// any order.
//
// Input: u8 config (bits 0-1 memory layout, bit 2 MAC, bit 3 fake TAP
// offloads, bit 4 rate limits follow: RX bandwidth/ops, TX bandwidth/ops),
// u64 mask of the offered features the driver accepts, u8 RX and u8 TX
// queue size exponents, a u16-sized memory image, then operations.
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "virtio/fuzz/fuzz_support.hpp"
#include "virtio/fuzz/mmio_fuzz.hpp"
#include "virtio/net/net_device.hpp"
#include "vmm/core/event_fd.hpp"

namespace {

using namespace hvz;
using namespace hvz::virtio;
using namespace hvz::virtio::net;
using namespace hvz::virtio::fuzz;

constexpr unsigned kMaxOps = 128;
constexpr RingLayout kRxRing{0x1000, 0x2000, 0x2800, 0};
constexpr RingLayout kTxRing{0x4000, 0x5000, 0x5800, 0};

enum Op : std::uint8_t {
  kPostRxChain,
  kPostTxChain,
  kTxFrame,
  kRxBuffers,
  kInject,
  kNotifyRx,
  kNotifyTx,
  kRunLoop,
  kDrain,
  kMutate,
  kUpdateLimits,
  kReset,
  kOpCount,
};

class Harness {
 public:
  Harness(const GuestMemory& mem, std::shared_ptr<NetDevice> dev, int peer, std::uint64_t features,
          RingLayout rx, RingLayout tx)
      : mem_(mem),
        dev_(std::move(dev)),
        peer_(peer),
        features_(features),
        rx_ring_(rx),
        tx_ring_(tx),
        rx_notify_(*EventFd::create()),
        tx_notify_(*EventFd::create()) {}

  ~Harness() { dev_->reset(); }

  // What a transport does at DRIVER_OK: features, queue layout, validate,
  // activate.
  bool activate() {
    dev_->ack_features(features_);
    for (auto [q, r] : {std::pair{&rx_, rx_ring_}, std::pair{&tx_, tx_ring_}}) {
      q->reset();
      q->set_size(r.size);
      q->set_desc_table(GuestAddress(r.desc));
      q->set_avail_ring(GuestAddress(r.avail));
      q->set_used_ring(GuestAddress(r.used));
      q->set_features(features_);
      q->set_ready(true);
      if (!q->validate(mem_)) return false;
    }
    slot_rx_ = slot_tx_ = 0;
    return dev_
        ->activate(mem_, {{&rx_, rx_notify_.fd()}, {&tx_, tx_notify_.fd()}}, interrupt_, loop_)
        .has_value();
  }

  void run(FuzzInput& in) {
    for (unsigned op = 0; op < kMaxOps && !in.empty(); ++op) {
      switch (in.u8() % kOpCount) {
        case kPostRxChain:
          post_chain(mem_, rx_ring_, in);
          break;
        case kPostTxChain:
          post_chain(mem_, tx_ring_, in);
          break;
        case kTxFrame:
          tx_frame(in);
          break;
        case kRxBuffers:
          rx_buffers(in);
          break;
        case kInject: {
          auto frame = in.sized_bytes(kMaxPacketSize + 16);
          (void)::send(peer_, frame.data(), frame.size(), MSG_DONTWAIT);
          break;
        }
        case kNotifyRx:
          (void)rx_notify_.signal();
          break;
        case kNotifyTx:
          (void)tx_notify_.signal();
          break;
        case kRunLoop:
          loop_.run();
          break;
        case kDrain:
          drain();
          break;
        case kMutate:
          mutate_memory(mem_, in, kSmallMemoryEnd);
          break;
        case kUpdateLimits: {
          RateLimits limits;
          limits.bandwidth = fuzz_bucket(in);
          limits.ops = fuzz_bucket(in);
          if (in.flag()) {
            dev_->update_rx_rate_limiter(limits);
          } else {
            dev_->update_tx_rate_limiter(limits);
          }
          break;
        }
        case kReset:
          dev_->reset();
          check(loop_.registered() == 0, "virtio-net reset left fds registered");
          if (!activate()) return;
          break;
      }
    }
    loop_.run();
    drain();
    dev_->reset();
    check(loop_.registered() == 0, "virtio-net reset left fds registered");
  }

 private:
  // A well-formed TX chain: the 12-byte header (from the input) and the
  // frame, in one or two descriptors at an input-chosen address.
  void tx_frame(FuzzInput& in) {
    if (tx_ring_.size == 0) return;
    const std::uint64_t addr = 0x8000 + (in.u16() % 0x7000);
    auto hdr = in.bytes(kVnetHdrSize);
    auto body = in.sized_bytes(0x800);
    std::vector<std::uint8_t> frame(hdr.begin(), hdr.end());
    frame.resize(kVnetHdrSize);
    frame.insert(frame.end(), body.begin(), body.end());
    if (!mem_.write(GuestAddress(addr), std::as_bytes(std::span(frame)))) return;
    const auto head = static_cast<std::uint16_t>(slot_tx_ % tx_ring_.size);
    if (in.flag() && frame.size() > kVnetHdrSize) {
      const auto second = static_cast<std::uint16_t>((head + 1) % tx_ring_.size);
      put_desc(mem_, tx_ring_, head, addr, kVnetHdrSize, kDescFlagNext, second);
      put_desc(mem_, tx_ring_, second, addr + kVnetHdrSize,
               static_cast<std::uint32_t>(frame.size() - kVnetHdrSize), 0, 0);
      slot_tx_ += 2;
    } else {
      put_desc(mem_, tx_ring_, head, addr, static_cast<std::uint32_t>(frame.size()), 0, 0);
      slot_tx_ += 1;
    }
    publish(mem_, tx_ring_, head);
  }

  // Device-writable RX buffers, one descriptor each.
  void rx_buffers(FuzzInput& in) {
    if (rx_ring_.size == 0) return;
    for (unsigned i = 0, n = 1 + in.u8() % 4; i < n; ++i) {
      const auto head = static_cast<std::uint16_t>(slot_rx_++ % rx_ring_.size);
      const std::uint64_t addr = in.u16();
      const std::uint32_t len = in.u16();
      put_desc(mem_, rx_ring_, head, addr, len, kDescFlagWrite, 0);
      publish(mem_, rx_ring_, head);
    }
  }

  // Every frame the device wrote must be a vnet header and at most 64 KiB.
  void drain() {
    for (;;) {
      const ssize_t n = ::recv(peer_, buf_.data(), buf_.size(), MSG_DONTWAIT | MSG_TRUNC);
      if (n < 0) return;
      check(n >= static_cast<ssize_t>(kVnetHdrSize) && n <= static_cast<ssize_t>(kMaxPacketSize),
            "the device sent a frame shorter than the vnet header or longer than the limit");
    }
  }

  const GuestMemory& mem_;
  std::shared_ptr<NetDevice> dev_;
  int peer_;
  std::uint64_t features_;
  RingLayout rx_ring_;
  RingLayout tx_ring_;
  EventFd rx_notify_;
  EventFd tx_notify_;
  SyncLoop loop_;
  std::shared_ptr<CountingInterrupt> interrupt_ = std::make_shared<CountingInterrupt>();
  Queue rx_{256};
  Queue tx_{256};
  unsigned slot_rx_ = 0;
  unsigned slot_tx_ = 0;
  std::vector<std::uint8_t> buf_ = std::vector<std::uint8_t>(kMaxPacketSize + 1);
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  hvz::fuzz::quiet_logs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzInput in(data, size);
  const std::uint8_t cfg = in.u8();
  RateLimits rx;
  RateLimits tx;
  if (cfg & 16) {
    rx.bandwidth = fuzz_bucket(in);
    rx.ops = fuzz_bucket(in);
    tx.bandwidth = fuzz_bucket(in);
    tx.ops = fuzz_bucket(in);
  }
  const std::uint64_t accept = in.u64();
  RingLayout rx_ring = kRxRing;
  RingLayout tx_ring = kTxRing;
  rx_ring.size = static_cast<std::uint16_t>(1u << (in.u8() % 9));
  tx_ring.size = static_cast<std::uint16_t>(1u << (in.u8() % 9));

  int fds[2];
  check(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0,
        "socketpair");
  UniqueFd peer(fds[1]);
  std::optional<MacAddress> mac;
  if (cfg & 4) mac = MacAddress{0x06, 0x00, 0xac, 0x10, 0x00, 0x02};
  auto device = std::make_shared<NetDevice>(Tap::from_fd(UniqueFd(fds[0]), (cfg & 8) != 0), mac,
                                            "fuzz", metrics::registry().group("net_fuzz"), rx, tx);
  const std::uint64_t features = (device->features() & accept) | kFeatureVersion1;
  const GuestMemory& mem = small_memory(cfg & 3);
  fill_memory(mem, in.sized_bytes(kSmallMemoryEnd));

  Harness h(mem, device, peer.get(), features, rx_ring, tx_ring);
  if (!h.activate()) return 0;
  h.run(in);
  return 0;
}
