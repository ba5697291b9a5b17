// The config-file JSON mapping (see config_json.hpp). Field names, required
// fields and defaults follow Firecracker's vmm_config (boot_source.rs,
// machine_config.rs, drive.rs, net.rs, logger, metrics.rs, serial.rs,
// entropy.rs) and its swagger definitions.
#include "api/config_json.hpp"

#include <nlohmann/json.hpp>

#include <cctype>
#include <cstdint>
#include <set>
#include <utility>

namespace hvz::api {
namespace {

using nlohmann::json;

struct ParseError {
  std::string message;
};

void check_fields(const json& obj, const std::string& where, const std::set<std::string>& allowed) {
  if (!obj.is_object()) throw ParseError{where + ": expected an object"};
  for (const auto& [key, value] : obj.items()) {
    if (!allowed.count(key)) throw ParseError{where + ": unknown field '" + key + "'"};
  }
}

// Present and not null.
bool has(const json& obj, const char* key) {
  const auto it = obj.find(key);
  return it != obj.end() && !it->is_null();
}

void require(const json& obj, const std::string& where, const char* key) {
  if (!obj.contains(key)) throw ParseError{where + ": missing " + key};
}

std::string get_string(const json& obj, const std::string& where, const char* key) {
  const auto& v = obj.at(key);
  if (!v.is_string()) throw ParseError{where + "." + key + ": expected a string"};
  return v.get<std::string>();
}

// A JSON integer >= 0 (parsed ones are unsigned; built ones may be signed).
std::optional<std::uint64_t> non_negative(const json& v) {
  if (v.is_number_unsigned()) return v.get<std::uint64_t>();
  if (v.is_number_integer() && v.get<std::int64_t>() >= 0) {
    return static_cast<std::uint64_t>(v.get<std::int64_t>());
  }
  return std::nullopt;
}

std::uint64_t get_u64(const json& obj, const std::string& where, const char* key) {
  const auto v = non_negative(obj.at(key));
  if (!v) throw ParseError{where + "." + key + ": expected a non-negative integer"};
  return *v;
}

std::uint32_t get_u32(const json& obj, const std::string& where, const char* key) {
  const auto v = non_negative(obj.at(key));
  if (!v || *v > 0xffffffffu) {
    throw ParseError{where + "." + key + ": expected a non-negative integer"};
  }
  return static_cast<std::uint32_t>(*v);
}

bool get_bool(const json& obj, const std::string& where, const char* key) {
  const auto& v = obj.at(key);
  if (!v.is_boolean()) throw ParseError{where + "." + key + ": expected true or false"};
  return v.get<bool>();
}

void refuse(const json& obj, const std::string& where, const char* key, const char* what) {
  if (has(obj, key)) throw ParseError{where + "." + key + ": " + what + " not supported yet"};
}

// Runs a throwing parser and turns its failure into an Error.
template <typename F>
auto guarded(F&& parse) -> Expected<decltype(parse())> {
  try {
    return parse();
  } catch (const ParseError& e) {
    return make_error(Errc::kInvalidArgument, e.message);
  } catch (const json::exception& e) {
    return make_error(Errc::kInvalidArgument, std::string("malformed JSON: ") + e.what());
  }
}

config::BootSource boot_source_from(const json& j, const std::string& where) {
  check_fields(j, where, {"kernel_image_path", "initrd_path", "boot_args"});
  require(j, where, "kernel_image_path");
  config::BootSource b;
  b.kernel_image_path = get_string(j, where, "kernel_image_path");
  if (has(j, "initrd_path")) b.initrd_path = get_string(j, where, "initrd_path");
  if (has(j, "boot_args")) b.boot_args = get_string(j, where, "boot_args");
  return b;
}

config::MachineConfig machine_config_from(const json& j, const std::string& where,
                                          const config::MachineConfig* base) {
  check_fields(j, where,
               {"vcpu_count", "mem_size_mib", "smt", "track_dirty_pages", "huge_pages",
                "cpu_template", "virtio_mmio_cmdline"});
  config::MachineConfig m = base ? *base : config::MachineConfig{};
  if (!base) {
    // Firecracker requires both sizes in PUT /machine-config and the file.
    require(j, where, "vcpu_count");
    require(j, where, "mem_size_mib");
    m.vcpu_count = get_u32(j, where, "vcpu_count");
    m.mem_size_mib = get_u32(j, where, "mem_size_mib");
  } else {
    if (has(j, "vcpu_count")) m.vcpu_count = get_u32(j, where, "vcpu_count");
    if (has(j, "mem_size_mib")) m.mem_size_mib = get_u32(j, where, "mem_size_mib");
  }
  if (has(j, "smt")) m.smt = get_bool(j, where, "smt");
  if (has(j, "track_dirty_pages") && get_bool(j, where, "track_dirty_pages")) {
    throw ParseError{where + ".track_dirty_pages: not supported yet"};
  }
  if (has(j, "cpu_template")) {
    const auto t = get_string(j, where, "cpu_template");
    if (t != "None") throw ParseError{where + ".cpu_template: only \"None\" is supported"};
  }
  if (has(j, "huge_pages")) {
    const auto h = get_string(j, where, "huge_pages");
    if (h == "None") {
      m.huge_pages = config::HugePages::kNone;
    } else if (h == "2M") {
      m.huge_pages = config::HugePages::k2M;
    } else {
      throw ParseError{where + ".huge_pages: expected \"None\" or \"2M\", not \"" + h + "\""};
    }
  }
  if (has(j, "virtio_mmio_cmdline")) {
    m.virtio_mmio_cmdline = get_bool(j, where, "virtio_mmio_cmdline");
  }
  return m;
}

config::TokenBucketConfig token_bucket_from(const json& j, const std::string& where) {
  check_fields(j, where, {"size", "one_time_burst", "refill_time"});
  require(j, where, "size");
  require(j, where, "refill_time");
  config::TokenBucketConfig b;
  b.size = get_u64(j, where, "size");
  if (has(j, "one_time_burst")) b.one_time_burst = get_u64(j, where, "one_time_burst");
  b.refill_time_ms = get_u64(j, where, "refill_time");
  return b;
}

config::RateLimiterConfig rate_limiter_from(const json& j, const std::string& where) {
  check_fields(j, where, {"bandwidth", "ops"});
  config::RateLimiterConfig r;
  if (has(j, "bandwidth")) r.bandwidth = token_bucket_from(j.at("bandwidth"), where + ".bandwidth");
  if (has(j, "ops")) r.ops = token_bucket_from(j.at("ops"), where + ".ops");
  return r;
}

std::optional<config::RateLimiterConfig> optional_limiter(const json& j, const std::string& where,
                                                          const char* key) {
  if (!has(j, key)) return std::nullopt;
  return rate_limiter_from(j.at(key), where + "." + key);
}

config::Drive drive_from(const json& j, const std::string& where) {
  check_fields(j, where,
               {"drive_id", "path_on_host", "is_root_device", "is_read_only", "partuuid",
                "cache_type", "io_engine", "rate_limiter", "socket"});
  for (const char* key : {"drive_id", "path_on_host", "is_root_device"}) require(j, where, key);
  config::Drive d;
  d.drive_id = get_string(j, where, "drive_id");
  d.path_on_host = get_string(j, where, "path_on_host");
  d.is_root_device = get_bool(j, where, "is_root_device");
  if (has(j, "is_read_only")) d.is_read_only = get_bool(j, where, "is_read_only");
  if (has(j, "partuuid")) d.partuuid = get_string(j, where, "partuuid");
  if (has(j, "cache_type")) {
    // Flushes are always honoured, so both modes are safe.
    const auto c = get_string(j, where, "cache_type");
    if (c != "Unsafe" && c != "Writeback") {
      throw ParseError{where + ".cache_type: expected \"Unsafe\" or \"Writeback\""};
    }
  }
  if (has(j, "io_engine")) {
    const auto e = get_string(j, where, "io_engine");
    if (e == "Sync") {
      d.io_engine = config::IoEngine::kSync;
    } else if (e == "Async") {
      d.io_engine = config::IoEngine::kAsync;
    } else {
      throw ParseError{where + ".io_engine: expected \"Sync\" or \"Async\", not \"" + e + "\""};
    }
  }
  d.rate_limiter = optional_limiter(j, where, "rate_limiter");
  refuse(j, where, "socket", "vhost-user drives are");
  return d;
}

config::NetworkInterface interface_from(const json& j, const std::string& where) {
  check_fields(
      j, where,
      {"iface_id", "host_dev_name", "guest_mac", "rx_rate_limiter", "tx_rate_limiter", "mtu"});
  for (const char* key : {"iface_id", "host_dev_name"}) require(j, where, key);
  config::NetworkInterface n;
  n.iface_id = get_string(j, where, "iface_id");
  n.host_dev_name = get_string(j, where, "host_dev_name");
  if (has(j, "guest_mac")) {
    const auto text = get_string(j, where, "guest_mac");
    n.guest_mac = config::parse_mac(text);
    if (!n.guest_mac) {
      throw ParseError{where + ".guest_mac: expected aa:bb:cc:dd:ee:ff, not " + text};
    }
  }
  n.rx_rate_limiter = optional_limiter(j, where, "rx_rate_limiter");
  n.tx_rate_limiter = optional_limiter(j, where, "tx_rate_limiter");
  refuse(j, where, "mtu", "an MTU is");
  return n;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

config::LoggerConfig logger_from(const json& j, const std::string& where,
                                 const config::LoggerConfig& base) {
  check_fields(j, where, {"log_path", "level", "show_level", "show_log_origin", "module"});
  config::LoggerConfig l = base;
  if (has(j, "log_path")) l.log_path = get_string(j, where, "log_path");
  if (has(j, "level")) {
    // Case-insensitive, as in Firecracker, which also takes "Warn".
    using Level = config::LoggerConfig::Level;
    const auto text = get_string(j, where, "level");
    const auto v = lower(text);
    if (v == "error") {
      l.level = Level::kError;
    } else if (v == "warning" || v == "warn") {
      l.level = Level::kWarning;
    } else if (v == "info") {
      l.level = Level::kInfo;
    } else if (v == "debug") {
      l.level = Level::kDebug;
    } else if (v == "trace") {
      l.level = Level::kTrace;
    } else if (v == "off") {
      l.level = Level::kOff;
    } else {
      throw ParseError{where +
                       ".level: expected Error, Warning, Info, Debug, Trace or Off, not \"" + text +
                       "\""};
    }
  }
  if (has(j, "show_level")) l.show_level = get_bool(j, where, "show_level");
  if (has(j, "show_log_origin")) l.show_log_origin = get_bool(j, where, "show_log_origin");
  refuse(j, where, "module", "filtering by module is");
  return l;
}

config::MetricsConfig metrics_from(const json& j, const std::string& where) {
  check_fields(j, where, {"metrics_path"});
  require(j, where, "metrics_path");
  config::MetricsConfig m;
  m.metrics_path = get_string(j, where, "metrics_path");
  if (m.metrics_path.empty()) throw ParseError{where + ".metrics_path: must not be empty"};
  return m;
}

config::SerialConfig serial_from(const json& j, const std::string& where) {
  check_fields(j, where, {"serial_out_path", "rate_limiter"});
  config::SerialConfig s;
  if (has(j, "serial_out_path")) s.serial_out_path = get_string(j, where, "serial_out_path");
  refuse(j, where, "rate_limiter", "rate limiting the serial console is");
  return s;
}

config::EntropyConfig entropy_from(const json& j, const std::string& where) {
  check_fields(j, where, {"rate_limiter"});
  config::EntropyConfig e;
  e.rate_limiter = optional_limiter(j, where, "rate_limiter");
  return e;
}

config::Console console_from(const json& j, const std::string& where) {
  check_fields(j, where, {"mode", "path"});
  config::Console c;
  if (has(j, "mode")) {
    const auto m = get_string(j, where, "mode");
    if (m == "stdio") {
      c.mode = config::Console::Mode::kStdio;
    } else if (m == "file") {
      c.mode = config::Console::Mode::kFile;
    } else if (m == "socket") {
      c.mode = config::Console::Mode::kSocket;
    } else {
      throw ParseError{where + ".mode: expected \"stdio\", \"file\" or \"socket\""};
    }
  }
  if (has(j, "path")) c.path = get_string(j, where, "path");
  return c;
}

DriveUpdate drive_update_from(const json& j, const std::string& where) {
  check_fields(j, where, {"drive_id", "path_on_host", "rate_limiter"});
  require(j, where, "drive_id");
  DriveUpdate u;
  u.drive_id = get_string(j, where, "drive_id");
  if (has(j, "path_on_host")) u.path_on_host = get_string(j, where, "path_on_host");
  u.rate_limiter = optional_limiter(j, where, "rate_limiter");
  return u;
}

NetworkInterfaceUpdate interface_update_from(const json& j, const std::string& where) {
  check_fields(j, where, {"iface_id", "rx_rate_limiter", "tx_rate_limiter"});
  require(j, where, "iface_id");
  NetworkInterfaceUpdate u;
  u.iface_id = get_string(j, where, "iface_id");
  u.rx_rate_limiter = optional_limiter(j, where, "rx_rate_limiter");
  u.tx_rate_limiter = optional_limiter(j, where, "tx_rate_limiter");
  return u;
}

// Accepted only as null: Firecracker devices hvz does not have.
void refuse_section(const json& j, const char* key, const char* what) {
  if (has(j, key)) throw ParseError{std::string(key) + ": " + what + " not supported yet"};
}

config::VmConfig vm_config_from(const json& j) {
  check_fields(j, "config",
               {"boot-source", "machine-config", "drives", "network-interfaces", "console",
                "logger", "metrics", "serial", "entropy", "vsock", "balloon", "mmds-config"});
  config::VmConfig c;
  if (!j.contains("boot-source")) throw ParseError{"config: missing boot-source"};
  c.boot_source = boot_source_from(j.at("boot-source"), "boot-source");
  if (has(j, "machine-config")) {
    c.machine_config = machine_config_from(j.at("machine-config"), "machine-config", nullptr);
  }
  if (has(j, "drives")) {
    const auto& list = j.at("drives");
    if (!list.is_array()) throw ParseError{"drives: expected an array"};
    for (std::size_t i = 0; i < list.size(); ++i) {
      c.drives.push_back(drive_from(list[i], "drives[" + std::to_string(i) + "]"));
    }
  }
  if (has(j, "network-interfaces")) {
    const auto& list = j.at("network-interfaces");
    if (!list.is_array()) throw ParseError{"network-interfaces: expected an array"};
    for (std::size_t i = 0; i < list.size(); ++i) {
      c.network_interfaces.push_back(
          interface_from(list[i], "network-interfaces[" + std::to_string(i) + "]"));
    }
  }
  if (has(j, "console")) c.console = console_from(j.at("console"), "console");
  if (has(j, "logger")) c.logger = logger_from(j.at("logger"), "logger", {});
  if (has(j, "metrics")) c.metrics = metrics_from(j.at("metrics"), "metrics");
  if (has(j, "serial")) c.serial = serial_from(j.at("serial"), "serial");
  if (has(j, "entropy")) c.entropy = entropy_from(j.at("entropy"), "entropy");
  refuse_section(j, "vsock", "vsock is");
  refuse_section(j, "balloon", "the balloon device is");
  refuse_section(j, "mmds-config", "MMDS is");
  return c;
}

json token_bucket_json(const config::TokenBucketConfig& b) {
  return {
      {"size", b.size}, {"one_time_burst", b.one_time_burst}, {"refill_time", b.refill_time_ms}};
}

}  // namespace

Expected<config::VmConfig> parse_vm_config(std::string_view text) {
  return guarded([&] { return vm_config_from(json::parse(text)); });
}

Expected<config::BootSource> parse_boot_source(const json& j, const std::string& where) {
  return guarded([&] { return boot_source_from(j, where); });
}

Expected<config::MachineConfig> parse_machine_config(const json& j, const std::string& where,
                                                     const config::MachineConfig* base) {
  return guarded([&] { return machine_config_from(j, where, base); });
}

Expected<config::Drive> parse_drive(const json& j, const std::string& where) {
  return guarded([&] { return drive_from(j, where); });
}

Expected<config::NetworkInterface> parse_network_interface(const json& j,
                                                           const std::string& where) {
  return guarded([&] { return interface_from(j, where); });
}

Expected<config::RateLimiterConfig> parse_rate_limiter(const json& j, const std::string& where) {
  return guarded([&] { return rate_limiter_from(j, where); });
}

Expected<config::LoggerConfig> parse_logger(const json& j, const std::string& where,
                                            const config::LoggerConfig& base) {
  return guarded([&] { return logger_from(j, where, base); });
}

Expected<config::MetricsConfig> parse_metrics(const json& j, const std::string& where) {
  return guarded([&] { return metrics_from(j, where); });
}

Expected<config::SerialConfig> parse_serial(const json& j, const std::string& where) {
  return guarded([&] { return serial_from(j, where); });
}

Expected<config::EntropyConfig> parse_entropy(const json& j, const std::string& where) {
  return guarded([&] { return entropy_from(j, where); });
}

Expected<config::Console> parse_console(const json& j, const std::string& where) {
  return guarded([&] { return console_from(j, where); });
}

Expected<DriveUpdate> parse_drive_update(const json& j, const std::string& where) {
  return guarded([&] { return drive_update_from(j, where); });
}

Expected<NetworkInterfaceUpdate> parse_network_interface_update(const json& j,
                                                                const std::string& where) {
  return guarded([&] { return interface_update_from(j, where); });
}

const char* logger_level_name(config::LoggerConfig::Level level) {
  using Level = config::LoggerConfig::Level;
  switch (level) {
    case Level::kError:
      return "Error";
    case Level::kWarning:
      return "Warning";
    case Level::kInfo:
      return "Info";
    case Level::kDebug:
      return "Debug";
    case Level::kTrace:
      return "Trace";
    case Level::kOff:
      return "Off";
  }
  return "Warning";
}

json to_json(const config::BootSource& b) {
  json j{{"kernel_image_path", b.kernel_image_path}};
  if (b.initrd_path) j["initrd_path"] = *b.initrd_path;
  if (b.boot_args) j["boot_args"] = *b.boot_args;
  return j;
}

json to_json(const config::MachineConfig& m) {
  json j{
      {"vcpu_count", m.vcpu_count},
      {"mem_size_mib", m.mem_size_mib},
      {"smt", m.smt},
      {"track_dirty_pages", false},
      {"huge_pages", m.huge_pages == config::HugePages::k2M ? "2M" : "None"},
  };
  // hvz's own switch: shown only when on, so Firecracker clients see
  // Firecracker's fields.
  if (m.virtio_mmio_cmdline) j["virtio_mmio_cmdline"] = true;
  return j;
}

json to_json(const config::RateLimiterConfig& r) {
  json j = json::object();
  if (r.bandwidth) j["bandwidth"] = token_bucket_json(*r.bandwidth);
  if (r.ops) j["ops"] = token_bucket_json(*r.ops);
  return j;
}

json to_json(const config::Drive& d) {
  json j{{"drive_id", d.drive_id},
         {"path_on_host", d.path_on_host},
         {"is_root_device", d.is_root_device},
         {"is_read_only", d.is_read_only},
         {"io_engine", d.io_engine == config::IoEngine::kAsync ? "Async" : "Sync"}};
  if (d.partuuid) j["partuuid"] = *d.partuuid;
  if (d.rate_limiter) j["rate_limiter"] = to_json(*d.rate_limiter);
  return j;
}

json to_json(const config::NetworkInterface& n) {
  json j{{"iface_id", n.iface_id}, {"host_dev_name", n.host_dev_name}};
  if (n.guest_mac) j["guest_mac"] = config::format_mac(*n.guest_mac);
  if (n.rx_rate_limiter) j["rx_rate_limiter"] = to_json(*n.rx_rate_limiter);
  if (n.tx_rate_limiter) j["tx_rate_limiter"] = to_json(*n.tx_rate_limiter);
  return j;
}

json to_json(const config::LoggerConfig& l) {
  json j{{"level", logger_level_name(l.level)},
         {"show_level", l.show_level},
         {"show_log_origin", l.show_log_origin}};
  if (!l.log_path.empty()) j["log_path"] = l.log_path;
  return j;
}

json to_json(const config::MetricsConfig& m) {
  return {{"metrics_path", m.metrics_path}};
}

json to_json(const config::SerialConfig& s) {
  json j = json::object();
  if (!s.serial_out_path.empty()) j["serial_out_path"] = s.serial_out_path;
  return j;
}

json to_json(const config::EntropyConfig& e) {
  json j = json::object();
  if (e.rate_limiter) j["rate_limiter"] = to_json(*e.rate_limiter);
  return j;
}

json to_json(const config::Console& c) {
  const char* mode = c.mode == config::Console::Mode::kFile     ? "file"
                     : c.mode == config::Console::Mode::kSocket ? "socket"
                                                                : "stdio";
  return {{"mode", mode}, {"path", c.path}};
}

json vm_config_to_json_value(const config::VmConfig& c) {
  json j = json::object();
  if (c.boot_source) j["boot-source"] = to_json(*c.boot_source);
  j["machine-config"] = to_json(c.machine_config);
  json drives = json::array();
  for (const auto& d : c.drives) drives.push_back(to_json(d));
  j["drives"] = std::move(drives);
  json nets = json::array();
  for (const auto& n : c.network_interfaces) nets.push_back(to_json(n));
  j["network-interfaces"] = std::move(nets);
  if (c.console) j["console"] = to_json(*c.console);
  if (c.logger) j["logger"] = to_json(*c.logger);
  if (c.metrics) j["metrics"] = to_json(*c.metrics);
  if (c.serial) j["serial"] = to_json(*c.serial);
  if (c.entropy) j["entropy"] = to_json(*c.entropy);
  return j;
}

std::string vm_config_to_json(const config::VmConfig& c) {
  return dump_json(vm_config_to_json_value(c), 2);
}

std::string dump_json(const json& j, int indent) {
  return j.dump(indent, ' ', false, json::error_handler_t::replace);
}

}  // namespace hvz::api
