// hvzctl's subcommands: runtime entries on one side, hvz's API (through
// api::Client) on the other. What `run` configures is a config::VmConfig,
// sent as bodies from api's JSON mapping (the one hvz itself reads).
#include "api/hvzctl/commands.hpp"

#include <signal.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <thread>

#include "api/client.hpp"
#include "api/config_json.hpp"
#include "api/hvzctl/output.hpp"
#include "api/hvzctl/runtime.hpp"
#include "vmm/config/vm_config.hpp"

namespace hvz::hvzctl {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using api::Client;
using namespace std::chrono_literals;

constexpr auto kRequestTimeout = 30s;  // a hang guard: hvz answers in milliseconds
constexpr auto kProbeTimeout = 2s;     // ls and status probes
constexpr auto kStartingGrace = 60s;   // an entry without a pid this young is being created
constexpr auto kTermGrace = 5s;        // SIGTERM to SIGKILL

std::chrono::milliseconds seconds(double s) {
  if (!(s > 0)) return 0ms;
  if (s > 86400.0 * 365) s = 86400.0 * 365;
  return std::chrono::milliseconds(static_cast<std::int64_t>(s * 1000));
}

std::int64_t now_unix() {
  return static_cast<std::int64_t>(std::time(nullptr));
}

// Absolute: socket paths in meta.json and hvz's command line must not
// depend on the directory hvzctl ran in.
std::string runtime_dir(const GlobalOptions& g) {
  const std::string dir = g.runtime_dir.empty() ? default_runtime_dir() : g.runtime_dir;
  std::error_code ec;
  const auto abs = fs::absolute(dir, ec);
  std::string out = ec ? dir : abs.lexically_normal().string();
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

tl::unexpected<Error> fail(std::string message) {
  return make_error(Errc::kInvalidArgument, std::move(message));
}

// One API call: `what` prefixes errors ("cannot pause t1"). 2xx answers
// give their JSON body (null when empty or not JSON); others become an
// error with hvz's fault_message.
Expected<json> call(const Client& client, const std::string& what, std::string_view method,
                    std::string_view path, const std::string& body = {}) {
  auto resp = client.request(method, path, body);
  // Transport errors name the socket already ("cannot connect to …").
  if (!resp) return tl::unexpected(resp.error());
  json j = resp->body.empty() ? json() : json::parse(resp->body, nullptr, false);
  if (j.is_discarded()) j = json();
  if (resp->status >= 200 && resp->status < 300) return j;
  std::string fault;
  if (j.is_object() && j.contains("fault_message") && j["fault_message"].is_string()) {
    fault = j["fault_message"].get<std::string>();
  } else if (!resp->body.empty()) {
    fault = resp->body.substr(0, 200);
  } else {
    fault = "no reason given";
  }
  return fail(what + ": " + std::string(method) + " " + std::string(path) + ": " + fault +
              " (HTTP " + std::to_string(resp->status) + ")");
}

std::string json_string(const json& j, const char* key, const std::string& fallback = "-") {
  if (j.is_object() && j.contains(key) && j[key].is_string()) return j[key].get<std::string>();
  return fallback;
}

std::optional<std::int64_t> json_int(const json& j, const char* key) {
  if (j.is_object() && j.contains(key) && j[key].is_number_integer()) {
    return j[key].get<std::int64_t>();
  }
  return std::nullopt;
}

// ---- Runtime entries ------------------------------------------------------

enum class EntryState { kLive, kStarting, kExited, kInvalid };

struct Entry {
  std::string name;
  EntryPaths paths;
  std::optional<Meta> meta;
  EntryState state = EntryState::kInvalid;
};

bool dir_is_young(const std::string& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return false;
  return now_unix() - static_cast<std::int64_t>(st.st_mtime) <
         std::chrono::duration_cast<std::chrono::seconds>(kStartingGrace).count();
}

Entry load_entry(const std::string& rt, const std::string& name) {
  Entry e;
  e.name = name;
  e.paths = entry_paths(rt, name);
  if (auto m = read_meta(e.paths.meta)) e.meta = std::move(*m);
  if (e.meta && e.meta->pid > 0) {
    e.state = process_alive(e.meta->pid, e.meta->pid_start_ticks) ? EntryState::kLive
                                                                  : EntryState::kExited;
  } else {
    e.state = dir_is_young(e.paths.dir) ? EntryState::kStarting : EntryState::kInvalid;
  }
  return e;
}

// What a command acts on: a runtime entry, or a bare socket path.
struct Target {
  std::string label;  // the name, or the socket path
  std::string socket;
  std::optional<Entry> entry;
};

Expected<Target> resolve(const GlobalOptions& g, const std::string& vm) {
  const std::string rt = runtime_dir(g);
  std::string name = vm;
  if (vm.find('/') != std::string::npos) {
    // A socket path; one inside the runtime directory is that entry.
    const fs::path p(vm);
    std::error_code ec1, ec2;
    const auto entry_parent = fs::weakly_canonical(p.parent_path().parent_path(), ec1);
    const auto rt_canon = fs::weakly_canonical(rt, ec2);
    if (p.filename() != "api.sock" || ec1 || ec2 || entry_parent != rt_canon ||
        !valid_name(p.parent_path().filename().string()) ||
        !fs::exists(fs::path(rt) / p.parent_path().filename() / "meta.json")) {
      return Target{vm, vm, std::nullopt};
    }
    name = p.parent_path().filename().string();
  }
  if (!valid_name(name)) return fail("invalid VM name '" + one_line(name) + "': " + name_rules());
  Entry e = load_entry(rt, name);
  struct stat st {};
  if (::stat(e.paths.dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return fail("no VM named '" + name + "' in " + rt + " (see hvzctl ls)");
  }
  return Target{name, e.paths.socket, std::move(e)};
}

std::string exited_message(const Target& t) {
  return t.label + " has exited (pid " + std::to_string(t.entry->meta->pid) +
         "); its console output is in " + t.entry->paths.console_log +
         "; remove it with 'hvzctl rm " + t.label + "'";
}

// The target's hvz answers (or is at least not known to be gone).
Expected<void> require_live(const Target& t) {
  if (!t.entry) return {};
  switch (t.entry->state) {
    case EntryState::kLive:
      return {};
    case EntryState::kExited:
      return fail(exited_message(t));
    case EntryState::kStarting:
      return fail(t.label + " is being started; try again in a moment");
    case EntryState::kInvalid:
      return fail(t.label + ": broken runtime entry (no valid " + t.entry->paths.meta +
                  "); remove it with 'hvzctl rm " + t.label + "'");
  }
  return {};
}

Expected<std::string> vm_state(const Client& client, const std::string& what) {
  auto info = call(client, what, "GET", "/");
  if (!info) return tl::unexpected(info.error());
  return json_string(*info, "state", "unknown");
}

// ---- run ------------------------------------------------------------------

struct ApiCall {
  std::string method, path, body;
};

std::string absolute(const std::string& path) {
  std::error_code ec;
  const auto abs = fs::absolute(path, ec);
  return ec ? path : abs.lexically_normal().string();
}

// The API calls that configure `config`, each body from api::to_json (the
// mapping GET /vm/config and hvz --config-file use): logger and metrics
// first (as Firecracker configures them), then the machine and its devices.
// Drive and interface ids become part of a request path, so they are
// checked here (config::valid_id, hvz's rule).
Expected<std::vector<ApiCall>> calls_from_config(const config::VmConfig& config,
                                                 const std::string& where) {
  std::vector<ApiCall> calls;
  auto put = [&](std::string path, const json& body) {
    calls.push_back({"PUT", std::move(path), api::dump_json(body)});
  };
  if (config.logger) put("/logger", api::to_json(*config.logger));
  if (config.metrics) put("/metrics", api::to_json(*config.metrics));
  if (config.boot_source) put("/boot-source", api::to_json(*config.boot_source));
  put("/machine-config", api::to_json(config.machine_config));
  for (std::size_t i = 0; i < config.drives.size(); ++i) {
    const auto& d = config.drives[i];
    if (!config::valid_id(d.drive_id)) {
      return fail(where + "drives[" + std::to_string(i) + "]: drive_id '" + one_line(d.drive_id) +
                  "' must be 1-64 letters, digits or '_'");
    }
    put("/drives/" + d.drive_id, api::to_json(d));
  }
  for (std::size_t i = 0; i < config.network_interfaces.size(); ++i) {
    const auto& n = config.network_interfaces[i];
    if (!config::valid_id(n.iface_id)) {
      return fail(where + "network-interfaces[" + std::to_string(i) + "]: iface_id '" +
                  one_line(n.iface_id) + "' must be 1-64 letters, digits or '_'");
    }
    put("/network-interfaces/" + n.iface_id, api::to_json(n));
  }
  if (config.serial) put("/serial", api::to_json(*config.serial));
  if (config.entropy) put("/entropy", api::to_json(*config.entropy));
  if (config.console) {
    return fail(where + "console: hvz's API has no console endpoint (give the file to " +
                "hvz --config-file instead)");
  }
  return calls;
}

// A Firecracker config file (what `hvzctl config` prints, too), read with
// the mapping hvz --config-file uses, so that it is refused here, before an
// hvz is started, when hvz would refuse it. A null section or an empty list
// configures nothing.
Expected<std::vector<ApiCall>> calls_from_config_file(const std::string& file) {
  auto text = read_text_file(file, 4u << 20);
  if (!text) return fail("cannot read config file: " + text.error().message());
  auto config = api::parse_vm_config(*text);
  if (!config) return fail(file + ": " + one_line(config.error().message()));
  return calls_from_config(*config, file + ": ");
}

Expected<std::vector<ApiCall>> calls_from_flags(const RunOptions& o) {
  config::VmConfig config;
  config::BootSource& boot = config.boot_source.emplace();
  boot.kernel_image_path = absolute(o.kernel);
  if (!o.initrd.empty()) boot.initrd_path = absolute(o.initrd);
  if (o.has_cmdline) boot.boot_args = o.cmdline;
  config.machine_config.vcpu_count = o.vcpus;
  config.machine_config.mem_size_mib = o.memory_mib;
  for (std::size_t i = 0; i < o.drives.size(); ++i) {
    const std::string& spec = o.drives[i];
    const std::string usage = "--drive " + one_line(spec) + ": expected PATH[,ro][,root][,id=ID]";
    std::vector<std::string> parts;
    std::size_t start = 0;
    for (;;) {
      const auto comma = spec.find(',', start);
      parts.push_back(spec.substr(start, comma - start));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    if (parts[0].empty()) return fail(usage);
    config::Drive& drive = config.drives.emplace_back();
    drive.path_on_host = absolute(parts[0]);
    for (std::size_t k = 1; k < parts.size(); ++k) {
      if (parts[k] == "ro") {
        drive.is_read_only = true;
      } else if (parts[k] == "root") {
        drive.is_root_device = true;
      } else if (parts[k].rfind("id=", 0) == 0) {
        drive.drive_id = parts[k].substr(3);
        if (!config::valid_id(drive.drive_id)) {
          return fail(usage + " (ID: 1-64 letters, digits or '_')");
        }
      } else {
        return fail(usage + " (unknown option '" + one_line(parts[k]) + "')");
      }
    }
    if (drive.drive_id.empty()) {
      drive.drive_id = drive.is_root_device ? "rootfs" : "drive" + std::to_string(i);
    }
    for (std::size_t j = 0; j + 1 < config.drives.size(); ++j) {
      if (config.drives[j].drive_id == drive.drive_id) {
        return fail("--drive: two drives with the id '" + drive.drive_id + "'");
      }
    }
  }
  return calls_from_config(config, "");
}

Expected<std::string> find_hvz(const RunOptions& o) {
  std::string path = o.hvz;
  if (path.empty()) {
    auto dir = self_dir();
    if (!dir) return tl::unexpected(dir.error());
    path = *dir + "/hvz";
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return fail("hvz binary not found at " + path +
                (o.hvz.empty() ? " (give its path with --hvz)" : ""));
  }
  if (!S_ISREG(st.st_mode) || ::access(path.c_str(), X_OK) != 0) {
    return fail("hvz binary " + path + " is not an executable file");
  }
  return path;
}

std::string random_name() {
  std::random_device rd;
  char buf[16];
  std::snprintf(buf, sizeof(buf), "vm_%04x", static_cast<unsigned>(rd() & 0xffff));
  return buf;
}

// Creates the entry directory; an exited (stale) entry of the same name is
// replaced, a live one refused.
Expected<EntryPaths> create_entry(const std::string& rt, const std::string& name) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    const EntryPaths p = entry_paths(rt, name);
    if (::mkdir(p.dir.c_str(), 0700) == 0) return p;
    if (errno != EEXIST) return sys_error("cannot create " + p.dir);
    const Entry e = load_entry(rt, name);
    switch (e.state) {
      case EntryState::kLive:
        return fail("a VM named '" + name + "' already exists (pid " + std::to_string(e.meta->pid) +
                    "); stop it or choose another --name");
      case EntryState::kStarting:
        return fail("a VM named '" + name + "' is being started; choose another --name");
      case EntryState::kExited:
      case EntryState::kInvalid:
        if (auto ok = remove_entry(p.dir); !ok) return tl::unexpected(ok.error());
        break;
    }
  }
  return fail("cannot create the runtime entry for '" + name + "'");
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "was killed by signal " + std::to_string(WTERMSIG(status));
  return "stopped";
}

// Polls GET / until hvz answers; fails early when hvz exits.
Expected<void> wait_for_api(pid_t pid, const EntryPaths& p, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const Client probe(p.socket, 1s);
  for (;;) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      const std::string tail = tail_lines(p.console_log, 3);
      return fail("hvz " + describe_status(status) +
                  " before its API answered: " + (tail.empty() ? "(no output)" : tail));
    }
    if (auto resp = probe.request("GET", "/"); resp && resp->status == 200) return {};
    if (std::chrono::steady_clock::now() >= deadline) {
      const std::string tail = tail_lines(p.console_log, 3);
      return fail("hvz did not answer on " + p.socket + " within " +
                  std::to_string(timeout.count() / 1000) + " s" +
                  (tail.empty() ? "" : ": " + tail));
    }
    std::this_thread::sleep_for(20ms);
  }
}

