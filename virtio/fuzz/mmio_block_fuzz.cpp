// Fuzz harness for virtio-mmio + virtio-blk (virtio/block/block_device.hpp):
// register sequences up to DRIVER_OK and back, requests on the ring served
// by the device's I/O thread with the Sync or (where io_uring works) the
// Async engine, live image swaps and rate-limit changes from the host side,
// against a DiskImage on a memfd.
//
// Input (after mmio_fuzz.hpp's u8 config): config bit 2 read-only, bit 3
// Async engine, bit 4 rate limits follow; u16 disk sectors (at most 2048);
// the limits; a u16-sized memory image; operations.
#include <chrono>
#include <memory>
#include <thread>

#include "virtio/block/block_device.hpp"
#include "virtio/fuzz/mmio_fuzz.hpp"
#include "vmm/core/metrics.hpp"

namespace {

using namespace hvz;
using namespace hvz::virtio;
using namespace hvz::virtio::block;
using namespace hvz::virtio::fuzz;

constexpr std::uint64_t kMaxSectors = 2048;

bool g_async_works = false;

MemDisk& disk_file() {
  static MemDisk disk;
  return disk;
}
MemDisk& swap_file() {
  static MemDisk disk;
  return disk;
}

class BlockHooks : public MmioDeviceHooks {
 public:
  BlockHooks(std::shared_ptr<BlockDevice> dev, bool read_only)
      : dev_(std::move(dev)), read_only_(read_only) {}

  void host_event(FuzzInput& in) override {
    if (in.flag()) {
      // PATCH /drives path_on_host: a new image of another size.
      auto disk =
          swap_file().open((in.u16() % (kMaxSectors + 1)) * kSectorSize, read_only_ ^ in.flag());
      if (disk) (void)dev_->swap_disk(std::move(*disk));
    } else {
      auto bandwidth = fuzz_bucket(in);
      dev_->update_rate_limiter(bandwidth, fuzz_bucket(in));
    }
  }

  // The I/O thread serves the ring on its own: give it up to a millisecond
  // to complete what was published, so a run's coverage depends on the
  // input more than on scheduling.
  void settle(const GuestMemory& mem, const std::vector<RingLayout>& rings,
              std::uint32_t status) override {
    const std::uint32_t running =
        kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk;
    if (rings.empty() || status != running) return;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(1);
    while (std::chrono::steady_clock::now() < deadline) {
      auto avail = mem.read_obj<std::uint16_t>(GuestAddress(rings[0].avail + 2));
      auto used = mem.read_obj<std::uint16_t>(GuestAddress(rings[0].used + 2));
      if (!avail || !used || *avail == *used) return;
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  }

 private:
  std::shared_ptr<BlockDevice> dev_;
  bool read_only_;
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  hvz::fuzz::quiet_logs();
  auto disk = disk_file().open(kSectorSize, false);
  if (disk) {
    BlockOptions options;
    options.io_engine = IoEngine::kAsync;
    g_async_works = BlockDevice::create(std::move(*disk), "probe",
                                        metrics::registry().group("block_fuzz"), options)
                        .has_value();
  }
  if (!g_async_works) std::fprintf(stderr, "mmio_block_fuzz: io_uring unusable, Sync only\n");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzInput in(data, size);
  const std::uint8_t cfg = in.u8();
  const bool read_only = cfg & 4;
  const std::uint64_t sectors = in.u16() % (kMaxSectors + 1);
  BlockOptions options;
  options.io_engine = (cfg & 8) && g_async_works ? IoEngine::kAsync : IoEngine::kSync;
  if (cfg & 16) {
    options.bandwidth = fuzz_bucket(in);
    options.ops = fuzz_bucket(in);
  }
  auto disk = disk_file().open(sectors * kSectorSize, read_only);
  check(disk.has_value(), "cannot open the memfd disk");
  auto dev = BlockDevice::create(std::move(*disk), "fuzz-drive",
                                 metrics::registry().group("block_fuzz"), options);
  check(dev.has_value(), "BlockDevice::create failed");
  const GuestMemory& mem = small_memory(cfg & 3);
  fill_memory(mem, in.sized_bytes(kSmallMemoryEnd));

  std::shared_ptr<BlockDevice> device(std::move(*dev));
  BlockHooks hooks(device, read_only);
  MmioHarness harness(mem, device);
  harness.run(in, hooks);
  return 0;
}
