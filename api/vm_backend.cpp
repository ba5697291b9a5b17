// VmBackend (see vm_backend.hpp).
#include "api/vm_backend.hpp"

#include "api/logging_setup.hpp"
#include "virtio/net/tap.hpp"
#include "vmm/core/log.hpp"

namespace hvz::api {

Expected<std::unique_ptr<VmBackend>> VmBackend::create(vmm::ConsoleIo io) {
  auto started = EventFd::create();
  if (!started) return tl::unexpected(started.error());
  return std::unique_ptr<VmBackend>(new VmBackend(io, std::move(*started)));
}

VmBackend::~VmBackend() = default;

vmm::Vm* VmBackend::vm() {
  std::lock_guard lock(mutex_);
  return vm_.get();
}

Expected<vmm::Vm*> VmBackend::running_vm() {
  std::lock_guard lock(mutex_);
  if (!vm_) return make_error(Errc::kInvalidArgument, "the microVM is not started");
  return vm_.get();
}

Expected<void> VmBackend::start(const config::VmConfig& config) {
  std::lock_guard lock(mutex_);
  if (vm_) return make_error(Errc::kBusy, "the microVM is already started");
  auto vm = vmm::Vm::create(config, io_);
  if (!vm) return tl::unexpected(vm.error());
  if (auto r = (*vm)->start(); !r) return r;
  vm_ = std::move(*vm);
  LOG_INFO("microVM started: %u vCPU(s), %u MiB", config.machine_config.vcpu_count,
           config.machine_config.mem_size_mib);
  return started_.signal();
}

Expected<void> VmBackend::pause() {
  auto vm = running_vm();
  if (!vm) return tl::unexpected(vm.error());
  (*vm)->pause();
  return {};
}

Expected<void> VmBackend::resume() {
  auto vm = running_vm();
  if (!vm) return tl::unexpected(vm.error());
  (*vm)->resume();
  return {};
}

Expected<void> VmBackend::send_ctrl_alt_del() {
  auto vm = running_vm();
  if (!vm) return tl::unexpected(vm.error());
  return (*vm)->send_ctrl_alt_del();
}

Expected<void> VmBackend::update_drive(const std::string& drive_id,
                                       const std::optional<std::string>& path_on_host,
                                       const std::optional<config::RateLimiterConfig>& limiter) {
  auto vm = running_vm();
  if (!vm) return tl::unexpected(vm.error());
  return (*vm)->update_drive(drive_id, path_on_host, limiter);
}

Expected<void> VmBackend::update_network_interface(
    const std::string& iface_id, const std::optional<config::RateLimiterConfig>& rx,
    const std::optional<config::RateLimiterConfig>& tx) {
  auto vm = running_vm();
  if (!vm) return tl::unexpected(vm.error());
  return (*vm)->update_network_interface(iface_id, rx, tx);
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
