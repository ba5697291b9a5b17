// parse_options (see options.hpp): the CLI11 flags and their mapping to a
// VmConfig. CLI11 is slow to compile: it stays in this one file.
#include "api/hvz/options.hpp"

#include <CLI/CLI.hpp>

#include <fstream>
#include <sstream>

#include "api/config_json.hpp"
#include "vmm/vm.hpp"

namespace hvz::api {
namespace {

OptionsExit usage_error(const std::string& message) {
  return {kExitUsage, "hvz: error: " + message + "\n"};
}

}  // namespace

std::variant<Options, OptionsExit> parse_options(int argc, const char* const* argv) {
  using hvz::config::VmConfig;
  CLI::App app{
      "hvz: a lightweight KVM virtual machine monitor for microVMs.\n"
      "Boots a Linux kernel (bzImage, or an ELF vmlinux with a PVH note) with an\n"
      "optional initramfs on a 16550A serial console wired to stdin/stdout.\n"
      "With --api-sock it serves Firecracker's REST API on a Unix socket: the VM is\n"
      "configured and started through it (or at once from --config-file).\n"
      "Exit status: 0 guest powered off or rebooted; 1 guest crashed or hvz\n"
      "failed while running; 2 bad arguments, images or set-up failure;\n"
      "128+N stopped by signal N.",
      "hvz"};
  std::string kernel, initrd, cmdline, config_file, api_sock, id = "anonymous-instance";
  std::string log_level = "warn";
  std::uint32_t vcpus = 1, memory = 128;
  std::size_t max_payload = 51200;
  std::uint64_t output_limit_mib = hvz::vmm::kDefaultOutputLimit >> 20;
  bool huge_pages = false;
  bool virtio_mmio_cmdline = false;
  bool no_api = false;
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
      "VM configuration in Firecracker's config-file JSON (the shape GET /vm/config\n"
      "returns): boot-source, machine-config, drives, network-interfaces, logger,\n"
      "metrics, entropy, plus hvz's own console section. Boots at once.");
  for (auto* o : {kernel_opt, initrd_opt, cmdline_opt, vcpus_opt, memory_opt, huge_opt}) {
    o->excludes(config_opt);
  }
  auto* api_opt = app.add_option(
      "--api-sock", api_sock,
      "Serve the API on this Unix socket path (must not exist). Without --config-file\n"
      "or --kernel, hvz waits for the API to configure and start the VM");
  auto* no_api_opt = app.add_flag("--no-api", no_api,
                                  "No API socket (the default without --api-sock); needs "
                                  "--config-file or --kernel");
  no_api_opt->excludes(api_opt);
  app.add_option("--id", id, "Instance id reported by GET / (default anonymous-instance)");
  app.add_option("--http-api-max-payload-size", max_payload,
                 "Largest accepted API request body in bytes (default 51200)")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 24));
  app.add_option("--output-limit-mib", output_limit_mib,
                 "Most MiB of guest console output (serial or virtio-console) written to\n"
                 "one regular file, stdout redirected to a file included; 0: no limit\n"
                 "(default " +
                     std::to_string(hvz::vmm::kDefaultOutputLimit >> 20) + ")")
      ->check(CLI::Range(std::uint64_t{0}, std::uint64_t{1} << 30));
  app.add_option("--log-level", log_level, "off, error, warn (default), info, debug or trace")
      ->check(CLI::IsMember({"off", "error", "warn", "info", "debug", "trace"}));

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    return OptionsExit{kExitOk, app.help()};
  } catch (const CLI::ParseError& e) {
    return usage_error(e.what());
  }
  Options options;
  // CLI11 has checked the name already.
  options.log_level = hvz::log::parse_level(log_level).value_or(hvz::log::Level::kWarn);
  // Firecracker's instance id rule: 1-64 alphanumerics and '-' (also '_').
  const bool id_ok = !id.empty() && id.size() <= 64 &&
                     id.find_first_not_of(
                         "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                         "0123456789-_") == std::string::npos;
  if (!id_ok)
    return usage_error("--id '" + id + "' is invalid: use 1-64 of A-Z, a-z, 0-9, - and _");

  VmConfig& config = options.config;
  if (!config_file.empty()) {
    std::ifstream in(config_file);
    if (!in) return usage_error("cannot read config file " + config_file);
    std::stringstream text;
    text << in.rdbuf();
    auto parsed = hvz::api::parse_vm_config(text.str());
    if (!parsed) return usage_error(config_file + ": " + parsed.error().message());
    config = std::move(*parsed);
    options.boot_now = true;
  } else if (!kernel.empty()) {
    hvz::config::BootSource boot;
    boot.kernel_image_path = kernel;
    if (!initrd.empty()) boot.initrd_path = initrd;
    if (*cmdline_opt) boot.boot_args = cmdline;
    config.boot_source = boot;
    config.machine_config.vcpu_count = vcpus;
    config.machine_config.mem_size_mib = memory;
    config.machine_config.huge_pages =
        huge_pages ? hvz::config::HugePages::k2M : hvz::config::HugePages::kNone;
    options.boot_now = true;
  } else if (api_sock.empty()) {
    return usage_error("--kernel, --config-file or --api-sock is required (see --help)");
  } else {
    for (auto* o : {initrd_opt, cmdline_opt, vcpus_opt, memory_opt, huge_opt}) {
      if (*o) return usage_error(o->get_name() + " needs --kernel");
    }
  }
  if (virtio_mmio_cmdline) config.machine_config.virtio_mmio_cmdline = true;
  options.api_sock = api_sock;
  options.instance_id = id;
  options.max_payload = max_payload;
  options.output_limit = output_limit_mib << 20;
  return options;
}

}  // namespace hvz::api
