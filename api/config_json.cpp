// The config-file JSON mapping (see config_json.hpp). Field names, which
// fields are required, which take null (Firecracker's Option fields) and
// defaults follow Firecracker's vmm_config (boot_source.rs,
// machine_config.rs, drive.rs, net.rs, mod.rs, logger, metrics.rs,
// serial.rs, entropy.rs, resources.rs); messages follow serde's wording.
#include "api/config_json.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <map>
#include <unordered_map>
#include <utility>
#include <vector>

#include "vmm/core/log.hpp"

namespace hvz::api {

using nlohmann::json;

// --- Reading Firecracker's structs ------------------------------------------

namespace {

struct ParseError {
  Errc code;
  std::string message;
};

// serde's description of an unexpected value: "string \"x\"", "integer `5`".
std::string unexpected(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return std::string("boolean `") + (v.get<bool>() ? "true" : "false") + "`";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      return "integer `" + v.dump() + "`";
    case json::value_t::number_float:
      return "floating point `" + v.dump() + "`";
    case json::value_t::string:
      return "string " + dump_json(v);
    case json::value_t::array:
      return "sequence";
    case json::value_t::object:
      return "map";
    default:
      return "value";
  }
}

// serde's list of names: "`a`", "`a` or `b`", "one of `a`, `b`, `c`".
std::string one_of(const std::vector<const char*>& names) {
  if (names.empty()) return "nothing";
  if (names.size() == 1) return std::string("`") + names[0] + "`";
  if (names.size() == 2) return std::string("`") + names[0] + "` or `" + names[1] + "`";
  std::string out = "one of ";
  for (std::size_t i = 0; i < names.size(); ++i) {
    out += std::string(i ? ", " : "") + "`" + names[i] + "`";
  }
  return out;
}

// A value being read: the JSON, its path for messages ("" at the top) and
// where it ends in the text, if known. A message about it is serde's, word
// for word (Firecracker's clients match on them), followed by the path in
// parentheses when there is one: "invalid type: null, expected a boolean at
// line 1 column 50 (smt)".
struct Value {
  const json& j;
  std::string path;
  const JsonDocument* doc;
  std::optional<TextPosition> end;

