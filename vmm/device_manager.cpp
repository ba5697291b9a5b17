// DeviceManager: virtio-mmio devices placed, wired and driven (see
// device_manager.hpp).
#include "vmm/device_manager.hpp"

#include <cstdio>

#include "virtio/block/block_device.hpp"
#include "virtio/block/disk_image.hpp"
#include "virtio/mmio_transport.hpp"
#include "virtio/net/net_device.hpp"
#include "vmm/core/log.hpp"
#include "vmm/core/metrics.hpp"

namespace hvz::vmm {
namespace {

std::optional<virtio::TokenBucketParams> bucket_params(
    const std::optional<config::TokenBucketConfig>& b) {
  if (!b) return std::nullopt;
  return virtio::TokenBucketParams{b->size, b->one_time_burst, b->refill_time_ms};
}

// A drive's image, with an error that names the drive and the file.
Expected<virtio::block::DiskImage> open_image(const std::string& drive_id, const std::string& path,
                                              bool read_only) {
  auto disk = virtio::block::DiskImage::open(path, read_only);
  if (!disk) {
    return in_context("drive '" + drive_id + "' (" + path + "): ", disk.error());
  }
  return disk;
}

}  // namespace

virtio::RateLimits rate_limits(const std::optional<config::RateLimiterConfig>& config) {
  if (!config) return {};
  return {bucket_params(config->bandwidth), bucket_params(config->ops)};
}

DeviceManager::DeviceManager(const GuestMemory& mem, EventLoop& loop, DeviceWiring& wiring,
                             MmioSlots slots)
    : mem_(mem), loop_(loop), wiring_(wiring), slots_(slots) {}

DeviceManager::~DeviceManager() {
  shutdown();
}

Expected<void> DeviceManager::add_device(std::shared_ptr<virtio::VirtioDevice> device) {
  auto slot = slots_.take();
  if (!slot) return tl::unexpected(slot.error());
  const auto [base, size, gsi] = *slot;
  auto irq = wiring_.irq_line(gsi);
  if (!irq) return tl::unexpected(irq.error());
  auto transport = virtio::MmioTransport::create(std::move(device), mem_, loop_, *irq);
  if (!transport) return tl::unexpected(transport.error());
  const auto fds = (*transport)->queue_notify_fds();
  for (std::size_t q = 0; q < fds.size(); ++q) {
    // The guest's queue notifications signal the device without an exit.
    if (auto r = wiring_.register_ioeventfd(fds[q], base + virtio::kQueueNotifyOffset, 4, q); !r) {
      return r;
    }
  }
  if (auto r = bus_->insert(*transport, base, size); !r) return r;
  transports_.push_back(std::move(*transport));
  info_.push_back({base, size, gsi});
  return {};
}

Expected<void> DeviceManager::add_drive(const config::Drive& drive) {
  const std::string& id = drive.drive_id;
  if (drives_.count(id) != 0) {
    return make_error(Errc::kInvalidArgument, "duplicate drive_id '" + id + "'");
  }
  auto disk = open_image(id, drive.path_on_host, drive.is_read_only);
  if (!disk) return tl::unexpected(disk.error());
  virtio::block::BlockOptions options;
  options.io_engine = drive.io_engine == config::IoEngine::kAsync ? virtio::block::IoEngine::kAsync
                                                                  : virtio::block::IoEngine::kSync;
  const virtio::RateLimits limits = rate_limits(drive.rate_limiter);
  options.bandwidth = limits.bandwidth;
  options.ops = limits.ops;
  auto dev = virtio::block::BlockDevice::create(std::move(*disk), id,
                                                metrics::registry().group("block_" + id), options);
  if (!dev) {
    return in_context("drive '" + id + "': ", dev.error());
  }
  std::shared_ptr<virtio::block::BlockDevice> block(std::move(*dev));
  if (auto r = add_device(block); !r) return r;
  drives_[id] = std::move(block);
  return {};
}

Expected<void> DeviceManager::add_net(const std::string& iface_id,
                                      std::shared_ptr<virtio::net::NetDevice> device) {
  if (nets_.count(iface_id) != 0) {
    return make_error(Errc::kInvalidArgument, "duplicate iface_id '" + iface_id + "'");
  }
  if (auto r = add_device(device); !r) return r;
  nets_[iface_id] = std::move(device);
  return {};
}

void DeviceManager::quiesce() {
  for (auto& t : transports_) t->quiesce();
}

void DeviceManager::unquiesce() {
  for (auto& t : transports_) t->unquiesce();
}

void DeviceManager::shutdown() {
  // The bus (which vCPUs share) holds the transports too, so dropping our
  // references would reset nothing: each device is shut down explicitly.
  for (auto& t : transports_) t->shutdown();
}

void DeviceManager::dump_state() const {
  for (std::size_t i = 0; i < transports_.size(); ++i) {
    LOG_WARN("state: virtio-mmio@%#llx type %u status %#x%s",
             static_cast<unsigned long long>(info_[i].base),
             transports_[i]->device()->device_type(), transports_[i]->status(),
             transports_[i]->activated() ? " active" : "");
  }
}

Expected<void> DeviceManager::update_drive(const UpdateDrive& update, bool read_only) {
  const auto it = drives_.find(update.drive_id);
  if (it == drives_.end()) {
    return make_error(Errc::kInvalidArgument, "no drive with drive_id '" + update.drive_id + "'");
  }
  const auto& device = it->second;
  if (update.path_on_host) {
    auto disk = open_image(update.drive_id, *update.path_on_host, read_only);
    if (!disk) return tl::unexpected(disk.error());
    if (auto r = device->swap_disk(std::move(*disk)); !r) return r;
  }
  if (update.rate_limiter) {
    const virtio::RateLimits limits = rate_limits(update.rate_limiter);
    device->update_rate_limiter(limits.bandwidth, limits.ops);
  }
  return {};
}

Expected<void> DeviceManager::update_network_interface(const UpdateNetworkInterface& update) {
  const auto it = nets_.find(update.iface_id);
  if (it == nets_.end()) {
    return make_error(Errc::kInvalidArgument,
                      "no network interface with iface_id '" + update.iface_id + "'");
  }
  const auto& device = it->second;
  if (update.rx_rate_limiter) device->update_rx_rate_limiter(rate_limits(update.rx_rate_limiter));
  if (update.tx_rate_limiter) device->update_tx_rate_limiter(rate_limits(update.tx_rate_limiter));
  return {};
}

std::string DeviceManager::kernel_cmdline_args() const {
  std::string args;
  for (const auto& dev : info_) {
    char arg[64];
    std::snprintf(arg, sizeof arg, " virtio_mmio.device=4K@%#llx:%u",
                  static_cast<unsigned long long>(dev.base), dev.gsi);
    args += arg;
  }
  return args;
}

}  // namespace hvz::vmm
