// hvzctl: starts hvz microVMs in the background and controls them through
// their API sockets. Exit status: 0 success, 1 the operation failed, 2 bad
// arguments. Errors are one line on stderr: "hvzctl: error: ...".
#include <CLI/CLI.hpp>

#include <cstdio>
#include <string>

#include "api/hvzctl/commands.hpp"
#include "api/hvzctl/output.hpp"
#include "api/hvzctl/runtime.hpp"

namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

int error_line(const std::string& message, int status) {
  std::fprintf(stderr, "hvzctl: error: %s\n", hvz::hvzctl::one_line(message).c_str());
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace hvz::hvzctl;
  CLI::App app{
      "hvzctl: start hvz microVMs in the background and control them through their API.\n"
      "Each VM has an entry (api.sock, pid, console.log, meta.json) in the runtime\n"
      "directory: $HVZ_RUNTIME_DIR, else $XDG_RUNTIME_DIR/hvz, else /run/hvz (root)\n"
      "or /tmp/hvz-UID. A VM is named by its name there or by its API socket's path.\n"
      "Exit status: 0 success, 1 the operation failed, 2 bad arguments.",
      "hvzctl"};
  app.set_version_flag("--version", "hvzctl 0.1.0");
  app.require_subcommand(1);
  app.fallthrough();
  GlobalOptions global;
  app.add_option("--runtime-dir", global.runtime_dir,
                 "Runtime directory (default: " + default_runtime_dir() + ")");

  const std::string vm_help = "VM name, or the path of its API socket";

  // run
  RunOptions run;
  auto* run_cmd = app.add_subcommand("run", "Start, configure and boot a VM in the background");
  run_cmd->footer(
      "Starts hvz in the background with an API socket, configures the VM through the API\n"
      "and boots it (unless --no-start); prints the VM's name, state, pid and socket.\n"
      "hvz runs in the current directory: relative paths in a config file mean what they\n"
      "mean to hvz --config-file. The guest's serial console goes to console.log in the\n"
      "VM's runtime entry.");
  run_cmd->add_option("--name", run.name,
                      "VM name (default: vm_XXXX): " + name_rules() +
                          ".\nA running VM's name is refused; an exited one's entry is replaced");
  auto* config_opt = run_cmd->add_option(
      "--config-file", run.config_file,
      "VM configuration in Firecracker's config-file JSON, read as hvz --config-file reads\n"
      "it; each section is then PUT to the API (logger, metrics, boot-source,\n"
      "machine-config, drives/ID, network-interfaces/ID, serial, entropy)");
  auto* kernel_opt =
      run_cmd->add_option("--kernel", run.kernel, "Guest kernel image (bzImage or ELF vmlinux)");
  auto* initrd_opt = run_cmd->add_option("--initrd", run.initrd, "Initramfs image");
  auto* cmdline_opt =
      run_cmd->add_option("--cmdline", run.cmdline, "Kernel command line (default: hvz's)");
  auto* vcpus_opt = run_cmd->add_option("--vcpus", run.vcpus, "Number of vCPUs (default 1)");
  auto* memory_opt =
      run_cmd->add_option("--memory", run.memory_mib, "Guest memory in MiB (default 128)");
  auto* drive_opt = run_cmd
                        ->add_option("--drive", run.drives,
                                     "Virtio block drive, repeatable: PATH[,ro][,root][,id=ID]\n"
                                     "(ids default to rootfs for the root drive, else driveN)")
                        ->allow_extra_args(false);
  for (auto* o : {kernel_opt, initrd_opt, cmdline_opt, vcpus_opt, memory_opt, drive_opt}) {
    o->excludes(config_opt);
  }
  for (auto* o : {initrd_opt, cmdline_opt, vcpus_opt, memory_opt, drive_opt}) {
    o->needs(kernel_opt);
  }
  run_cmd->add_flag("--no-start", run.no_start,
                    "Configure the VM but do not boot it (start it later with hvzctl start)");
  run_cmd->add_option("--hvz", run.hvz, "The hvz binary (default: hvz next to hvzctl)");
  run_cmd->add_option("--timeout", run.timeout,
                      "Seconds to wait for hvz's API to answer (default 30)");
  run_cmd->add_flag("--json", run.json, "Print JSON instead of a table");

  // start / pause / resume / config
  std::string vm;
  auto* start_cmd =
      app.add_subcommand("start", "Boot a VM that was run with --no-start (InstanceStart)");
  auto* pause_cmd = app.add_subcommand("pause", "Pause a running VM's vCPUs");
  auto* resume_cmd = app.add_subcommand("resume", "Resume a paused VM");
  auto* config_cmd =
      app.add_subcommand("config", "Print a VM's configuration as JSON (GET /vm/config)");
  for (auto* sub : {start_cmd, pause_cmd, resume_cmd, config_cmd}) {
    sub->add_option("VM", vm, vm_help)->required();
  }

  // stop
  StopOptions stop;
  auto* stop_cmd = app.add_subcommand("stop", "Shut a VM down and remove its runtime entry");
  stop_cmd->footer(
      "Sends Ctrl-Alt-Del to the guest, then SIGTERM and SIGKILL to hvz if it has not\n"
      "exited within --timeout; a VM never started is just terminated.");
  stop_cmd->add_option("VM", vm, vm_help)->required();
  stop_cmd->add_option("--timeout", stop.timeout,
                       "Seconds to wait for the guest to shut down (default 10)");

  // status
  bool json = false;
  auto* status_cmd =
      app.add_subcommand("status", "Show a VM's state, vCPUs, memory, uptime, pid and socket");
  status_cmd->add_option("VM", vm, vm_help)->required();
  status_cmd->add_flag("--json", json, "Print JSON instead of a table");

  // ls
  bool prune = false;
  auto* ls_cmd = app.add_subcommand("ls", "List the VMs in the runtime directory");
  ls_cmd->footer(
      "Columns: NAME, STATE (hvz's: Not started, Running, Paused; exited when its process\n"
      "is gone), VCPUS, MEMORY, UPTIME, PID, SOCKET.");
  ls_cmd->add_flag("--json", json, "Print JSON instead of a table");
  ls_cmd->add_flag("--prune", prune, "Remove the entries of VMs that have exited");

  // rm
  std::vector<std::string> names;
  bool force = false;
  auto* rm_cmd =
      app.add_subcommand("rm", "Remove the runtime entries of exited VMs (console.log included)");
  rm_cmd->add_option("NAME", names, "VM names")->required();
  rm_cmd->add_flag("--force", force, "Kill a VM that still runs (SIGTERM, then SIGKILL) first");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    if (app.get_subcommands().empty() && argc > 1 && argv[1][0] != '-') {
      return error_line(std::string("unknown subcommand '") + argv[1] + "' (see hvzctl --help)",
                        kExitUsage);
    }
    return error_line(std::string(e.what()) + " (see hvzctl --help)", kExitUsage);
  }
  run.has_cmdline = cmdline_opt->count() > 0;

  hvz::Expected<void> result;
  if (run_cmd->parsed()) {
    result = cmd_run(global, run);
  } else if (start_cmd->parsed()) {
    result = cmd_start(global, vm);
  } else if (pause_cmd->parsed()) {
    result = cmd_pause(global, vm);
  } else if (resume_cmd->parsed()) {
    result = cmd_resume(global, vm);
  } else if (stop_cmd->parsed()) {
    result = cmd_stop(global, vm, stop);
  } else if (status_cmd->parsed()) {
    result = cmd_status(global, vm, json);
  } else if (config_cmd->parsed()) {
    result = cmd_config(global, vm);
  } else if (ls_cmd->parsed()) {
    result = cmd_ls(global, json, prune);
  } else if (rm_cmd->parsed()) {
    result = cmd_rm(global, names, force);
  }
  if (!result) return error_line(result.error().message(), kExitFailure);
  return kExitOk;
}