  std::string child_path(const std::string& name) const {
    return path.empty() ? name : path + "." + name;
  }
  std::string prefix() const { return path.empty() ? "" : path + ": "; }
  std::string suffix() const { return path.empty() ? "" : " (" + path + ")"; }
  [[noreturn]] void fail(const std::string& message) const {
    throw ParseError{Errc::kInvalidArgument, message + position_suffix(end) + suffix()};
  }
  [[noreturn]] void invalid_type(const std::string& expected) const {
    fail("invalid type: " + unexpected(j) + ", expected " + expected);
  }
  // hvz lacks what Firecracker would do with this value.
  [[noreturn]] void unsupported(const std::string& what) const {
    throw ParseError{Errc::kUnsupported, prefix() + what + " not supported yet"};
  }
  Value element(std::size_t i) const {
    return {j[i], path + "[" + std::to_string(i) + "]", doc,
            doc ? doc->element_end(j, i) : std::nullopt};
  }
};

Value top(const json& j, const std::string& where, const JsonDocument* doc) {
  return {j, where, doc, doc ? doc->end_of(j) : std::nullopt};
}

std::string as_string(const Value& v, const char* expected = "a string") {
  if (!v.j.is_string()) v.invalid_type(expected);
  return v.j.get<std::string>();
}

bool as_bool(const Value& v) {
  if (!v.j.is_boolean()) v.invalid_type("a boolean");
  return v.j.get<bool>();
}

// An integer of Rust type `type` (u8, u32, u64) whose largest value is `max`.
std::uint64_t as_unsigned(const Value& v, const char* type, std::uint64_t max) {
  if (v.j.is_number_unsigned()) {
    const auto n = v.j.get<std::uint64_t>();
    if (n > max) v.fail("invalid value: " + unexpected(v.j) + ", expected " + type);
    return n;
  }
  if (v.j.is_number_integer()) {
    if (v.j.get<std::int64_t>() >= 0) {
      const auto n = static_cast<std::uint64_t>(v.j.get<std::int64_t>());
      if (n > max) v.fail("invalid value: " + unexpected(v.j) + ", expected " + type);
      return n;
    }
    v.fail("invalid value: " + unexpected(v.j) + ", expected " + type);
  }
  v.invalid_type(type);
}

// One of an enum's variants (by name); returns its index.
std::size_t as_variant(const Value& v, const std::vector<const char*>& variants) {
  if (!v.j.is_string()) v.invalid_type(one_of(variants));
  const auto text = v.j.get<std::string>();
  for (std::size_t i = 0; i < variants.size(); ++i) {
    if (text == variants[i]) return i;
  }
  v.fail("unknown variant `" + text + "`, expected " + one_of(variants));
}

// A JSON object read as Firecracker struct `type` (with deny_unknown_fields)
// whose fields are `fields`. Fields are taken as Firecracker declares them:
// required() (neither absent nor null), defaulted() (#[serde(default)]:
// may be absent, not null) or optional() (an Option: absent or null is
// none). A missing required field is reported by finish(), after the
// fields present were read, as serde does.
class Object {
 public:
  Object(const Value& v, const char* type, std::vector<const char*> fields)
      : v_(v), fields_(std::move(fields)) {
    if (!v.j.is_object()) v.invalid_type(std::string("struct ") + type);
    // The first unknown field in the text (in key order without positions).
    const json* first = nullptr;
    std::string first_key;
    std::optional<TextPosition> first_pos;
    for (auto it = v.j.begin(); it != v.j.end(); ++it) {
      if (std::find_if(fields_.begin(), fields_.end(),
                       [&](const char* f) { return it.key() == f; }) != fields_.end()) {
        continue;
      }
      const auto pos = v.doc ? v.doc->key_end(*it) : std::nullopt;
      if (!first || (pos && first_pos &&
                     (pos->line < first_pos->line ||
                      (pos->line == first_pos->line && pos->column < first_pos->column)))) {
        first = &*it;
        first_key = it.key();
        first_pos = pos;
      }
    }
    if (first) {
      throw ParseError{Errc::kInvalidArgument, "unknown field `" + first_key + "`, expected " +
                                                   one_of(fields_) + position_suffix(first_pos) +
                                                   v.suffix()};
    }
  }

  std::optional<Value> required(const char* key) {
    if (!v_.j.contains(key)) {
      if (!missing_) missing_ = key;
      return std::nullopt;
    }
    return field(key);
  }
  std::optional<Value> defaulted(const char* key) const {
    if (!v_.j.contains(key)) return std::nullopt;
    return field(key);
  }
  std::optional<Value> optional(const char* key) const {
    const auto it = v_.j.find(key);
    if (it == v_.j.end() || it->is_null()) return std::nullopt;
    return field(key);
  }
  // An Option field hvz needs: absent or null is reported as missing.
  std::optional<Value> needed(const char* key) {
    auto f = optional(key);
    if (!f && !missing_) missing_ = key;
    return f;
  }
  void finish() const {
    if (missing_) {
      throw ParseError{Errc::kInvalidArgument,
                       "missing field `" + *missing_ + "`" + position_suffix(v_.end) + v_.suffix()};
    }
  }

 private:
  Value field(const char* key) const {
    const json& member = v_.j.at(key);
    return {member, v_.child_path(key), v_.doc, v_.doc ? v_.doc->end_of(member) : std::nullopt};
  }

