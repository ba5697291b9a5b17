// The config-file JSON mapping (see config_json.hpp). Field names and
// defaults follow Firecracker's vmm_config (boot_source.rs, machine_config.rs).
#include "api/config_json.hpp"

#include <nlohmann/json.hpp>

#include <set>

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

std::string get_string(const json& obj, const std::string& where, const char* key) {
  const auto& v = obj.at(key);
  if (!v.is_string()) throw ParseError{where + "." + key + ": expected a string"};
  return v.get<std::string>();
}

std::uint32_t get_u32(const json& obj, const std::string& where, const char* key) {
  const auto& v = obj.at(key);
  if (!v.is_number_unsigned() || v.get<std::uint64_t>() > 0xffffffffu) {
    throw ParseError{where + "." + key + ": expected a non-negative integer"};
  }
  return static_cast<std::uint32_t>(v.get<std::uint64_t>());
}

bool get_bool(const json& obj, const std::string& where, const char* key) {
  const auto& v = obj.at(key);
  if (!v.is_boolean()) throw ParseError{where + "." + key + ": expected true or false"};
  return v.get<bool>();
}

config::BootSource parse_boot_source(const json& j) {
  const std::string where = "boot-source";
  check_fields(j, where, {"kernel_image_path", "initrd_path", "boot_args"});
  if (!j.contains("kernel_image_path")) throw ParseError{where + ": missing kernel_image_path"};
  config::BootSource b;
  b.kernel_image_path = get_string(j, where, "kernel_image_path");
  if (j.contains("initrd_path") && !j.at("initrd_path").is_null()) {
    b.initrd_path = get_string(j, where, "initrd_path");
  }
  if (j.contains("boot_args") && !j.at("boot_args").is_null()) {
    b.boot_args = get_string(j, where, "boot_args");
  }
  return b;
}

config::MachineConfig parse_machine_config(const json& j) {
  const std::string where = "machine-config";
  check_fields(
      j, where,
      {"vcpu_count", "mem_size_mib", "smt", "track_dirty_pages", "huge_pages", "cpu_template"});
  // Firecracker requires both sizes in machine-config.
  if (!j.contains("vcpu_count")) throw ParseError{where + ": missing vcpu_count"};
  if (!j.contains("mem_size_mib")) throw ParseError{where + ": missing mem_size_mib"};
  config::MachineConfig m;
  m.vcpu_count = get_u32(j, where, "vcpu_count");
  m.mem_size_mib = get_u32(j, where, "mem_size_mib");
  if (j.contains("smt")) m.smt = get_bool(j, where, "smt");
  if (j.contains("track_dirty_pages") && get_bool(j, where, "track_dirty_pages")) {
    throw ParseError{where + ".track_dirty_pages: not supported yet"};
  }
  if (j.contains("cpu_template") && !j.at("cpu_template").is_null()) {
    const auto t = get_string(j, where, "cpu_template");
    if (t != "None") throw ParseError{where + ".cpu_template: only \"None\" is supported"};
  }
  if (j.contains("huge_pages")) {
    const auto h = get_string(j, where, "huge_pages");
    if (h == "None") {
      m.huge_pages = config::HugePages::kNone;
    } else if (h == "2M") {
      m.huge_pages = config::HugePages::k2M;
    } else {
      throw ParseError{where + ".huge_pages: expected \"None\" or \"2M\", not \"" + h + "\""};
    }
  }
  return m;
}

config::Drive parse_drive(const json& j, std::size_t index) {
  const std::string where = "drives[" + std::to_string(index) + "]";
  check_fields(j, where,
               {"drive_id", "path_on_host", "is_root_device", "is_read_only", "partuuid",
                "cache_type", "io_engine", "rate_limiter"});
  for (const char* key : {"drive_id", "path_on_host", "is_root_device"}) {
    if (!j.contains(key)) throw ParseError{where + ": missing " + key};
  }
  config::Drive d;
  d.drive_id = get_string(j, where, "drive_id");
  d.path_on_host = get_string(j, where, "path_on_host");
  d.is_root_device = get_bool(j, where, "is_root_device");
  if (j.contains("is_read_only")) d.is_read_only = get_bool(j, where, "is_read_only");
  if (j.contains("partuuid") && !j.at("partuuid").is_null()) {
    d.partuuid = get_string(j, where, "partuuid");
  }
  if (j.contains("cache_type")) {
    // Flushes are always honoured, so both modes are safe.
    const auto c = get_string(j, where, "cache_type");
    if (c != "Unsafe" && c != "Writeback") {
      throw ParseError{where + ".cache_type: expected \"Unsafe\" or \"Writeback\""};
    }
  }
  if (j.contains("io_engine")) {
    const auto e = get_string(j, where, "io_engine");
    if (e != "Sync" && e != "Async") {
      throw ParseError{where + ".io_engine: expected \"Sync\" or \"Async\""};
    }
  }
  if (j.contains("rate_limiter") && !j.at("rate_limiter").is_null()) {
    throw ParseError{where + ".rate_limiter: not supported yet"};
  }
  return d;
}

