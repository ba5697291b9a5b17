// Fuzz harness for virtio-mmio + virtio-net (virtio/net/net_device.hpp)
// with one end of a SOCK_SEQPACKET socketpair as the TAP: register
// sequences, TX chains the device sends to the peer, frames the peer sends
// for RX, rate-limit changes.
//
// Input (after mmio_fuzz.hpp's u8 config): config bit 2 a MAC, bit 3 fake
// TAP offloads (so the offload features are offered), bit 4 rate limits
// follow (RX bandwidth and ops, TX bandwidth and ops); a u16-sized memory
// image; operations.
#include <sys/socket.h>

#include <memory>
#include <vector>

#include "virtio/fuzz/mmio_fuzz.hpp"
#include "virtio/net/net_device.hpp"

namespace {

using namespace hvz;
using namespace hvz::virtio;
using namespace hvz::virtio::net;
using namespace hvz::virtio::fuzz;

// What the peer (the host network) does: send frames, drain what the guest
// sent, change the limits.
class NetHooks : public MmioDeviceHooks {
 public:
  NetHooks(std::shared_ptr<NetDevice> dev, int peer) : dev_(std::move(dev)), peer_(peer) {}

  void host_event(FuzzInput& in) override {
    switch (in.u8() % 3) {
      case 0: {
        auto frame = in.sized_bytes(kMaxPacketSize + 16);
        (void)::send(peer_, frame.data(), frame.size(), MSG_DONTWAIT);
        break;
      }
      case 1:
        drain();
        break;
      case 2: {
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
    }
  }
  void settle(const GuestMemory&, const std::vector<RingLayout>&, std::uint32_t) override {
    drain();
  }

 private:
  // Every frame the device wrote must be a vnet header and at most 64 KiB.
  void drain() {
    for (;;) {
      const ssize_t n = ::recv(peer_, buf_.data(), buf_.size(), MSG_DONTWAIT | MSG_TRUNC);
      if (n < 0) return;
      check(n >= static_cast<ssize_t>(kVnetHdrSize) && n <= static_cast<ssize_t>(kMaxPacketSize),
            "the device sent a frame shorter than the vnet header or longer than the limit");
    }
  }

  std::shared_ptr<NetDevice> dev_;
  int peer_;
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
  int fds[2];
  check(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0,
        "socketpair");
  UniqueFd peer(fds[1]);
  std::optional<MacAddress> mac;
  if (cfg & 4) mac = MacAddress{0x06, 0x00, 0xac, 0x10, 0x00, 0x02};
  auto device = std::make_shared<NetDevice>(Tap::from_fd(UniqueFd(fds[0]), (cfg & 8) != 0), mac,
                                            "fuzz", metrics::registry().group("net_fuzz"), rx, tx);
  const GuestMemory& mem = small_memory(cfg & 3);
  fill_memory(mem, in.sized_bytes(kSmallMemoryEnd));

  NetHooks hooks(device, peer.get());
  MmioHarness harness(mem, device);
  harness.run(in, hooks);
  return 0;
}