  const Value& v_;
  std::vector<const char*> fields_;
  std::optional<std::string> missing_;
};

// Firecracker's static CPU templates (x86_64); hvz has none but "None".
const std::vector<const char*> kCpuTemplates = {"C3", "T2", "T2S", "None", "T2CL", "T2A"};

config::BootSource boot_source_from(const Value& v) {
  Object o(v, "BootSourceConfig", {"kernel_image_path", "initrd_path", "boot_args"});
  config::BootSource b;
  if (auto f = o.required("kernel_image_path")) b.kernel_image_path = as_string(*f);
  if (auto f = o.optional("initrd_path")) b.initrd_path = as_string(*f);
  if (auto f = o.optional("boot_args")) b.boot_args = as_string(*f);
  o.finish();
  return b;
}

config::MachineConfig machine_config_from(const Value& v, const config::MachineConfig* base) {
  Object o(v, base ? "MachineConfigUpdate" : "MachineConfig",
           {"vcpu_count", "mem_size_mib", "smt", "cpu_template", "track_dirty_pages", "huge_pages",
            "virtio_mmio_cmdline"});
  config::MachineConfig m = base ? *base : config::MachineConfig{};
  // PUT: the sizes are required and the rest defaulted; PATCH: all Options.
  auto sized = [&](const char* key) { return base ? o.optional(key) : o.required(key); };
  auto flag = [&](const char* key) { return base ? o.optional(key) : o.defaulted(key); };
  if (auto f = sized("vcpu_count"))
    m.vcpu_count = static_cast<std::uint32_t>(as_unsigned(*f, "u8", 0xff));
  if (auto f = sized("mem_size_mib")) {
    m.mem_size_mib = static_cast<std::uint32_t>(as_unsigned(*f, "u32", 0xffffffffu));
  }
  if (auto f = flag("smt")) m.smt = as_bool(*f);
  if (auto f = o.optional("cpu_template")) {
    if (kCpuTemplates[as_variant(*f, kCpuTemplates)] != std::string("None")) {
      f->unsupported("CPU templates are");
    }
  }
  if (auto f = flag("track_dirty_pages")) m.track_dirty_pages = as_bool(*f);
  if (auto f = flag("huge_pages")) {
    const auto h = as_variant(*f, {"None", "Transparent", "2M"});
    if (h == 1) f->unsupported("transparent huge pages are");
    m.huge_pages = h == 2 ? config::HugePages::k2M : config::HugePages::kNone;
  }
  if (auto f = o.optional("virtio_mmio_cmdline")) m.virtio_mmio_cmdline = as_bool(*f);
  o.finish();
  return m;
}

config::TokenBucketConfig token_bucket_from(const Value& v) {
  // Firecracker's TokenBucketConfig takes unknown fields; hvz is strict.
  Object o(v, "TokenBucketConfig", {"size", "one_time_burst", "refill_time"});
  config::TokenBucketConfig b;
  constexpr std::uint64_t kU64 = ~std::uint64_t{0};
  if (auto f = o.required("size")) b.size = as_unsigned(*f, "u64", kU64);
  if (auto f = o.optional("one_time_burst")) b.one_time_burst = as_unsigned(*f, "u64", kU64);
  if (auto f = o.required("refill_time")) b.refill_time_ms = as_unsigned(*f, "u64", kU64);
  o.finish();
  return b;
}

config::RateLimiterConfig rate_limiter_from(const Value& v) {
  Object o(v, "RateLimiterConfig", {"bandwidth", "ops"});
  config::RateLimiterConfig r;
  if (auto f = o.optional("bandwidth")) r.bandwidth = token_bucket_from(*f);
  if (auto f = o.optional("ops")) r.ops = token_bucket_from(*f);
  o.finish();
  return r;
}

std::optional<config::RateLimiterConfig> limiter(const Object& o, const char* key) {
  if (auto f = o.optional(key)) return rate_limiter_from(*f);
  return std::nullopt;
}

config::Drive drive_from(const Value& v) {
  Object o(v, "BlockDeviceConfig",
           {"drive_id", "partuuid", "is_root_device", "cache_type", "is_read_only", "path_on_host",
            "rate_limiter", "io_engine", "socket"});
  config::Drive d;
  if (auto f = o.required("drive_id")) d.drive_id = as_string(*f);
  if (auto f = o.optional("partuuid")) d.partuuid = as_string(*f);
  if (auto f = o.required("is_root_device")) d.is_root_device = as_bool(*f);
  if (auto f = o.defaulted("cache_type")) {
    d.cache_type = as_variant(*f, {"Unsafe", "Writeback"}) == 1 ? config::CacheType::kWriteback
                                                                : config::CacheType::kUnsafe;
  }
  if (auto f = o.optional("is_read_only")) d.is_read_only = as_bool(*f);
  // An Option in Firecracker, where vhost-user drives have none.
  if (auto f = o.needed("path_on_host")) d.path_on_host = as_string(*f);
  d.rate_limiter = effective_limiter(limiter(o, "rate_limiter"));
  if (auto f = o.optional("io_engine")) {
    d.io_engine =
        as_variant(*f, {"Sync", "Async"}) == 1 ? config::IoEngine::kAsync : config::IoEngine::kSync;
  }
  if (auto f = o.optional("socket")) f->unsupported("vhost-user drives are");
  o.finish();
  return d;
}

config::NetworkInterface interface_from(const Value& v) {
  Object o(v, "NetworkInterfaceConfig",
           {"iface_id", "host_dev_name", "guest_mac", "mtu", "rx_rate_limiter", "tx_rate_limiter"});
  config::NetworkInterface n;
  if (auto f = o.required("iface_id")) n.iface_id = as_string(*f);
  if (auto f = o.required("host_dev_name")) n.host_dev_name = as_string(*f);
  if (auto f = o.optional("guest_mac")) {
    n.guest_mac = config::parse_mac(as_string(*f));
    if (!n.guest_mac) f->fail("The provided MAC address is invalid.");
  }
  if (auto f = o.optional("mtu")) f->unsupported("an MTU is");
  n.rx_rate_limiter = effective_limiter(limiter(o, "rx_rate_limiter"));
  n.tx_rate_limiter = effective_limiter(limiter(o, "tx_rate_limiter"));
  o.finish();
  return n;
}

config::LoggerConfig logger_from(const Value& v, const config::LoggerConfig& base) {
  Object o(v, "LoggerConfig", {"log_path", "level", "show_level", "show_log_origin", "module"});
  config::LoggerConfig l = base;
  if (auto f = o.optional("log_path")) l.log_path = as_string(*f, "path string");
  if (auto f = o.optional("level")) {
    // Case-insensitive, as in Firecracker, which also takes "Warn".
    if (auto level = log::parse_level(as_string(*f))) {
      l.level = *level;
    } else {
      f->fail("Invalid LevelFilter: expected Error, Warning, Info, Debug, Trace or Off, not " +
              dump_json(f->j));
    }
  }
  if (auto f = o.optional("show_level")) l.show_level = as_bool(*f);
  if (auto f = o.optional("show_log_origin")) l.show_log_origin = as_bool(*f);
  if (auto f = o.optional("module")) f->unsupported("filtering by module is");
  o.finish();
  return l;
}

config::MetricsConfig metrics_from(const Value& v) {
  Object o(v, "MetricsConfig", {"metrics_path"});
  config::MetricsConfig m;
  if (auto f = o.required("metrics_path")) {
    m.metrics_path = as_string(*f, "path string");
    if (m.metrics_path.empty()) f->fail("invalid value: string \"\", expected a file path");
  }
  o.finish();
  return m;
}

config::SerialConfig serial_from(const Value& v) {
  Object o(v, "SerialConfig", {"serial_out_path", "rate_limiter"});
  config::SerialConfig s;
  if (auto f = o.optional("serial_out_path")) s.serial_out_path = as_string(*f, "path string");
  if (auto f = o.optional("rate_limiter")) f->unsupported("rate limiting the serial console is");
  o.finish();
  return s;
}

config::EntropyConfig entropy_from(const Value& v) {
  Object o(v, "EntropyDeviceConfig", {"rate_limiter"});
  config::EntropyConfig e;
  e.rate_limiter = effective_limiter(limiter(o, "rate_limiter"));
  o.finish();
  return e;
}

config::Console console_from(const Value& v) {
  Object o(v, "Console", {"mode", "path"});
  config::Console c;
  if (auto f = o.optional("mode")) {
    static constexpr config::Console::Mode kModes[] = {config::Console::Mode::kStdio,
                                                       config::Console::Mode::kFile,
                                                       config::Console::Mode::kSocket};
    c.mode = kModes[as_variant(*f, {"stdio", "file", "socket"})];
  }
  if (auto f = o.optional("path")) c.path = as_string(*f);
  o.finish();
  return c;
}

DriveUpdate drive_update_from(const Value& v) {
  Object o(v, "BlockDeviceUpdateConfig", {"drive_id", "path_on_host", "rate_limiter"});
  DriveUpdate u;
  if (auto f = o.required("drive_id")) u.drive_id = as_string(*f);
  if (auto f = o.optional("path_on_host")) u.path_on_host = as_string(*f);
  u.rate_limiter = limiter(o, "rate_limiter");
  o.finish();
  return u;
}

NetworkInterfaceUpdate interface_update_from(const Value& v) {
  Object o(v, "NetworkInterfaceUpdateConfig", {"iface_id", "rx_rate_limiter", "tx_rate_limiter"});
  NetworkInterfaceUpdate u;
  if (auto f = o.required("iface_id")) u.iface_id = as_string(*f);
  u.rx_rate_limiter = limiter(o, "rx_rate_limiter");
  u.tx_rate_limiter = limiter(o, "tx_rate_limiter");
  o.finish();
  return u;
}

template <typename F>
void for_each_element(const Value& list, F&& each) {
  if (!list.j.is_array()) list.invalid_type("a sequence");
  for (std::size_t i = 0; i < list.j.size(); ++i) each(list.element(i));
}

config::SnapshotCreate snapshot_create_from(const Value& v) {
  Object o(v, "CreateSnapshotParams", {"snapshot_type", "snapshot_path", "mem_file_path"});
  config::SnapshotCreate c;
  if (auto f = o.defaulted("snapshot_type")) {
    c.type = as_variant(*f, {"Diff", "Full"}) == 0 ? config::SnapshotType::kDiff
                                                   : config::SnapshotType::kFull;
  }
  if (auto f = o.required("snapshot_path")) c.snapshot_path = as_string(*f, "path string");
  if (auto f = o.required("mem_file_path")) c.mem_file_path = as_string(*f, "path string");
  o.finish();
  return c;
}

config::NetworkOverride network_override_from(const Value& v) {
  // Firecracker's NetworkOverride takes unknown fields; hvz is strict.
  Object o(v, "NetworkOverride", {"iface_id", "host_dev_name"});
  config::NetworkOverride n;
  if (auto f = o.required("iface_id")) n.iface_id = as_string(*f);
  if (auto f = o.required("host_dev_name")) n.host_dev_name = as_string(*f);
  o.finish();
  return n;
}

SnapshotLoadBody snapshot_load_from(const Value& v) {
  Object o(v, "LoadSnapshotConfig",
           {"snapshot_path", "mem_file_path", "mem_backend", "enable_diff_snapshots",
            "track_dirty_pages", "resume_vm", "network_overrides", "vsock_override",
            "clock_realtime", "huge_pages"});
  SnapshotLoadBody body;
  config::SnapshotLoad& l = body.load;
  if (auto f = o.required("snapshot_path")) l.snapshot_path = as_string(*f, "path string");
  std::optional<std::string> mem_file_path;
  if (auto f = o.optional("mem_file_path")) mem_file_path = as_string(*f, "path string");
  bool mem_backend = false;
  if (auto f = o.optional("mem_backend")) {
    Object b(*f, "MemBackendConfig", {"backend_path", "backend_type"});
    if (auto p = b.required("backend_path")) l.mem_backend_path = as_string(*p, "path string");
    if (auto t = b.required("backend_type")) {
      l.mem_backend_type = as_variant(*t, {"File", "Uffd"}) == 1 ? config::MemBackendType::kUffd
                                                                 : config::MemBackendType::kFile;
    }
    b.finish();
    mem_backend = true;
  }
  bool enable_diff_snapshots = false;
  if (auto f = o.defaulted("enable_diff_snapshots")) enable_diff_snapshots = as_bool(*f);
  if (auto f = o.defaulted("track_dirty_pages")) l.track_dirty_pages = as_bool(*f);
  if (auto f = o.defaulted("resume_vm")) l.resume_vm = as_bool(*f);
  if (auto f = o.defaulted("network_overrides")) {
    for_each_element(
        *f, [&](const Value& e) { l.network_overrides.push_back(network_override_from(e)); });
  }
  if (auto f = o.optional("vsock_override")) f->unsupported("vsock is");
  if (auto f = o.defaulted("clock_realtime"); f && as_bool(*f)) {
    f->unsupported("advancing the guest clock by the time since the snapshot is");
  }
  if (auto f = o.defaulted("huge_pages")) {
    if (as_variant(*f, {"Snapshot", "None", "Transparent", "2M"}) != 0) {
      f->unsupported("huge pages other than the snapshot's are");
    }
  }
  o.finish();
  // Firecracker's own checks after serde's (request/snapshot.rs), without
  // a position.
  if (mem_backend && mem_file_path) {
    throw ParseError{Errc::kInvalidArgument,
                     "too many fields: either `mem_backend` or `mem_file_path` exclusively is "
                     "required" +
                         v.suffix()};
  }
  if (!mem_backend && !mem_file_path) {
    throw ParseError{
        Errc::kInvalidArgument,
        "missing field: either `mem_backend` or `mem_file_path` is required" + v.suffix()};
  }
  if (mem_file_path) {
    l.mem_backend_type = config::MemBackendType::kFile;
    l.mem_backend_path = *mem_file_path;
  }
  // The deprecated switch and its new name both turn tracking on.
  l.track_dirty_pages = l.track_dirty_pages || enable_diff_snapshots;
  body.deprecated = mem_file_path.has_value() || enable_diff_snapshots;
  return body;
}

config::VmConfig vm_config_from(const Value& v) {
  Object o(v, "VmmConfig",
           {"balloon", "drives", "boot-source", "cpu-config", "logger", "machine-config", "metrics",
            "mmds-config", "network-interfaces", "vsock", "entropy", "pmem", "memory-hotplug",
            "console", "serial"});
  config::VmConfig c;
  if (auto f = o.optional("balloon")) f->unsupported("the balloon device is");
  // Firecracker requires "drives"; hvz takes a file without.
  if (auto f = o.defaulted("drives")) {
    for_each_element(*f, [&](const Value& e) { c.drives.push_back(drive_from(e)); });
  }
  if (auto f = o.required("boot-source")) {
    c.boot_source = boot_source_from(*f);
    if (*c.boot_source == config::BootSource{}) c.boot_source.reset();
  }
  if (auto f = o.optional("cpu-config")) f->unsupported("custom CPU templates are");
  if (auto f = o.optional("logger")) c.logger = logger_from(*f, {});
  if (auto f = o.optional("machine-config")) c.machine_config = machine_config_from(*f, nullptr);
  if (auto f = o.optional("metrics")) c.metrics = metrics_from(*f);
  if (auto f = o.optional("mmds-config")) f->unsupported("MMDS is");
  if (auto f = o.defaulted("network-interfaces")) {
    for_each_element(*f,
                     [&](const Value& e) { c.network_interfaces.push_back(interface_from(e)); });
  }
  if (auto f = o.optional("vsock")) f->unsupported("vsock is");
  if (auto f = o.optional("entropy")) c.entropy = entropy_from(*f);
  if (auto f = o.defaulted("pmem")) {
    for_each_element(*f, [&](const Value& e) { e.unsupported("pmem devices are"); });
  }
  if (auto f = o.optional("memory-hotplug")) f->unsupported("memory hotplug is");
  if (auto f = o.optional("console")) c.console = console_from(*f);
  if (auto f = o.optional("serial")) c.serial = serial_from(*f);
  o.finish();
  return c;
}

// Runs a throwing reader and turns its failure into an Error.
template <typename F>
auto guarded(F&& read) -> Expected<decltype(read())> {
  try {
    return read();
  } catch (const ParseError& e) {
    return make_error(e.code, e.message);
  } catch (const json::exception& e) {
    return make_error(Errc::kInvalidArgument, std::string("malformed JSON: ") + e.what());
  }
}

json token_bucket_json(const config::TokenBucketConfig& b) {
  return {{"size", b.size},
          {"one_time_burst", b.one_time_burst ? json(b.one_time_burst) : json(nullptr)},
          {"refill_time", b.refill_time_ms}};
}

json or_null(const std::optional<std::string>& s) {
  return s ? json(*s) : json(nullptr);
}

}  // namespace

