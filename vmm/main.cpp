// hvz: the composition root. Parse the command line (CLI11) or a config
// file, optionally serve Firecracker's API on a Unix socket, build the VM,
// run it, map how it stopped to the exit status:
//   0  the guest powered off or rebooted
//   1  the guest crashed (triple fault) or hvz failed while running
//   2  bad arguments, unreadable or malformed images, or set-up failure
//   128+N  stopped by signal N (SIGTERM, SIGINT, SIGHUP)
#include <CLI/CLI.hpp>

#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "api/config_json.hpp"
#include "api/controller.hpp"
#include "api/http_server.hpp"
#include "api/logging_setup.hpp"
#include "api/vm_backend.hpp"
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

int exit_status(const hvz::vmm::RunOutcome& outcome) {
  using hvz::vmm::StopReason;
  switch (outcome.reason) {
    case StopReason::kPowerOff:
    case StopReason::kReset:
      LOG_INFO("%s", outcome.detail.c_str());
      return kExitOk;
    case StopReason::kGuestCrash:
    case StopReason::kError:
      std::fprintf(stderr, "hvz: %s\n", outcome.detail.c_str());
      return kExitGuestFailure;
  }
  return kExitGuestFailure;
}

// SIGTERM, SIGINT and SIGHUP arrive on a signalfd (blocked in every
// thread), so stopping is an ordinary event of the main loop; so does
// SIGUSR1, which logs the VM's state (vCPU registers) for stall diagnosis.
hvz::UniqueFd block_stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGUSR1}) sigaddset(&set, sig);
  ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return hvz::UniqueFd(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
}

}  // namespace

int main(int argc, char** argv) {
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
    std::fputs(app.help().c_str(), stdout);
    return kExitOk;
  } catch (const CLI::ParseError& e) {
    return fail(e.what());
  }
  hvz::log::set_thread_name("main");
  hvz::log::set_level(log_level == "off"     ? hvz::log::Level::kOff
                      : log_level == "error" ? hvz::log::Level::kError
                      : log_level == "info"  ? hvz::log::Level::kInfo
                      : log_level == "debug" ? hvz::log::Level::kDebug
                      : log_level == "trace" ? hvz::log::Level::kTrace
                                             : hvz::log::Level::kWarn);
  // Firecracker's instance id rule: 1-64 alphanumerics and '-' (also '_').
  const bool id_ok = !id.empty() && id.size() <= 64 &&
                     id.find_first_not_of(
                         "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                         "0123456789-_") == std::string::npos;
  if (!id_ok) return fail("--id '" + id + "' is invalid: use 1-64 of A-Z, a-z, 0-9, - and _");

  VmConfig config;
  bool boot_now = false;
  if (!config_file.empty()) {
    std::ifstream in(config_file);
    if (!in) return fail("cannot read config file " + config_file);
    std::stringstream text;
    text << in.rdbuf();
    auto parsed = hvz::api::parse_vm_config(text.str());
    if (!parsed) return fail(config_file + ": " + parsed.error().message());
    config = std::move(*parsed);
    boot_now = true;
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
    boot_now = true;
  } else if (api_sock.empty()) {
    return fail("--kernel, --config-file or --api-sock is required (see --help)");
  } else {
    for (auto* o : {initrd_opt, cmdline_opt, vcpus_opt, memory_opt, huge_opt}) {
      if (*o) return fail(o->get_name() + " needs --kernel");
    }
  }
  if (virtio_mmio_cmdline) config.machine_config.virtio_mmio_cmdline = true;

  auto signals = block_stop_signals();
  if (!signals) return fail("signalfd failed");

  hvz::vmm::ConsoleIo io;
  io.output_limit = output_limit_mib << 20;
  auto backend = hvz::api::VmBackend::create(io);
  if (!backend) return fail(backend.error().message());
  if (config.logger) {
    if (auto r = (*backend)->configure_logger(*config.logger); !r) {
      return fail("logger: " + r.error().message());
    }
  }
  if (config.metrics) {
    if (auto r = (*backend)->configure_metrics(*config.metrics); !r) {
      return fail("metrics: " + r.error().message());
    }
  }
  hvz::api::Controller controller(**backend, {id}, config);
  std::unique_ptr<hvz::api::HttpServer> server;
  if (!api_sock.empty()) {
    hvz::api::HttpServerOptions options;
    options.socket_path = api_sock;
    options.max_body_bytes = max_payload;
    auto started = hvz::api::HttpServer::start(
        options, [&controller](const hvz::api::HttpRequest& r) { return controller.handle(r); });
    if (!started) return fail("API socket " + api_sock + ": " + started.error().message());
    server = std::move(*started);
    LOG_INFO("API listening on %s", api_sock.c_str());
  }
  if (boot_now) {
    if (auto r = (*backend)->start(config); !r) return fail(r.error().message());
    controller.mark_started();
  }

  hvz::vmm::RawTerminal raw(0);
  // Wait for the VM to start (through the API), then for it to stop; a
  // stop signal ends either wait.
  int status = kExitOk;
  for (;;) {
    hvz::vmm::Vm* vm = (*backend)->vm();
    pollfd fds[2] = {{signals.get(), POLLIN, 0},
                     {vm ? vm->stop_event_fd() : (*backend)->started_fd(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return fail("poll failed");
    }
    if (fds[0].revents & POLLIN) {
      signalfd_siginfo info{};
      if (::read(signals.get(), &info, sizeof info) != sizeof info) continue;
      const int sig = static_cast<int>(info.ssi_signo);
      if (sig == SIGUSR1) {
        if (vm) vm->dump_state();
        continue;
      }
      LOG_INFO("stopping on signal %d", sig);
      status = 128 + sig;
      if (vm) {
        vm->request_stop(hvz::vmm::StopReason::kError, "stopped by signal");
        (void)vm->wait();
      }
      break;
    }
    if (!(fds[1].revents & POLLIN)) continue;
    if (!vm) continue;  // just started: poll on the VM now
    auto outcome = vm->wait();
    if (!outcome) {
      std::fprintf(stderr, "hvz: error: %s\n", outcome.error().message().c_str());
      status = kExitGuestFailure;
    } else {
      status = exit_status(*outcome);
    }
    break;
  }
  server.reset();  // no API calls past this point; the socket is removed
  return status;
}