config::NetworkInterface parse_interface(const json& j, std::size_t index) {
  const std::string where = "network-interfaces[" + std::to_string(index) + "]";
  check_fields(j, where,
               {"iface_id", "host_dev_name", "guest_mac", "rx_rate_limiter", "tx_rate_limiter"});
  for (const char* key : {"iface_id", "host_dev_name"}) {
    if (!j.contains(key)) throw ParseError{where + ": missing " + key};
  }
  config::NetworkInterface n;
  n.iface_id = get_string(j, where, "iface_id");
  n.host_dev_name = get_string(j, where, "host_dev_name");
  if (j.contains("guest_mac") && !j.at("guest_mac").is_null()) {
    const auto text = get_string(j, where, "guest_mac");
    n.guest_mac = config::parse_mac(text);
    if (!n.guest_mac)
      throw ParseError{where + ".guest_mac: expected aa:bb:cc:dd:ee:ff, not " + text};
  }
  for (const char* key : {"rx_rate_limiter", "tx_rate_limiter"}) {
    if (j.contains(key) && !j.at(key).is_null()) {
      throw ParseError{where + "." + key + ": not supported yet"};
    }
  }
  return n;
}

config::Console parse_console(const json& j) {
  const std::string where = "console";
  check_fields(j, where, {"mode", "path"});
  config::Console c;
  if (j.contains("mode")) {
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
  if (j.contains("path")) c.path = get_string(j, where, "path");
  return c;
}

}  // namespace

Expected<config::VmConfig> parse_vm_config(std::string_view text) {
  try {
    const json j = json::parse(text);
    check_fields(j, "config",
                 {"boot-source", "machine-config", "drives", "network-interfaces", "console"});
    config::VmConfig c;
    if (!j.contains("boot-source")) throw ParseError{"config: missing boot-source"};
    c.boot_source = parse_boot_source(j.at("boot-source"));
    if (j.contains("machine-config"))
      c.machine_config = parse_machine_config(j.at("machine-config"));
    if (j.contains("drives")) {
      const auto& list = j.at("drives");
      if (!list.is_array()) throw ParseError{"drives: expected an array"};
      for (std::size_t i = 0; i < list.size(); ++i) c.drives.push_back(parse_drive(list[i], i));
    }
    if (j.contains("network-interfaces")) {
      const auto& list = j.at("network-interfaces");
      if (!list.is_array()) throw ParseError{"network-interfaces: expected an array"};
      for (std::size_t i = 0; i < list.size(); ++i) {
        c.network_interfaces.push_back(parse_interface(list[i], i));
      }
    }
    if (j.contains("console")) c.console = parse_console(j.at("console"));
    return c;
  } catch (const ParseError& e) {
    return make_error(Errc::kInvalidArgument, e.message);
  } catch (const json::exception& e) {
    return make_error(Errc::kInvalidArgument, std::string("malformed JSON: ") + e.what());
  }
}

std::string vm_config_to_json(const config::VmConfig& c) {
  json j;
  if (c.boot_source) {
    json b{{"kernel_image_path", c.boot_source->kernel_image_path}};
    if (c.boot_source->initrd_path) b["initrd_path"] = *c.boot_source->initrd_path;
    b["boot_args"] = c.boot_source->boot_args.value_or(config::kDefaultBootArgs);
    j["boot-source"] = b;
  }
  j["machine-config"] = {
      {"vcpu_count", c.machine_config.vcpu_count},
      {"mem_size_mib", c.machine_config.mem_size_mib},
      {"smt", c.machine_config.smt},
      {"huge_pages", c.machine_config.huge_pages == config::HugePages::k2M ? "2M" : "None"},
  };
  json drives = json::array();
  for (const auto& d : c.drives) {
    json dj{{"drive_id", d.drive_id},
            {"path_on_host", d.path_on_host},
            {"is_root_device", d.is_root_device},
            {"is_read_only", d.is_read_only}};
    if (d.partuuid) dj["partuuid"] = *d.partuuid;
    drives.push_back(dj);
  }
  j["drives"] = drives;
  json nets = json::array();
  for (const auto& n : c.network_interfaces) {
    json nj{{"iface_id", n.iface_id}, {"host_dev_name", n.host_dev_name}};
    if (n.guest_mac) nj["guest_mac"] = config::format_mac(*n.guest_mac);
    nets.push_back(nj);
  }
  j["network-interfaces"] = nets;
  if (c.console) {
    const char* mode = c.console->mode == config::Console::Mode::kFile     ? "file"
                       : c.console->mode == config::Console::Mode::kSocket ? "socket"
                                                                           : "stdio";
    j["console"] = {{"mode", mode}, {"path", c.console->path}};
  }
  return j.dump(2);
}

}  // namespace hvz::api
