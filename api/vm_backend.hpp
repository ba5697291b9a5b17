// VmBackend: the Controller's Backend for a real VM. It never touches the
// Vm: each VM call is posted as a VmmAction through its ActionChannel to
// the VMM thread (VmmLoop), which owns the Vm, and the answer awaited.
// What touches no VM state stays on the calling (API) thread: PUT /logger,
// PUT /metrics and FlushMetrics (the process's logger and metrics writer),
// and the TAP check of PUT /network-interfaces.
#pragma once

#include <memory>
#include <mutex>

#include "api/controller.hpp"
#include "api/metrics_writer.hpp"
#include "vmm/action_channel.hpp"

namespace hvz::api {

class VmBackend : public Backend {
 public:
  static Expected<std::unique_ptr<VmBackend>> create();
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
  // Errc::kUnsupported until the VMM thread takes snapshot actions.
  Expected<void> create_snapshot(const config::SnapshotCreate& create) override;
  Expected<config::VmConfig> load_snapshot(const config::SnapshotLoad& load) override;
  // Tap::open(host_dev_name), closed at once; errors in Firecracker's
  // words (tap_error_message()).
  Expected<void> open_tap(const std::string& host_dev_name) override;

  // The channel the VMM thread serves (VmmLoop).
  vmm::ActionChannel& actions() { return *actions_; }

 private:
  explicit VmBackend(std::unique_ptr<vmm::ActionChannel> actions) : actions_(std::move(actions)) {}

  std::unique_ptr<vmm::ActionChannel> actions_;
  std::mutex mutex_;
  std::unique_ptr<MetricsWriter> metrics_;  // under mutex_
};

}  // namespace hvz::api
