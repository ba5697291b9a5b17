// The virtio devices of a VmConfig, in the guest's order (see
// virtio_builder.hpp).
#include "vmm/virtio_builder.hpp"

#include <memory>
#include <utility>
#include <vector>

#include "virtio/console/console_device.hpp"
#include "virtio/net/net_device.hpp"
#include "virtio/rng/rng_device.hpp"
#include "vmm/core/metrics.hpp"

namespace hvz::vmm {

Expected<void> build_virtio_devices(const config::VmConfig& config, DeviceManager& devices,
                                    HostResources& host) {
  // The root drive first, so the guest names it /dev/vda.
  std::vector<const config::Drive*> drives;
  for (const auto& d : config.drives) {
    if (d.is_root_device) {
      drives.insert(drives.begin(), &d);
    } else {
      drives.push_back(&d);
    }
  }
  for (const auto* d : drives) {
    if (auto r = devices.add_drive(*d); !r) return r;
  }
  for (const auto& n : config.network_interfaces) {
    auto tap = host.open_tap(n.host_dev_name);
    if (!tap) {
      return in_context("network interface '" + n.iface_id + "' (TAP " + n.host_dev_name + "): ",
                        tap.error());
    }
    auto net = std::make_shared<virtio::net::NetDevice>(
        std::move(*tap), n.guest_mac, n.iface_id, metrics::registry().group("net_" + n.iface_id),
        rate_limits(n.rx_rate_limiter), rate_limits(n.tx_rate_limiter));
    if (auto r = devices.add_net(n.iface_id, std::move(net)); !r) return r;
  }
  if (config.console) {
    auto fds = host.console_fds(*config.console);
    if (!fds) return tl::unexpected(fds.error());
    auto r = devices.add_device(std::make_shared<virtio::console::ConsoleDevice>(
        fds->out, fds->in, metrics::registry().group("console")));
    if (!r) return r;
  }
  if (config.entropy) {
    const virtio::RateLimits l = rate_limits(config.entropy->rate_limiter);
    auto r = devices.add_device(std::make_shared<virtio::rng::RngDevice>(
        metrics::registry().group("entropy"), l.bandwidth, l.ops));
    if (!r) return r;
  }
  return {};
}

}  // namespace hvz::vmm
