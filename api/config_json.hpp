// JSON <-> VmConfig in Firecracker's config-file shape ("boot-source",
// "machine-config", "drives", …). One mapping for --config-file, the API
// request bodies (the body of PUT /drives/{id} is one "drives" entry) and
// GET /vm/config. Input is read the way Firecracker's serde_json reads it,
// with serde's messages: an unknown, duplicate or missing field or a wrong
// type is an error ("missing field `vcpu_count` at line 1 column 21"), null
// is accepted exactly where Firecracker's field is an Option (and then
// counts as absent), and a message also names the field's path when it is
// not at the top ("rate_limiter.ops: missing field `size` at ...").
#pragma once

#include <cstddef>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

#include "api/json_document.hpp"
#include "vmm/config/snapshot_config.hpp"
#include "vmm/config/vm_config.hpp"

namespace hvz::api {

// Errors: Errc::kInvalidArgument for input Firecracker refuses as well (a
// deserialization error there), Errc::kUnsupported for Firecracker input
// hvz does not support ("... not supported yet").

// The whole config file. Besides Firecracker's sections it takes hvz's own
// "console" and "serial" (the PUT /serial body, which Firecracker's config
// file lacks); "vsock", "balloon", "mmds-config", "cpu-config" and
// "memory-hotplug" only as null, "pmem" only empty. An all-default
// "boot-source" (the one GET /vm/config shows before PUT /boot-source)
// stands for none.
Expected<config::VmConfig> parse_vm_config(std::string_view json);
// The config file for `config` (what GET /vm/config answers), in
// Firecracker's shape: every section of Firecracker's full configuration is
// there, null when unset (hvz's "console" and "serial" only when set), and
// so is every field of a device (null when unset; a rate limiter or bucket
// that limits nothing is null). parse_vm_config() of it gives back an
// identical VmConfig for any VmConfig that parse_vm_config() produced.
// Strings that are not UTF-8 are written with U+FFFD in place of the bad
// bytes.
std::string vm_config_to_json(const config::VmConfig& config);
nlohmann::json vm_config_to_json_value(const config::VmConfig& config);

// Per-object mappings, shared by the config file and the API. `where` is
// the object's path in messages ("drives[0]"; empty for a request body);
// `doc`, when given, is the document `j` belongs to, for positions.
Expected<config::BootSource> parse_boot_source(const nlohmann::json& j, const std::string& where,
                                               const JsonDocument* doc = nullptr);
// Without `base`: PUT semantics (vcpu_count and mem_size_mib required, the
// other fields their defaults when absent). With `base`: PATCH semantics
// (every field optional, applied onto *base). Only the types are checked
// here, not the ranges.
Expected<config::MachineConfig> parse_machine_config(const nlohmann::json& j,
                                                     const std::string& where,
                                                     const config::MachineConfig* base = nullptr,
                                                     const JsonDocument* doc = nullptr);
Expected<config::Drive> parse_drive(const nlohmann::json& j, const std::string& where,
                                    const JsonDocument* doc = nullptr);
Expected<config::NetworkInterface> parse_network_interface(const nlohmann::json& j,
                                                           const std::string& where,
                                                           const JsonDocument* doc = nullptr);
// {"bandwidth": {"size", "one_time_burst", "refill_time"}, "ops": {…}}
// (refill_time in milliseconds), as given: buckets that limit nothing stay.
Expected<config::RateLimiterConfig> parse_rate_limiter(const nlohmann::json& j,
                                                       const std::string& where,
                                                       const JsonDocument* doc = nullptr);
// Fields absent (or null) keep their value in `base` (Firecracker updates
// only what PUT /logger names). "module" is refused: hvz has no modules.
Expected<config::LoggerConfig> parse_logger(const nlohmann::json& j, const std::string& where,
                                            const config::LoggerConfig& base = {},
                                            const JsonDocument* doc = nullptr);
Expected<config::MetricsConfig> parse_metrics(const nlohmann::json& j, const std::string& where,
                                              const JsonDocument* doc = nullptr);
Expected<config::SerialConfig> parse_serial(const nlohmann::json& j, const std::string& where,
                                            const JsonDocument* doc = nullptr);
Expected<config::EntropyConfig> parse_entropy(const nlohmann::json& j, const std::string& where,
                                              const JsonDocument* doc = nullptr);
Expected<config::Console> parse_console(const nlohmann::json& j, const std::string& where,
                                        const JsonDocument* doc = nullptr);
// A one-field body such as PUT /actions' {"action_type": "InstanceStart"}:
// the object of Firecracker struct `type_name` whose only (required) field
// `key` is one of `variants`; returns that variant.
Expected<std::string> parse_variant_body(const nlohmann::json& j, const char* type_name,
                                         const char* key,
                                         std::initializer_list<const char*> variants,
                                         const JsonDocument* doc = nullptr);

// A rate limiter as Firecracker keeps it: a bucket with a size or refill
// time of 0 limits nothing and is dropped, and so is a limiter left without
// buckets. Drives, interfaces and the entropy device parsed above come with
// their limiters made effective already; a PATCH (where an empty bucket
// removes one) does not.
std::optional<config::RateLimiterConfig> effective_limiter(
    const std::optional<config::RateLimiterConfig>& limiter);

// The body of PATCH /drives/{id} (Firecracker's BlockDeviceUpdateConfig).
struct DriveUpdate {
  std::string drive_id;
  std::optional<std::string> path_on_host;
  std::optional<config::RateLimiterConfig> rate_limiter;
};
Expected<DriveUpdate> parse_drive_update(const nlohmann::json& j, const std::string& where,
                                         const JsonDocument* doc = nullptr);

// The body of PATCH /network-interfaces/{id} (NetworkInterfaceUpdateConfig).
struct NetworkInterfaceUpdate {
  std::string iface_id;
  std::optional<config::RateLimiterConfig> rx_rate_limiter;
  std::optional<config::RateLimiterConfig> tx_rate_limiter;
};
Expected<NetworkInterfaceUpdate> parse_network_interface_update(const nlohmann::json& j,
                                                                const std::string& where,
                                                                const JsonDocument* doc = nullptr);

// The body of PUT /snapshot/create (Firecracker's CreateSnapshotParams):
// snapshot_type ("Full" or "Diff", default Full), snapshot_path and
// mem_file_path (both required).
Expected<config::SnapshotCreate> parse_snapshot_create(const nlohmann::json& j,
                                                       const std::string& where,
                                                       const JsonDocument* doc = nullptr);

// The body of PUT /snapshot/load (Firecracker's LoadSnapshotConfig):
// snapshot_path, exactly one of mem_backend {backend_path, backend_type
// "File" or "Uffd"} and the deprecated mem_file_path (a File backend),
// track_dirty_pages or the deprecated enable_diff_snapshots (either turns
// tracking on, as in Firecracker), resume_vm, network_overrides
// [{iface_id, host_dev_name}]. Firecracker's vsock_override (no vsock in
// hvz), clock_realtime true and huge_pages other than "Snapshot" are
// Errc::kUnsupported.
struct SnapshotLoadBody {
  config::SnapshotLoad load;
  // mem_file_path or enable_diff_snapshots was used: Firecracker answers
  // with "Deprecation: true".
  bool deprecated = false;
};
Expected<SnapshotLoadBody> parse_snapshot_load(const nlohmann::json& j, const std::string& where,
                                               const JsonDocument* doc = nullptr);

// The objects in the shape GET /vm/config shows them.
nlohmann::json to_json(const config::BootSource& boot_source);
nlohmann::json to_json(const config::MachineConfig& machine_config);
nlohmann::json to_json(const config::Drive& drive);
nlohmann::json to_json(const config::NetworkInterface& iface);
// null when the limiter limits nothing (see effective_limiter).
nlohmann::json to_json(const std::optional<config::RateLimiterConfig>& limiter);
nlohmann::json to_json(const config::LoggerConfig& logger);
nlohmann::json to_json(const config::MetricsConfig& metrics);
nlohmann::json to_json(const config::SerialConfig& serial);
nlohmann::json to_json(const config::EntropyConfig& entropy);
nlohmann::json to_json(const config::Console& console);

// json.dump() that never throws on strings that are not UTF-8 (replaced
// with U+FFFD); indent -1: compact.
std::string dump_json(const nlohmann::json& j, int indent = -1);

}  // namespace hvz::api
