// VmBackend (see vm_backend.hpp).
#include "api/vm_backend.hpp"

#include "api/logging_setup.hpp"
#include "virtio/net/tap.hpp"

namespace hvz::api {

Expected<std::unique_ptr<VmBackend>> VmBackend::create() {
  auto actions = vmm::ActionChannel::create();
  if (!actions) return tl::unexpected(actions.error());
  return std::unique_ptr<VmBackend>(new VmBackend(std::move(*actions)));
}

VmBackend::~VmBackend() = default;

Expected<void> VmBackend::start(const config::VmConfig& config) {
  return actions_->post(vmm::StartInstance{config});
}

Expected<void> VmBackend::pause() {
  return actions_->post(vmm::Pause{});
}

Expected<void> VmBackend::resume() {
  return actions_->post(vmm::Resume{});
}

Expected<void> VmBackend::send_ctrl_alt_del() {
  return actions_->post(vmm::SendCtrlAltDel{});
}

Expected<void> VmBackend::update_drive(const std::string& drive_id,
                                       const std::optional<std::string>& path_on_host,
                                       const std::optional<config::RateLimiterConfig>& limiter) {
  return actions_->post(vmm::UpdateDrive{drive_id, path_on_host, limiter});
}

Expected<void> VmBackend::update_network_interface(
    const std::string& iface_id, const std::optional<config::RateLimiterConfig>& rx,
    const std::optional<config::RateLimiterConfig>& tx) {
  return actions_->post(vmm::UpdateNetworkInterface{iface_id, rx, tx});
}

Expected<void> VmBackend::configure_logger(const config::LoggerConfig& logger) {
  return configure_logging(logger);
}

Expected<void> VmBackend::configure_metrics(const config::MetricsConfig& metrics) {
  auto writer = MetricsWriter::create(metrics.metrics_path);
  if (!writer) return tl::unexpected(writer.error());
  std::lock_guard lock(mutex_);
  metrics_ = std::move(*writer);
  return {};
}

Expected<void> VmBackend::flush_metrics() {
  std::lock_guard lock(mutex_);
  if (!metrics_) return make_error(Errc::kInvalidArgument, "metrics are not configured");
  return metrics_->flush();
}

Expected<void> VmBackend::create_snapshot(const config::SnapshotCreate& /*create*/) {
  return make_error(Errc::kUnsupported, "snapshot creation is not wired to the VMM yet");
}

Expected<config::VmConfig> VmBackend::load_snapshot(const config::SnapshotLoad& /*load*/) {
  return make_error(Errc::kUnsupported, "snapshot loading is not wired to the VMM yet");
}

Expected<void> VmBackend::open_tap(const std::string& host_dev_name) {
  // The Tap is closed again on return: the VM opens its own at start. A
  // TAP this call created (the name did not exist and hvz may create
  // interfaces) goes away with it, as Firecracker's would on exit.
  auto tap = virtio::net::Tap::open(host_dev_name);
  if (!tap) {
    // The text has the errno already (as Firecracker's does).
    return make_error(tap.error().code(), tap_error_message(tap.error(), host_dev_name));
  }
  return {};
}

}  // namespace hvz::api
