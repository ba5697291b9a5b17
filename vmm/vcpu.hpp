// Vcpu: one guest vCPU on its own thread. The thread loops on KVM_RUN and
// dispatches port and MMIO exits to the buses; a shutdown, failed entry or
// internal error stops the VM through VmControl. kick() gets the thread out
// of KVM_RUN at once (immediate_exit plus a signal), so stopping or pausing
// never waits on a guest. Exits are counted in the "vcpu" metrics group.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>

#include "vmm/core/bus.hpp"
#include "vmm/core/kvm.hpp"
#include "vmm/core/metrics.hpp"
#include "vmm/vm_control.hpp"

namespace hvz::vmm {

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
  // Kicks the thread out of KVM_RUN and joins it. Once, from one thread
  // (the VM's owner); pause() and resume() may race with it.
  void stop();
  // Kicks the thread out of KVM_RUN and returns once it is parked outside
  // the guest (or has ended, or is being stopped); resume() lets it enter
  // the guest again.
  void pause();
  void resume();
  // Kicks the thread out of KVM_RUN to log its registers, run state and
  // pending events once (stall diagnosis: hvz logs every vCPU on SIGUSR1).
  // A thread that never comes back to its loop logs nothing: that is the
  // diagnosis then.
  void request_dump();

 private:
  void run_loop();
  // Handles one exit; false when the vCPU must stop.
  bool handle_exit();
  // Parks the thread while a pause is requested.
  void park_if_paused();
  void dump_state();

  struct Counters {
    metrics::Counter& io_in;
    metrics::Counter& io_out;
    metrics::Counter& mmio_read;
    metrics::Counter& mmio_write;
    metrics::Counter& shutdown;
    metrics::Counter& system_event;
    metrics::Counter& failures;
    metrics::Counter& other;
  };
  static Counters make_counters();

  std::uint32_t id_;
  VcpuFd fd_;
  std::shared_ptr<const Bus> pio_;
  std::shared_ptr<const Bus> mmio_;
  VmControl& control_;
  Counters counts_ = make_counters();
  std::atomic<bool> stop_{false};
  std::atomic<bool> dump_requested_{false};
  std::mutex pause_mutex_;
  std::condition_variable pause_cv_;
  bool pause_requested_ = false;  // under pause_mutex_
  bool parked_ = false;           // under pause_mutex_
  bool exited_ = false;           // under pause_mutex_
  bool started_ = false;          // under pause_mutex_: thread_ was started
  std::thread thread_;
};

}  // namespace hvz::vmm
