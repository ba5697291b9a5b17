// Vm: builds an x86_64 microVM from a VmConfig — KVM VM with in-kernel
// irqchip and PIT, guest RAM around the MMIO gap, legacy devices on the PIO
// bus, ACPI tables, the kernel and initrd loaded with their boot structures,
// configured vCPUs — then runs it until the guest powers off, reboots or
// crashes. The VMM thread owns it (VmmLoop through VmRuntime); it keeps no
// copy of the configuration: runtime updates come with complete values.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "vmm/config/vm_config.hpp"
#include "vmm/core/bus.hpp"
#include "vmm/core/guest_memory.hpp"
#include "vmm/core/kvm.hpp"
#include "vmm/device_manager.hpp"
#include "vmm/virtio_builder.hpp"
#include "vmm/vm_control.hpp"
#include "vmm/vm_runtime.hpp"

namespace hvz::devices {
class Serial;
class I8042;
}  // namespace hvz::devices

namespace hvz::vmm {

class Vcpu;
class InputPump;
class EpollLoop;
class OutputRelay;

// The default cap on what a guest's console output may add to a regular
// file (serial or virtio-console, stdout redirected to a file included).
inline constexpr std::uint64_t kDefaultOutputLimit = 256ull << 20;

struct ConsoleIo {
  int input_fd = 0;   // the serial console's input (stdin); -1 for none
  int output_fd = 1;  // its output (stdout)
  // Most bytes of guest console output written to one regular file (0: no
  // limit); see OutputRelay.
  std::uint64_t output_limit = kDefaultOutputLimit;
};

// Its virtio-mmio devices live in a DeviceManager, which reaches KVM
// through the DeviceWiring the Vm implements (irqfds, ioeventfds).
class Vm : public VmRuntime, private DeviceWiring, private HostResources {
 public:
  static Expected<std::unique_ptr<Vm>> create(const config::VmConfig& config, ConsoleIo io = {});
  ~Vm() override;

  // Starts the vCPUs and blocks until the VM stops.
  Expected<RunOutcome> run();
  // run() in two steps: start() returns once the vCPUs run; wait() blocks
  // until the VM stops (the guest powers off or resets, or request_stop()).
  Expected<void> start() override;
  Expected<RunOutcome> wait() override;
  // Asks a started VM to stop; wait() then returns `reason`.
  void request_stop(StopReason reason, std::string detail) override;
  // The fd that becomes readable once the VM is stopping (for poll()).
  int stop_event_fd() const override;

  // Controls for a started VM, from the VMM thread. pause() returns once
  // every vCPU is out of the guest and device callbacks are held; resume()
  // continues where the guest was. Both fail once the VM is stopping (its
  // guest has finished, or wait() has stopped it).
  Expected<void> pause() override;
  Expected<void> resume() override;
  // Logs, for stall diagnosis, every vCPU's registers and run state (from
  // its own thread, see Vcpu::request_dump) and every virtio transport's
  // status (DeviceManager::dump_state). Any thread; returns at once.
  void dump_state() override;
  // Ctrl-Alt-Del through the i8042 (the guest usually reboots).
  Expected<void> send_ctrl_alt_del() override;
  // Runtime updates (the API's PATCH), with complete values: a drive's
  // backing file (opened read-only when `read_only`) and/or rate limits, a
  // network interface's rate limits. Unset fields stay. DeviceManager does
  // them.
  Expected<void> update_drive(const UpdateDrive& update, bool read_only) override;
  Expected<void> update_network_interface(const UpdateNetworkInterface& update) override;

  const GuestMemory& memory() const { return memory_; }

 private:
  Vm(Kvm kvm, VmFd vm, GuestMemory memory);
  // DeviceWiring on the VM fd: an eventfd registered as an irqfd, an
  // ioeventfd.
  Expected<std::shared_ptr<IrqLine>> irq_line(std::uint32_t gsi) override;
  Expected<void> register_ioeventfd(int fd, std::uint64_t addr, std::uint32_t len,
                                    std::uint64_t datamatch) override;
  // HostResources for build_virtio_devices: a TAP by name; the console's
  // fds (stdio: a relay to the output and the serial's input, which the
  // serial console then goes without; file: a relay to it; socket: the
  // connected, non-blocking socket), kept in console_fds_ and relays_.
  Expected<virtio::net::Tap> open_tap(const std::string& host_dev_name) override;
  Expected<ConsoleFds> console_fds(const config::Console& console) override;
  Expected<void> setup_devices(ConsoleIo io);
  // Starts a relay to `target`; returns the fd producers write to.
  Expected<int> relay_output(int target, const char* name);
  Expected<void> load_and_configure(const config::VmConfig& config);
  // Stops everything that runs, in dependency order: the vCPUs (no more
  // register accesses), the serial input, every device (queue work done,
  // I/O workers joined, loop registrations removed), the event loop, then
  // the output relays (drained). Idempotent; wait() and the destructor
  // call it.
  void teardown();

  Kvm kvm_;
  VmFd vm_;
  GuestMemory memory_;
  std::unique_ptr<VmControl> control_;
  // Device work runs on the loop. It is declared before everything that
  // registers with it, so it is destroyed after them; teardown() has
  // stopped it and reset every device by then anyway.
  std::unique_ptr<EpollLoop> loop_;
  std::vector<UniqueFd> console_fds_;
  // Console output (serial, virtio-console) reaches its host fd through
  // these; teardown() drains and stops them once the devices are quiet.
  std::vector<std::unique_ptr<OutputRelay>> relays_;
  std::shared_ptr<Bus> pio_ = std::make_shared<Bus>();
  // The virtio-mmio devices and their bus, built as soon as loop_ exists.
  // Declared after loop_ (the transports register with it) and after the
  // relays and console fds (the console device writes to them), so it is
  // destroyed before them; teardown() has shut every device down by then
  // anyway.
  std::unique_ptr<DeviceManager> devices_;
  UniqueFd serial_out_;  // serial_out_path, when configured; outlives serial_
  std::shared_ptr<devices::Serial> serial_;
  std::shared_ptr<devices::I8042> i8042_;
  ConsoleIo io_;
  std::unique_ptr<InputPump> input_;
  std::atomic<bool> started_{false};
  // Serialises pause(), resume() and the stop in wait(): a pause can never
  // kick a vCPU thread that wait() is joining or has joined.
  std::mutex pause_mutex_;
  bool paused_ = false;    // under pause_mutex_
  bool finished_ = false;  // under pause_mutex_: wait() stopped the VM
  // Last: vCPU threads stop before anything they touch is destroyed.
  std::vector<std::unique_ptr<Vcpu>> vcpus_;
};

// Guest RAM ranges for `mem_size_mib`: below the 3 GiB MMIO gap, the rest
// from 4 GiB.
std::vector<MemoryRange> ram_layout(std::uint64_t mem_size_mib);

}  // namespace hvz::vmm
