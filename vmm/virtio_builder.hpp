// build_virtio_devices: the virtio devices a VmConfig asks for, built and
// handed to the DeviceManager in the order the guest names them — the
// drives (the root drive first: /dev/vda), the network interfaces (eth0,
// ...), the console (hvc0), the entropy device. The host resources that are
// not plain files (a TAP by name, the console's fds) come through
// HostResources: Vm opens them for real, tests fake them.
#pragma once

#include <string>

#include "virtio/net/tap.hpp"
#include "vmm/config/vm_config.hpp"
#include "vmm/core/error.hpp"
#include "vmm/device_manager.hpp"

namespace hvz::vmm {

class HostResources {
 public:
  virtual ~HostResources() = default;
  // The TAP device `host_dev_name`, opened for a virtio-net device.
  virtual Expected<virtio::net::Tap> open_tap(const std::string& host_dev_name) = 0;
  // The virtio-console's fds for `console`: where its output goes (writes
  // never block on a slow sink) and its input (-1: none). They stay open as
  // long as the resources' owner.
  struct ConsoleFds {
    int out = -1;
    int in = -1;
  };
  virtual Expected<ConsoleFds> console_fds(const config::Console& console) = 0;
};

// Builds and adds every virtio device of `config` (validated) to
// `devices`, stopping at the first error, which names the device ("drive
// 'rootfs' (path): ...", "network interface 'eth0' (TAP tap0): ...").
// Metrics groups: block_<drive_id>, net_<iface_id>, console, entropy.
Expected<void> build_virtio_devices(const config::VmConfig& config, DeviceManager& devices,
                                    HostResources& host);

}  // namespace hvz::vmm
