// hvz: the composition root. Parse the command line (CLI11) or a config
// file, build the VM, run it, map how it stopped to the exit status:
//   0  the guest powered off or rebooted
//   1  the guest crashed (triple fault) or hvz failed while running
//   2  bad arguments, unreadable or malformed images, or set-up failure
#include <CLI/CLI.hpp>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "api/config_json.hpp"
#include "vmm/core/log.hpp"
#include "vmm/terminal.hpp"
#include "vmm/vm.hpp"

namespace {

constexpr int kExitOk = 0;
constexpr int kExitGuestFailure = 1;
constexpr int kExitUsage = 2;

int fail(const std::string& message) {
  std::fprintf(stderr, "hvz: error: %s\n", message.c_str());
  return kExitUsage;
}

}  // namespace

int main(int argc, char** argv) {
  using hvz::config::VmConfig;
  CLI::App app{
      "hvz: a lightweight KVM virtual machine monitor for microVMs.\n"
      "Boots a Linux kernel (bzImage, or an ELF vmlinux with a PVH note) with an\n"
      "optional initramfs on a 16550A serial console wired to stdin/stdout.\n"
      "Exit status: 0 guest powered off or rebooted; 1 guest crashed or hvz\n"
      "failed while running; 2 bad arguments, images or set-up failure.",
      "hvz"};
  std::string kernel, initrd, cmdline, config_file, log_level = "warn";
  std::uint32_t vcpus = 1, memory = 128;
  bool huge_pages = false;
  bool virtio_mmio_cmdline = false;
  auto* kernel_opt =
      app.add_option("--kernel", kernel, "Guest kernel image (bzImage or ELF vmlinux)");
  auto* initrd_opt = app.add_option("--initrd", initrd, "Initramfs image");
  auto* cmdline_opt = app.add_option(
      "--cmdline", cmdline,
      std::string("Kernel command line (default: \"") + hvz::config::kDefaultBootArgs + "\")");
  auto* vcpus_opt = app.add_option("--vcpus", vcpus, "Number of vCPUs, 1-32 (default 1)");
  auto* memory_opt = app.add_option("--memory", memory, "Guest memory in MiB (default 128)");
  auto* huge_opt =
      app.add_flag("--huge-pages", huge_pages, "Back guest memory with 2 MiB huge pages");
  app.add_flag("--virtio-mmio-cmdline", virtio_mmio_cmdline,
               "Also list virtio-mmio devices as virtio_mmio.device= on the kernel command\n"
               "line (kernels with CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES; the DSDT always has them)");
  auto* config_opt = app.add_option(
      "--config-file", config_file,
      "VM configuration in Firecracker's config-file JSON (boot-source, machine-config,\n"
      "drives, network-interfaces) plus hvz's own console section");
  for (auto* o : {kernel_opt, initrd_opt, cmdline_opt, vcpus_opt, memory_opt, huge_opt}) {
    o->excludes(config_opt);
  }
  app.add_option("--log-level", log_level, "error, warn (default), info or debug")
      ->check(CLI::IsMember({"error", "warn", "info", "debug"}));

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::fputs(app.help().c_str(), stdout);
    return kExitOk;
  } catch (const CLI::ParseError& e) {
    return fail(e.what());
  }
  hvz::log::set_thread_name("main");
  hvz::log::set_level(log_level == "error"   ? hvz::log::Level::kError
                      : log_level == "info"  ? hvz::log::Level::kInfo
                      : log_level == "debug" ? hvz::log::Level::kDebug
                                             : hvz::log::Level::kWarn);

  VmConfig config;
  if (!config_file.empty()) {
    std::ifstream in(config_file);
    if (!in) return fail("cannot read config file " + config_file);
    std::stringstream text;
    text << in.rdbuf();
    auto parsed = hvz::api::parse_vm_config(text.str());
    if (!parsed) return fail(config_file + ": " + parsed.error().message());
    config = std::move(*parsed);
  } else {
    if (kernel.empty()) return fail("--kernel or --config-file is required (see --help)");
    hvz::config::BootSource boot;
    boot.kernel_image_path = kernel;
    if (!initrd.empty()) boot.initrd_path = initrd;
    if (*cmdline_opt) boot.boot_args = cmdline;
    config.boot_source = boot;
    config.machine_config.vcpu_count = vcpus;
    config.machine_config.mem_size_mib = memory;
    config.machine_config.huge_pages =
        huge_pages ? hvz::config::HugePages::k2M : hvz::config::HugePages::kNone;
  }

  if (virtio_mmio_cmdline) config.machine_config.virtio_mmio_cmdline = true;
  auto vm = hvz::vmm::Vm::create(config);
  if (!vm) return fail(vm.error().message());
  hvz::vmm::RawTerminal raw(0);
  auto outcome = (*vm)->run();
  if (!outcome) {
    std::fprintf(stderr, "hvz: error: %s\n", outcome.error().message().c_str());
    return kExitGuestFailure;
  }
  using hvz::vmm::StopReason;
  switch (outcome->reason) {
    case StopReason::kPowerOff:
    case StopReason::kReset:
      LOG_INFO("%s", outcome->detail.c_str());
      return kExitOk;
    case StopReason::kGuestCrash:
    case StopReason::kError:
      std::fprintf(stderr, "hvz: %s\n", outcome->detail.c_str());
      return kExitGuestFailure;
  }
  return kExitGuestFailure;
}
