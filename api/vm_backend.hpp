// VmBackend: the Controller's Backend on a real vmm::Vm. start() builds the
// VM and starts its vCPUs on the calling (API or main) thread; the main
// thread waits for it through started_fd() and then on the VM itself.
// Also owns what PUT /logger and PUT /metrics configure.
#pragma once

#include <memory>
#include <mutex>

#include "api/controller.hpp"
#include "api/metrics_writer.hpp"
#include "vmm/core/event_fd.hpp"
#include "vmm/vm.hpp"

namespace hvz::api {

class VmBackend : public Backend {
 public:
  static Expected<std::unique_ptr<VmBackend>> create(vmm::ConsoleIo io = {});
  ~VmBackend() override;

  Expected<void> start(const config::VmConfig& config) override;
  Expected<void> pause() override;
  Expected<void> resume() override;
  Expected<void> send_ctrl_alt_del() override;
  Expected<void> update_drive(const std::string& drive_id,
                              const std::optional<std::string>& path_on_host,
                              const std::optional<config::RateLimiterConfig>& limiter) override;
  Expected<void> update_network_interface(
      const std::string& iface_id, const std::optional<config::RateLimiterConfig>& rx,
      const std::optional<config::RateLimiterConfig>& tx) override;
  Expected<void> configure_logger(const config::LoggerConfig& logger) override;
  Expected<void> configure_metrics(const config::MetricsConfig& metrics) override;
  Expected<void> flush_metrics() override;
  // Tap::open(host_dev_name), closed at once; errors in Firecracker's
  // words (tap_error_message()).
  Expected<void> open_tap(const std::string& host_dev_name) override;

  // Readable once start() has succeeded.
  int started_fd() const { return started_.fd(); }
  // The started VM, or null.
  vmm::Vm* vm();

 private:
  explicit VmBackend(vmm::ConsoleIo io, EventFd started) : io_(io), started_(std::move(started)) {}
  Expected<vmm::Vm*> running_vm();

  vmm::ConsoleIo io_;
  EventFd started_;
  std::mutex mutex_;
  std::unique_ptr<vmm::Vm> vm_;
  std::unique_ptr<MetricsWriter> metrics_;
};

}  // namespace hvz::api
