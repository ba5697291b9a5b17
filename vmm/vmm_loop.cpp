// VmmLoop (see vmm_loop.hpp).
#include "vmm/vmm_loop.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "vmm/core/log.hpp"

namespace hvz::vmm {
namespace {

constexpr const char* kNotStarted = "the microVM is not started";

tl::unexpected<Error> refused(std::string message) {
  return make_error(Errc::kInvalidArgument, std::move(message));
}

}  // namespace

VmmLoop::VmmLoop(ActionChannel& actions, const VmResources& resources, VmFactory factory,
                 int signal_fd)
    : actions_(actions),
      resources_(resources),
      factory_(std::move(factory)),
      signal_fd_(signal_fd) {}

VmmLoop::~VmmLoop() {
  actions_.close("the VMM has stopped");
}

Expected<void> VmmLoop::start(const config::VmConfig& config) {
  return start_instance(config);
}

VmmResult VmmLoop::start_instance(const config::VmConfig& config) {
  if (vm_) return make_error(Errc::kBusy, "the microVM is already started");
  auto vm = factory_(config);
  if (!vm) return tl::unexpected(vm.error());
  if (auto r = (*vm)->start(); !r) return r;
  vm_ = std::move(*vm);
  LOG_INFO("microVM started: %u vCPU(s), %u MiB", config.machine_config.vcpu_count,
           config.machine_config.mem_size_mib);
  return {};
}

VmmResult VmmLoop::execute(VmmAction& action) {
  if (auto* start = std::get_if<StartInstance>(&action)) return start_instance(start->config);
  if (!vm_) return refused(kNotStarted);
  if (std::holds_alternative<Pause>(action)) return vm_->pause();
  if (std::holds_alternative<Resume>(action)) return vm_->resume();
  if (std::holds_alternative<SendCtrlAltDel>(action)) return vm_->send_ctrl_alt_del();
  if (auto* drive = std::get_if<UpdateDrive>(&action)) {
    // How the drive was configured decides how a new file is opened.
    const bool read_only = resources_.read([&](const config::VmConfig& c) {
      const auto it = std::find_if(c.drives.begin(), c.drives.end(), [&](const config::Drive& d) {
        return d.drive_id == drive->drive_id;
      });
      return it != c.drives.end() && it->is_read_only;
    });
    return vm_->update_drive(*drive, read_only);
  }
  if (auto* iface = std::get_if<UpdateNetworkInterface>(&action)) {
    return vm_->update_network_interface(*iface);
  }
  return refused(std::string("unknown action ") + action_name(action));
}

Expected<RunOutcome> VmmLoop::run() {
  for (;;) {
    pollfd fds[3] = {{signal_fd_, POLLIN, 0},
                     {vm_ ? vm_->stop_event_fd() : -1, POLLIN, 0},
                     {actions_.event_fd(), POLLIN, 0}};
    if (::poll(fds, 3, -1) < 0) {
      if (errno == EINTR) continue;
      const Error e(Errc::kSystem, "poll", errno);
      if (vm_) vm_->request_stop(StopReason::kError, e.message());
      auto outcome = finish(std::nullopt);
      if (!outcome) return outcome;
      return tl::unexpected(e);
    }
    if (fds[0].revents & POLLIN) {
      signalfd_siginfo info{};
      if (::read(signal_fd_, &info, sizeof info) == sizeof info) {
        const int sig = static_cast<int>(info.ssi_signo);
        if (sig == SIGUSR1) {
          if (vm_) vm_->dump_state();
        } else {
          LOG_INFO("stopping on signal %d", sig);
          return finish(sig);
        }
      }
    }
    // A stopping VM first: an action queued meanwhile finds the channel
    // closed rather than a VM whose guest has finished.
    if (fds[1].revents & POLLIN) return finish(std::nullopt);
    if (fds[2].revents & POLLIN) {
      for (auto& pending : actions_.take()) {
        LOG_DEBUG("VMM: %s", action_name(pending.action()));
        pending.answer(execute(pending.action()));
      }
    }
  }
}

Expected<RunOutcome> VmmLoop::finish(std::optional<int> signal) {
  actions_.close(signal ? "hvz is stopping (signal " + std::to_string(*signal) + ")"
                        : std::string("the microVM has stopped"));
  if (signal) {
    if (vm_) {
      vm_->request_stop(StopReason::kError, "stopped by signal");
      (void)vm_->wait();
    }
    return RunOutcome{StopReason::kSignal, "stopped by signal " + std::to_string(*signal), *signal};
  }
  if (!vm_) return make_error(Errc::kInvalidArgument, "the VMM stopped without a VM");
  return vm_->wait();
}

}  // namespace hvz::vmm
