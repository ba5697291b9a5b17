// Fuzz harness for virtio-mmio + virtio-rng (virtio/rng/rng_device.hpp):
// register sequences, requests filled from a deterministic source that
// the input can make fail or return short reads, rate-limit changes.
//
// Input (after mmio_fuzz.hpp's u8 config): config bit 2 rate limits follow
// (bandwidth, ops); a u16-sized memory image; operations.
#include <cerrno>
#include <cstring>
#include <memory>

#include "virtio/fuzz/mmio_fuzz.hpp"
#include "virtio/rng/rng_device.hpp"

namespace {

using namespace hvz;
using namespace hvz::virtio;
using namespace hvz::virtio::rng;
using namespace hvz::virtio::fuzz;

// The host's entropy source: fixed bytes, short reads, EINTR or failure,
// as the input says.
struct Source {
  enum class Mode { kFull, kShort, kInterrupted, kFail };
  Mode mode = Mode::kFull;
  bool interrupted_once = false;
  ssize_t operator()(void* buf, std::size_t len) {
    switch (mode) {
      case Mode::kFull:
        std::memset(buf, 0x5a, len);
        return static_cast<ssize_t>(len);
      case Mode::kShort: {
        const std::size_t n = std::min<std::size_t>(len, 7);
        std::memset(buf, 0x5a, n);
        return static_cast<ssize_t>(n);
      }
      case Mode::kInterrupted:
        interrupted_once = !interrupted_once;
        if (interrupted_once) {
          errno = EINTR;
          return -1;
        }
        std::memset(buf, 0x5a, len);
        return static_cast<ssize_t>(len);
      case Mode::kFail:
        errno = EIO;
        return -1;
    }
    return -1;
  }
};

class RngHooks : public MmioDeviceHooks {
 public:
  RngHooks(std::shared_ptr<RngDevice> dev, Source& source)
      : dev_(std::move(dev)), source_(source) {}
  void host_event(FuzzInput& in) override {
    if (in.flag()) {
      source_.mode = static_cast<Source::Mode>(in.u8() % 4);
    } else {
      auto bandwidth = fuzz_bucket(in);
      dev_->update_rate_limiter(bandwidth, fuzz_bucket(in));
    }
  }

 private:
  std::shared_ptr<RngDevice> dev_;
  Source& source_;
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  hvz::fuzz::quiet_logs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzInput in(data, size);
  const std::uint8_t cfg = in.u8();
  std::optional<TokenBucketParams> bandwidth;
  std::optional<TokenBucketParams> ops;
  if (cfg & 4) {
    bandwidth = fuzz_bucket(in);
    ops = fuzz_bucket(in);
  }
  Source source;
  auto device = std::make_shared<RngDevice>(
      metrics::registry().group("entropy"), bandwidth, ops,
      [&source](void* buf, std::size_t len) { return source(buf, len); });
  const GuestMemory& mem = small_memory(cfg & 3);
  fill_memory(mem, in.sized_bytes(kSmallMemoryEnd));

  RngHooks hooks(device, source);
  MmioHarness harness(mem, device);
  harness.run(in, hooks);
  return 0;
}
