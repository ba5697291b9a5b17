// Vm construction and the run loop (see vm.hpp).
#include "vmm/vm.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cstring>
#include <fstream>

#include "devices/acpi_pm.hpp"
#include "devices/cmos_rtc.hpp"
#include "devices/i8042.hpp"
#include "devices/serial.hpp"
#include "virtio/console/console_device.hpp"
#include "virtio/net/net_device.hpp"
#include "virtio/net/tap.hpp"
#include "virtio/rng/rng_device.hpp"
#include "vmm/core/event_fd.hpp"
#include "vmm/core/log.hpp"
#include "vmm/epoll_loop.hpp"
#include "vmm/output_relay.hpp"
#include "vmm/terminal.hpp"
#include "vmm/vcpu.hpp"
#include "vmm/virtio_builder.hpp"
#include "vmm/x86_64/acpi/tables.hpp"
#include "vmm/x86_64/boot/boot_params.hpp"
#include "vmm/x86_64/boot/initrd.hpp"
#include "vmm/x86_64/boot/kernel_loader.hpp"
#include "vmm/x86_64/cpuid.hpp"
#include "vmm/x86_64/layout.hpp"
#include "vmm/x86_64/regs.hpp"

namespace hvz::vmm {
namespace {

// Where KVM keeps its TSS and identity-map pages: just below the BIOS area
// at the top of the 32-bit space, inside the MMIO gap.
constexpr std::uint64_t kKvmTssAddress = 0xfffbd000;
constexpr std::uint64_t kKvmIdentityMapAddress = 0xfffbc000;
// What pause() and resume() say once the guest has finished.
constexpr const char* kFinished = "the microVM has stopped";
// Images larger than this cannot fit any guest we build.
constexpr std::uint64_t kMaxImageSize = 1ull << 32;

struct Capability {
  int id;
  const char* name;
};
constexpr Capability kRequiredCaps[] = {
    {KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"},
    {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
    {KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR"},
    {KVM_CAP_PIT2, "KVM_CAP_PIT2"},
    {KVM_CAP_IRQFD, "KVM_CAP_IRQFD"},
    {KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},
    {KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"},
    {KVM_CAP_SET_IDENTITY_MAP_ADDR, "KVM_CAP_SET_IDENTITY_MAP_ADDR"},
};

Expected<std::vector<std::byte>> read_file(const std::string& path, const char* what) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return sys_error(std::string("cannot open ") + what + " " + path);
  struct stat st {};
  if (::fstat(fd.get(), &st) < 0) return sys_error(std::string("cannot stat ") + what + " " + path);
  if (!S_ISREG(st.st_mode)) {
    return make_error(Errc::kInvalidArgument,
                      std::string(what) + " " + path + " is not a regular file");
  }
  if (static_cast<std::uint64_t>(st.st_size) > kMaxImageSize) {
    return make_error(Errc::kInvalidArgument, std::string(what) + " " + path + " is too large");
  }
  std::vector<std::byte> data(static_cast<std::size_t>(st.st_size));
  std::size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::read(fd.get(), data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sys_error(std::string("cannot read ") + what + " " + path);
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
  }
  data.resize(done);
  return data;
}

}  // namespace

std::vector<MemoryRange> ram_layout(std::uint64_t mem_size_mib) {
  const std::uint64_t size = mem_size_mib << 20;
  std::vector<MemoryRange> ranges;
  ranges.push_back({GuestAddress(0), std::min(size, x86_64::kMmioGapStart)});
  if (size > x86_64::kMmioGapStart) {
    ranges.push_back({GuestAddress(x86_64::kMmioGapEnd), size - x86_64::kMmioGapStart});
  }
  return ranges;
}

Vm::Vm(Kvm kvm, VmFd vm, GuestMemory memory)
    : kvm_(std::move(kvm)), vm_(std::move(vm)), memory_(std::move(memory)) {}

Vm::~Vm() {
  {
    std::lock_guard lock(pause_mutex_);
    finished_ = true;
  }
  teardown();
}

void Vm::teardown() {
  for (auto& v : vcpus_) v->stop();
  input_.reset();
  // Every device is shut down explicitly (the vCPUs' bus still holds the
  // transports), while the loop and guest memory it uses still exist.
  if (devices_) devices_->shutdown();
  if (loop_) loop_->stop();
  relays_.clear();  // nothing produces output any more: drain and stop
}

Expected<std::unique_ptr<Vm>> Vm::create(const config::VmConfig& config, ConsoleIo io) {
  if (auto r = config::validate(config); !r) return tl::unexpected(r.error());
  const auto& machine = config.machine_config;

  auto kvm = Kvm::open();
  if (!kvm) return tl::unexpected(kvm.error());
  for (const auto& cap : kRequiredCaps) {
    if (auto r = kvm->require_extension(cap.id, cap.name); !r) return tl::unexpected(r.error());
  }
  const int max_vcpus = kvm->check_extension(KVM_CAP_MAX_VCPUS);
  if (max_vcpus > 0 && machine.vcpu_count > static_cast<std::uint32_t>(max_vcpus)) {
    return make_error(Errc::kUnsupported,
                      "this host's KVM allows at most " + std::to_string(max_vcpus) + " vCPUs");
  }
  auto vm_fd = kvm->create_vm();
  if (!vm_fd) return tl::unexpected(vm_fd.error());
  if (auto r = vm_fd->set_tss_address(kKvmTssAddress); !r) return tl::unexpected(r.error());
  if (auto r = vm_fd->set_identity_map_address(kKvmIdentityMapAddress); !r) {
    return tl::unexpected(r.error());
  }
  if (auto r = vm_fd->create_irqchip(); !r) return tl::unexpected(r.error());
  if (auto r = vm_fd->create_pit2(); !r) return tl::unexpected(r.error());

  auto memory = GuestMemory::create(ram_layout(machine.mem_size_mib),
                                    machine.huge_pages == config::HugePages::k2M);
  if (!memory) return tl::unexpected(memory.error());
  std::uint32_t slot = 0;
  for (const auto& region : memory->regions()) {
    if (auto r =
            vm_fd->set_user_memory_region(slot++, region.start.value(), region.mapping.bytes());
        !r) {
      return tl::unexpected(r.error());
    }
  }

  std::unique_ptr<Vm> vm(new Vm(std::move(*kvm), std::move(*vm_fd), std::move(*memory)));
  auto control = VmControl::create();
  if (!control) return tl::unexpected(control.error());
  vm->control_ = std::move(*control);
  auto loop = EpollLoop::create();
  if (!loop) return tl::unexpected(loop.error());
  vm->loop_ = std::move(*loop);
  DeviceWiring& wiring = *vm;  // a private base: convertible here only
  vm->devices_ =
      std::make_unique<DeviceManager>(vm->memory_, *vm->loop_, wiring,
                                      MmioSlots(x86_64::kVirtioMmioStart, x86_64::kVirtioMmioSize,
                                                x86_64::kVirtioGsiBase, x86_64::kIoapicPins));
  if (config.serial && !config.serial->serial_out_path.empty()) {
    // Opened like Firecracker's log and metrics files: a FIFO without a
    // reader neither blocks this open nor, later, the guest.
    const auto& path = config.serial->serial_out_path;
    auto out = log::open_output_file(path);
    if (!out) {
      return in_context("serial_out_path: ", out.error());
    }
    io.output_fd = out->get();
    vm->serial_out_ = std::move(*out);
  }
  if (auto r = vm->setup_devices(io); !r) return tl::unexpected(r.error());
  HostResources& host = *vm;
  if (auto r = build_virtio_devices(config, *vm->devices_, host); !r) {
    return tl::unexpected(r.error());
  }
  if (auto r = vm->load_and_configure(config); !r) return tl::unexpected(r.error());
  return vm;
}

Expected<int> Vm::relay_output(int target, const char* name) {
  auto relay = OutputRelay::start(target, io_.output_limit, name);
  if (!relay) return tl::unexpected(relay.error());
  const int fd = (*relay)->input_fd();
  relays_.push_back(std::move(*relay));
  return fd;
}

Expected<std::shared_ptr<IrqLine>> Vm::irq_line(std::uint32_t gsi) {
  auto fd = EventFd::create();
  if (!fd) return tl::unexpected(fd.error());
  if (auto r = vm_.register_irqfd(fd->fd(), gsi); !r) return tl::unexpected(r.error());
  return std::make_shared<EventFdIrqLine>(std::move(*fd));
}

Expected<void> Vm::register_ioeventfd(int fd, std::uint64_t addr, std::uint32_t len,
                                      std::uint64_t datamatch) {
  return vm_.register_ioeventfd(fd, addr, len, datamatch);
}

Expected<void> Vm::setup_devices(ConsoleIo io) {
  io_ = io;
  VmControl* control = control_.get();
  auto com1_irq = irq_line(x86_64::kCom1Irq);
  if (!com1_irq) return tl::unexpected(com1_irq.error());
  auto serial_out = relay_output(io.output_fd, "serial-out");
  if (!serial_out) return tl::unexpected(serial_out.error());
  serial_ = std::make_shared<devices::Serial>(*com1_irq, std::make_shared<FdOutput>(*serial_out));
  if (auto r = pio_->insert(serial_, x86_64::kCom1Port, 8); !r) return r;

  auto kbd_irq = irq_line(x86_64::kKeyboardIrq);
  if (!kbd_irq) return tl::unexpected(kbd_irq.error());
  i8042_ = std::make_shared<devices::I8042>(
      [control] { control->request_stop(StopReason::kReset, "guest reset through the i8042"); },
      *kbd_irq);
  if (auto r = pio_->insert(i8042_, x86_64::kI8042Port, 5); !r) return r;

  if (auto r = pio_->insert(std::make_shared<devices::CmosRtc>(), x86_64::kCmosPort, 2); !r) {
    return r;
  }
  auto pm = std::make_shared<devices::AcpiPm>(
      x86_64::kAcpiS5SleepType, x86_64::kAcpiResetValue,
      [control] { control->request_stop(StopReason::kPowerOff, "guest powered off (ACPI S5)"); },
      [control] {
        control->request_stop(StopReason::kReset, "guest reset (ACPI reset register)");
      });
  return pio_->insert(pm, x86_64::kAcpiSleepControlPort, devices::AcpiPm::kSize);
}

Expected<virtio::net::Tap> Vm::open_tap(const std::string& host_dev_name) {
  return virtio::net::Tap::open(host_dev_name);
}

Expected<HostResources::ConsoleFds> Vm::console_fds(const config::Console& console) {
  int out = -1;
  int in = -1;
  switch (console.mode) {
    case config::Console::Mode::kStdio: {
      // stdin feeds hvc0; the serial console keeps its output only.
      auto relayed = relay_output(io_.output_fd, "hvc0-out");
      if (!relayed) return tl::unexpected(relayed.error());
      out = *relayed;
      in = io_.input_fd;
      io_.input_fd = -1;
      break;
    }
    case config::Console::Mode::kFile: {
      // Like serial_out_path: a FIFO without a reader blocks nothing.
      auto fd = log::open_output_file(console.path);
      if (!fd) {
        return in_context("console: ", fd.error());
      }
      auto relayed = relay_output(fd->get(), "hvc0-out");
      if (!relayed) return tl::unexpected(relayed.error());
      out = *relayed;
      console_fds_.push_back(std::move(*fd));
      break;
    }
    case config::Console::Mode::kSocket: {
      UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
      if (!fd) return sys_error("console: socket");
      sockaddr_un addr{};
      addr.sun_family = AF_UNIX;
      if (console.path.size() >= sizeof addr.sun_path) {
        return make_error(Errc::kInvalidArgument, "console: socket path too long");
      }
      std::memcpy(addr.sun_path, console.path.c_str(), console.path.size());
      if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) {
        return sys_error("console: cannot connect to " + console.path);
      }
      // Non-blocking once connected: a peer that stops reading must not
      // stall the event loop (the device waits for writability instead).
      if (::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) | O_NONBLOCK) < 0) {
        return sys_error("console: fcntl");
      }
      out = in = fd.get();
      console_fds_.push_back(std::move(fd));
      break;
    }
  }
  return ConsoleFds{out, in};
}

Expected<void> Vm::load_and_configure(const config::VmConfig& config) {
  const auto& boot = *config.boot_source;
  const std::uint32_t vcpu_count = config.machine_config.vcpu_count;

  auto kernel_image = read_file(boot.kernel_image_path, "kernel image");
  if (!kernel_image) return tl::unexpected(kernel_image.error());
  auto kernel = x86_64::load_kernel(memory_, *kernel_image);
  if (!kernel) {
    return make_error(kernel.error().code(),
                      "kernel image " + boot.kernel_image_path + ": " + kernel.error().message());
  }
  std::optional<MemoryRange> initrd;
  if (boot.initrd_path) {
    auto image = read_file(*boot.initrd_path, "initrd");
    if (!image) return tl::unexpected(image.error());
    const std::uint64_t max_addr = kernel->header ? kernel->header->initrd_addr_max : 0xffffffffu;
    auto at = x86_64::load_initrd(memory_, *image, kernel->end, max_addr);
    if (!at) {
      return make_error(at.error().code(),
                        "initrd " + *boot.initrd_path + ": " + at.error().message());
    }
    initrd = MemoryRange{*at, image->size()};
  }
  std::string cmdline = config::kernel_cmdline(config);
  if (config.machine_config.virtio_mmio_cmdline) cmdline += devices_->kernel_cmdline_args();

  if (auto r = x86_64::acpi::write_acpi_tables(memory_, {vcpu_count, devices_->mmio_info()}); !r) {
    return r;
  }
  const bool pvh = kernel->protocol == x86_64::BootProtocol::kPvh;
  const auto mode = pvh ? x86_64::EntryMode::kPvh : x86_64::EntryMode::kLinux64;
  if (auto r = pvh ? x86_64::configure_pvh_boot(memory_, cmdline, initrd)
                   : x86_64::configure_linux_boot(memory_, *kernel, cmdline, initrd);
      !r) {
    return r;
  }
  if (auto r = x86_64::write_boot_tables(memory_, mode); !r) return r;

  auto supported = kvm_.supported_cpuid();
  if (!supported) return tl::unexpected(supported.error());
  if (auto r = Vcpu::install_kick_signal(); !r) return r;
  for (std::uint32_t id = 0; id < vcpu_count; ++id) {
    auto fd = vm_.create_vcpu(id);
    if (!fd) return tl::unexpected(fd.error());
    if (auto r = fd->set_cpuid(x86_64::vcpu_cpuid(*supported, id, vcpu_count)); !r) return r;
    if (auto r = x86_64::configure_vcpu(*fd, mode, kernel->entry.value()); !r) return r;
    vcpus_.push_back(std::make_unique<Vcpu>(id, std::move(*fd), pio_, devices_->bus(), *control_));
  }
  return {};
}

Expected<RunOutcome> Vm::run() {
  if (auto r = start(); !r) return tl::unexpected(r.error());
  return wait();
}

Expected<void> Vm::start() {
  if (started_.exchange(true)) return make_error(Errc::kBusy, "the VM is already started");
  if (io_.input_fd >= 0) {
    auto pump = InputPump::start(io_.input_fd, serial_);
    if (!pump) return tl::unexpected(pump.error());
    input_ = std::move(*pump);
  }
  loop_->start();
  for (auto& v : vcpus_) v->start();
  return {};
}

void Vm::request_stop(StopReason reason, std::string detail) {
  control_->request_stop(reason, std::move(detail));
}

int Vm::stop_event_fd() const {
  return control_->event_fd();
}

Expected<void> Vm::pause() {
  std::lock_guard lock(pause_mutex_);
  if (finished_ || control_->stopping()) return make_error(Errc::kInvalidArgument, kFinished);
  if (!started_.load() || paused_) return {};
  for (auto& v : vcpus_) v->pause();
  loop_->pause();
  if (input_) input_->pause();  // no more serial input
  devices_->quiesce();          // I/O workers idle, async I/O done
  paused_ = true;
  return {};
}

Expected<void> Vm::resume() {
  std::lock_guard lock(pause_mutex_);
  if (finished_ || control_->stopping()) return make_error(Errc::kInvalidArgument, kFinished);
  if (!paused_) return {};
  devices_->unquiesce();
  if (input_) input_->resume();
  loop_->resume();
  for (auto& v : vcpus_) v->resume();
  paused_ = false;
  return {};
}

void Vm::dump_state() {
  {
    std::lock_guard lock(pause_mutex_);
    LOG_WARN("state: %zu vCPU(s)%s%s", vcpus_.size(), paused_ ? ", paused" : "",
             finished_ ? ", stopped" : "");
    if (!finished_) {
      for (auto& v : vcpus_) v->request_dump();
    }
  }
  devices_->dump_state();
}

Expected<void> Vm::send_ctrl_alt_del() {
  return i8042_->trigger_ctrl_alt_del();
}

Expected<void> Vm::update_drive(const UpdateDrive& update, bool read_only) {
  return devices_->update_drive(update, read_only);
}

Expected<void> Vm::update_network_interface(const UpdateNetworkInterface& update) {
  return devices_->update_network_interface(update);
}

Expected<RunOutcome> Vm::wait() {
  while (!control_->stopping()) {
    pollfd p{control_->event_fd(), POLLIN, 0};
    if (::poll(&p, 1, -1) < 0 && errno != EINTR) return sys_error("poll");
  }
  {
    // Under the pause lock, so a pause or resume either finished before
    // (a parked vCPU wakes for its stop) or sees finished_ and does
    // nothing: none of them kicks a thread being joined.
    std::lock_guard lock(pause_mutex_);
    finished_ = true;
    paused_ = false;
    loop_->resume();
    for (auto& v : vcpus_) v->stop();
  }
  teardown();
  return RunOutcome{control_->reason(), control_->detail()};
}

}  // namespace hvz::vmm
