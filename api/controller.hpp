// Controller: Firecracker's API semantics — paths, methods, JSON bodies,
// status codes, pre-/post-boot rules and the instance state — on top of the
// VM's one configuration (vmm::VmResources, which the Controller checks
// requests against and commits them to) and a Backend that runs the VM.
// HTTP-free: it maps an HttpRequest to an HttpResponse, so it is tested
// without sockets, and the HttpServer calls handle() one request at a time.
// Its routes are one table (controller.cpp).
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>

#include "api/http_server.hpp"
#include "vmm/config/snapshot_config.hpp"
#include "vmm/config/vm_config.hpp"
#include "vmm/vm_resources.hpp"

namespace hvz::metrics {
class Counter;
class Summary;
}  // namespace hvz::metrics

namespace hvz::api {

// hvz's version (the meson project version): GET / and GET /version.
const char* hvz_version();

enum class VmState { kNotStarted, kRunning, kPaused };
// Firecracker's spelling: "Not started", "Running", "Paused".
const char* state_name(VmState state);

// What the controller asks of the VMM. VmBackend (api/vm_backend.hpp) posts
// each call as a VmmAction to the VMM thread, which owns the Vm; unit tests
// use their own. Errors become 400s with the error's message as
// fault_message.
class Backend {
 public:
  virtual ~Backend() = default;
  // Builds the VM from a validated `config` and starts its vCPUs.
  virtual Expected<void> start(const config::VmConfig& config) = 0;
  // Stops every vCPU (and device work) / lets them continue.
  virtual Expected<void> pause() = 0;
  virtual Expected<void> resume() = 0;
  // Ctrl-Alt-Del through the i8042.
  virtual Expected<void> send_ctrl_alt_del() = 0;
  // Post-boot PATCH /drives/{id}: a new backing file (the guest sees the new
  // capacity) and/or new rate limits, complete (the PATCH merged with the
  // configuration: config::merge_rate_limiter); unset fields stay as they
  // are.
  virtual Expected<void> update_drive(const std::string& drive_id,
                                      const std::optional<std::string>& path_on_host,
                                      const std::optional<config::RateLimiterConfig>& limiter) = 0;
  // Post-boot PATCH /network-interfaces/{id}: new rate limits, complete as
  // above.
  virtual Expected<void> update_network_interface(
      const std::string& iface_id, const std::optional<config::RateLimiterConfig>& rx,
      const std::optional<config::RateLimiterConfig>& tx) = 0;
  // PUT /logger, PUT /metrics, FlushMetrics.
  virtual Expected<void> configure_logger(const config::LoggerConfig& logger) = 0;
  virtual Expected<void> configure_metrics(const config::MetricsConfig& metrics) = 0;
  virtual Expected<void> flush_metrics() = 0;
  // PUT /snapshot/create, with the VM paused: writes the VM's state to
  // snapshot_path and its memory (all of it, or for kDiff the pages
  // written since the last snapshot) to mem_file_path.
  virtual Expected<void> create_snapshot(const config::SnapshotCreate& create) = 0;
  // PUT /snapshot/load, on a process that has started no VM: builds the VM
  // from the snapshot and leaves it paused, or running when
  // load.resume_vm; returns the restored VM's configuration. On an error
  // nothing is left started or held (the backend undoes what it built), so
  // that the process may try another load or a configuration and
  // InstanceStart; Firecracker instead exits after a failed restore.
  virtual Expected<config::VmConfig> load_snapshot(const config::SnapshotLoad& load) = 0;
  // PUT /network-interfaces: opens the TAP device `host_dev_name` as the VM
  // will at InstanceStart, and closes it again. Firecracker opens it at the
  // PUT, so that a TAP that is missing (and cannot be created), busy or
  // multi-queue fails there; the error's message is the whole explanation
  // (tap_error_message()). By default every name passes (backends that
  // cannot open devices).
  virtual Expected<void> open_tap(const std::string& /*host_dev_name*/) { return {}; }
};

// An error of hvz's TAP opening (virtio::net::Tap::open: its operation and
// errno) in Firecracker's words: "Could not create the network device: Open
// tap device failed: Error while creating ifreq structure: Device or
// resource busy (os error 16). Invalid TUN/TAP Backend provided by tap0. …".
std::string tap_error_message(const Error& e, const std::string& if_name);

struct ControllerOptions {
  std::string instance_id = "anonymous-instance";  // hvz --id
  // PUT /boot-source, PUT and PATCH /drives open the files (read-write for
  // read-write drives) and fail as Firecracker does when it cannot; off:
  // only InstanceStart (or the drive update) finds out.
  bool check_paths = true;
};

class Controller {
 public:
  // With a configuration of its own; `initial`: what --config-file gave
  // (empty without one).
  Controller(Backend& backend, ControllerOptions options, config::VmConfig initial = {});
  // On the VMM side's configuration; the Controller is its only writer.
  Controller(Backend& backend, ControllerOptions options, vmm::VmResources& resources);