// ---- status / ls helpers --------------------------------------------------

struct Probe {
  std::string state;  // "Running", …, "exited", "unresponsive"
  json info;          // GET /
  json machine;       // GET /machine-config
};

Probe probe(const std::string& socket) {
  Probe pr;
  const Client client(socket, kProbeTimeout);
  auto info = call(client, "probe", "GET", "/");
  if (!info) {
    pr.state = "unresponsive";
    return pr;
  }
  pr.info = *info;
  pr.state = json_string(pr.info, "state", "unknown");
  if (auto mc = call(client, "probe", "GET", "/machine-config")) pr.machine = *mc;
  return pr;
}

json int_or_null(std::optional<std::int64_t> v) {
  return v ? json(*v) : json();
}

std::string int_or_dash(std::optional<std::int64_t> v, const std::string& suffix = "") {
  return v ? std::to_string(*v) + suffix : "-";
}

const char* entry_state_name(EntryState s) {
  switch (s) {
    case EntryState::kLive:
      return "running";
    case EntryState::kStarting:
      return "starting";
    case EntryState::kExited:
      return "exited";
    case EntryState::kInvalid:
      return "invalid";
  }
  return "invalid";
}

}  // namespace

// ---- Commands -------------------------------------------------------------

Expected<void> cmd_run(const GlobalOptions& g, const RunOptions& o) {
  if (o.config_file.empty() && o.kernel.empty()) {
    return fail("run needs --config-file or --kernel (see hvzctl run --help)");
  }
  if (!o.name.empty() && !valid_name(o.name)) {
    return fail("invalid VM name '" + one_line(o.name) + "': " + name_rules());
  }
  auto calls = o.config_file.empty() ? calls_from_flags(o) : calls_from_config_file(o.config_file);
  if (!calls) return tl::unexpected(calls.error());
  auto hvz = find_hvz(o);
  if (!hvz) return tl::unexpected(hvz.error());

  const std::string rt = runtime_dir(g);
  if (auto ok = make_dirs(rt); !ok) return tl::unexpected(ok.error());
  const std::string socket_probe = entry_paths(rt, o.name.empty() ? "vm_0000" : o.name).socket;
  if (socket_probe.size() >= sizeof(sockaddr_un::sun_path)) {
    return fail("the API socket path " + socket_probe + " is too long for a Unix socket (" +
                std::to_string(socket_probe.size()) +
                " bytes); use a shorter runtime directory (HVZ_RUNTIME_DIR) or --name");
  }

  std::string name = o.name;
  Expected<EntryPaths> paths = fail("no free VM name");
  if (!name.empty()) {
    paths = create_entry(rt, name);
  } else {
    for (int i = 0; i < 64 && !paths; ++i) {
      name = random_name();
      const EntryPaths p = entry_paths(rt, name);
      if (::mkdir(p.dir.c_str(), 0700) == 0) {
        paths = p;
      } else if (errno != EEXIST) {
        return sys_error("cannot create " + p.dir);
      }
    }
  }
  if (!paths) return tl::unexpected(paths.error());
  const EntryPaths& p = *paths;

  Meta meta;
  meta.name = name;
  meta.socket = p.socket;
  meta.console_log = p.console_log;
  meta.start_time_unix = now_unix();
  meta.command = {*hvz, "--api-sock", p.socket, "--id", name};
  if (auto ok = write_meta(meta, p.meta); !ok) {
    (void)remove_entry(p.dir);
    return tl::unexpected(ok.error());
  }
  auto pid = spawn_detached(meta.command, p.console_log);
  if (!pid) {
    (void)remove_entry(p.dir);
    return tl::unexpected(pid.error());
  }
  meta.pid = *pid;
  meta.pid_start_ticks = process_start_ticks(*pid).value_or(0);
  auto abandon = [&](const Error& e) -> tl::unexpected<Error> {
    ::kill(*pid, SIGKILL);
    ::waitpid(*pid, nullptr, 0);
    (void)remove_entry(p.dir);
    return tl::unexpected(e);
  };
  if (auto ok = write_text_file(p.pid, std::to_string(*pid) + "\n"); !ok)
    return abandon(ok.error());
  if (auto ok = write_meta(meta, p.meta); !ok) return abandon(ok.error());

  if (auto ok = wait_for_api(*pid, p, seconds(o.timeout)); !ok) return abandon(ok.error());
  const Client client(p.socket, kRequestTimeout);
  const std::string what = "cannot configure " + name;
  for (const auto& c : *calls) {
    if (auto ok = call(client, what, c.method, c.path, c.body); !ok) return abandon(ok.error());
  }
  if (!o.no_start) {
    const json start = {{"action_type", "InstanceStart"}};
    if (auto ok = call(client, "cannot start " + name, "PUT", "/actions", start.dump()); !ok) {
      return abandon(ok.error());
    }
  }
  std::string state = "-";
  if (auto s = vm_state(client, name)) state = *s;

  if (o.json) {
    const json out = {{"name", name},
                      {"state", state},
                      {"pid", *pid},
                      {"socket", p.socket},
                      {"console_log", p.console_log}};
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    std::fputs(format_table({{"NAME", "STATE", "PID", "SOCKET"},
                             {name, one_line(state), std::to_string(*pid), p.socket}})
                   .c_str(),
               stdout);
  }
  return {};
}

