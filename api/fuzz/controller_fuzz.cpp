// Fuzz harness for the API Controller (api/controller.hpp): a sequence of
// (method, path, body) requests decoded from the input, handled one after
// another against a fake Backend whose calls succeed or fail as the input
// says, so the pre- and post-boot rules, PATCH merges and the instance
// state machine all run. Besides crashes it checks what every answer must
// be: 200 with a JSON body, 204 without one, or 400 with a JSON
// {"fault_message": string} — never an "internal error" (the controller
// catches exceptions, but none is meant to happen) — and that GET
// /vm/config and GET /machine-config read back exactly the configuration
// the controller holds.
//
// Input: u8 backend failure mask, u8 options (bit 0 check paths), then
// requests: u8 method (kMethods, the last: a u16-sized method string), u8
// path (kPaths, followed by a u16-sized suffix when bit 7 is set; 0x7f: a
// whole u16-sized path), u16-sized body.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>

#include "api/config_json.hpp"
#include "api/controller.hpp"
#include "vmm/core/fuzz/fuzz_input.hpp"

namespace {

using namespace hvz;
using namespace hvz::api;
using hvz::fuzz::FuzzInput;
using nlohmann::json;

constexpr unsigned kMaxRequests = 32;
constexpr std::size_t kMaxBody = 51200;  // the server's default limit

constexpr const char* kMethods[] = {"GET", "PUT", "PATCH", "DELETE", "POST", "HEAD", "get"};
constexpr std::size_t kMethodCount = std::size(kMethods) + 1;  // + a raw string

// The routes, some of their neighbours, and paths Firecracker knows but
// hvz does not support.
constexpr const char* kPaths[] = {
    "/",
    "/version",
    "/machine-config",
    "/vm/config",
    "/actions",
    "/boot-source",
    "/drives/rootfs",
    "/drives/data_1",
    "/network-interfaces/eth0",
    "/network-interfaces/eth1",
    "/vm",
    "/logger",
    "/metrics",
    "/serial",
    "/entropy",
    "/balloon",
    "/vsock",
    "/mmds",
    "/snapshot/create",
    "/snapshot/load",
    "/cpu-config",
    "/drives/",
    "/drives",
    "/network-interfaces/",
    "//drives//rootfs",
    "/drives/rootfs/extra",
    "/machine-config?x=1",
    "/vm/config/",
    "",
};
constexpr std::size_t kPathCount = std::size(kPaths);

void fail(const char* what, const HttpRequest& req, const HttpResponse& res) {
  std::fprintf(stderr, "hvz fuzz: invariant broken: %s\n  request: %s %s\n  body: %s\n  -> %d %s\n",
               what, req.method.c_str(), req.target.c_str(), req.body.c_str(), res.status,
               res.body.c_str());
  std::abort();
}

class FakeBackend : public Backend {
 public:
  explicit FakeBackend(std::uint8_t failures) : failures_(failures) {}
  Expected<void> start(const config::VmConfig&) override { return result(0); }
  Expected<void> pause() override { return result(1); }
  Expected<void> resume() override { return result(2); }
  Expected<void> send_ctrl_alt_del() override { return result(3); }
  Expected<void> update_drive(const std::string&, const std::optional<std::string>&,
                              const std::optional<config::RateLimiterConfig>&) override {
    return result(4);
  }
  Expected<void> update_network_interface(
      const std::string&, const std::optional<config::RateLimiterConfig>&,
      const std::optional<config::RateLimiterConfig>&) override {
    return result(5);
  }
  Expected<void> configure_logger(const config::LoggerConfig&) override { return result(6); }
  Expected<void> configure_metrics(const config::MetricsConfig&) override { return result(7); }
  Expected<void> flush_metrics() override { return result(7); }
  Expected<void> create_snapshot(const config::SnapshotCreate&) override { return result(1); }
  // A small restored VM (the failure bit of start()).
  Expected<config::VmConfig> load_snapshot(const config::SnapshotLoad&) override {
    if (auto ok = result(0); !ok) return tl::unexpected(ok.error());
    config::VmConfig restored;
    restored.boot_source = config::BootSource{"vmlinux", {}, {}};
    restored.machine_config.vcpu_count = 2;
    config::Drive root;
    root.drive_id = "rootfs";
    root.path_on_host = "rootfs.ext4";
    root.is_root_device = true;
    restored.drives.push_back(root);
    config::NetworkInterface eth0;
    eth0.iface_id = "eth0";
    eth0.host_dev_name = "tap0";
    restored.network_interfaces.push_back(eth0);
    return restored;
  }

 private:
  Expected<void> result(int bit) {
    if (failures_ & (1u << bit)) return make_error(Errc::kInvalidArgument, "fake backend failure");
    return {};
  }
  std::uint8_t failures_;
};

HttpRequest decode(FuzzInput& in) {
  HttpRequest req;
  const std::uint8_t m = in.u8() % kMethodCount;
  req.method = m < std::size(kMethods) ? kMethods[m] : in.sized_string(16);
  const std::uint8_t p = in.u8();
  if ((p & 0x7f) == 0x7f) {
    req.target = in.sized_string(256);
  } else {
    req.target = kPaths[(p & 0x7f) % kPathCount];
    if (p & 0x80) req.target += in.sized_string(64);
  }
  req.body = in.sized_string(kMaxBody);
  return req;
}

void check_response(const Controller& c, const HttpRequest& req, const HttpResponse& res) {
  if (res.status == 204) {
    if (!res.body.empty()) fail("204 with a body", req, res);
    return;
  }
  if (res.status != 200 && res.status != 400) fail("status other than 200, 204, 400", req, res);
  const json j = json::parse(res.body, nullptr, false);
  if (j.is_discarded()) fail("body is not JSON", req, res);
  if (res.status == 400) {
    if (!j.is_object() || !j.contains("fault_message") || !j["fault_message"].is_string()) {
      fail("400 without a fault_message", req, res);
    }
    if (j["fault_message"].get<std::string>().rfind("internal error", 0) == 0) {
      fail("the controller caught an exception", req, res);
    }
    return;
  }
  // What GET /vm/config answers is a config file (--config-file takes it
  // and boots the same VM): it parses, and parsing and writing it again
  // gives the same text. GET /machine-config reads back what is held.
  const std::string path = req.target.substr(0, req.target.find_first_of("?#"));
  if (path == "/vm/config") {
    auto back = parse_vm_config(res.body);
    if (!back) fail("GET /vm/config does not parse as a config file", req, res);
    if (dump_json(vm_config_to_json_value(*back)) != res.body) {
      fail("GET /vm/config reads back as a different configuration", req, res);
    }
  }
  if (path == "/machine-config") {
    auto back = parse_machine_config(j, "");
    if (!back || !(*back == c.config().machine_config)) {
      fail("GET /machine-config differs from the configuration", req, res);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  hvz::fuzz::quiet_logs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzInput in(data, size);
  FakeBackend backend(in.u8());
  ControllerOptions options;
  // Path checks only stat() and access() what the body names.
  options.check_paths = (in.u8() & 1) != 0;
  Controller controller(backend, options);
  for (unsigned i = 0; i < kMaxRequests && !in.empty(); ++i) {
    const HttpRequest req = decode(in);
    const HttpResponse res = controller.handle(req);
    check_response(controller, req, res);
  }
  return 0;
}