Expected<config::VmConfig> parse_vm_config(std::string_view text) {
  auto doc = JsonDocument::parse(text);
  if (!doc) return make_error(Errc::kInvalidArgument, "malformed JSON: " + doc.error().message());
  return guarded([&] { return vm_config_from(top(doc->root(), "", &*doc)); });
}

Expected<config::BootSource> parse_boot_source(const json& j, const std::string& where,
                                               const JsonDocument* doc) {
  return guarded([&] { return boot_source_from(top(j, where, doc)); });
}

Expected<config::MachineConfig> parse_machine_config(const json& j, const std::string& where,
                                                     const config::MachineConfig* base,
                                                     const JsonDocument* doc) {
  return guarded([&] { return machine_config_from(top(j, where, doc), base); });
}

Expected<config::Drive> parse_drive(const json& j, const std::string& where,
                                    const JsonDocument* doc) {
  return guarded([&] { return drive_from(top(j, where, doc)); });
}

Expected<config::NetworkInterface> parse_network_interface(const json& j, const std::string& where,
                                                           const JsonDocument* doc) {
  return guarded([&] { return interface_from(top(j, where, doc)); });
}

Expected<config::RateLimiterConfig> parse_rate_limiter(const json& j, const std::string& where,
                                                       const JsonDocument* doc) {
  return guarded([&] { return rate_limiter_from(top(j, where, doc)); });
}

