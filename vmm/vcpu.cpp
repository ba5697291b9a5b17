// The vCPU thread and its exit dispatch (see vcpu.hpp).
#include "vmm/vcpu.hpp"

#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <string>

#include "vmm/core/log.hpp"

namespace hvz::vmm {
namespace {

int kick_signal() {
  return SIGRTMIN;
}

void on_kick(int) {}

}  // namespace

Expected<void> Vcpu::install_kick_signal() {
  struct sigaction sa {};
  sa.sa_handler = on_kick;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: KVM_RUN must return EINTR
  if (::sigaction(kick_signal(), &sa, nullptr) < 0) return sys_error("sigaction(SIGRTMIN)");
  return {};
}

Vcpu::Counters Vcpu::make_counters() {
  auto& g = metrics::registry().group("vcpu");
  return {g.counter("exit_io_in"),      g.counter("exit_io_out"),   g.counter("exit_mmio_read"),
          g.counter("exit_mmio_write"), g.counter("exit_shutdown"), g.counter("exit_system_event"),
          g.counter("failures"),        g.counter("exit_other")};
}

void Vcpu::start() {
  std::lock_guard lock(pause_mutex_);
  if (started_) return;
  started_ = true;
  thread_ = std::thread([this] {
    run_loop();
    std::lock_guard done(pause_mutex_);
    exited_ = true;
    pause_cv_.notify_all();
  });
}

void Vcpu::stop() {
  {
    std::lock_guard lock(pause_mutex_);
    if (!started_ || stop_.load()) return;
    stop_.store(true);
    fd_.set_immediate_exit(true);
    // Under the lock, before the join: never a signal to a joined thread.
    ::pthread_kill(thread_.native_handle(), kick_signal());
  }
  pause_cv_.notify_all();
  thread_.join();
}

void Vcpu::pause() {
  std::unique_lock lock(pause_mutex_);
  // A stopping thread may be joined at any moment: leave it alone.
  if (!started_ || stop_.load()) return;
  pause_requested_ = true;
  // Set under the mutex, so the thread cannot clear it after this point
  // until resume(); the signal catches a thread inside KVM_RUN.
  fd_.set_immediate_exit(true);
  ::pthread_kill(thread_.native_handle(), kick_signal());
  pause_cv_.wait(lock, [this] { return parked_ || exited_ || stop_.load(); });
}

void Vcpu::request_dump() {
  std::lock_guard lock(pause_mutex_);
  if (!started_ || stop_.load() || exited_) return;
  dump_requested_.store(true);
  fd_.set_immediate_exit(true);
  ::pthread_kill(thread_.native_handle(), kick_signal());
}

void Vcpu::dump_state() {
  auto regs = fd_.regs();
  auto sregs = fd_.sregs();
  auto mp = fd_.mp_state();
  auto events = fd_.events();
  if (!regs || !sregs || !mp || !events) {
    LOG_WARN("state: cannot read the vCPU's registers");
    return;
  }
  const auto& r = *regs;
  const auto& sr = *sregs;
  // Everything a stall diagnosis starts from: where the guest is, in which
  // mode, whether it halted, and what interrupt or exception is pending.
  LOG_WARN(
      "state: rip=%#llx rsp=%#llx rflags=%#llx rax=%#llx rcx=%#llx rdx=%#llx cs=%#x cr0=%#llx "
      "cr3=%#llx cr4=%#llx efer=%#llx mp_state=%u irq_pending=%u nmi_pending=%u exc=%u/%u "
      "interrupt_shadow=%u exits: io_in=%llu io_out=%llu mmio_r=%llu mmio_w=%llu",
      static_cast<unsigned long long>(r.rip), static_cast<unsigned long long>(r.rsp),
      static_cast<unsigned long long>(r.rflags), static_cast<unsigned long long>(r.rax),
      static_cast<unsigned long long>(r.rcx), static_cast<unsigned long long>(r.rdx),
      sr.cs.selector, static_cast<unsigned long long>(sr.cr0),
      static_cast<unsigned long long>(sr.cr3), static_cast<unsigned long long>(sr.cr4),
      static_cast<unsigned long long>(sr.efer), mp->mp_state, events->interrupt.injected,
      events->nmi.pending, events->exception.injected, events->exception.nr,
      events->interrupt.shadow, static_cast<unsigned long long>(counts_.io_in.value()),
      static_cast<unsigned long long>(counts_.io_out.value()),
      static_cast<unsigned long long>(counts_.mmio_read.value()),
      static_cast<unsigned long long>(counts_.mmio_write.value()));
}

void Vcpu::resume() {
  {
    std::lock_guard lock(pause_mutex_);
    pause_requested_ = false;
  }
  pause_cv_.notify_all();
}

void Vcpu::park_if_paused() {
  std::unique_lock lock(pause_mutex_);
  if (pause_requested_) {
    parked_ = true;
    pause_cv_.notify_all();
    pause_cv_.wait(lock, [this] { return !pause_requested_ || stop_.load(); });
    parked_ = false;
  }
  if (!pause_requested_ && !stop_.load()) fd_.set_immediate_exit(false);
}

void Vcpu::run_loop() {
  char name[16];
  std::snprintf(name, sizeof name, "vcpu%u", id_);
  log::set_thread_name(name);
  ::pthread_setname_np(::pthread_self(), name);
  while (!stop_.load() && !control_.stopping()) {
    if (auto r = fd_.run(); !r) {
      const int err = r.error().sys_errno();
      if (err == EINTR || err == EAGAIN) {  // kicked: pause, stop, dump or a stray signal
        if (dump_requested_.exchange(false)) dump_state();
        park_if_paused();
        continue;
      }
      counts_.failures.add();
      control_.request_stop(StopReason::kError,
                            "vcpu" + std::to_string(id_) + ": " + r.error().message());
      return;
    }
    if (!handle_exit()) return;
  }
}

bool Vcpu::handle_exit() {
  kvm_run& run = fd_.run_state();
  switch (run.exit_reason) {
    case KVM_EXIT_IO: {
      (run.io.direction == KVM_EXIT_IO_OUT ? counts_.io_out : counts_.io_in).add();
      auto data = fd_.io_data();
      if (!data) {
        control_.request_stop(StopReason::kError, data.error().message());
        return false;
      }
      for (std::uint32_t i = 0; i < run.io.count; ++i) {
        auto one = data->subspan(std::size_t{i} * run.io.size, run.io.size);
        if (run.io.direction == KVM_EXIT_IO_OUT) {
          pio_->write(run.io.port, one);
        } else {
          pio_->read(run.io.port, one);
        }
      }
      return true;
    }
    case KVM_EXIT_MMIO: {
      (run.mmio.is_write ? counts_.mmio_write : counts_.mmio_read).add();
      auto data = fd_.mmio_data();
      if (run.mmio.is_write) {
        mmio_->write(run.mmio.phys_addr, data);
      } else {
        mmio_->read(run.mmio.phys_addr, data);
      }
      return true;
    }
    case KVM_EXIT_HLT:
      // The in-kernel LAPIC handles HLT; an exit means KVM had no irqchip.
      control_.request_stop(StopReason::kGuestCrash, "vcpu" + std::to_string(id_) + ": HLT exit");
      return false;
    case KVM_EXIT_SHUTDOWN:
      counts_.shutdown.add();
      dump_state();  // where the guest was when it gave up: for the bug report
      control_.request_stop(StopReason::kGuestCrash,
                            "guest triple fault (KVM_EXIT_SHUTDOWN) on vcpu" + std::to_string(id_));
      return false;
    case KVM_EXIT_SYSTEM_EVENT:
      counts_.system_event.add();
      control_.request_stop(run.system_event.type == KVM_SYSTEM_EVENT_RESET ? StopReason::kReset
                                                                            : StopReason::kPowerOff,
                            "guest system event " + std::to_string(run.system_event.type));
      return false;
    case KVM_EXIT_FAIL_ENTRY: {
      counts_.failures.add();
      char what[96];
      std::snprintf(what, sizeof what, "vcpu%u: KVM_EXIT_FAIL_ENTRY, hardware reason %#llx", id_,
                    static_cast<unsigned long long>(run.fail_entry.hardware_entry_failure_reason));
      control_.request_stop(StopReason::kGuestCrash, what);
      return false;
    }
    case KVM_EXIT_INTERNAL_ERROR:
      counts_.failures.add();
      control_.request_stop(StopReason::kGuestCrash, "vcpu" + std::to_string(id_) +
                                                         ": KVM internal error, suberror " +
                                                         std::to_string(run.internal.suberror));
      return false;
    case KVM_EXIT_INTR:
      if (dump_requested_.exchange(false)) dump_state();
      park_if_paused();
      return true;
    default:
      counts_.other.add();
      control_.request_stop(StopReason::kError, "vcpu" + std::to_string(id_) + ": unhandled " +
                                                    exit_reason_name(run.exit_reason));
      return false;
  }
}

}  // namespace hvz::vmm