Expected<void> cmd_start(const GlobalOptions& g, const std::string& vm) {
  auto t = resolve(g, vm);
  if (!t) return tl::unexpected(t.error());
  if (auto ok = require_live(*t); !ok) return ok;
  const Client client(t->socket, kRequestTimeout);
  const std::string what = "cannot start " + t->label;
  auto state = vm_state(client, what);
  if (!state) return tl::unexpected(state.error());
  if (*state != "Not started") return fail(what + ": it is already started (" + *state + ")");
  const json body = {{"action_type", "InstanceStart"}};
  if (auto ok = call(client, what, "PUT", "/actions", body.dump()); !ok) {
    return tl::unexpected(ok.error());
  }
  return {};
}

namespace {

Expected<void> patch_vm_state(const GlobalOptions& g, const std::string& vm, const char* verb,
                              const char* state_value) {
  auto t = resolve(g, vm);
  if (!t) return tl::unexpected(t.error());
  if (auto ok = require_live(*t); !ok) return ok;
  const Client client(t->socket, kRequestTimeout);
  const std::string what = std::string("cannot ") + verb + " " + t->label;
  auto state = vm_state(client, what);
  if (!state) return tl::unexpected(state.error());
  if (*state == "Not started") {
    return fail(what + ": it is not started (start it with 'hvzctl start " + t->label + "')");
  }
  const json body = {{"state", state_value}};
  if (auto ok = call(client, what, "PATCH", "/vm", body.dump()); !ok) {
    return tl::unexpected(ok.error());
  }
  return {};
}

}  // namespace