Expected<config::LoggerConfig> parse_logger(const json& j, const std::string& where,
                                            const config::LoggerConfig& base,
                                            const JsonDocument* doc) {
  return guarded([&] { return logger_from(top(j, where, doc), base); });
}

Expected<config::MetricsConfig> parse_metrics(const json& j, const std::string& where,
                                              const JsonDocument* doc) {
  return guarded([&] { return metrics_from(top(j, where, doc)); });
}

Expected<config::SerialConfig> parse_serial(const json& j, const std::string& where,
                                            const JsonDocument* doc) {
  return guarded([&] { return serial_from(top(j, where, doc)); });
}

Expected<config::EntropyConfig> parse_entropy(const json& j, const std::string& where,
                                              const JsonDocument* doc) {
  return guarded([&] { return entropy_from(top(j, where, doc)); });
}

Expected<config::Console> parse_console(const json& j, const std::string& where,
                                        const JsonDocument* doc) {
  return guarded([&] { return console_from(top(j, where, doc)); });
}

Expected<DriveUpdate> parse_drive_update(const json& j, const std::string& where,
                                         const JsonDocument* doc) {
  return guarded([&] { return drive_update_from(top(j, where, doc)); });
}

Expected<NetworkInterfaceUpdate> parse_network_interface_update(const json& j,
                                                                const std::string& where,
                                                                const JsonDocument* doc) {
  return guarded([&] { return interface_update_from(top(j, where, doc)); });
}

