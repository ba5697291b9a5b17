// JSON <-> VmConfig in Firecracker's config-file shape ("boot-source",
// "machine-config", "drives", …). One mapping for --config-file, the API
// request bodies (the body of PUT /drives/{id} is one "drives" entry) and
// GET /vm/config. Strict: unknown fields and wrong types are errors that
// name the offending field ("drives[0].is_root_device: expected true or
// false"). null counts as absent for optional fields, as in Firecracker.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

#include "vmm/config/vm_config.hpp"

namespace hvz::api {

// The whole config file. Besides Firecracker's sections it takes hvz's own
// "console" and "serial" (the PUT /serial body, which Firecracker's config
// file lacks); "vsock", "balloon" and "mmds-config" only as null.
Expected<config::VmConfig> parse_vm_config(std::string_view json);
// The config file for `config` (what GET /vm/config answers):
// parse_vm_config() of it gives back an identical VmConfig. Strings that
// are not UTF-8 are written with U+FFFD in place of the bad bytes.
std::string vm_config_to_json(const config::VmConfig& config);
nlohmann::json vm_config_to_json_value(const config::VmConfig& config);

// Per-object mappings, shared by the config file and the API. `where`
// starts each message ("drives[0]", "drive", "machine-config", …).
Expected<config::BootSource> parse_boot_source(const nlohmann::json& j, const std::string& where);
// Without `base`: PUT semantics (vcpu_count and mem_size_mib required, the
// other fields their defaults when absent). With `base`: PATCH semantics
// (every field optional, applied onto *base).
Expected<config::MachineConfig> parse_machine_config(const nlohmann::json& j,
                                                     const std::string& where,
                                                     const config::MachineConfig* base = nullptr);
Expected<config::Drive> parse_drive(const nlohmann::json& j, const std::string& where);
Expected<config::NetworkInterface> parse_network_interface(const nlohmann::json& j,
                                                           const std::string& where);
// {"bandwidth": {"size", "one_time_burst", "refill_time"}, "ops": {…}}
// (refill_time in milliseconds).
Expected<config::RateLimiterConfig> parse_rate_limiter(const nlohmann::json& j,
                                                       const std::string& where);
// Fields absent (or null) keep their value in `base` (Firecracker updates
// only what PUT /logger names). "module" is refused: hvz has no modules.
Expected<config::LoggerConfig> parse_logger(const nlohmann::json& j, const std::string& where,
                                            const config::LoggerConfig& base = {});
Expected<config::MetricsConfig> parse_metrics(const nlohmann::json& j, const std::string& where);
Expected<config::SerialConfig> parse_serial(const nlohmann::json& j, const std::string& where);
Expected<config::EntropyConfig> parse_entropy(const nlohmann::json& j, const std::string& where);
Expected<config::Console> parse_console(const nlohmann::json& j, const std::string& where);

// The body of PATCH /drives/{id} (Firecracker's PartialDrive).
struct DriveUpdate {
  std::string drive_id;
  std::optional<std::string> path_on_host;
  std::optional<config::RateLimiterConfig> rate_limiter;
};
Expected<DriveUpdate> parse_drive_update(const nlohmann::json& j, const std::string& where);

// The body of PATCH /network-interfaces/{id} (PartialNetworkInterface).
struct NetworkInterfaceUpdate {
  std::string iface_id;
  std::optional<config::RateLimiterConfig> rx_rate_limiter;
  std::optional<config::RateLimiterConfig> tx_rate_limiter;
};
Expected<NetworkInterfaceUpdate> parse_network_interface_update(const nlohmann::json& j,
                                                                const std::string& where);

// The objects in config-file shape.
nlohmann::json to_json(const config::BootSource& boot_source);
nlohmann::json to_json(const config::MachineConfig& machine_config);
nlohmann::json to_json(const config::Drive& drive);
nlohmann::json to_json(const config::NetworkInterface& iface);
nlohmann::json to_json(const config::RateLimiterConfig& limiter);
nlohmann::json to_json(const config::LoggerConfig& logger);
nlohmann::json to_json(const config::MetricsConfig& metrics);
nlohmann::json to_json(const config::SerialConfig& serial);
nlohmann::json to_json(const config::EntropyConfig& entropy);
nlohmann::json to_json(const config::Console& console);

// "Error", "Warning", "Info", "Debug", "Trace", "Off".
const char* logger_level_name(config::LoggerConfig::Level level);

// json.dump() that never throws on strings that are not UTF-8 (replaced
// with U+FFFD); indent -1: compact.
std::string dump_json(const nlohmann::json& j, int indent = -1);

}  // namespace hvz::api