Expected<void> cmd_pause(const GlobalOptions& g, const std::string& vm) {
  return patch_vm_state(g, vm, "pause", "Paused");
}

Expected<void> cmd_resume(const GlobalOptions& g, const std::string& vm) {
  return patch_vm_state(g, vm, "resume", "Resumed");
}

Expected<void> cmd_stop(const GlobalOptions& g, const std::string& vm, const StopOptions& o) {
  auto t = resolve(g, vm);
  if (!t) return tl::unexpected(t.error());
  const std::string what = "cannot stop " + t->label;
  pid_t pid = 0;
  std::uint64_t ticks = 0;
  if (t->entry) {
    switch (t->entry->state) {
      case EntryState::kLive:
        pid = t->entry->meta->pid;
        ticks = t->entry->meta->pid_start_ticks;
        break;
      case EntryState::kStarting:
        return fail(what + ": it is being started; try again in a moment");
      case EntryState::kExited:
      case EntryState::kInvalid:
        // Nothing runs: only the entry is left to remove.
        return remove_entry(t->entry->paths.dir);
    }
  } else {
    auto peer = Client(t->socket, kProbeTimeout).peer_pid();
    if (!peer) return tl::unexpected(peer.error());
    pid = *peer;
    ticks = process_start_ticks(pid).value_or(0);
  }

  const Client client(t->socket, kProbeTimeout);
  std::string state;
  if (auto s = vm_state(client, what)) state = *s;
  bool gone = false;
  if (state == "Running" || state == "Paused") {
    if (state == "Paused") {
      (void)call(client, what, "PATCH", "/vm", json{{"state", "Resumed"}}.dump());
    }
    const json body = {{"action_type", "SendCtrlAltDel"}};
    if (call(client, what, "PUT", "/actions", body.dump())) {
      gone = wait_process_gone(pid, ticks, seconds(o.timeout));
    }
  }
  if (!gone && !terminate_process(pid, ticks, kTermGrace)) {
    return fail(what + ": hvz (pid " + std::to_string(pid) + ") did not exit after SIGKILL");
  }
  if (t->entry) return remove_entry(t->entry->paths.dir);
  // A bare socket left behind by a killed hvz would block the next start.
  struct stat st {};
  if (::lstat(t->socket.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(t->socket.c_str());
  return {};
}

Expected<void> cmd_status(const GlobalOptions& g, const std::string& vm, bool as_json) {
  auto t = resolve(g, vm);
  if (!t) return tl::unexpected(t.error());
  std::optional<Meta> meta = t->entry ? t->entry->meta : std::nullopt;
  Probe pr;
  std::optional<std::int64_t> pid;
  if (t->entry && t->entry->state != EntryState::kLive) {
    pr.state = entry_state_name(t->entry->state);
    if (meta && meta->pid > 0) pid = meta->pid;
  } else {
    const Client client(t->socket, kRequestTimeout);
    auto info = call(client, "cannot get the status of " + t->label, "GET", "/");
    if (!info) return tl::unexpected(info.error());
    pr.info = *info;
    pr.state = json_string(pr.info, "state", "unknown");
    if (auto mc = call(client, "machine-config", "GET", "/machine-config")) pr.machine = *mc;
    if (meta && meta->pid > 0) {
      pid = meta->pid;
    } else if (auto peer = client.peer_pid()) {
      pid = *peer;
    }
  }
  std::optional<std::int64_t> started, uptime;
  if (meta && meta->start_time_unix > 0) {
    started = meta->start_time_unix;
    if (pr.state != "exited") uptime = now_unix() - meta->start_time_unix;
  }
  const auto vcpus = json_int(pr.machine, "vcpu_count");
  const auto memory = json_int(pr.machine, "mem_size_mib");
  const std::string name = t->entry ? t->entry->name : "";
  if (as_json) {
    json out = {
        {"name", name.empty() ? json() : json(name)},
        {"id", pr.info.is_object() && pr.info.contains("id") ? pr.info["id"] : json()},
        {"state", pr.state},
        {"vmm_version", json_string(pr.info, "vmm_version", "")},
        {"app_name", json_string(pr.info, "app_name", "")},
        {"pid", int_or_null(pid)},
        {"socket", t->socket},
        {"console_log", meta ? json(meta->console_log) : json()},
        {"start_time_unix", int_or_null(started)},
        {"uptime_seconds", int_or_null(uptime)},
        {"machine_config", pr.machine},
    };
    std::printf("%s\n", out.dump(2).c_str());
    return {};
  }
  std::vector<std::vector<std::string>> rows = {
      {"NAME", name.empty() ? "-" : name},
      {"ID", one_line(json_string(pr.info, "id"))},
      {"STATE", one_line(pr.state)},
      {"VCPUS", int_or_dash(vcpus)},
      {"MEMORY", int_or_dash(memory, " MiB")},
      {"UPTIME", uptime ? format_duration(*uptime) : "-"},
      {"PID", int_or_dash(pid)},
      {"SOCKET", t->socket},
      {"CONSOLE", meta ? meta->console_log : "-"},
      {"VMM", one_line(json_string(pr.info, "app_name", "") + " " +
                       json_string(pr.info, "vmm_version", ""))},
  };
  std::fputs(format_table(rows).c_str(), stdout);
  return {};
}

Expected<void> cmd_config(const GlobalOptions& g, const std::string& vm) {
  auto t = resolve(g, vm);
  if (!t) return tl::unexpected(t.error());
  if (auto ok = require_live(*t); !ok) return ok;
  const Client client(t->socket, kRequestTimeout);
  auto config = call(client, "cannot get the configuration of " + t->label, "GET", "/vm/config");
  if (!config) return tl::unexpected(config.error());
  std::printf("%s\n", config->dump(2).c_str());
  return {};
}

Expected<void> cmd_ls(const GlobalOptions& g, bool as_json, bool prune) {
  const std::string rt = runtime_dir(g);
  std::vector<std::string> names;
  std::error_code ec;
  if (fs::is_directory(rt, ec)) {
    for (const auto& d : fs::directory_iterator(rt, ec)) {
      std::error_code ec2;
      const std::string n = d.path().filename().string();
      if (d.is_directory(ec2) && valid_name(n)) names.push_back(n);
    }
    if (ec) return fail("cannot list " + rt + ": " + ec.message());
  }
  std::sort(names.begin(), names.end());

  json list = json::array();
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "STATE", "VCPUS", "MEMORY", "UPTIME", "PID", "SOCKET"}};
  std::vector<std::string> stale;
  for (const auto& n : names) {
    const Entry e = load_entry(rt, n);
    if (e.state == EntryState::kExited || e.state == EntryState::kInvalid) {
      if (prune) {
        if (auto ok = remove_entry(e.paths.dir); !ok) return ok;
        std::fprintf(stderr, "hvzctl: removed %s (%s)\n", n.c_str(), entry_state_name(e.state));
        continue;
      }
      stale.push_back(n);
    }
    Probe pr;
    pr.state = entry_state_name(e.state);
    if (e.state == EntryState::kLive) pr = probe(e.paths.socket);
    const auto vcpus = json_int(pr.machine, "vcpu_count");
    const auto memory = json_int(pr.machine, "mem_size_mib");
    std::optional<std::int64_t> pid, uptime;
    if (e.meta && e.meta->pid > 0) pid = e.meta->pid;
    if (e.state == EntryState::kLive && e.meta && e.meta->start_time_unix > 0) {
      uptime = now_unix() - e.meta->start_time_unix;
    }
    list.push_back({{"name", n},
                    {"state", pr.state},
                    {"vcpus", int_or_null(vcpus)},
                    {"memory_mib", int_or_null(memory)},
                    {"uptime_seconds", int_or_null(uptime)},
                    {"pid", int_or_null(pid)},
                    {"socket", e.paths.socket},
                    {"console_log", e.paths.console_log}});
    rows.push_back({n, one_line(pr.state), int_or_dash(vcpus), int_or_dash(memory, " MiB"),
                    uptime ? format_duration(*uptime) : "-", int_or_dash(pid), e.paths.socket});
  }
  if (as_json) {
    std::printf("%s\n", list.dump(2).c_str());
  } else {
    std::fputs(format_table(rows).c_str(), stdout);
  }
  if (!stale.empty()) {
    std::fprintf(stderr,
                 "hvzctl: %zu VM%s no longer running; remove with 'hvzctl rm %s' or "
                 "'hvzctl ls --prune'\n",
                 stale.size(), stale.size() == 1 ? " is" : "s are",
                 stale.size() == 1 ? stale[0].c_str() : "NAME...");
  }
  return {};
}

Expected<void> cmd_rm(const GlobalOptions& g, const std::vector<std::string>& names, bool force) {
  const std::string rt = runtime_dir(g);
  for (const auto& n : names) {
    if (!valid_name(n)) return fail("invalid VM name '" + one_line(n) + "': " + name_rules());
    const Entry e = load_entry(rt, n);
    struct stat st {};
    if (::stat(e.paths.dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return fail("no VM named '" + n + "' in " + rt + " (see hvzctl ls)");
    }
    if (e.state == EntryState::kLive || e.state == EntryState::kStarting) {
      if (!force) {
        return fail(n + " is still " + entry_state_name(e.state) + "; stop it with 'hvzctl stop " +
                    n + "' (or rm --force to kill it)");
      }
      if (e.meta && e.meta->pid > 0 &&
          !terminate_process(e.meta->pid, e.meta->pid_start_ticks, kTermGrace)) {
        return fail("cannot remove " + n + ": hvz (pid " + std::to_string(e.meta->pid) +
                    ") did not exit after SIGKILL");
      }
    }
    if (auto ok = remove_entry(e.paths.dir); !ok) return ok;
  }
  return {};
}

}  // namespace hvz::hvzctl