Expected<config::SnapshotCreate> parse_snapshot_create(const json& j, const std::string& where,
                                                       const JsonDocument* doc) {
  return guarded([&] { return snapshot_create_from(top(j, where, doc)); });
}

Expected<SnapshotLoadBody> parse_snapshot_load(const json& j, const std::string& where,
                                               const JsonDocument* doc) {
  return guarded([&] { return snapshot_load_from(top(j, where, doc)); });
}

Expected<std::string> parse_variant_body(const json& j, const char* type_name, const char* key,
                                         std::initializer_list<const char*> variants,
                                         const JsonDocument* doc) {
  return guarded([&] {
    const Value v = top(j, "", doc);
    Object o(v, type_name, {key});
    std::string chosen;
    if (auto f = o.required(key)) {
      const std::vector<const char*> names(variants);
      chosen = names[as_variant(*f, names)];
    }
    o.finish();
    return chosen;
  });
}

std::optional<config::RateLimiterConfig> effective_limiter(
    const std::optional<config::RateLimiterConfig>& limiter) {
  if (!limiter) return std::nullopt;
  auto effective = [](const std::optional<config::TokenBucketConfig>& b) {
    return b && b->size != 0 && b->refill_time_ms != 0 ? b : std::nullopt;
  };
  config::RateLimiterConfig r{effective(limiter->bandwidth), effective(limiter->ops)};
  if (!r.bandwidth && !r.ops) return std::nullopt;
  return r;
}

