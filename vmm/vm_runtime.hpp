// VmRuntime: what the VMM thread asks of a built VM — start it, wait for it
// to stop, drive it (pause, resume, Ctrl-Alt-Del, device updates). Vm
// implements it on KVM; VmmLoop's tests use a fake. Every call but
// request_stop(), stop_event_fd() and dump_state() comes from the VMM
// thread.
#pragma once

#include <string>

#include "vmm/core/error.hpp"
#include "vmm/vm_control.hpp"
#include "vmm/vmm_action.hpp"

namespace hvz::vmm {

class VmRuntime {
 public:
  virtual ~VmRuntime() = default;

  // Starts the vCPUs; returns once they run.
  virtual Expected<void> start() = 0;
  // Blocks until the VM stops (the guest powers off, resets or crashes, or
  // request_stop()), then tears it down.
  virtual Expected<RunOutcome> wait() = 0;
  // Asks a started VM to stop; wait() then returns `reason`. Any thread.
  virtual void request_stop(StopReason reason, std::string detail) = 0;
  // Readable once the VM is stopping (for poll()).
  virtual int stop_event_fd() const = 0;

  // Refused once the VM is stopping: its guest has finished.
  virtual Expected<void> pause() = 0;
  virtual Expected<void> resume() = 0;
  virtual Expected<void> send_ctrl_alt_del() = 0;
  // `update` carries complete values (see UpdateDrive); `read_only` is how
  // the drive's new file is opened.
  virtual Expected<void> update_drive(const UpdateDrive& update, bool read_only) = 0;
  virtual Expected<void> update_network_interface(const UpdateNetworkInterface& update) = 0;
  // Logs the VM's state for stall diagnosis (SIGUSR1). Any thread.
  virtual void dump_state() = 0;
};

}  // namespace hvz::vmm