  HttpResponse handle(const HttpRequest& request);

  // The VM was started outside the API (--config-file with --api-sock).
  void mark_started() { state_.store(VmState::kRunning); }
  VmState state() const { return state_.load(); }
  // The configuration being built (pre-boot) or the one running, with
  // post-boot updates; read it from the thread that calls handle().
  const config::VmConfig& config() const { return resources_.view(); }

  // A route's place in the route table (controller.cpp, the one list of
  // routes: method, path pattern, name, handler); kOther counts unknown
  // paths and unsupported features. Each has a latency summary
  // "<name>_us" in the metrics group "api_server" (beside the counter
  // "errors_4xx").
  static constexpr std::size_t kRouteCount = 19;  // checked against the table
  enum class Route : std::size_t { kOther = kRouteCount, kCount };
  static const char* route_name(Route route);

 private:
  struct RouteCall {
    const std::string& id;  // the {id} of the path, or empty
    const std::string& body;
  };
  struct RouteSpec {
    const char* method;
    const char* pattern;  // "/drives/{id}": {id} last, checked as a resource id
    const char* name;
    HttpResponse (*handler)(Controller& controller, const RouteCall& call);
  };
  static const RouteSpec kRoutes[];  // kRouteCount of them

  Controller(Backend& backend, ControllerOptions options, std::unique_ptr<vmm::VmResources> own);
  HttpResponse dispatch(const HttpRequest& request, Route& route);
  Expected<void> put_actions(const std::string& body);
  Expected<void> start_instance();
  Expected<void> put_boot_source(const std::string& body);
  Expected<void> put_machine_config(const std::string& body, bool patch);
  Expected<void> put_drive(const std::string& id, const std::string& body);
  Expected<void> patch_drive(const std::string& id, const std::string& body);
  Expected<void> put_network_interface(const std::string& id, const std::string& body);
  Expected<void> patch_network_interface(const std::string& id, const std::string& body);
  Expected<void> patch_vm(const std::string& body);
  Expected<void> put_logger(const std::string& body);
  Expected<void> put_metrics(const std::string& body);
  Expected<void> put_serial(const std::string& body);
  Expected<void> put_entropy(const std::string& body);
  Expected<void> create_snapshot(const std::string& body);
  Expected<void> load_snapshot(const std::string& body);
  std::string instance_info() const;
  bool started() const { return state() != VmState::kNotStarted; }

  Backend& backend_;
  ControllerOptions options_;
  std::unique_ptr<vmm::VmResources> own_resources_;  // without a VMM side's
  vmm::VmResources& resources_;
  std::atomic<VmState> state_{VmState::kNotStarted};
  // A request configured a boot-specific resource (boot source, machine
  // configuration, drive, network interface, entropy device): loading a
  // snapshot is no longer allowed (Firecracker's boot_path). Set once the
  // request has passed the checks Firecracker's API thread makes (its
  // body, its ids, pre-boot), whether or not it then succeeds, as
  // Firecracker sets its flag before trying; the logger, metrics and
  // serial leave it alone.
  bool boot_path_ = false;
  std::array<metrics::Summary*, static_cast<std::size_t>(Route::kCount)> latency_{};
  metrics::Counter* errors_4xx_ = nullptr;
  // The request used a deprecated field: the response says so
  // ("Deprecation: true"), as Firecracker's does.
  bool deprecated_ = false;
};

}  // namespace hvz::api