json to_json(const config::BootSource& b) {
  return {{"kernel_image_path", b.kernel_image_path},
          {"initrd_path", or_null(b.initrd_path)},
          {"boot_args", or_null(b.boot_args)}};
}

json to_json(const config::MachineConfig& m) {
  // cpu_template is left out as Firecracker does without a static template.
  json j{
      {"vcpu_count", m.vcpu_count},
      {"mem_size_mib", m.mem_size_mib},
      {"smt", m.smt},
      {"track_dirty_pages", m.track_dirty_pages},
      {"huge_pages", m.huge_pages == config::HugePages::k2M ? "2M" : "None"},
  };
  // hvz's own switch: shown only when on, so Firecracker clients see
  // Firecracker's fields.
  if (m.virtio_mmio_cmdline) j["virtio_mmio_cmdline"] = true;
  return j;
}

json to_json(const std::optional<config::RateLimiterConfig>& limiter) {
  const auto r = effective_limiter(limiter);
  if (!r) return nullptr;
  return {{"bandwidth", r->bandwidth ? token_bucket_json(*r->bandwidth) : json(nullptr)},
          {"ops", r->ops ? token_bucket_json(*r->ops) : json(nullptr)}};
}

json to_json(const config::Drive& d) {
  return {{"drive_id", d.drive_id},
          {"partuuid", or_null(d.partuuid)},
          {"is_root_device", d.is_root_device},
          {"cache_type", d.cache_type == config::CacheType::kWriteback ? "Writeback" : "Unsafe"},
          {"is_read_only", d.is_read_only},
          {"path_on_host", d.path_on_host},
          {"rate_limiter", to_json(d.rate_limiter)},
          {"io_engine", d.io_engine == config::IoEngine::kAsync ? "Async" : "Sync"},
          {"socket", nullptr}};
}

