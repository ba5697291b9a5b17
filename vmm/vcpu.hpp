// Vcpu: one guest vCPU on its own thread. The thread loops on KVM_RUN and
// dispatches port and MMIO exits to the buses; a shutdown, failed entry or
// internal error stops the VM through VmControl. kick() gets the thread out
// of KVM_RUN at once (immediate_exit plus a signal), so stopping never waits
// on a guest.
#pragma once

#include <cstdint>
#include <memory>
#include <thread>

#include "vmm/core/bus.hpp"
#include "vmm/core/kvm.hpp"
#include "vmm/vm_control.hpp"

namespace hvz::vmm {

struct VcpuExitCounts {
  std::uint64_t io = 0;
  std::uint64_t mmio = 0;
  std::uint64_t other = 0;
};

class Vcpu {
 public:
  Vcpu(std::uint32_t id, VcpuFd fd, std::shared_ptr<const Bus> pio, std::shared_ptr<const Bus> mmio,
       VmControl& control)
      : id_(id),
        fd_(std::move(fd)),
        pio_(std::move(pio)),
        mmio_(std::move(mmio)),
        control_(control) {}
  Vcpu(const Vcpu&) = delete;
  Vcpu& operator=(const Vcpu&) = delete;
  ~Vcpu() { stop(); }

  // Installs the (empty) handler of the kick signal. Once per process.
  static Expected<void> install_kick_signal();

  std::uint32_t id() const { return id_; }
  const VcpuFd& fd() const { return fd_; }
  void start();
  // Kicks the thread out of KVM_RUN and joins it.
  void stop();
  const VcpuExitCounts& exit_counts() const { return counts_; }

 private:
  void run_loop();
  // Handles one exit; false when the vCPU must stop.
  bool handle_exit();

  std::uint32_t id_;
  VcpuFd fd_;
  std::shared_ptr<const Bus> pio_;
  std::shared_ptr<const Bus> mmio_;
  VmControl& control_;
  VcpuExitCounts counts_;
  std::thread thread_;
};

}  // namespace hvz::vmm
