// VmmLoop: the VMM thread (Firecracker's VMM event loop with its API
// adapter). It owns the VM: it builds and starts it (at once, or on a
// StartInstance action), executes every VmmAction posted through the
// ActionChannel and answers it, and waits for the VM to stop. It polls
// three fds: the stop signals' signalfd, the channel's eventfd and the
// VM's stop fd. When the VM stops or a stop signal arrives it first closes
// the channel (queued and later actions are refused, no API client
// hangs), then lets the VM tear down, and returns how the run ended.
#pragma once

#include <functional>
#include <memory>

#include "vmm/action_channel.hpp"
#include "vmm/vm_resources.hpp"
#include "vmm/vm_runtime.hpp"

namespace hvz::vmm {

class VmmLoop {
 public:
  // Builds (not starts) a VM from a validated config.
  using VmFactory =
      std::function<Expected<std::unique_ptr<VmRuntime>>(const config::VmConfig& config)>;

  // `signal_fd`: a signalfd (or anything that reads as signalfd_siginfo
  // records) of SIGTERM, SIGINT and SIGHUP, which stop hvz, and SIGUSR1,
  // which logs the VM's state; -1 for none. `resources`: the one
  // configuration, read for what an action leaves out (a drive's
  // read-only flag).
  VmmLoop(ActionChannel& actions, const VmResources& resources, VmFactory factory, int signal_fd);
  // Closes the channel if run() did not.
  ~VmmLoop();
  VmmLoop(const VmmLoop&) = delete;
  VmmLoop& operator=(const VmmLoop&) = delete;

  // Builds and starts the VM now (a config given on the command line).
  Expected<void> start(const config::VmConfig& config);
  bool started() const { return vm_ != nullptr; }

  // Serves actions until the VM stops or a stop signal arrives; then
  // refuses every later action and returns how the run ended (a signal:
  // StopReason::kSignal, with or without a VM).
  Expected<RunOutcome> run();

 private:
  VmmResult execute(VmmAction& action);
  VmmResult start_instance(const config::VmConfig& config);
  Expected<RunOutcome> finish(std::optional<int> signal);

  ActionChannel& actions_;
  const VmResources& resources_;
  VmFactory factory_;
  int signal_fd_;
  std::unique_ptr<VmRuntime> vm_;
};

}  // namespace hvz::vmm