json to_json(const config::NetworkInterface& n) {
  return {{"iface_id", n.iface_id},
          {"host_dev_name", n.host_dev_name},
          {"guest_mac", n.guest_mac ? json(config::format_mac(*n.guest_mac)) : json(nullptr)},
          {"mtu", nullptr},
          {"rx_rate_limiter", to_json(n.rx_rate_limiter)},
          {"tx_rate_limiter", to_json(n.tx_rate_limiter)}};
}

json to_json(const config::LoggerConfig& l) {
  return {{"log_path", l.log_path.empty() ? json(nullptr) : json(l.log_path)},
          {"level", log::level_name(l.level)},
          {"show_level", l.show_level},
          {"show_log_origin", l.show_log_origin},
          {"module", nullptr}};
}

json to_json(const config::MetricsConfig& m) {
  return {{"metrics_path", m.metrics_path}};
}

json to_json(const config::SerialConfig& s) {
  return {{"serial_out_path", s.serial_out_path.empty() ? json(nullptr) : json(s.serial_out_path)},
          {"rate_limiter", nullptr}};
}

json to_json(const config::EntropyConfig& e) {
  return {{"rate_limiter", to_json(e.rate_limiter)}};
}

json to_json(const config::Console& c) {
  const char* mode = c.mode == config::Console::Mode::kFile     ? "file"
                     : c.mode == config::Console::Mode::kSocket ? "socket"
                                                                : "stdio";
  return {{"mode", mode}, {"path", c.path}};
}

json vm_config_to_json_value(const config::VmConfig& c) {
  // Firecracker's full configuration (resources.rs VmmConfig): every
  // section, null when unset; boot-source is always an object.
  json j = json::object();
  j["balloon"] = nullptr;
  json drives = json::array();
  for (const auto& d : c.drives) drives.push_back(to_json(d));
  j["drives"] = std::move(drives);
  j["boot-source"] = to_json(c.boot_source.value_or(config::BootSource{}));
  j["cpu-config"] = nullptr;
  // Firecracker always shows null here; hvz shows what was configured, so
  // that the answer given to --config-file sets them up again.
  j["logger"] = c.logger ? to_json(*c.logger) : json(nullptr);
  j["machine-config"] = to_json(c.machine_config);
  j["metrics"] = c.metrics ? to_json(*c.metrics) : json(nullptr);
  j["mmds-config"] = nullptr;
  json nets = json::array();
  for (const auto& n : c.network_interfaces) nets.push_back(to_json(n));
  j["network-interfaces"] = std::move(nets);
  j["vsock"] = nullptr;
  j["entropy"] = c.entropy ? to_json(*c.entropy) : json(nullptr);
  j["pmem"] = json::array();
  j["memory-hotplug"] = nullptr;
  // hvz's own sections, only when set.
  if (c.console) j["console"] = to_json(*c.console);
  if (c.serial) j["serial"] = to_json(*c.serial);
  return j;
}

std::string vm_config_to_json(const config::VmConfig& c) {
  return dump_json(vm_config_to_json_value(c), 2);
}

std::string dump_json(const json& j, int indent) {
  return j.dump(indent, ' ', false, json::error_handler_t::replace);
}

}  // namespace hvz::api
