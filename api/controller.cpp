// Firecracker's API semantics on the VmResources and a Backend (see
// controller.hpp). The routes are one table (kRoutes: method, path
// pattern, metric name, handler). Routing follows Firecracker's
// parsed_request.rs: a GET with a body, a PUT or PATCH without one, an
// unknown method or path are refused before anything else; bodies are
// parsed (strictly) before the pre-/post-boot rules of rpc_interface.rs are
// checked; every failure is a 400 with {"fault_message": "..."}.
#include "api/controller.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <iterator>
#include <string_view>
#include <utility>
#include <vector>

#include "api/config_json.hpp"
#include "vmm/core/log.hpp"
#include "vmm/core/metrics.hpp"

#ifndef HVZ_VERSION
#define HVZ_VERSION "0.0.0"
#endif

namespace hvz::api {
namespace {

using nlohmann::json;

// Firecracker's texts (rpc_interface.rs, parsed_request.rs).
constexpr const char* kNotSupportedPostBoot =
    "The requested operation is not supported after starting the microVM.";
constexpr const char* kNotSupportedPreBoot =
    "The requested operation is not supported before starting the microVM.";

HttpResponse no_content() {
  return {204, ""};
}
HttpResponse ok_json(const json& j) {
  return {200, dump_json(j)};
}
HttpResponse fault(const std::string& message) {
  return {400, dump_json(json{{"fault_message", message}})};
}
// A 204 or the error as a 400.
HttpResponse done(const Expected<void>& result) {
  return result ? no_content() : fault(result.error().message());
}

tl::unexpected<Error> invalid(std::string message) {
  return make_error(Errc::kInvalidArgument, std::move(message));
}

// Firecracker's wrapper of every serde error (parsed_request.rs).
constexpr const char* kDeserializing =
    "An error occurred when deserializing the json body of a request: ";

Expected<JsonDocument> parse_body(const std::string& body) {
  auto doc = JsonDocument::parse(body);
  if (!doc) return invalid(kDeserializing + doc.error().message() + ".");
  return doc;
}

// A body Firecracker would not deserialize is reported in its words; one
// it would take but hvz does not support (Errc::kUnsupported) as it is.
tl::unexpected<Error> body_error(const Error& e) {
  if (e.code() == Errc::kInvalidArgument) return invalid(kDeserializing + e.message() + ".");
  return tl::unexpected(e);
}

// An errno as Rust's io::Error shows it, which Firecracker's messages embed.
std::string os_error(int err) {
  return std::string(std::strerror(err)) + " (os error " + std::to_string(err) + ")";
}

// A backend error with an errno as Firecracker words it, or hvz's text.
std::string cause(const Error& e) {
  return e.sys_errno() != 0 ? os_error(e.sys_errno()) : e.message();
}

// The errno of opening `path` as Firecracker opens the file (read-only or
// read-write), or 0. A directory counts as EISDIR (Firecracker would open
// one read-only and fail later); O_NONBLOCK so that a FIFO cannot block
// the API thread.
int open_errno(const std::string& path, bool write) {
  if (path.empty()) return ENOENT;
  const int fd = ::open(path.c_str(), (write ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return errno;
  struct stat st {};
  const int err = ::fstat(fd, &st) != 0 ? errno : S_ISDIR(st.st_mode) ? EISDIR : 0;
  ::close(fd);
  return err;
}

// "/drives/rootfs?x" -> "/drives/rootfs".
std::string path_of(const std::string& target) {
  return target.substr(0, target.find_first_of("?#"));
}

// Firecracker's split: leading slashes trimmed, then split on '/', a
// trailing empty piece dropped ("/drives/" -> {"drives"}).
std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> tokens;
  std::size_t start = path.find_first_not_of('/');
  if (start == std::string::npos) return tokens;
  while (true) {
    const std::size_t slash = path.find('/', start);
    if (slash == std::string::npos) {
      if (start < path.size()) tokens.push_back(path.substr(start));
      break;
    }
    tokens.push_back(path.substr(start, slash - start));
    start = slash + 1;
  }
  return tokens;
}

HttpResponse invalid_path(const std::string& method, const std::string& path) {
  return fault("Invalid request method and/or path: " + method + " " + path + ".");
}

// Firecracker features hvz lacks: (first path token, methods, message).
struct Unsupported {
  const char* token;
  const char* methods[3];  // unused slots null
  const char* message;
};
constexpr Unsupported kUnsupported[] = {
    {"vsock", {"PUT"}, "vsock is not supported yet"},
    {"balloon", {"GET", "PUT", "PATCH"}, "the balloon device is not supported yet"},
    {"mmds", {"GET", "PUT", "PATCH"}, "MMDS is not supported yet"},
    {"cpu-config", {"PUT"}, "custom CPU templates (cpu-config) are not supported yet"},
    {"pmem", {"PUT", "PATCH"}, "pmem devices are not supported yet"},
    {"hotplug", {"GET", "PUT", "PATCH"}, "memory hotplug is not supported yet"},
};

const Unsupported* find_unsupported(const std::string& method, const std::string& token) {
  for (const auto& u : kUnsupported) {
    if (token != u.token) continue;
    for (const char* m : u.methods) {
      if (m && method == m) return &u;
    }
  }
  return nullptr;
}

// The id in /drives/{id} or /network-interfaces/{id}, checked.
Expected<std::string> resource_id(const std::string& id) {
  if (!config::valid_id(id)) {
    return invalid(
        "API Resource IDs can only contain alphanumeric characters and underscores "
        "(1-64 of A-Z, a-z, 0-9, _), not '" +
        id + "'.");
  }
  return id;
}

Expected<void> check_id_match(const std::string& from_path, const std::string& from_body) {
  if (from_path == from_body) return {};
  return invalid("The id from the path [" + from_path + "] does not match the id from the body [" +
                 from_body + "]!");
}

// config::validate() of `probe` with a stand-in kernel: the checks of the
// parts a request changes, with the same messages InstanceStart would give.
Expected<void> validate_part(config::VmConfig probe) {
  if (!probe.boot_source) probe.boot_source = config::BootSource{"kernel", {}, {}};
  return config::validate(probe);
}

// Firecracker's x86_64 kernel command line capacity, the NUL included
// (arch/x86_64/layout.rs CMDLINE_MAX_SIZE).
constexpr std::size_t kCmdlineCapacity = 2048;

// What linux-loader's Cmdline::try_from refuses in boot_args, with its
// words: Firecracker builds the command line at PUT /boot-source.
std::optional<std::string> cmdline_problem(std::string_view args) {
  const auto space = [](char c) { return c == ' ' || (c >= '\t' && c <= '\r'); };
  while (!args.empty() && space(args.front())) args.remove_prefix(1);
  while (!args.empty() && space(args.back())) args.remove_suffix(1);
  for (char c : args) {
    if (c < ' ' || c > '~') return "String contains a non-printable ASCII character.";
  }
  if (args.size() + 1 > kCmdlineCapacity) {
    return "Inserting string would make command line too long.";
  }
  return std::nullopt;
}

// Firecracker's checks of PUT and PATCH /machine-config
// (MachineConfig::update); the others (hvz's memory range, the host's
// limits) wait for InstanceStart, as in Firecracker.
Expected<void> check_machine_config(const config::MachineConfig& m) {
  if (m.vcpu_count == 0 || m.vcpu_count > config::kMaxVcpus) {
    return invalid("Machine config error: The number of vCPUs must be greater than 0, less than " +
                   std::to_string(config::kMaxVcpus) +
                   " and must be 1 or an even number if SMT is enabled.");
  }
  // Firecracker takes SMT on x86_64; hvz gives each vCPU a core of its own.
  if (m.smt) {
    return make_error(Errc::kUnsupported,
                      "Machine config error: Enabling simultaneous multithreading is not "
                      "supported by hvz (one thread per core).");
  }
  if (m.mem_size_mib == 0 || (m.huge_pages == config::HugePages::k2M && m.mem_size_mib % 2 != 0)) {
    return invalid(
        "Machine config error: The memory size (MiB) is either 0, or not a multiple of the "
        "configured page size.");
  }
  return {};
}

}  // namespace

// Firecracker 1.7 introduced machine-config.huge_pages, the newest field hvz
// takes.
constexpr const char* kFirecrackerApiVersion = "1.7.0";

const char* hvz_version() {
  return HVZ_VERSION;
}

const char* state_name(VmState state) {
  switch (state) {
    case VmState::kNotStarted:
      return "Not started";
    case VmState::kRunning:
      return "Running";
    case VmState::kPaused:
      return "Paused";
  }
  return "Not started";
}

// The routes, once: Firecracker's paths and methods with the handlers.
const Controller::RouteSpec Controller::kRoutes[] = {
    {"GET", "/", "get_root",
     [](Controller& c, const RouteCall&) {
       return HttpResponse{200, c.instance_info()};
     }},
    // The Firecracker API release whose shape hvz follows (clients gate
    // features on it), and hvz's own version.
    {"GET", "/version", "get_version",
     [](Controller&, const RouteCall&) {
       return ok_json(
           {{"firecracker_version", kFirecrackerApiVersion}, {"hvz_version", hvz_version()}});
     }},
    {"GET", "/machine-config", "get_machine_config",
     [](Controller& c, const RouteCall&) { return ok_json(to_json(c.config().machine_config)); }},
    {"GET", "/vm/config", "get_vm_config",
     [](Controller& c, const RouteCall&) { return ok_json(vm_config_to_json_value(c.config())); }},
    {"PUT", "/actions", "actions",
     [](Controller& c, const RouteCall& r) { return done(c.put_actions(r.body)); }},
    {"PUT", "/boot-source", "put_boot_source",
     [](Controller& c, const RouteCall& r) { return done(c.put_boot_source(r.body)); }},
    {"PUT", "/machine-config", "put_machine_config",
     [](Controller& c, const RouteCall& r) { return done(c.put_machine_config(r.body, false)); }},
    {"PATCH", "/machine-config", "patch_machine_config",
     [](Controller& c, const RouteCall& r) { return done(c.put_machine_config(r.body, true)); }},
    {"PUT", "/drives/{id}", "put_drive",
     [](Controller& c, const RouteCall& r) { return done(c.put_drive(r.id, r.body)); }},
    {"PATCH", "/drives/{id}", "patch_drive",
     [](Controller& c, const RouteCall& r) { return done(c.patch_drive(r.id, r.body)); }},
    {"PUT", "/network-interfaces/{id}", "put_network_interface",
     [](Controller& c, const RouteCall& r) { return done(c.put_network_interface(r.id, r.body)); }},
    {"PATCH", "/network-interfaces/{id}", "patch_network_interface",
     [](Controller& c, const RouteCall& r) {
       return done(c.patch_network_interface(r.id, r.body));
     }},
    {"PATCH", "/vm", "patch_vm",
     [](Controller& c, const RouteCall& r) { return done(c.patch_vm(r.body)); }},
    {"PUT", "/logger", "put_logger",
     [](Controller& c, const RouteCall& r) { return done(c.put_logger(r.body)); }},
    {"PUT", "/metrics", "put_metrics",
     [](Controller& c, const RouteCall& r) { return done(c.put_metrics(r.body)); }},
    {"PUT", "/serial", "put_serial",
     [](Controller& c, const RouteCall& r) { return done(c.put_serial(r.body)); }},
    {"PUT", "/entropy", "put_entropy",
     [](Controller& c, const RouteCall& r) { return done(c.put_entropy(r.body)); }},
    {"PUT", "/snapshot/create", "create_snapshot",
     [](Controller& c, const RouteCall& r) { return done(c.create_snapshot(r.body)); }},
    {"PUT", "/snapshot/load", "load_snapshot",
     [](Controller& c, const RouteCall& r) { return done(c.load_snapshot(r.body)); }},
};
const char* Controller::route_name(Route route) {
  static_assert(std::size(kRoutes) == kRouteCount, "kRouteCount is the table's size");
  const auto i = static_cast<std::size_t>(route);
  return i < kRouteCount ? kRoutes[i].name : "other";
}

Controller::Controller(Backend& backend, ControllerOptions options, config::VmConfig initial)
    : Controller(backend, std::move(options),
                 std::make_unique<vmm::VmResources>(std::move(initial))) {}

Controller::Controller(Backend& backend, ControllerOptions options, vmm::VmResources& resources)
    : backend_(backend), options_(std::move(options)), resources_(resources) {
  auto& group = metrics::registry().group("api_server");
  for (std::size_t i = 0; i < latency_.size(); ++i) {
    latency_[i] = &group.summary(std::string(route_name(static_cast<Route>(i))) + "_us");
  }
  errors_4xx_ = &group.counter("errors_4xx");
}

Controller::Controller(Backend& backend, ControllerOptions options,
                       std::unique_ptr<vmm::VmResources> own)
    : Controller(backend, std::move(options), *own) {
  own_resources_ = std::move(own);
}

HttpResponse Controller::handle(const HttpRequest& request) {
  const auto begin = std::chrono::steady_clock::now();
  Route route = Route::kOther;
  HttpResponse response;
  deprecated_ = false;
  try {
    response = dispatch(request, route);
  } catch (const std::exception& e) {
    // Nothing here throws by design; a bad_alloc or a library surprise
    // still must not take the VMM down.
    response = fault(std::string("internal error: ") + e.what());
  }
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::steady_clock::now() - begin)
                      .count();
  // micro_http's Response::set_deprecation(): "Deprecation: true".
  if (deprecated_) response.headers.emplace_back("Deprecation", "true");
  latency_[static_cast<std::size_t>(route)]->record(static_cast<std::uint64_t>(us));
  if (response.status >= 400 && response.status < 500) {
    errors_4xx_->add();
    LOG_INFO("API %s %s: %d %s", request.method.c_str(), path_of(request.target).c_str(),
             response.status, response.body.c_str());
  }
  return response;
}

HttpResponse Controller::dispatch(const HttpRequest& request, Route& route) {
  const std::string& method = request.method;
  const std::string path = path_of(request.target);
  if (path.empty() || path[0] != '/') return invalid_path(method, path);
  const std::vector<std::string> tokens = split_path(path);
  const bool has_body = !request.body.empty();
  // Firecracker refuses these whatever the path.
  if (method == "GET" && has_body) return fault("GET request cannot have a body.");
  if (method == "PUT" && !has_body) return fault("Empty PUT request.");
  if (method == "PATCH" && !has_body) return fault("Empty PATCH request.");

  for (std::size_t i = 0; i < kRouteCount; ++i) {
    const RouteSpec& spec = kRoutes[i];
    if (method != spec.method) continue;
    std::vector<std::string> pattern = split_path(spec.pattern);
    const bool with_id = !pattern.empty() && pattern.back() == "{id}";
    if (with_id) pattern.pop_back();
    // A route with an id takes every path below its prefix: a missing,
    // empty or malformed id, or more after it, is an error of this route.
    if (with_id ? tokens.size() < pattern.size() ||
                      !std::equal(pattern.begin(), pattern.end(), tokens.begin())
                : tokens != pattern) {
      continue;
    }
    route = static_cast<Route>(i);
    std::string id;
    if (with_id) {
      const std::size_t at = pattern.size();
      if (tokens.size() <= at || tokens[at].empty()) return fault("The ID cannot be empty.");
      auto checked = resource_id(tokens[at]);
      if (!checked) return fault(checked.error().message());
      if (tokens.size() > at + 1) return invalid_path(method, path);
      id = std::move(*checked);
    }
    return spec.handler(*this, RouteCall{id, request.body});
  }
  const std::string first = tokens.empty() ? std::string() : tokens[0];
  if (const auto* u = find_unsupported(method, first)) return fault(u->message);
  return invalid_path(method, path);
}

std::string Controller::instance_info() const {
  return dump_json({{"id", options_.instance_id},
                    {"state", state_name(state())},
                    {"vmm_version", hvz_version()},
                    {"app_name", "hvz"}});
}

Expected<void> Controller::put_actions(const std::string& body) {
  auto doc = parse_body(body);
  if (!doc) return tl::unexpected(doc.error());
  auto action = parse_variant_body(doc->root(), "ActionBody", "action_type",
                                   {"FlushMetrics", "InstanceStart", "SendCtrlAltDel"}, &*doc);
  if (!action) return body_error(action.error());
  if (*action == "InstanceStart") {
    if (started()) return invalid(kNotSupportedPostBoot);
    return start_instance();
  }
  if (!started()) return invalid(kNotSupportedPreBoot);
  if (*action == "SendCtrlAltDel") return backend_.send_ctrl_alt_del();
  // FlushMetrics. Firecracker answers 204 without metrics configured
  // (METRICS.write() reports "nothing written", not an error).
  if (!config().metrics) return {};
  return backend_.flush_metrics();
}

Expected<void> Controller::start_instance() {
  if (auto ok = config::validate(config()); !ok) return ok;
  LOG_INFO("API: starting the microVM");
  if (auto ok = backend_.start(config()); !ok) return ok;
  state_.store(VmState::kRunning);
  return {};
}

Expected<void> Controller::put_boot_source(const std::string& body) {
  auto doc = parse_body(body);
  if (!doc) return tl::unexpected(doc.error());
  auto boot = parse_boot_source(doc->root(), "", &*doc);
  if (!boot) return body_error(boot.error());
  if (started()) return invalid(kNotSupportedPostBoot);
  boot_path_ = true;
  // Firecracker opens both files and builds the command line here
  // (BootConfig::new).
  if (boot->kernel_image_path.empty() || options_.check_paths) {
    if (const int err = open_errno(boot->kernel_image_path, false)) {
      return invalid("Boot source error: The kernel file cannot be opened: " + os_error(err));
    }
  }
  if (boot->initrd_path && options_.check_paths) {
    if (const int err = open_errno(*boot->initrd_path, false)) {
      return invalid(
          "Boot source error: The initrd file cannot be opened due to invalid path or invalid "
          "permissions. " +
          os_error(err));
    }
  }
  if (boot->boot_args) {
    if (auto problem = cmdline_problem(*boot->boot_args)) {
      return invalid("Boot source error: The kernel command line is invalid: " + *problem);
    }
  }
  resources_.update([&](config::VmConfig& c) { c.boot_source = std::move(*boot); });
  return {};
}

Expected<void> Controller::put_machine_config(const std::string& body, bool patch) {
  auto doc = parse_body(body);
  if (!doc) return tl::unexpected(doc.error());
  const json& j = doc->root();
  auto machine = parse_machine_config(j, "", patch ? &config().machine_config : nullptr, &*doc);
  if (!machine) return body_error(machine.error());
  // Firecracker: a PATCH that changes nothing is an "Empty PATCH request.".
  if (patch && std::none_of(j.begin(), j.end(), [](const json& v) { return !v.is_null(); })) {
    return invalid("Empty PATCH request.");
  }
  // Firecracker flags the deprecated field on the response, whatever
  // becomes of the request from here on.
  if (const auto t = j.find("cpu_template"); t != j.end() && !t->is_null()) {
    const std::string note = std::string(patch ? "PATCH" : "PUT") +
                             " /machine-config: cpu_template field is deprecated.";
    LOG_WARN("%s", note.c_str());
    deprecated_ = true;
  }
  if (started()) return invalid(kNotSupportedPostBoot);
  boot_path_ = true;
  // virtio_mmio_cmdline is hvz's --virtio-mmio-cmdline: a PUT that does not
  // name it leaves it alone rather than resetting it.
  if (!patch && !j.contains("virtio_mmio_cmdline")) {
    machine->virtio_mmio_cmdline = config().machine_config.virtio_mmio_cmdline;
  }
  if (auto ok = check_machine_config(*machine); !ok) return ok;
  resources_.update([&](config::VmConfig& c) { c.machine_config = *machine; });
  return {};
}

Expected<void> Controller::put_drive(const std::string& id, const std::string& body) {
  auto doc = parse_body(body);
  if (!doc) return tl::unexpected(doc.error());
  auto drive = parse_drive(doc->root(), "", &*doc);
  if (!drive) return body_error(drive.error());
  if (auto ok = check_id_match(id, drive->drive_id); !ok) return ok;
  if (started()) return invalid(kNotSupportedPostBoot);
  boot_path_ = true;

  const auto& drives = config().drives;
  const auto same = std::find_if(drives.begin(), drives.end(),
                                 [&](const config::Drive& d) { return d.drive_id == id; });
  const auto root = std::find_if(drives.begin(), drives.end(),
                                 [](const config::Drive& d) { return d.is_root_device; });
  // Firecracker's BlockBuilder::insert: one root, unless this replaces it.
  if (drive->is_root_device && root != drives.end() && root != same) {
    return invalid("Drive config error: A root block device already exists! (drive '" +
                   root->drive_id + "')");
  }
  // Firecracker opens the file here (read-write unless is_read_only).
  if (drive->path_on_host.empty() || options_.check_paths) {
    if (const int err = open_errno(drive->path_on_host, !drive->is_read_only)) {
      return invalid(
          "Drive config error: Unable to create the virtio block device: Virtio backend error: "
          "Error manipulating the backing file: " +
          os_error(err) + " " + drive->path_on_host);
    }
  }
  // A new drive goes last (the root drive first); a replaced one keeps its
  // place, except that a root drive moves to the front.
  std::vector<config::Drive> next = drives;
  const auto index = static_cast<std::size_t>(same - drives.begin());
  if (same != drives.end()) {
    next[index] = *drive;
    if (drive->is_root_device && index != 0) std::swap(next[0], next[index]);
  } else if (drive->is_root_device) {
    next.insert(next.begin(), *drive);
  } else {
    next.push_back(*drive);
  }
  config::VmConfig probe;
  probe.drives = next;
  if (auto ok = validate_part(probe); !ok) {
    return make_error(ok.error().code(), "Drive config error: " + ok.error().message());
  }
  resources_.update([&](config::VmConfig& c) { c.drives = std::move(next); });
  return {};
}

Expected<void> Controller::patch_drive(const std::string& id, const std::string& body) {
  auto doc = parse_body(body);
  if (!doc) return tl::unexpected(doc.error());
  auto update = parse_drive_update(doc->root(), "", &*doc);
  if (!update) return body_error(update.error());
  if (auto ok = check_id_match(id, update->drive_id); !ok) return ok;
  if (!started()) return invalid(kNotSupportedPreBoot);
  const auto it = std::find_if(config().drives.begin(), config().drives.end(),
                               [&](const config::Drive& d) { return d.drive_id == id; });
  if (it == config().drives.end())
    return invalid("Invalid block device ID: no drive '" + id + "'.");
  constexpr const char* kPatchFailed = "Drive config error: Unable to patch the block device: ";
  constexpr const char* kVerify = " Please verify the request arguments.";
  // Firecracker takes a PATCH with neither for a vhost-user drive's, which
  // a virtio-block drive refuses with these words.
  if (!update->path_on_host && !update->rate_limiter) {
    return invalid(std::string(kPatchFailed) + "Block: Running method expected different backend." +
                   kVerify);
  }
  if (update->path_on_host && options_.check_paths) {
    if (const int err = open_errno(*update->path_on_host, !it->is_read_only)) {
      return invalid(std::string(kPatchFailed) +
                     "Block: Virtio backend error: Error manipulating the backing file: " +
                     os_error(err) + " " + *update->path_on_host + kVerify);
    }
  }
  // Merged once: the device gets the complete limits, the configuration
  // keeps them as Firecracker shows them (effective_limiter).
  std::optional<config::RateLimiterConfig> limiter;
  if (update->rate_limiter) {
    limiter = config::merge_rate_limiter(it->rate_limiter, *update->rate_limiter);
  }
  if (auto ok = backend_.update_drive(id, update->path_on_host, limiter); !ok) {
    return make_error(ok.error().code(), kPatchFailed + ok.error().message() + kVerify);
  }
  const auto index = static_cast<std::size_t>(it - config().drives.begin());
  resources_.update([&](config::VmConfig& c) {
    auto& drive = c.drives[index];
    if (update->path_on_host) drive.path_on_host = *update->path_on_host;
    if (limiter) drive.rate_limiter = effective_limiter(limiter);
  });
  return {};
}

Expected<void> Controller::put_network_interface(const std::string& id, const std::string& body) {
  auto doc = parse_body(body);
  if (!doc) return tl::unexpected(doc.error());
  auto iface = parse_network_interface(doc->root(), "", &*doc);
  if (!iface) return body_error(iface.error());
  if (auto ok = check_id_match(id, iface->iface_id); !ok) return ok;
  if (started()) return invalid(kNotSupportedPostBoot);
  boot_path_ = true;
  constexpr const char* kNetwork = "Network config error: ";

  std::vector<config::NetworkInterface> next = config().network_interfaces;
  const auto same = std::find_if(next.begin(), next.end(), [&](const config::NetworkInterface& n) {
    return n.iface_id == id;
  });
  // Firecracker's NetBuilder::build: a MAC address belongs to one interface.
  if (iface->guest_mac) {
    for (const auto& n : next) {
      if (n.iface_id != id && n.guest_mac == iface->guest_mac) {
        return invalid(std::string(kNetwork) +
                       "The MAC address is already in use: " + config::format_mac(*n.guest_mac));
      }
    }
  }
  // Firecracker holds each TAP from its PUT on, so another interface's TAP
  // is busy; hvz opens them at InstanceStart and says what the kernel would.
  for (const auto& n : next) {
    if (n.iface_id != id && n.host_dev_name == iface->host_dev_name) {
      return invalid(kNetwork + tap_error_message(Error(Errc::kSystem,
                                                        "tap: TUNSETIFF " + n.host_dev_name, EBUSY),
                                                  n.host_dev_name));
    }
  }
  if (same != next.end()) {
    *same = *iface;
  } else {
    next.push_back(*iface);
  }
  config::VmConfig probe;
  probe.network_interfaces = next;
  if (auto ok = validate_part(probe); !ok) {
    return make_error(ok.error().code(), kNetwork + ok.error().message());
  }
  // Firecracker opens the TAP here: a missing one it cannot create, a busy
  // or a multi-queue one fails the PUT, not InstanceStart.
  if (auto ok = backend_.open_tap(iface->host_dev_name); !ok) {
    return make_error(ok.error().code(), kNetwork + ok.error().message());
  }
  resources_.update([&](config::VmConfig& c) { c.network_interfaces = std::move(next); });
  return {};
}

Expected<void> Controller::patch_network_interface(const std::string& id, const std::string& body) {
  auto doc = parse_body(body);
  if (!doc) return tl::unexpected(doc.error());
  auto update = parse_network_interface_update(doc->root(), "", &*doc);
  if (!update) return body_error(update.error());
  if (auto ok = check_id_match(id, update->iface_id); !ok) return ok;
  if (!started()) return invalid(kNotSupportedPreBoot);
  const auto it =
      std::find_if(config().network_interfaces.begin(), config().network_interfaces.end(),
                   [&](const config::NetworkInterface& n) { return n.iface_id == id; });
  if (it == config().network_interfaces.end()) {
    return invalid("Invalid network interface ID: no interface '" + id + "'.");
  }
  // Merged once, as for drives.
  std::optional<config::RateLimiterConfig> rx, tx;
  if (update->rx_rate_limiter) {
    rx = config::merge_rate_limiter(it->rx_rate_limiter, *update->rx_rate_limiter);
  }
  if (update->tx_rate_limiter) {
    tx = config::merge_rate_limiter(it->tx_rate_limiter, *update->tx_rate_limiter);
  }
  if (auto ok = backend_.update_network_interface(id, rx, tx); !ok) {
    return make_error(ok.error().code(), "Network config error: Unable to update the net device: " +
                                             ok.error().message());
  }
  const auto index = static_cast<std::size_t>(it - config().network_interfaces.begin());
  resources_.update([&](config::VmConfig& c) {
    auto& iface = c.network_interfaces[index];
    if (rx) iface.rx_rate_limiter = effective_limiter(rx);
    if (tx) iface.tx_rate_limiter = effective_limiter(tx);
  });
  return {};
}

Expected<void> Controller::patch_vm(const std::string& body) {
  auto doc = parse_body(body);
  if (!doc) return tl::unexpected(doc.error());
  auto target = parse_variant_body(doc->root(), "Vm", "state", {"Paused", "Resumed"}, &*doc);
  if (!target) return body_error(target.error());
  if (!started()) return invalid(kNotSupportedPreBoot);
  // Pausing a paused VM or resuming a running one is a 204 that changes
  // nothing (Firecracker's test_pause_resume).
  if (*target == "Paused") {
    if (state() == VmState::kPaused) return {};
    if (auto ok = backend_.pause(); !ok) return ok;
    state_.store(VmState::kPaused);
    LOG_INFO("API: microVM paused");
  } else {
    if (state() == VmState::kRunning) return {};
    if (auto ok = backend_.resume(); !ok) return ok;
    state_.store(VmState::kRunning);
    LOG_INFO("API: microVM resumed");
  }
  return {};
}

Expected<void> Controller::put_logger(const std::string& body) {
  auto doc = parse_body(body);
  if (!doc) return tl::unexpected(doc.error());
  auto logger =
      parse_logger(doc->root(), "", config().logger.value_or(config::LoggerConfig{}), &*doc);
  if (!logger) return body_error(logger.error());
  if (started()) return invalid(kNotSupportedPostBoot);
  // Firecracker updates its logger as often as asked (no "once" rule).
  if (auto ok = backend_.configure_logger(*logger); !ok) {
    return make_error(ok.error().code(),
                      ok.error().sys_errno() != 0
                          ? "Logger error: Failed to open target file: " + cause(ok.error())
                          : "Logger error: " + ok.error().message());
  }
  resources_.update([&](config::VmConfig& c) { c.logger = std::move(*logger); });
  return {};
}

Expected<void> Controller::put_metrics(const std::string& body) {
  auto doc = parse_body(body);
  if (!doc) return tl::unexpected(doc.error());
  auto m = parse_metrics(doc->root(), "", &*doc);
  if (!m) return body_error(m.error());
  if (started()) return invalid(kNotSupportedPostBoot);
  constexpr const char* kMetrics =
      "Metrics error: Cannot initialize the metrics system due to bad user input: ";
  // Firecracker's metrics are initialised once (by --metrics-path, the
  // config file or this call); a failed attempt does not count.
  if (config().metrics)
    return invalid(std::string(kMetrics) + "Reinitialization of metrics not allowed.");
  if (auto ok = backend_.configure_metrics(*m); !ok) {
    return make_error(ok.error().code(), kMetrics + cause(ok.error()));
  }
  resources_.update([&](config::VmConfig& c) { c.metrics = std::move(*m); });
  return {};
}

Expected<void> Controller::put_serial(const std::string& body) {
  auto doc = parse_body(body);
  if (!doc) return tl::unexpected(doc.error());
  auto serial = parse_serial(doc->root(), "", &*doc);
  if (!serial) return body_error(serial.error());
  if (started()) return invalid(kNotSupportedPostBoot);
  resources_.update([&](config::VmConfig& c) { c.serial = std::move(*serial); });
  return {};
}

Expected<void> Controller::put_entropy(const std::string& body) {
  auto doc = parse_body(body);
  if (!doc) return tl::unexpected(doc.error());
  auto entropy = parse_entropy(doc->root(), "", &*doc);
  if (!entropy) return body_error(entropy.error());
  if (started()) return invalid(kNotSupportedPostBoot);
  boot_path_ = true;
  resources_.update([&](config::VmConfig& c) { c.entropy = std::move(*entropy); });
  return {};
}

// Firecracker's prefixes of the snapshot errors (VmmActionError).
constexpr const char* kCreateSnapshotError = "Create snapshot error: ";
constexpr const char* kLoadSnapshotError = "Load snapshot error: ";

Expected<void> Controller::create_snapshot(const std::string& body) {
  auto doc = parse_body(body);
  if (!doc) return tl::unexpected(doc.error());
  auto create = parse_snapshot_create(doc->root(), "", &*doc);
  if (!create) return body_error(create.error());
  if (!started()) return invalid(kNotSupportedPreBoot);
  // Firecracker 1.7's rule (rpc_interface.rs); its later releases take a
  // Diff without tracking too (pages found through mincore()).
  if (create->type == config::SnapshotType::kDiff && !config().machine_config.track_dirty_pages) {
    return invalid(
        "The requested operation is not supported: Diff snapshots are not allowed on uVMs with "
        "dirty page tracking disabled.");
  }
  // Firecracker's running vCPUs refuse to save their state (vstate/vcpu.rs).
  if (state() != VmState::kPaused) {
    return invalid(std::string(kCreateSnapshotError) +
                   "Cannot save the microVM state: Operation not allowed: save/restore "
                   "unavailable while running");
  }
  if (auto ok = config::validate(*create); !ok) {
    return make_error(ok.error().code(), kCreateSnapshotError + ok.error().message());
  }
  LOG_INFO("API: creating a %s snapshot",
           create->type == config::SnapshotType::kDiff ? "Diff" : "Full");
  if (auto ok = backend_.create_snapshot(*create); !ok) {
    return make_error(ok.error().code(), kCreateSnapshotError + ok.error().message());
  }
  return {};
}

Expected<void> Controller::load_snapshot(const std::string& body) {
  auto doc = parse_body(body);
  if (!doc) return tl::unexpected(doc.error());
  auto parsed = parse_snapshot_load(doc->root(), "", &*doc);
  if (!parsed) return body_error(parsed.error());
  if (parsed->deprecated) {
    LOG_WARN("PUT /snapshot/load: mem_file_path and enable_diff_snapshots fields are deprecated.");
    deprecated_ = true;
  }
  if (started()) return invalid(kNotSupportedPostBoot);
  if (boot_path_) {
    return invalid(std::string(kLoadSnapshotError) +
                   "Loading a microVM snapshot not allowed after configuring boot-specific "
                   "resources.");
  }
  const config::SnapshotLoad& load = parsed->load;
  if (auto ok = config::validate(load); !ok) {
    return make_error(ok.error().code(), kLoadSnapshotError + ok.error().message());
  }
  LOG_INFO("API: loading a microVM snapshot");
  // A failed load changes nothing here: the backend left nothing started,
  // so another load or a configuration may follow.
  auto restored = backend_.load_snapshot(load);
  if (!restored) {
    return make_error(restored.error().code(), kLoadSnapshotError + restored.error().message());
  }
  // The restored VM, with what the request asked for and what belongs to
  // this process rather than to the VM (its logger, metrics and serial
  // output) as configured here.
  config::VmConfig next = std::move(*restored);
  next.machine_config.track_dirty_pages = load.track_dirty_pages;
  for (const auto& o : load.network_overrides) {
    for (auto& n : next.network_interfaces) {
      if (n.iface_id == o.iface_id) n.host_dev_name = o.host_dev_name;
    }
  }
  next.logger = config().logger;
  next.metrics = config().metrics;
  next.serial = config().serial;
  resources_.update([&](config::VmConfig& c) { c = std::move(next); });
  state_.store(load.resume_vm ? VmState::kRunning : VmState::kPaused);
  return {};
}

std::string tap_error_message(const Error& e, const std::string& if_name) {
  // Firecracker's NetError/TapError texts (devices/virtio/net/{mod,tap}.rs)
  // for what hvz's Tap::open reports.
  const std::string& op = e.operation();
  const std::string head = "Could not create the network device: ";
  if (e.code() == Errc::kSystem && op.rfind("tap: TUNSETIFF", 0) == 0) {
    return head + "Open tap device failed: Error while creating ifreq structure: " +
           os_error(e.sys_errno()) + ". Invalid TUN/TAP Backend provided by " + if_name +
           ". Check our documentation on setting up the network devices.";
  }
  if (e.code() == Errc::kSystem && op.rfind("tap: open /dev/net/tun", 0) == 0) {
    return head + "Open tap device failed: Couldn't open /dev/net/tun: " + os_error(e.sys_errno());
  }
  if (e.code() == Errc::kSystem && op.rfind("tap: TUNSETVNETHDRSZ", 0) == 0) {
    return head + "Setting vnet header size failed: Error while setting size of the vnet header: " +
           os_error(e.sys_errno());
  }
  if (e.code() == Errc::kInvalidArgument && op.rfind("tap: ", 0) == 0) {
    return head + "Open tap device failed: Invalid interface name (" + op.substr(5) + ")";
  }
  return head + e.message();
}

}  // namespace hvz::api
