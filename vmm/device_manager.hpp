// DeviceManager: the VM's virtio-mmio devices — the MMIO bus the vCPUs
// dispatch to, where each device goes (MmioSlots: the next 4 KiB window and
// GSI, in add order), its transport, the list the ACPI tables and the kernel
// command line describe, and the drives and network interfaces by id for
// runtime updates. What it needs of KVM (an interrupt line per GSI, an
// ioeventfd per queue) goes through DeviceWiring: Vm implements it with its
// VmFd, tests with fakes.
//
// Threading: devices are added while the VM is built, on one thread; the
// lists never change afterwards. The VMM thread then calls quiesce(),
// unquiesce(), shutdown() and the updates; dump_state() may come from any
// thread; vCPU threads reach the transports only through bus().
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "virtio/rate_limiter.hpp"
#include "vmm/config/vm_config.hpp"
#include "vmm/core/bus.hpp"
#include "vmm/core/error.hpp"
#include "vmm/core/event_loop.hpp"
#include "vmm/core/guest_memory.hpp"
#include "vmm/core/irq.hpp"
#include "vmm/mmio_slots.hpp"
#include "vmm/vmm_action.hpp"
#include "vmm/x86_64/acpi/tables.hpp"

namespace hvz::virtio {
class MmioTransport;
class VirtioDevice;
namespace block {
class BlockDevice;
}
namespace net {
class NetDevice;
}
}  // namespace hvz::virtio

namespace hvz::vmm {

// How a device reaches the guest without the VMM in the way.
class DeviceWiring {
 public:
  virtual ~DeviceWiring() = default;
  // A line raising `gsi` (KVM: an eventfd registered as an irqfd).
  virtual Expected<std::shared_ptr<IrqLine>> irq_line(std::uint32_t gsi) = 0;
  // Guest writes of `len` bytes of `datamatch` at `addr` signal `fd`
  // without a VM exit (KVM: an ioeventfd).
  virtual Expected<void> register_ioeventfd(int fd, std::uint64_t addr, std::uint32_t len,
                                            std::uint64_t datamatch) = 0;
};

class DeviceManager {
 public:
  // Devices go where `slots` says. `mem`, `loop` and `wiring` must outlive
  // the manager.
  DeviceManager(const GuestMemory& mem, EventLoop& loop, DeviceWiring& wiring, MmioSlots slots);
  // Runs shutdown(): the transports may outlive the manager in the bus a
  // vCPU still shares, but nothing of `loop` stays in use.
  ~DeviceManager();
  DeviceManager(const DeviceManager&) = delete;
  DeviceManager& operator=(const DeviceManager&) = delete;

  // The bus of the virtio-mmio windows; every Vcpu shares it.
  const std::shared_ptr<Bus>& bus() const { return bus_; }

  // Puts `device` in the next slot: its interrupt line on the slot's GSI,
  // one ioeventfd per queue at base + virtio::kQueueNotifyOffset (4 bytes,
  // datamatch = queue index), its transport on the bus at the window.
  // Fails once the IOAPIC's pins are taken. On error nothing is on the bus
  // or in the lists; a slot whose wiring was started stays used (KVM may
  // keep part of it), so later devices never land on it.
  Expected<void> add_device(std::shared_ptr<virtio::VirtioDevice> device);
  // Builds the virtio-blk device of `drive` (its image, io_engine and rate
  // limits; metrics group "block_<drive_id>") and adds it;
  // update_drive() then finds it by drive_id (a duplicate is refused).
  Expected<void> add_drive(const config::Drive& drive);
  // Adds a network interface's device; update_network_interface() then
  // finds it by `iface_id` (a duplicate is refused).
  Expected<void> add_net(const std::string& iface_id,
                         std::shared_ptr<virtio::net::NetDevice> device);

  // VM pause: every device's own threads stop touching guest memory; the
  // VMM calls it once the vCPUs and the event loop are parked, unquiesce()
  // before resuming them.
  void quiesce();
  void unquiesce();
  // Teardown: every activated device is reset (queue work done, workers
  // joined, event-loop registrations removed) and registers are dead from
  // then on. The VMM calls it once the vCPUs are stopped, before the event
  // loop and guest memory go. Idempotent; quiesce() and unquiesce() do
  // nothing afterwards.
  void shutdown();

  // Logs one line per device (window, type, status), for stall diagnosis.
  void dump_state() const;

  // Runtime updates (the API's PATCH), with complete values: a drive's
  // backing file (opened read-only when `read_only`) and/or rate limits, a
  // network interface's rate limits. Unset fields stay.
  Expected<void> update_drive(const UpdateDrive& update, bool read_only);
  Expected<void> update_network_interface(const UpdateNetworkInterface& update);

  // " virtio_mmio.device=4K@<base>:<gsi>" per device, in add order: the
  // kernel command line's description of the devices (for guests without
  // ACPI).
  std::string kernel_cmdline_args() const;
  // Every device's window and GSI, in add order (for the ACPI tables).
  const std::vector<x86_64::acpi::VirtioMmioInfo>& mmio_info() const { return info_; }
  // The transports, in the same order.
  const std::vector<std::shared_ptr<virtio::MmioTransport>>& transports() const {
    return transports_;
  }

 private:
  const GuestMemory& mem_;
  EventLoop& loop_;
  DeviceWiring& wiring_;
  std::shared_ptr<Bus> bus_ = std::make_shared<Bus>();
  // Where the next device goes (window and GSI).
  MmioSlots slots_;
  std::vector<std::shared_ptr<virtio::MmioTransport>> transports_;
  std::vector<x86_64::acpi::VirtioMmioInfo> info_;
  // By id, for runtime updates (owned by their transports too).
  std::map<std::string, std::shared_ptr<virtio::block::BlockDevice>> drives_;
  std::map<std::string, std::shared_ptr<virtio::net::NetDevice>> nets_;
};

// A configured rate limiter as a device's two token buckets (none: no
// limit).
virtio::RateLimits rate_limits(const std::optional<config::RateLimiterConfig>& config);

}  // namespace hvz::vmm
