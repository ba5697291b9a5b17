// Controller: Firecracker's API semantics without sockets, on a recording
// Backend whose calls can be made to fail.
#include "api/controller.hpp"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "api/config_json.hpp"
#include "api/vm_backend.hpp"
#include "virtio/net/tap.hpp"
#include "vmm/core/metrics.hpp"

namespace hvz::api {
namespace {

using nlohmann::json;

class RecordingBackend : public Backend {
 public:
  // Every call is recorded by name; a call named in `errors` fails with
  // that message.
  std::vector<std::string> calls;
  std::map<std::string, std::string> errors;
  std::optional<config::VmConfig> started_with;
  std::string drive_id;
  std::optional<std::string> drive_path;
  std::optional<config::RateLimiterConfig> drive_limiter;
  std::string iface_id;
  std::optional<config::RateLimiterConfig> rx, tx;
  std::optional<config::LoggerConfig> logger;
  std::optional<config::MetricsConfig> metrics;
  // open_tap(): the names asked for; a name in tap_errno fails as Tap::open
  // fails with that errno at TUNSETIFF.
  std::vector<std::string> taps;
  std::map<std::string, int> tap_errno;
  // The snapshot calls' parameters; load_snapshot() returns `restored`.
  std::optional<config::SnapshotCreate> created;
  std::optional<config::SnapshotLoad> loaded;
  config::VmConfig restored;

  Expected<void> start(const config::VmConfig& config) override {
    started_with = config;
    return result("start");
  }
  Expected<void> pause() override { return result("pause"); }
  Expected<void> resume() override { return result("resume"); }
  Expected<void> send_ctrl_alt_del() override { return result("send_ctrl_alt_del"); }
  Expected<void> update_drive(const std::string& id, const std::optional<std::string>& path,
                              const std::optional<config::RateLimiterConfig>& limiter) override {
    drive_id = id;
    drive_path = path;
    drive_limiter = limiter;
    return result("update_drive");
  }
  Expected<void> update_network_interface(
      const std::string& id, const std::optional<config::RateLimiterConfig>& rx_limiter,
      const std::optional<config::RateLimiterConfig>& tx_limiter) override {
    iface_id = id;
    rx = rx_limiter;
    tx = tx_limiter;
    return result("update_network_interface");
  }
  Expected<void> configure_logger(const config::LoggerConfig& l) override {
    logger = l;
    return result("configure_logger");
  }
  Expected<void> configure_metrics(const config::MetricsConfig& m) override {
    metrics = m;
    return result("configure_metrics");
  }
  Expected<void> flush_metrics() override { return result("flush_metrics"); }
  Expected<void> create_snapshot(const config::SnapshotCreate& create) override {
    created = create;
    return result("create_snapshot");
  }
  Expected<config::VmConfig> load_snapshot(const config::SnapshotLoad& load) override {
    loaded = load;
    if (auto ok = result("load_snapshot"); !ok) return tl::unexpected(ok.error());
    return restored;
  }
  Expected<void> open_tap(const std::string& name) override {
    taps.push_back(name);
    const auto it = tap_errno.find(name);
    if (it == tap_errno.end()) return {};
    const Error e(Errc::kSystem, "tap: TUNSETIFF " + name, it->second);
    return make_error(e.code(), tap_error_message(e, name));
  }

 private:
  Expected<void> result(const std::string& name) {
    calls.push_back(name);
    const auto it = errors.find(name);
    if (it != errors.end()) return make_error(Errc::kInvalidArgument, it->second);
    return {};
  }
};

class ControllerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "hvz-controller-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    kernel_ = make_file("vmlinux");
    initrd_ = make_file("initrd.img");
    rootfs_ = make_file("rootfs.ext4");
    data_ = make_file("data.img");
    controller_ = std::make_unique<Controller>(backend_, ControllerOptions{"test-vm", true});
  }
  void TearDown() override {
    for (const auto& f : files_) ::unlink(f.c_str());
    ::rmdir(dir_.c_str());
  }

  std::string make_file(const std::string& name) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << "x";
    files_.push_back(path);
    return path;
  }

  HttpResponse call(const std::string& method, const std::string& target,
                    const std::string& body = "") {
    return controller_->handle(HttpRequest{method, target, body});
  }
  // A 204 with an empty body, or a test failure showing the fault.
  void ok(const std::string& method, const std::string& target, const json& body) {
    const auto r = call(method, target, body.dump());
    EXPECT_EQ(r.status, 204) << method << " " << target << " " << body.dump() << ": " << r.body;
    EXPECT_EQ(r.body, "");
  }
  // A 400 whose body is exactly {"fault_message": "..."} containing `fragment`.
  static void expect_fault(const HttpResponse& r, const std::string& fragment) {
    EXPECT_EQ(r.status, 400) << r.body;
    json j;
    ASSERT_NO_THROW(j = json::parse(r.body)) << r.body;
    ASSERT_TRUE(j.is_object()) << r.body;
    ASSERT_EQ(j.size(), 1u) << r.body;
    ASSERT_TRUE(j.contains("fault_message") && j["fault_message"].is_string()) << r.body;
    EXPECT_NE(j["fault_message"].get<std::string>().find(fragment), std::string::npos)
        << j["fault_message"] << " lacks: " << fragment;
  }
  void fails(const std::string& method, const std::string& target, const std::string& body,
             const std::string& fragment) {
    SCOPED_TRACE(method + " " + target + " " + body);
    expect_fault(call(method, target, body), fragment);
  }

  json get(const std::string& target) {
    const auto r = call("GET", target);
    EXPECT_EQ(r.status, 200) << target << ": " << r.body;
    return json::parse(r.body);
  }

  std::string state() { return get("/")["state"].get<std::string>(); }

  json root_drive() const {
    return {{"drive_id", "rootfs"},
            {"path_on_host", rootfs_},
            {"is_root_device", true},
            {"is_read_only", false}};
  }
  // Firecracker's getting-started configuration, then InstanceStart.
  void configure_minimal() {
    ok("PUT", "/boot-source",
       {{"kernel_image_path", kernel_}, {"boot_args", "console=ttyS0 reboot=k panic=1 pci=off"}});
    ok("PUT", "/drives/rootfs", root_drive());
  }
  void boot() {
    configure_minimal();
    ok("PUT", "/actions", {{"action_type", "InstanceStart"}});
    ASSERT_EQ(controller_->state(), VmState::kRunning);
  }

  RecordingBackend backend_;
  std::unique_ptr<Controller> controller_;
  std::string dir_, kernel_, initrd_, rootfs_, data_;
  std::vector<std::string> files_;
};

constexpr const char* kPostBoot = "not supported after starting the microVM";
constexpr const char* kPreBoot = "not supported before starting the microVM";

TEST_F(ControllerTest, GetRootDescribesTheInstance) {
  const auto j = get("/");
  EXPECT_EQ(j["id"], "test-vm");
  EXPECT_EQ(j["state"], "Not started");
  EXPECT_EQ(j["vmm_version"], hvz_version());
  EXPECT_EQ(j["app_name"], "hvz");
  EXPECT_EQ(j.size(), 4u);
}

TEST_F(ControllerTest, GetVersion) {
  const auto j = get("/version");
  EXPECT_EQ(j["firecracker_version"], "1.7.0");
  EXPECT_EQ(j["hvz_version"], hvz_version());
  // Meson passes the project version; the fallback means it did not.
  EXPECT_STRNE(hvz_version(), "0.0.0");
  EXPECT_STRNE(hvz_version(), "");
}

TEST_F(ControllerTest, FirecrackerGettingStartedSequence) {
  ok("PUT", "/logger",
     {{"log_path", dir_ + "/fc.log"},
      {"level", "Debug"},
      {"show_level", true},
      {"show_log_origin", true}});
  ok("PUT", "/boot-source",
     {{"kernel_image_path", kernel_}, {"boot_args", "console=ttyS0 reboot=k panic=1 pci=off"}});
  ok("PUT", "/drives/rootfs", root_drive());
  ok("PUT", "/machine-config", {{"vcpu_count", 2}, {"mem_size_mib", 1024}});
  ok("PUT", "/network-interfaces/net1",
     {{"iface_id", "net1"}, {"guest_mac", "06:00:AC:10:00:02"}, {"host_dev_name", "tap0"}});
  EXPECT_EQ(state(), "Not started");
  ok("PUT", "/actions", {{"action_type", "InstanceStart"}});
  EXPECT_EQ(state(), "Running");
  EXPECT_EQ(backend_.calls, (std::vector<std::string>{"configure_logger", "start"}));
  ASSERT_TRUE(backend_.started_with);
  const auto& c = *backend_.started_with;
  EXPECT_EQ(c.boot_source->kernel_image_path, kernel_);
  EXPECT_EQ(c.machine_config.vcpu_count, 2u);
  EXPECT_EQ(c.machine_config.mem_size_mib, 1024u);
  ASSERT_EQ(c.drives.size(), 1u);
  EXPECT_TRUE(c.drives[0].is_root_device);
  ASSERT_EQ(c.network_interfaces.size(), 1u);
  EXPECT_EQ(config::format_mac(*c.network_interfaces[0].guest_mac), "06:00:ac:10:00:02");
  ASSERT_TRUE(c.logger);
  EXPECT_EQ(c.logger->level, config::LoggerConfig::Level::kDebug);
  EXPECT_EQ(controller_->config(), c);
  ok("PUT", "/actions", {{"action_type", "SendCtrlAltDel"}});
  EXPECT_EQ(backend_.calls.back(), "send_ctrl_alt_del");
}

TEST_F(ControllerTest, BootSourceAndMachineConfig) {
  ok("PUT", "/boot-source", {{"kernel_image_path", kernel_}, {"initrd_path", initrd_}});
  EXPECT_EQ(controller_->config().boot_source->initrd_path, initrd_);
  EXPECT_FALSE(controller_->config().boot_source->boot_args);
  // Defaults before any PUT (Firecracker: 1 vCPU, 128 MiB).
  auto m = get("/machine-config");
  EXPECT_EQ(m["vcpu_count"], 1);
  EXPECT_EQ(m["mem_size_mib"], 128);
  EXPECT_EQ(m["smt"], false);
  EXPECT_EQ(m["huge_pages"], "None");

  ok("PUT", "/machine-config", {{"vcpu_count", 4}, {"mem_size_mib", 512}, {"huge_pages", "2M"}});
  ok("PATCH", "/machine-config", {{"vcpu_count", 2}});
  m = get("/machine-config");
  EXPECT_EQ(m["vcpu_count"], 2);
  EXPECT_EQ(m["mem_size_mib"], 512);
  EXPECT_EQ(m["huge_pages"], "2M");
  // PUT resets what it does not name.
  ok("PUT", "/machine-config", {{"vcpu_count", 3}, {"mem_size_mib", 256}});
  EXPECT_EQ(get("/machine-config")["huge_pages"], "None");

  // Firecracker's checks happen at PUT/PATCH time and leave the config as
  // it was (MachineConfig::update).
  constexpr const char* kVcpus =
      "Machine config error: The number of vCPUs must be greater than 0, less than 32 and must "
      "be 1 or an even number if SMT is enabled.";
  constexpr const char* kMemory =
      "Machine config error: The memory size (MiB) is either 0, or not a multiple of the "
      "configured page size.";
  fails("PUT", "/machine-config", R"({"vcpu_count": 0, "mem_size_mib": 256})", kVcpus);
  fails("PATCH", "/machine-config", R"({"vcpu_count": 33})", kVcpus);
  fails("PATCH", "/machine-config", R"({"vcpu_count": 256})",
        "invalid value: integer `256`, expected u8");
  fails("PATCH", "/machine-config", R"({"mem_size_mib": 0})", kMemory);
  fails("PATCH", "/machine-config", R"({"huge_pages": "2M", "mem_size_mib": 255})", kMemory);
  fails("PATCH", "/machine-config", R"({"smt": true})",
        "Enabling simultaneous multithreading is not supported by hvz");
  fails("PATCH", "/machine-config", "{}", "Empty PATCH request.");
  fails("PATCH", "/machine-config", R"({"vcpu_count": null})", "Empty PATCH request.");
  // serde's words and position (Firecracker's test_api_machine_config).
  fails("PUT", "/machine-config", R"({"vcpu_count": 2})",
        "An error occurred when deserializing the json body of a request: missing field "
        "`mem_size_mib` at line 1 column 17.");
  fails("PUT", "/machine-config", R"({"mem_size_mib": 128})",
        "missing field `vcpu_count` at line 1 column 21.");
  EXPECT_EQ(controller_->config().machine_config.vcpu_count, 3u);
  EXPECT_EQ(controller_->config().machine_config.mem_size_mib, 256u);
}

TEST_F(ControllerTest, MemorySizesAreCheckedAtInstanceStartAsInFirecracker) {
  configure_minimal();
  // Firecracker refuses only 0 and sizes its pages do not divide at PATCH;
  // whether the host can give the memory shows at InstanceStart.
  ok("PATCH", "/machine-config", {{"mem_size_mib", 1}});
  ok("PATCH", "/machine-config", {{"mem_size_mib", 4294967295u}});
  EXPECT_EQ(get("/machine-config")["mem_size_mib"], 4294967295u);
  fails("PATCH", "/machine-config", R"({"mem_size_mib": 4294967296})",
        "invalid value: integer `4294967296`, expected u32");
  fails("PATCH", "/machine-config", R"({"mem_size_mib": 18446744073709551616})",
        "error occurred when deserializing the json body of a request: invalid type: floating "
        "point");
  fails("PUT", "/actions", R"({"action_type": "InstanceStart"})",
        "mem_size_mib must be between 16 and 1048576, not 4294967295");
  ok("PATCH", "/machine-config", {{"mem_size_mib", 8}});
  fails("PUT", "/actions", R"({"action_type": "InstanceStart"})",
        "mem_size_mib must be between 16 and 1048576, not 8");
  EXPECT_TRUE(backend_.calls.empty());
  ok("PATCH", "/machine-config", {{"mem_size_mib", 128}});
  ok("PUT", "/actions", {{"action_type", "InstanceStart"}});
}

TEST_F(ControllerTest, CpuTemplateIsDeprecatedWithAHeader) {
  auto r = call("PUT", "/machine-config",
                R"({"vcpu_count": 2, "mem_size_mib": 256, "cpu_template": "None"})");
  EXPECT_EQ(r.status, 204) << r.body;
  ASSERT_EQ(r.headers.size(), 1u);
  EXPECT_EQ(r.headers[0].first, "Deprecation");
  EXPECT_EQ(r.headers[0].second, "true");
  r = call("PATCH", "/machine-config", R"({"cpu_template": "None"})");
  EXPECT_EQ(r.status, 204) << r.body;
  ASSERT_EQ(r.headers.size(), 1u);
  EXPECT_EQ(r.headers[0].first, "Deprecation");
  // Firecracker flags the request even when it fails after parsing.
  r = call("PUT", "/machine-config",
           R"({"vcpu_count": 0, "mem_size_mib": 256, "cpu_template": "None"})");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.headers.size(), 1u);
  // Not without the field, nor with null (an absent Option).
  r = call("PUT", "/machine-config", R"({"vcpu_count": 2, "mem_size_mib": 256})");
  EXPECT_TRUE(r.headers.empty());
  r = call("PATCH", "/machine-config", R"({"vcpu_count": 1, "cpu_template": null})");
  EXPECT_EQ(r.status, 204) << r.body;
  EXPECT_TRUE(r.headers.empty());
  // Other templates: Firecracker's names are recognised but hvz has none.
  fails("PUT", "/machine-config", R"({"vcpu_count": 2, "mem_size_mib": 256, "cpu_template": "T2"})",
        "cpu_template: CPU templates are not supported yet");
  fails("PUT", "/machine-config",
        R"({"vcpu_count": 2, "mem_size_mib": 256, "cpu_template": "random_string"})",
        "unknown variant `random_string`, expected one of `C3`, `T2`, `T2S`, `None`, `T2CL`, "
        "`T2A`");
}

TEST_F(ControllerTest, PutMachineConfigKeepsVirtioMmioCmdline) {
  config::VmConfig initial;
  initial.machine_config.virtio_mmio_cmdline = true;
  Controller c(backend_, ControllerOptions{}, initial);
  auto r = c.handle({"PUT", "/machine-config", R"({"vcpu_count": 2, "mem_size_mib": 256})"});
  ASSERT_EQ(r.status, 204) << r.body;
  EXPECT_TRUE(c.config().machine_config.virtio_mmio_cmdline);
  r = c.handle({"GET", "/machine-config", ""});
  EXPECT_EQ(json::parse(r.body)["virtio_mmio_cmdline"], true);
}

TEST_F(ControllerTest, DrivesAndRootDeviceRules) {
  ok("PUT", "/drives/data",
     {{"drive_id", "data"},
      {"path_on_host", data_},
      {"is_root_device", false},
      {"is_read_only", true},
      {"io_engine", "Async"},
      {"rate_limiter", {{"ops", {{"size", 100}, {"refill_time", 1000}}}}}});
  ok("PUT", "/drives/rootfs", root_drive());
  auto drives = controller_->config().drives;
  ASSERT_EQ(drives.size(), 2u);
  EXPECT_EQ(drives[0].drive_id, "rootfs");  // the root drive goes first
  EXPECT_EQ(drives[1].io_engine, config::IoEngine::kAsync);
  ASSERT_TRUE(drives[1].rate_limiter && drives[1].rate_limiter->ops);
  EXPECT_EQ(drives[1].rate_limiter->ops->refill_time_ms, 1000u);

  // A second root drive is refused; replacing the root drive is not.
  auto second_root = root_drive();
  second_root["drive_id"] = "other";
  fails("PUT", "/drives/other", second_root.dump(), "A root block device already exists");
  auto again = root_drive();
  again["is_read_only"] = true;
  ok("PUT", "/drives/rootfs", again);
  EXPECT_TRUE(controller_->config().drives[0].is_read_only);
  // Replacing a drive with the same id keeps one entry.
  auto data2 = json{{"drive_id", "data"}, {"path_on_host", rootfs_}, {"is_root_device", false}};
  ok("PUT", "/drives/data", data2);
  drives = controller_->config().drives;
  ASSERT_EQ(drives.size(), 2u);
  EXPECT_EQ(drives[1].path_on_host, rootfs_);
  EXPECT_FALSE(drives[1].rate_limiter);
  // Making "data" the root when "rootfs" is no longer root moves it to the front.
  again["is_root_device"] = false;
  ok("PUT", "/drives/rootfs", again);
  data2["is_root_device"] = true;
  ok("PUT", "/drives/data", data2);
  EXPECT_EQ(controller_->config().drives[0].drive_id, "data");

  // At most 16 drives.
  for (int i = 2; i < 16; ++i) {
    const std::string id = "d" + std::to_string(i);
    ok("PUT", "/drives/" + id,
       {{"drive_id", id}, {"path_on_host", data_}, {"is_root_device", false}});
  }
  fails("PUT", "/drives/d16",
        json{{"drive_id", "d16"}, {"path_on_host", data_}, {"is_root_device", false}}.dump(),
        "at most 16 drives");
  EXPECT_EQ(controller_->config().drives.size(), 16u);
}

TEST_F(ControllerTest, PathsAreCheckedLikeFirecrackerOpensThem) {
  // Firecracker's words (test_api.py, test_logging.py).
  fails("PUT", "/boot-source", json{{"kernel_image_path", dir_ + "/nope"}}.dump(),
        "Boot source error: The kernel file cannot be opened: No such file or directory (os "
        "error 2)");
  fails("PUT", "/boot-source",
        json{{"kernel_image_path", kernel_}, {"initrd_path", dir_ + "/nope"}}.dump(),
        "Boot source error: The initrd file cannot be opened due to invalid path or invalid "
        "permissions. No such file or directory (os error 2)");
  fails("PUT", "/boot-source", json{{"kernel_image_path", dir_}}.dump(),
        "The kernel file cannot be opened: Is a directory (os error 21)");
  fails("PUT", "/boot-source", json{{"kernel_image_path", ""}}.dump(),
        "The kernel file cannot be opened: No such file or directory (os error 2)");
  fails("PUT", "/drives/rootfs",
        json{{"drive_id", "rootfs"}, {"path_on_host", dir_ + "/nope"}, {"is_root_device", true}}
            .dump(),
        "Drive config error: Unable to create the virtio block device: Virtio backend error: "
        "Error manipulating the backing file: No such file or directory (os error 2) " +
            dir_ + "/nope");
  // A read-write drive needs a writable file.
  ::chmod(data_.c_str(), 0444);
  if (::access(data_.c_str(), W_OK) != 0) {  // root writes anyway
    fails("PUT", "/drives/data",
          json{{"drive_id", "data"}, {"path_on_host", data_}, {"is_root_device", false}}.dump(),
          "Permission denied (os error 13)");
  }
  ok("PUT", "/drives/data",
     {{"drive_id", "data"},
      {"path_on_host", data_},
      {"is_root_device", false},
      {"is_read_only", true}});
  ::chmod(data_.c_str(), 0644);
  EXPECT_FALSE(controller_->config().boot_source);
  EXPECT_EQ(controller_->config().drives.size(), 1u);

  Controller unchecked(backend_, ControllerOptions{"x", false});
  auto r = unchecked.handle({"PUT", "/boot-source", R"({"kernel_image_path": "/no/such"})"});
  EXPECT_EQ(r.status, 204) << r.body;
}

TEST_F(ControllerTest, BootArgsAreCheckedAsFirecrackerBuildsTheCommandLine) {
  // x86_64's 2048 bytes with the NUL; leading and trailing spaces do not count.
  const std::string longest(2047, 'a');
  ok("PUT", "/boot-source", {{"kernel_image_path", kernel_}, {"boot_args", "  " + longest + " "}});
  EXPECT_EQ(controller_->config().boot_source->boot_args, "  " + longest + " ");
  fails("PUT", "/boot-source",
        json{{"kernel_image_path", kernel_}, {"boot_args", longest + "a"}}.dump(),
        "Boot source error: The kernel command line is invalid: Inserting string would make "
        "command line too long.");
  fails("PUT", "/boot-source",
        json{{"kernel_image_path", kernel_}, {"boot_args", "console=ttyS0\nquiet"}}.dump(),
        "Boot source error: The kernel command line is invalid: String contains a non-printable "
        "ASCII character.");
  fails("PUT", "/boot-source",
        json{{"kernel_image_path", kernel_}, {"boot_args", "caf\xc3\xa9"}}.dump(),
        "String contains a non-printable ASCII character.");
  EXPECT_EQ(controller_->config().boot_source->boot_args, "  " + longest + " ");
  // Checked whether or not files are.
  Controller unchecked(backend_, ControllerOptions{"x", false});
  auto r =
      unchecked.handle({"PUT", "/boot-source",
                        json{{"kernel_image_path", "/k"}, {"boot_args", longest + "a"}}.dump()});
  EXPECT_EQ(r.status, 400) << r.body;
}

TEST_F(ControllerTest, NetworkInterfaces) {
  ok("PUT", "/network-interfaces/eth0",
     {{"iface_id", "eth0"},
      {"host_dev_name", "tap0"},
      {"guest_mac", "06:00:00:00:00:01"},
      {"rx_rate_limiter", {{"bandwidth", {{"size", 1000}, {"refill_time", 10}}}}}});
  ok("PUT", "/network-interfaces/eth1", {{"iface_id", "eth1"}, {"host_dev_name", "tap1"}});
  fails("PUT", "/network-interfaces/eth2",
        R"({"iface_id": "eth2", "host_dev_name": "tap2", "guest_mac": "06:00:00:00:00:01"})",
        "The MAC address is already in use: 06:00:00:00:00:01");
  // Firecracker holds eth0's TAP open, so opening it again is EBUSY.
  fails("PUT", "/network-interfaces/eth2", R"({"iface_id": "eth2", "host_dev_name": "tap0"})",
        "Network config error: Could not create the network device: Open tap device failed: Error "
        "while creating ifreq structure: Device or resource busy (os error 16). Invalid TUN/TAP "
        "Backend provided by tap0. Check our documentation on setting up the network devices.");
  fails("PUT", "/network-interfaces/eth2",
        R"({"iface_id": "eth2", "host_dev_name": "a_very_long_tap_name"})",
        "host_dev_name must be 1-15 characters");
  // Replacing eth0 may keep its own MAC.
  ok("PUT", "/network-interfaces/eth0",
     {{"iface_id", "eth0"}, {"host_dev_name", "tap9"}, {"guest_mac", "06:00:00:00:00:01"}});
  const auto& nets = controller_->config().network_interfaces;
  ASSERT_EQ(nets.size(), 2u);
  EXPECT_EQ(nets[0].host_dev_name, "tap9");
  EXPECT_FALSE(nets[0].rx_rate_limiter);
  // Each accepted PUT opened its TAP; refused ones before the TAP was tried.
  EXPECT_EQ(backend_.taps, (std::vector<std::string>{"tap0", "tap1", "tap9"}));
}

TEST_F(ControllerTest, NetworkInterfaceTapIsOpenedAtPut) {
  // What Tap::open reports, in Firecracker's words (test_net.py's
  // multi-queue TAP: EINVAL; a busy TAP: EBUSY; a missing one hvz may not
  // create: EPERM), and the interface is not added.
  backend_.tap_errno = {{"mq0", EINVAL}, {"busy0", EBUSY}, {"nope0", EPERM}};
  fails("PUT", "/network-interfaces/eth0", R"({"iface_id": "eth0", "host_dev_name": "mq0"})",
        "Network config error: Could not create the network device: Open tap device failed: Error "
        "while creating ifreq structure: Invalid argument (os error 22). Invalid TUN/TAP Backend "
        "provided by mq0. Check our documentation on setting up the network devices.");
  fails("PUT", "/network-interfaces/eth0", R"({"iface_id": "eth0", "host_dev_name": "busy0"})",
        "Device or resource busy (os error 16). Invalid TUN/TAP Backend provided by busy0.");
  fails("PUT", "/network-interfaces/eth0", R"({"iface_id": "eth0", "host_dev_name": "nope0"})",
        "Operation not permitted (os error 1). Invalid TUN/TAP Backend provided by nope0.");
  EXPECT_TRUE(controller_->config().network_interfaces.empty());
  // A failed PUT leaves an existing interface as it was.
  ok("PUT", "/network-interfaces/eth0", {{"iface_id", "eth0"}, {"host_dev_name", "tap0"}});
  fails("PUT", "/network-interfaces/eth0", R"({"iface_id": "eth0", "host_dev_name": "busy0"})",
        "Could not create the network device");
  ASSERT_EQ(controller_->config().network_interfaces.size(), 1u);
  EXPECT_EQ(controller_->config().network_interfaces[0].host_dev_name, "tap0");
  // The other failures of Tap::open.
  EXPECT_EQ(tap_error_message(Error(Errc::kSystem, "tap: open /dev/net/tun", ENOENT), "t"),
            "Could not create the network device: Open tap device failed: Couldn't open "
            "/dev/net/tun: No such file or directory (os error 2)");
  EXPECT_EQ(tap_error_message(Error(Errc::kSystem, "tap: TUNSETVNETHDRSZ t", EINVAL), "t"),
            "Could not create the network device: Setting vnet header size failed: Error while "
            "setting size of the vnet header: Invalid argument (os error 22)");
  EXPECT_NE(
      tap_error_message(Error(Errc::kInvalidArgument, "tap: invalid interface name \"a/b\""), "a/b")
          .find("Open tap device failed: Invalid interface name"),
      std::string::npos);
}

// The real VmBackend opening real TAP devices: needs /dev/net/tun and
// CAP_NET_ADMIN (skipped without). The TAPs made here are not persistent:
// they go when their last fd closes.
TEST_F(ControllerTest, VmBackendOpensTheTapAtPutAsFirecrackerDoes) {
  auto opened = virtio::net::Tap::open("hvzput%d");
  if (!opened) GTEST_SKIP() << "cannot create a TAP here: " << opened.error().message();
  std::optional<virtio::net::Tap> held(std::move(*opened));
  auto backend = VmBackend::create();
  ASSERT_TRUE(backend) << backend.error().message();
  Controller c(**backend, ControllerOptions{"tap-test", true});

  // Busy: Firecracker (or another VMM) holds it.
  const std::string busy = held->if_name();
  auto r = c.handle({"PUT", "/network-interfaces/eth0",
                     json{{"iface_id", "eth0"}, {"host_dev_name", busy}}.dump()});
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(json::parse(r.body).value("fault_message", ""),
            "Network config error: Could not create the network device: Open tap device failed: "
            "Error while creating ifreq structure: Device or resource busy (os error 16). Invalid "
            "TUN/TAP Backend provided by " +
                busy + ". Check our documentation on setting up the network devices.");

  // Multi-queue (Firecracker's test_net.py): TUNSETIFF without
  // IFF_MULTI_QUEUE is EINVAL.
  const int mq = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  ASSERT_GE(mq, 0);
  ifreq ifr{};
  std::snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "hvzmq%%d");
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_MULTI_QUEUE;
  ASSERT_EQ(::ioctl(mq, TUNSETIFF, &ifr), 0) << std::strerror(errno);
  const std::string mq_name = ifr.ifr_name;
  r = c.handle({"PUT", "/network-interfaces/eth0",
                json{{"iface_id", "eth0"}, {"host_dev_name", mq_name}}.dump()});
  expect_fault(r,
               "Error while creating ifreq structure: Invalid argument (os error 22). Invalid "
               "TUN/TAP Backend provided by " +
                   mq_name + ".");
  ::close(mq);
  EXPECT_TRUE(c.config().network_interfaces.empty());

  // A name that does not exist is created (hvz may) and gone again after
  // the check: the VM opens its own at InstanceStart.
  const std::string fresh = "hvzp" + std::to_string(::getpid() % 10000000);
  r = c.handle({"PUT", "/network-interfaces/eth0",
                json{{"iface_id", "eth0"}, {"host_dev_name", fresh}}.dump()});
  EXPECT_EQ(r.status, 204) << r.body;
  struct stat st {};
  EXPECT_NE(::stat(("/sys/class/net/" + fresh).c_str(), &st), 0) << fresh << " was left behind";
  ASSERT_EQ(c.config().network_interfaces.size(), 1u);
  // Once the other holder lets go, the name is free.
  held.reset();
  r = c.handle({"PUT", "/network-interfaces/eth1",
                json{{"iface_id", "eth1"}, {"host_dev_name", busy}}.dump()});
  EXPECT_EQ(r.status, 204) << r.body;
}

TEST_F(ControllerTest, LoggerMetricsSerialEntropy) {
  ok("PUT", "/logger", {{"log_path", dir_ + "/log"}, {"level", "Info"}});
  ASSERT_TRUE(backend_.logger);
  EXPECT_EQ(backend_.logger->level, config::LoggerConfig::Level::kInfo);
  EXPECT_EQ(backend_.logger->log_path, dir_ + "/log");
  // A second PUT updates only what it names.
  ok("PUT", "/logger", {{"show_log_origin", true}});
  EXPECT_EQ(backend_.logger->log_path, dir_ + "/log");
  EXPECT_EQ(backend_.logger->level, config::LoggerConfig::Level::kInfo);
  EXPECT_TRUE(backend_.logger->show_log_origin);
  EXPECT_EQ(controller_->config().logger, backend_.logger);
  fails("PUT", "/logger", R"({"level": "Chatty"})", "Invalid LevelFilter");
  fails("PUT", "/logger", R"({"module": "api_server::request"})",
        "module: filtering by module is not supported yet");
  // The logger may be set up again and again (Firecracker's has no "once").
  ok("PUT", "/logger", {{"level", "Debug"}});
  backend_.errors["configure_logger"] = "cannot open";
  fails("PUT", "/logger", R"({"log_path": "/no/such/dir/log"})", "Logger error: cannot open");
  backend_.errors.erase("configure_logger");

  ok("PUT", "/metrics", {{"metrics_path", dir_ + "/metrics"}});
  ASSERT_TRUE(backend_.metrics);
  EXPECT_EQ(backend_.metrics->metrics_path, dir_ + "/metrics");
  EXPECT_EQ(controller_->config().metrics, backend_.metrics);
  fails("PUT", "/metrics", "{}", "missing field `metrics_path` at line 1 column 2.");
  // Firecracker's metrics are set up once (test_cmd_line_parameters.py).
  fails("PUT", "/metrics", json{{"metrics_path", dir_ + "/metrics2"}}.dump(),
        "Metrics error: Cannot initialize the metrics system due to bad user input: "
        "Reinitialization of metrics not allowed.");
  EXPECT_EQ(controller_->config().metrics->metrics_path, dir_ + "/metrics");

  ok("PUT", "/serial", {{"serial_out_path", dir_ + "/serial"}});
  EXPECT_EQ(controller_->config().serial->serial_out_path, dir_ + "/serial");
  ok("PUT", "/serial", json::object());
  EXPECT_EQ(controller_->config().serial->serial_out_path, "");

  ok("PUT", "/entropy", {{"rate_limiter", {{"bandwidth", {{"size", 64}, {"refill_time", 5}}}}}});
  EXPECT_EQ(controller_->config().entropy->rate_limiter->bandwidth->size, 64u);
  ok("PUT", "/entropy", json::object());
  EXPECT_FALSE(controller_->config().entropy->rate_limiter);
  fails("PUT", "/entropy", R"({"rng": 1})",
        "unknown field `rng`, expected `rate_limiter` at line 1 column 6.");
}

TEST_F(ControllerTest, StateTransitions) {
  EXPECT_EQ(state(), "Not started");
  fails("PATCH", "/vm", R"({"state": "Paused"})", kPreBoot);
  fails("PATCH", "/vm", R"({"state": "Resumed"})", kPreBoot);
  boot();
  EXPECT_EQ(state(), "Running");
  ok("PATCH", "/vm", {{"state", "Paused"}});
  EXPECT_EQ(state(), "Paused");
  EXPECT_EQ(controller_->state(), VmState::kPaused);
  // Pausing a paused VM (and resuming a running one) is allowed and changes nothing.
  ok("PATCH", "/vm", {{"state", "Paused"}});
  EXPECT_EQ(state(), "Paused");
  ok("PATCH", "/vm", {{"state", "Resumed"}});
  EXPECT_EQ(state(), "Running");
  ok("PATCH", "/vm", {{"state", "Resumed"}});
  EXPECT_EQ(state(), "Running");
  EXPECT_EQ(backend_.calls, (std::vector<std::string>{"start", "pause", "resume"}));
  fails("PATCH", "/vm", R"({"state": "Stopped"})",
        "request: unknown variant `Stopped`, expected `Paused` or `Resumed` at line 1 column "
        "19 (state).");
  fails("PATCH", "/vm", R"({"state": "Paused", "x": 1})", "unknown field `x`, expected `state`");
  fails("PATCH", "/vm", R"({})", "missing field `state`");
  // Still post-boot while paused: pre-boot calls are refused.
  ok("PATCH", "/vm", {{"state", "Paused"}});
  fails("PUT", "/actions", R"({"action_type": "InstanceStart"})", kPostBoot);
}

TEST_F(ControllerTest, StateIsReadableFromAnotherThread) {
  std::atomic<bool> stop{false};
  std::atomic<int> seen_running{0};
  std::thread reader([&] {
    while (!stop.load()) {
      if (controller_->state() == VmState::kRunning) seen_running.store(1);
    }
  });
  boot();
  stop.store(true);
  reader.join();
  EXPECT_EQ(controller_->state(), VmState::kRunning);
}

TEST_F(ControllerTest, InstanceStartValidatesTheWholeConfig) {
  fails("PUT", "/actions", R"({"action_type": "InstanceStart"})",
        "no kernel image given (boot-source.kernel_image_path)");
  EXPECT_TRUE(backend_.calls.empty());
  EXPECT_EQ(state(), "Not started");

  // A config given at construction (--config-file) is validated as well.
  config::VmConfig bad;
  bad.boot_source = config::BootSource{kernel_, std::nullopt, std::nullopt};
  bad.machine_config.vcpu_count = 99;
  Controller c(backend_, ControllerOptions{}, bad);
  const auto r = c.handle({"PUT", "/actions", R"({"action_type": "InstanceStart"})"});
  expect_fault(r, "vcpu_count must be between 1 and 32, not 99");
  EXPECT_EQ(c.state(), VmState::kNotStarted);
}

TEST_F(ControllerTest, BackendErrorsAre400sWithTheirMessage) {
  configure_minimal();
  backend_.errors["start"] = "KVM_CREATE_VM: Permission denied";
  fails("PUT", "/actions", R"({"action_type": "InstanceStart"})",
        "KVM_CREATE_VM: Permission denied");
  EXPECT_EQ(state(), "Not started");
  backend_.errors.clear();
  ok("PUT", "/actions", {{"action_type", "InstanceStart"}});

  backend_.errors["pause"] = "vcpu stuck";
  fails("PATCH", "/vm", R"({"state": "Paused"})", "vcpu stuck");
  EXPECT_EQ(state(), "Running");
  backend_.errors["send_ctrl_alt_del"] = "i8042 busy";
  fails("PUT", "/actions", R"({"action_type": "SendCtrlAltDel"})", "i8042 busy");
  backend_.errors["update_drive"] = "cannot resize the drive";
  fails("PATCH", "/drives/rootfs", json{{"drive_id", "rootfs"}, {"path_on_host", data_}}.dump(),
        "Drive config error: Unable to patch the block device: cannot resize the drive Please "
        "verify the request arguments.");
  EXPECT_EQ(controller_->config().drives[0].path_on_host, rootfs_);  // unchanged
  backend_.errors["pause"].clear();
  backend_.errors.erase("pause");
  ok("PATCH", "/vm", {{"state", "Paused"}});
  backend_.errors["resume"] = "cannot resume";
  fails("PATCH", "/vm", R"({"state": "Resumed"})", "cannot resume");
  EXPECT_EQ(state(), "Paused");
}

TEST_F(ControllerTest, BackendErrorsPreBoot) {
  backend_.errors["configure_logger"] = "cannot open log";
  fails("PUT", "/logger", json{{"log_path", "/x"}}.dump(), "cannot open log");
  EXPECT_FALSE(controller_->config().logger);
  backend_.errors["configure_metrics"] = "metrics file refused";
  fails("PUT", "/metrics", json{{"metrics_path", "/m"}}.dump(),
        "Metrics error: Cannot initialize the metrics system due to bad user input: metrics file "
        "refused");
  EXPECT_FALSE(controller_->config().metrics);
  // A failed attempt does not count as the one allowed.
  backend_.errors.clear();
  ok("PUT", "/metrics", {{"metrics_path", "/m"}});
}

// A backend error with an errno (log_path or metrics_path not opened) in
// Firecracker's words.
class ErrnoBackend : public RecordingBackend {
 public:
  Expected<void> configure_logger(const config::LoggerConfig&) override {
    return make_error(Errc::kSystem, "logger: open /no/such/log", ENOENT);
  }
  Expected<void> configure_metrics(const config::MetricsConfig&) override {
    return make_error(Errc::kSystem, "metrics: open /no/such/metrics", ENOENT);
  }
};

TEST_F(ControllerTest, LoggerAndMetricsFileErrorsInFirecrackersWords) {
  ErrnoBackend backend;
  Controller c(backend, ControllerOptions{});
  auto r = c.handle({"PUT", "/logger", R"({"log_path": "/no/such/log", "level": "Info"})"});
  EXPECT_EQ(json::parse(r.body).value("fault_message", ""),
            "Logger error: Failed to open target file: No such file or directory (os error 2)");
  r = c.handle({"PUT", "/metrics", R"({"metrics_path": "/no/such/metrics"})"});
  EXPECT_EQ(json::parse(r.body).value("fault_message", ""),
            "Metrics error: Cannot initialize the metrics system due to bad user input: No such "
            "file or directory (os error 2)");
}

TEST_F(ControllerTest, PatchDrivePostBoot) {
  fails("PATCH", "/drives/rootfs", R"({"drive_id": "rootfs", "path_on_host": "/x"})", kPreBoot);
  boot();
  ok("PATCH", "/drives/rootfs", {{"drive_id", "rootfs"}, {"path_on_host", data_}});
  EXPECT_EQ(backend_.drive_id, "rootfs");
  EXPECT_EQ(backend_.drive_path, data_);
  EXPECT_FALSE(backend_.drive_limiter);
  EXPECT_EQ(controller_->config().drives[0].path_on_host, data_);

  ok("PATCH", "/drives/rootfs",
     {{"drive_id", "rootfs"},
      {"rate_limiter",
       {{"bandwidth", {{"size", 5000}, {"refill_time", 100}}},
        {"ops", {{"size", 500}, {"refill_time", 100}}}}}});
  EXPECT_FALSE(backend_.drive_path);
  ASSERT_TRUE(backend_.drive_limiter && backend_.drive_limiter->ops);
  EXPECT_EQ(backend_.drive_limiter->ops->size, 500u);
  // A bucket left out keeps its value in the stored config.
  ok("PATCH", "/drives/rootfs",
     {{"drive_id", "rootfs"},
      {"rate_limiter", {{"ops", {{"size", 7}, {"refill_time", 1}, {"one_time_burst", 3}}}}}});
  const auto& limiter = controller_->config().drives[0].rate_limiter;
  ASSERT_TRUE(limiter && limiter->bandwidth && limiter->ops);
  EXPECT_EQ(limiter->bandwidth->size, 5000u);
  EXPECT_EQ(limiter->ops->size, 7u);
  EXPECT_EQ(limiter->ops->one_time_burst, 3u);

  // Firecracker's words (test_api.py's _drive_patch).
  fails("PATCH", "/drives/rootfs", R"({"drive_id": "rootfs"})",
        "Drive config error: Unable to patch the block device: Block: Running method expected "
        "different backend. Please verify the request arguments.");
  for (const char* field : {"is_read_only", "io_engine", "is_root_device"}) {
    fails("PATCH", "/drives/rootfs",
          json{{"drive_id", "rootfs"}, {"path_on_host", data_}, {field, true}}.dump(),
          std::string("unknown field `") + field + "`");
  }
  fails("PATCH", "/drives/rootfs", R"({"drive_id": "rootfs", "path_on_host": "foo.bar"})",
        "Error manipulating the backing file: No such file or directory (os error 2) foo.bar");
  fails("PATCH", "/drives/rootfs",
        R"({"drive_id": "rootfs", "path_on_host": "foo.bar", "rate_limiter": {}})",
        "No such file or directory");
  fails("PATCH", "/drives/rootfs", R"({"drive_id": "rootfs", "path_on_host": ""})",
        "No such file or directory (os error 2)");
  EXPECT_EQ(controller_->config().drives[0].path_on_host, data_);
  fails("PATCH", "/drives/nope", R"({"drive_id": "nope", "path_on_host": "/x"})",
        "no drive 'nope'");
  fails("PATCH", "/drives/rootfs",
        R"({"drive_id": "rootfs", "rate_limiter": {"ops": {"size": 100}}})",
        "missing field `refill_time` at line 1 column 60 (rate_limiter.ops).");
  fails("PATCH", "/drives/rootfs", R"({"path_on_host": "/x"})", "missing field `drive_id`");
  // An empty bucket removes one (Firecracker's BucketUpdate::Disabled).
  ok("PATCH", "/drives/rootfs",
     {{"drive_id", "rootfs"},
      {"rate_limiter", {{"bandwidth", {{"size", 0}, {"refill_time", 0}}}}}});
  ASSERT_TRUE(controller_->config().drives[0].rate_limiter);
  EXPECT_FALSE(controller_->config().drives[0].rate_limiter->bandwidth);
  EXPECT_TRUE(controller_->config().drives[0].rate_limiter->ops);
  ok("PATCH", "/drives/rootfs",
     {{"drive_id", "rootfs"}, {"rate_limiter", {{"ops", {{"size", 0}, {"refill_time", 1}}}}}});
  EXPECT_FALSE(controller_->config().drives[0].rate_limiter);
}

TEST_F(ControllerTest, PatchNetworkInterfacePostBoot) {
  configure_minimal();
  ok("PUT", "/network-interfaces/eth0", {{"iface_id", "eth0"}, {"host_dev_name", "tap0"}});
  fails("PATCH", "/network-interfaces/eth0", R"({"iface_id": "eth0", "rx_rate_limiter": {}})",
        kPreBoot);
  ok("PUT", "/actions", {{"action_type", "InstanceStart"}});
  ok("PATCH", "/network-interfaces/eth0",
     {{"iface_id", "eth0"},
      {"rx_rate_limiter", {{"bandwidth", {{"size", 62500}, {"refill_time", 1000}}}}},
      {"tx_rate_limiter", json::object()}});
  EXPECT_EQ(backend_.iface_id, "eth0");
  ASSERT_TRUE(backend_.rx && backend_.rx->bandwidth);
  EXPECT_EQ(backend_.rx->bandwidth->size, 62500u);
  ASSERT_TRUE(backend_.tx);
  EXPECT_FALSE(backend_.tx->bandwidth);
  const auto& n = controller_->config().network_interfaces[0];
  ASSERT_TRUE(n.rx_rate_limiter);
  EXPECT_EQ(n.rx_rate_limiter->bandwidth->refill_time_ms, 1000u);
  fails("PATCH", "/network-interfaces/eth0",
        R"({"iface_id": "eth0", "rx_rate_limiter": {"bytes": {"size": 1, "refill_time": 1}}})",
        "unknown field `bytes`, expected `bandwidth` or `ops` at line 1 column 48 "
        "(rx_rate_limiter).");
  fails("PATCH", "/network-interfaces/eth9", R"({"iface_id": "eth9"})", "no interface 'eth9'");
  backend_.errors["update_network_interface"] = "no such tap";
  fails("PATCH", "/network-interfaces/eth0", R"({"iface_id": "eth0", "tx_rate_limiter": {}})",
        "Network config error: Unable to update the net device: no such tap");
}

TEST_F(ControllerTest, Actions) {
  fails("PUT", "/actions", R"({"action_type": "SendCtrlAltDel"})", kPreBoot);
  fails("PUT", "/actions", R"({"action_type": "FlushMetrics"})", kPreBoot);
  fails("PUT", "/actions", R"({"action_type": "Reboot"})",
        "An error occurred when deserializing the json body of a request: unknown variant "
        "`Reboot`, expected one of `FlushMetrics`, `InstanceStart`, `SendCtrlAltDel` at line 1 "
        "column 24 (action_type).");
  fails("PUT", "/actions", R"({"action_type": 1})", "invalid type: integer `1`");
  fails("PUT", "/actions", R"({"action_type": "InstanceStart", "now": true})",
        "unknown field `now`, expected `action_type` at line 1 column 38.");
  fails("PUT", "/actions", R"({})", "missing field `action_type` at line 1 column 2.");
  fails("PUT", "/actions", R"(["InstanceStart"])",
        "invalid type: sequence, expected struct ActionBody at line 1 column 17.");
  fails("PUT", "/actions", R"({"action_type": null})", "invalid type: null");
  fails("PUT", "/actions", R"({"action_type": "FlushMetrics", "action_type": "InstanceStart"})",
        "duplicate field `action_type` at line 1 column 45.");
  boot();
  // Without metrics configured, FlushMetrics writes nothing and succeeds
  // (Firecracker's METRICS.write() returns Ok(false)).
  ok("PUT", "/actions", {{"action_type", "FlushMetrics"}});
  EXPECT_EQ(backend_.calls, (std::vector<std::string>{"start"}));
  fails("PUT", "/actions", R"({"action_type": "InstanceStart"})", kPostBoot);
}

TEST_F(ControllerTest, FlushMetricsWithMetricsConfigured) {
  ok("PUT", "/metrics", {{"metrics_path", dir_ + "/m"}});
  boot();
  ok("PUT", "/actions", {{"action_type", "FlushMetrics"}});
  EXPECT_EQ(backend_.calls.back(), "flush_metrics");
  backend_.errors["flush_metrics"] = "metrics pipe full";
  fails("PUT", "/actions", R"({"action_type": "FlushMetrics"})", "metrics pipe full");
}

TEST_F(ControllerTest, PreBootOnlyCallsAfterStart) {
  boot();
  const std::pair<const char*, std::string> calls[] = {
      {"/boot-source", json{{"kernel_image_path", kernel_}}.dump()},
      {"/machine-config", R"({"vcpu_count": 1, "mem_size_mib": 128})"},
      {"/drives/rootfs", root_drive().dump()},
      {"/network-interfaces/eth0", R"({"iface_id": "eth0", "host_dev_name": "tap0"})"},
      {"/logger", R"({"level": "Info"})"},
      {"/metrics", R"({"metrics_path": "/m"})"},
      {"/serial", R"({"serial_out_path": "/s"})"},
      {"/entropy", "{}"},
  };
  for (const auto& [target, body] : calls) fails("PUT", target, body, kPostBoot);
  fails("PATCH", "/machine-config", R"({"vcpu_count": 2})", kPostBoot);
  // GETs work any time.
  EXPECT_EQ(get("/machine-config")["vcpu_count"], 1);
  EXPECT_EQ(get("/vm/config")["drives"].size(), 1u);
  EXPECT_EQ(backend_.calls, (std::vector<std::string>{"start"}));
}

TEST_F(ControllerTest, MarkStartedAppliesPostBootRules) {
  controller_->mark_started();
  EXPECT_EQ(state(), "Running");
  fails("PUT", "/boot-source", json{{"kernel_image_path", kernel_}}.dump(), kPostBoot);
  ok("PATCH", "/vm", {{"state", "Paused"}});
  EXPECT_EQ(backend_.calls, (std::vector<std::string>{"pause"}));
}

TEST_F(ControllerTest, MalformedBodies) {
  // Unknown field, wrong type, missing field.
  // Unknown field, wrong type, missing field, in serde's words.
  fails("PUT", "/boot-source", R"({"kernel_image_path": "/k", "x": 1})",
        "An error occurred when deserializing the json body of a request: unknown field `x`, "
        "expected one of `kernel_image_path`, `initrd_path`, `boot_args` at line 1 column 31.");
  fails("PUT", "/boot-source", R"({"kernel_image_path": 5})",
        "request: invalid type: integer `5`, expected a string at line 1 column 23 "
        "(kernel_image_path).");
  fails("PUT", "/boot-source", R"({"boot_args": "quiet"})",
        "missing field `kernel_image_path` at line 1 column 22.");
  fails("PUT", "/machine-config", R"({"vcpu_count": "2", "mem_size_mib": 128})",
        "request: invalid type: string \"2\", expected u8 at line 1 column 18 (vcpu_count).");
  fails("PUT", "/machine-config", R"({"vcpu_count": -2, "mem_size_mib": 128})",
        "invalid value: integer `-2`, expected u8");
  fails("PUT", "/drives/rootfs", R"({"drive_id": "rootfs", "path_on_host": "/r"})",
        "missing field `is_root_device`");
  fails("PUT", "/drives/rootfs",
        R"({"drive_id": "rootfs", "path_on_host": "/r", "is_root_device": "true"})",
        "invalid type: string \"true\", expected a boolean");
  fails("PUT", "/network-interfaces/eth0",
        R"({"iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": "nope"})",
        "The provided MAC address is invalid.");
  // Bad JSON and bodies that are not objects.
  fails("PUT", "/boot-source", "{", "An error occurred when deserializing the json body");
  fails("PUT", "/boot-source", "{\"kernel_image_path\": \"/k\",}", "deserializing");
  fails("PUT", "/boot-source", "   ", "deserializing");
  fails("PUT", "/boot-source", "\"text\"",
        "invalid type: string \"text\", expected struct BootSourceConfig at line 1 column 6.");
  fails("PUT", "/boot-source", "null", "invalid type: null, expected struct BootSourceConfig");
  fails("PUT", "/boot-source", "{\"kernel_image_path\": \"\xff\"}", "deserializing");
  // Empty bodies.
  fails("PUT", "/boot-source", "", "Empty PUT request.");
  fails("PUT", "/actions", "", "Empty PUT request.");
  fails("PATCH", "/vm", "", "Empty PATCH request.");
  fails("PATCH", "/drives/rootfs", "", "Empty PATCH request.");
  fails("GET", "/machine-config", "{}", "GET request cannot have a body.");
  EXPECT_FALSE(controller_->config().boot_source);
}

TEST_F(ControllerTest, ResourceIds) {
  fails("PUT", "/drives", root_drive().dump(), "The ID cannot be empty.");
  fails("PUT", "/drives/", root_drive().dump(), "The ID cannot be empty.");
  fails("PUT", "/drives//rootfs", root_drive().dump(), "The ID cannot be empty.");
  fails("PUT", "/drives/root-fs", root_drive().dump(),
        "API Resource IDs can only contain alphanumeric characters and underscores");
  fails("PUT", "/drives/" + std::string(65, 'a'), root_drive().dump(),
        "API Resource IDs can only contain");
  fails("PATCH", "/network-interfaces/eth%200", R"({"iface_id": "eth 0"})",
        "API Resource IDs can only contain");
  fails("PUT", "/drives/other", root_drive().dump(),
        "The id from the path [other] does not match the id from the body [rootfs]!");
  fails("PUT", "/network-interfaces/eth1", R"({"iface_id": "eth0", "host_dev_name": "tap0"})",
        "The id from the path [eth1] does not match the id from the body [eth0]!");
  fails("PUT", "/drives/rootfs/extra", root_drive().dump(),
        "Invalid request method and/or path: PUT /drives/rootfs/extra.");
  // A body id that is not a valid id can only mismatch the (valid) path id.
  fails("PUT", "/drives/a", R"({"drive_id": "a!", "path_on_host": "/r", "is_root_device": false})",
        "does not match");
  // A trailing slash and a query string are ignored, as in Firecracker.
  ok("PUT", "/drives/rootfs/?x=1", root_drive());
  EXPECT_EQ(controller_->config().drives.size(), 1u);
}

TEST_F(ControllerTest, UnknownPathsAndMethods) {
  fails("GET", "/nope", "", "Invalid request method and/or path: GET /nope.");
  fails("PUT", "/nope", "{}", "Invalid request method and/or path: PUT /nope.");
  fails("DELETE", "/drives/rootfs", "",
        "Invalid request method and/or path: DELETE /drives/rootfs.");
  fails("POST", "/actions", R"({"action_type": "InstanceStart"})",
        "Invalid request method and/or path: POST /actions.");
  fails("GET", "/actions", "", "Invalid request method and/or path: GET /actions.");
  fails("PATCH", "/boot-source", R"({"kernel_image_path": "/k"})",
        "Invalid request method and/or path: PATCH /boot-source.");
  fails("GET", "/vm", "", "Invalid request method and/or path: GET /vm.");
  fails("GET", "/snapshot/create", "", "Invalid request method and/or path: GET /snapshot/create.");
  fails("PATCH", "/snapshot/load", R"({"snapshot_path": "/s"})",
        "Invalid request method and/or path: PATCH /snapshot/load.");
  fails("PUT", "/snapshot/restore", R"({"snapshot_path": "/s"})",
        "Invalid request method and/or path: PUT /snapshot/restore.");
  fails("PUT", "/snapshot", R"({"snapshot_path": "/s"})",
        "Invalid request method and/or path: PUT /snapshot.");
  fails("GET", "/vm/config/x", "", "Invalid request method and/or path");
  fails("GET", "/version/x", "", "Invalid request method and/or path");
  fails("PUT", "/machine-config/x", "{}", "Invalid request method and/or path");
  fails("GET", "", "", "Invalid request method and/or path");
  fails("GET", "version", "", "Invalid request method and/or path");
  fails("", "/", "", "Invalid request method and/or path");
  fails("get", "/", "", "Invalid request method and/or path");
  // Firecracker's features hvz lacks.
  fails("PUT", "/vsock", R"({"guest_cid": 3, "uds_path": "/v"})", "vsock is not supported yet");
  fails("PUT", "/balloon", R"({"amount_mib": 1, "deflate_on_oom": true})",
        "the balloon device is not supported yet");
  fails("GET", "/balloon/statistics", "", "the balloon device is not supported yet");
  fails("PATCH", "/balloon", R"({"amount_mib": 1})", "balloon device is not supported yet");
  fails("PUT", "/mmds", R"({"latest": {}})", "MMDS is not supported yet");
  fails("GET", "/mmds", "", "MMDS is not supported yet");
  fails("PUT", "/mmds/config", R"({"network_interfaces": ["eth0"]})", "MMDS is not supported yet");
  fails("PUT", "/cpu-config", "{}", "cpu-config) are not supported yet");
  fails("PUT", "/pmem/p0", R"({"id": "p0", "path_on_host": "/p"})",
        "pmem devices are not supported");
  fails("GET", "/hotplug/memory", "", "memory hotplug is not supported yet");
  fails("PUT", "/vsock", "", "Empty PUT request.");  // Firecracker checks the body first
}

TEST_F(ControllerTest, GetVmConfigRoundTrips) {
  ok("PUT", "/boot-source",
     {{"kernel_image_path", kernel_}, {"initrd_path", initrd_}, {"boot_args", "quiet"}});
  ok("PUT", "/machine-config", {{"vcpu_count", 2}, {"mem_size_mib", 256}, {"huge_pages", "2M"}});
  ok("PUT", "/drives/rootfs",
     {{"drive_id", "rootfs"},
      {"path_on_host", rootfs_},
      {"is_root_device", true},
      {"partuuid", "0eaa91a0-01"},
      {"io_engine", "Async"},
      {"rate_limiter",
       {{"bandwidth", {{"size", 1}, {"one_time_burst", 2}, {"refill_time", 3}}},
        {"ops", {{"size", 4}, {"refill_time", 5}}}}}});
  ok("PUT", "/drives/data",
     {{"drive_id", "data"},
      {"path_on_host", data_},
      {"is_root_device", false},
      {"is_read_only", true}});
  ok("PUT", "/network-interfaces/eth0",
     {{"iface_id", "eth0"},
      {"host_dev_name", "tap0"},
      {"guest_mac", "06:00:ac:10:00:02"},
      {"tx_rate_limiter", {{"ops", {{"size", 9}, {"refill_time", 10}}}}}});
  ok("PUT", "/logger", {{"log_path", dir_ + "/log"}, {"level", "Trace"}, {"show_level", false}});
  ok("PUT", "/metrics", {{"metrics_path", dir_ + "/metrics"}});
  ok("PUT", "/serial", {{"serial_out_path", dir_ + "/serial"}});
  ok("PUT", "/entropy", {{"rate_limiter", {{"ops", {{"size", 1}, {"refill_time", 1}}}}}});

  const auto r = call("GET", "/vm/config");
  ASSERT_EQ(r.status, 200) << r.body;
  auto back = parse_vm_config(r.body);
  ASSERT_TRUE(back) << back.error().message() << "\n" << r.body;
  EXPECT_EQ(*back, controller_->config()) << r.body;
  const auto j = json::parse(r.body);
  for (const char* section : {"boot-source", "machine-config", "drives", "network-interfaces",
                              "logger", "metrics", "serial", "entropy"}) {
    EXPECT_TRUE(j.contains(section)) << section;
  }
  EXPECT_EQ(j["drives"][0]["rate_limiter"]["bandwidth"]["refill_time"], 3);
  // After boot the answer still round-trips, post-boot updates included.
  ok("PUT", "/actions", {{"action_type", "InstanceStart"}});
  ok("PATCH", "/drives/data", {{"drive_id", "data"}, {"path_on_host", rootfs_}});
  auto after = parse_vm_config(call("GET", "/vm/config").body);
  ASSERT_TRUE(after) << after.error().message();
  EXPECT_EQ(*after, controller_->config());
  EXPECT_EQ(after->drives[1].path_on_host, rootfs_);
}

TEST_F(ControllerTest, GetVmConfigHasFirecrackersShape) {
  // Firecracker's test_get_full_config: every section, null when unset,
  // and every field of a device (cache_type "Unsafe" by default, null for
  // an unset partuuid, limiter, MAC or MTU).
  auto j = get("/vm/config");
  for (const char* section : {"balloon", "cpu-config", "logger", "metrics", "mmds-config", "vsock",
                              "entropy", "memory-hotplug"}) {
    ASSERT_TRUE(j.contains(section)) << section;
    EXPECT_TRUE(j[section].is_null()) << section;
  }
  EXPECT_EQ(j["boot-source"],
            (json{{"kernel_image_path", ""}, {"initrd_path", nullptr}, {"boot_args", nullptr}}));
  EXPECT_EQ(j["drives"], json::array());
  EXPECT_EQ(j["network-interfaces"], json::array());
  EXPECT_EQ(j["pmem"], json::array());
  EXPECT_EQ(j["machine-config"], (json{{"vcpu_count", 1},
                                       {"mem_size_mib", 128},
                                       {"smt", false},
                                       {"track_dirty_pages", false},
                                       {"huge_pages", "None"}}));
  EXPECT_FALSE(j.contains("console"));
  EXPECT_FALSE(j.contains("serial"));

  ok("PUT", "/boot-source", {{"kernel_image_path", kernel_}, {"boot_args", ""}});
  ok("PUT", "/drives/rootfs", root_drive());
  ok("PUT", "/drives/data",
     {{"drive_id", "data"},
      {"path_on_host", data_},
      {"is_root_device", false},
      {"is_read_only", true},
      {"cache_type", "Writeback"},
      {"rate_limiter", {{"bandwidth", {{"size", 0}, {"refill_time", 100}}}}}});
  ok("PUT", "/network-interfaces/eth0",
     {{"iface_id", "eth0"},
      {"host_dev_name", "tap0"},
      {"guest_mac", "06:00:00:00:00:01"},
      {"tx_rate_limiter", {{"bandwidth", {{"size", 1000000}, {"refill_time", 100}}}}},
      {"rx_rate_limiter", json::object()}});
  ok("PUT", "/network-interfaces/eth1", {{"iface_id", "eth1"}, {"host_dev_name", "tap1"}});
  ok("PUT", "/entropy", json::object());
  j = get("/vm/config");
  EXPECT_EQ(j["boot-source"],
            (json{{"kernel_image_path", kernel_}, {"initrd_path", nullptr}, {"boot_args", ""}}));
  EXPECT_EQ(j["drives"][0], (json{{"drive_id", "rootfs"},
                                  {"partuuid", nullptr},
                                  {"is_root_device", true},
                                  {"cache_type", "Unsafe"},
                                  {"is_read_only", false},
                                  {"path_on_host", rootfs_},
                                  {"rate_limiter", nullptr},
                                  {"io_engine", "Sync"},
                                  {"socket", nullptr}}));
  // A bucket of size 0 limits nothing: Firecracker keeps none.
  EXPECT_EQ(j["drives"][1]["cache_type"], "Writeback");
  EXPECT_TRUE(j["drives"][1]["rate_limiter"].is_null());
  const json tx = {
      {"bandwidth", {{"size", 1000000}, {"one_time_burst", nullptr}, {"refill_time", 100}}},
      {"ops", nullptr}};
  EXPECT_EQ(j["network-interfaces"][0], (json{{"iface_id", "eth0"},
                                              {"host_dev_name", "tap0"},
                                              {"guest_mac", "06:00:00:00:00:01"},
                                              {"mtu", nullptr},
                                              {"rx_rate_limiter", nullptr},
                                              {"tx_rate_limiter", tx}}));
  EXPECT_TRUE(j["network-interfaces"][1]["guest_mac"].is_null());
  EXPECT_EQ(j["entropy"], (json{{"rate_limiter", nullptr}}));
  // What GET answers is taken back, as --config-file or PUT bodies.
  auto back = parse_vm_config(dump_json(j));
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(*back, controller_->config());
  Controller again(backend_, ControllerOptions{"again", true});
  for (const auto& d : j["drives"]) {
    const auto r = again.handle({"PUT", "/drives/" + d["drive_id"].get<std::string>(), d.dump()});
    EXPECT_EQ(r.status, 204) << r.body;
  }
  for (const auto& n : j["network-interfaces"]) {
    const auto r =
        again.handle({"PUT", "/network-interfaces/" + n["iface_id"].get<std::string>(), n.dump()});
    EXPECT_EQ(r.status, 204) << r.body;
  }
  EXPECT_EQ(again.config().drives, controller_->config().drives);
  EXPECT_EQ(again.config().network_interfaces, controller_->config().network_interfaces);
}

TEST_F(ControllerTest, NullOnlyWhereFirecrackerTakesAnOption) {
  // Firecracker's Option fields take null as "absent".
  ok("PUT", "/boot-source",
     {{"kernel_image_path", kernel_}, {"initrd_path", nullptr}, {"boot_args", nullptr}});
  ok("PUT", "/drives/rootfs",
     {{"drive_id", "rootfs"},
      {"path_on_host", rootfs_},
      {"is_root_device", true},
      {"partuuid", nullptr},
      {"is_read_only", nullptr},
      {"rate_limiter", nullptr},
      {"io_engine", nullptr},
      {"socket", nullptr}});
  ok("PUT", "/network-interfaces/eth0",
     {{"iface_id", "eth0"},
      {"host_dev_name", "tap0"},
      {"guest_mac", nullptr},
      {"mtu", nullptr},
      {"rx_rate_limiter", nullptr},
      {"tx_rate_limiter", {{"bandwidth", nullptr}, {"ops", nullptr}}}});
  ok("PUT", "/machine-config",
     {{"vcpu_count", 1}, {"mem_size_mib", 128}, {"cpu_template", nullptr}});
  ok("PATCH", "/machine-config", {{"vcpu_count", 2}, {"smt", nullptr}, {"huge_pages", nullptr}});
  ok("PUT", "/logger",
     {{"log_path", nullptr},
      {"level", nullptr},
      {"show_level", nullptr},
      {"show_log_origin", nullptr},
      {"module", nullptr}});
  ok("PUT", "/serial", {{"serial_out_path", nullptr}, {"rate_limiter", nullptr}});
  ok("PUT", "/entropy", {{"rate_limiter", nullptr}});
  ok("PUT", "/entropy",
     {{"rate_limiter", {{"ops", {{"size", 1}, {"refill_time", 1}, {"one_time_burst", nullptr}}}}}});
  // The others do not.
  const std::pair<std::string, std::string> refused[] = {
      {"/boot-source", R"({"kernel_image_path": null})"},
      {"/machine-config", R"({"vcpu_count": null, "mem_size_mib": 128})"},
      {"/machine-config", R"({"vcpu_count": 1, "mem_size_mib": null})"},
      {"/machine-config", R"({"vcpu_count": 1, "mem_size_mib": 128, "smt": null})"},
      {"/machine-config", R"({"vcpu_count": 1, "mem_size_mib": 128, "track_dirty_pages": null})"},
      {"/machine-config", R"({"vcpu_count": 1, "mem_size_mib": 128, "huge_pages": null})"},
      {"/drives/rootfs", R"({"drive_id": null, "path_on_host": "/r", "is_root_device": true})"},
      {"/drives/rootfs", R"({"drive_id": "rootfs", "path_on_host": "/r", "is_root_device": null})"},
      {"/drives/rootfs",
       R"({"drive_id": "rootfs", "path_on_host": "/r", "is_root_device": true, "cache_type": null})"},
      {"/network-interfaces/eth0", R"({"iface_id": "eth0", "host_dev_name": null})"},
      {"/network-interfaces/eth0",
       R"({"iface_id": "eth0", "host_dev_name": "tap0", "rx_rate_limiter": {"ops": {"size": null, "refill_time": 1}}})"},
      {"/metrics", R"({"metrics_path": null})"},
      {"/actions", R"({"action_type": null})"},
  };
  for (const auto& [target, body] : refused) fails("PUT", target, body, "invalid type: null");
  fails("PATCH", "/vm", R"({"state": null})", "invalid type: null");
  fails("PATCH", "/drives/rootfs", R"({"drive_id": null})", "invalid type: null");
  fails("PATCH", "/network-interfaces/eth0", R"({"iface_id": null})", "invalid type: null");
  // path_on_host is an Option in Firecracker (vhost-user drives have none),
  // but a virtio-block drive needs one.
  fails("PUT", "/drives/data",
        R"({"drive_id": "data", "path_on_host": null, "is_root_device": false})",
        "missing field `path_on_host`");
}

TEST_F(ControllerTest, DuplicateKeysAreRefusedAsSerdeDoes) {
  fails("PUT", "/machine-config", R"({"vcpu_count": 1, "vcpu_count": 2, "mem_size_mib": 128})",
        "An error occurred when deserializing the json body of a request: duplicate field "
        "`vcpu_count` at line 1 column 30.");
  fails("PUT", "/drives/rootfs",
        R"({"drive_id": "rootfs", "path_on_host": "/r", "is_root_device": true,
            "rate_limiter": {"ops": {"size": 1, "size": 2, "refill_time": 1}}})",
        "duplicate field `size` at line 2 column 54.");
  fails("PUT", "/boot-source", R"({"kernel_image_path": "/a", "kernel_image_path": "/b"})",
        "duplicate field `kernel_image_path`");
  EXPECT_FALSE(controller_->config().boot_source);
  EXPECT_TRUE(controller_->config().drives.empty());
  // The same key in different objects is fine.
  ok("PUT", "/entropy",
     {{"rate_limiter",
       {{"bandwidth", {{"size", 1}, {"refill_time", 1}}},
        {"ops", {{"size", 1}, {"refill_time", 1}}}}}});
}

TEST_F(ControllerTest, LatencyAndErrorMetrics) {
  auto& group = metrics::registry().group("api_server");
  auto& put_mc = group.summary("put_machine_config_us");
  auto& root = group.summary("get_root_us");
  auto& other = group.summary("other_us");
  auto& errors = group.counter("errors_4xx");
  const auto put_before = put_mc.count().value();
  const auto root_before = root.count().value();
  const auto other_before = other.count().value();
  const auto errors_before = errors.value();
  ok("PUT", "/machine-config", {{"vcpu_count", 1}, {"mem_size_mib", 128}});
  fails("PUT", "/machine-config", "{", "deserializing");
  get("/");
  fails("GET", "/nope", "", "Invalid request");
  EXPECT_EQ(put_mc.count().value() - put_before, 2u);
  EXPECT_EQ(root.count().value() - root_before, 1u);
  EXPECT_EQ(other.count().value() - other_before, 1u);
  EXPECT_EQ(errors.value() - errors_before, 2u);
  // Every route class has its summary.
  for (std::size_t i = 0; i < static_cast<std::size_t>(Controller::Route::kCount); ++i) {
    const std::string name =
        std::string(Controller::route_name(static_cast<Controller::Route>(i))) + "_us_count";
    bool found = false;
    for (const auto& [n, v] : group.totals()) found = found || n == name;
    EXPECT_TRUE(found) << name;
  }
}

TEST_F(ControllerTest, HostileInputNeverCrashes) {
  // Deep nesting, invalid UTF-8 in paths and ids, NUL bytes, huge numbers.
  // serde_json's recursion limit: 128 levels.
  fails("PUT", "/boot-source", std::string(20000, '[') + std::string(20000, ']'),
        "An error occurred when deserializing the json body of a request: recursion limit "
        "exceeded at line 1 column 128.");
  fails("PUT", "/boot-source", std::string(20000, '['), "recursion limit exceeded");
  fails("PUT", "/boot-source", std::string(127, '[') + std::string(127, ']'),
        "invalid type: sequence, expected struct BootSourceConfig");
  fails("PUT", "/drives/\xff\xfe", root_drive().dump(), "API Resource IDs");
  fails("GET", "/\xff", "", "Invalid request method and/or path");
  fails("PUT", "/boot-source", std::string("{\"kernel_image_path\": \"a\0b\"}", 28),
        "deserializing");
  fails("PUT", "/machine-config", R"({"vcpu_count": 1e400, "mem_size_mib": 1})", "");
  fails("PUT", "/machine-config", R"({"vcpu_count": 4294967296, "mem_size_mib": 128})",
        "invalid value: integer `4294967296`, expected u8");
  Controller unchecked(backend_, ControllerOptions{"x", false});
  auto r = unchecked.handle({"PUT", "/boot-source", "{\"kernel_image_path\": \"/k\\u0000\"}"});
  EXPECT_EQ(r.status, 204) << r.body;
  r = unchecked.handle({"GET", "/vm/config", ""});
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(json::accept(r.body)) << r.body;
}

// --- Snapshots: PUT /snapshot/create and PUT /snapshot/load ------------------

class SnapshotTest : public ControllerTest {
 protected:
  // A fresh process: a new controller on a new backend.
  void fresh() {
    controller_.reset();
    backend_ = RecordingBackend{};
    backend_.restored = restored_vm();
    controller_ = std::make_unique<Controller>(backend_, ControllerOptions{"test-vm", true});
  }
  void SetUp() override {
    ControllerTest::SetUp();
    backend_.restored = restored_vm();
  }
  // What the fake backend restores: a VM of its own, with the logger of
  // the process that took the snapshot.
  config::VmConfig restored_vm() const {
    config::VmConfig c;
    c.boot_source = config::BootSource{"/old/vmlinux", std::nullopt, std::string("console=ttyS0")};
    c.machine_config.vcpu_count = 2;
    c.machine_config.mem_size_mib = 256;
    config::Drive root;
    root.drive_id = "rootfs";
    root.path_on_host = rootfs_;
    root.is_root_device = true;
    c.drives = {root};
    config::NetworkInterface eth0;
    eth0.iface_id = "eth0";
    eth0.host_dev_name = "tap0";
    config::NetworkInterface eth1 = eth0;
    eth1.iface_id = "eth1";
    eth1.host_dev_name = "tap1";
    c.network_interfaces = {eth0, eth1};
    c.logger = config::LoggerConfig{"/old/fc.log", config::LoggerConfig::Level::kTrace, true, true};
    return c;
  }
  static json load_body(bool resume_vm = false) {
    return {{"snapshot_path", "vm.snap"},
            {"mem_backend", {{"backend_path", "vm.mem"}, {"backend_type", "File"}}},
            {"resume_vm", resume_vm}};
  }
  static json create_body(const char* type = "Full") {
    return {{"snapshot_type", type}, {"snapshot_path", "vm.snap"}, {"mem_file_path", "vm.mem"}};
  }
  void boot_paused() {
    boot();
    ok("PATCH", "/vm", {{"state", "Paused"}});
    ASSERT_EQ(state(), "Paused");
  }
  bool called(const std::string& name) const {
    return std::find(backend_.calls.begin(), backend_.calls.end(), name) != backend_.calls.end();
  }
};

constexpr const char* kLoadNotAllowed =
    "Load snapshot error: Loading a microVM snapshot not allowed after configuring "
    "boot-specific resources.";
constexpr const char* kWhileRunning =
    "Create snapshot error: Cannot save the microVM state: Operation not allowed: save/restore "
    "unavailable while running";
constexpr const char* kDiffNeedsTracking =
    "The requested operation is not supported: Diff snapshots are not allowed on uVMs with dirty "
    "page tracking disabled.";

TEST_F(SnapshotTest, CreateOnlyOnAPausedVm) {
  fails("PUT", "/snapshot/create", create_body().dump(),
        "The requested operation is not supported before starting the microVM.");
  boot();
  fails("PUT", "/snapshot/create", create_body().dump(), kWhileRunning);
  EXPECT_FALSE(called("create_snapshot"));
  ok("PATCH", "/vm", {{"state", "Paused"}});
  ok("PUT", "/snapshot/create", create_body());
  ASSERT_TRUE(backend_.created);
  EXPECT_EQ(*backend_.created,
            (config::SnapshotCreate{config::SnapshotType::kFull, "vm.snap", "vm.mem"}));
  EXPECT_EQ(state(), "Paused");
  // snapshot_type defaults to Full.
  backend_.created.reset();
  ok("PUT", "/snapshot/create", {{"snapshot_path", "b.snap"}, {"mem_file_path", "b.mem"}});
  ASSERT_TRUE(backend_.created);
  EXPECT_EQ(backend_.created->type, config::SnapshotType::kFull);
  EXPECT_EQ(backend_.created->snapshot_path, "b.snap");
  ok("PATCH", "/vm", {{"state", "Resumed"}});
  backend_.created.reset();
  fails("PUT", "/snapshot/create", create_body().dump(), kWhileRunning);
  EXPECT_FALSE(backend_.created);
}

TEST_F(SnapshotTest, CreateAfterMarkStartedNeedsAPauseToo) {
  controller_->mark_started();
  fails("PUT", "/snapshot/create", create_body().dump(), kWhileRunning);
  ok("PATCH", "/vm", {{"state", "Paused"}});
  ok("PUT", "/snapshot/create", create_body());
  EXPECT_TRUE(backend_.created);
}

TEST_F(SnapshotTest, DiffNeedsDirtyPageTracking) {
  boot_paused();
  EXPECT_FALSE(get("/machine-config")["track_dirty_pages"].get<bool>());
  fails("PUT", "/snapshot/create", create_body("Diff").dump(), kDiffNeedsTracking);
  EXPECT_FALSE(backend_.created);
  ok("PUT", "/snapshot/create", create_body("Full"));

  fresh();
  ok("PUT", "/machine-config",
     {{"vcpu_count", 1}, {"mem_size_mib", 128}, {"track_dirty_pages", true}});
  EXPECT_TRUE(controller_->config().machine_config.track_dirty_pages);
  EXPECT_EQ(get("/machine-config")["track_dirty_pages"], true);
  EXPECT_EQ(get("/vm/config")["machine-config"]["track_dirty_pages"], true);
  boot_paused();
  ASSERT_TRUE(backend_.started_with);
  EXPECT_TRUE(backend_.started_with->machine_config.track_dirty_pages);
  ok("PUT", "/snapshot/create", create_body("Diff"));
  ASSERT_TRUE(backend_.created);
  EXPECT_EQ(backend_.created->type, config::SnapshotType::kDiff);
}

TEST_F(SnapshotTest, CreateBodyAndPathErrors) {
  // The body is read first, as Firecracker's API thread does.
  fails("PUT", "/snapshot/create", R"({"snapshot_path": "s"})",
        "An error occurred when deserializing the json body of a request: missing field "
        "`mem_file_path` at line 1 column 22.");
  boot_paused();
  fails("PUT", "/snapshot/create", R"({"snapshot_path": "s", "mem_file_path": "m", "x": 1})",
        "An error occurred when deserializing the json body of a request: unknown field `x`, "
        "expected one of `snapshot_type`, `snapshot_path`, `mem_file_path` at line 1 column 48.");
  fails("PUT", "/snapshot/create",
        R"({"snapshot_type": "full", "snapshot_path": "s", "mem_file_path": "m"})",
        "unknown variant `full`, expected `Diff` or `Full`");
  fails("PUT", "/snapshot/create", R"({"snapshot_path": ["s"], "mem_file_path": "m"})",
        "invalid type: sequence, expected path string");
  fails("PUT", "/snapshot/create", "{", "An error occurred when deserializing the json body");
  fails("PUT", "/snapshot/create", R"({"snapshot_path": "", "mem_file_path": "m"})",
        "Create snapshot error: no snapshot_path given (empty path)");
  fails("PUT", "/snapshot/create", R"({"snapshot_path": "s", "mem_file_path": ""})",
        "Create snapshot error: no mem_file_path given (empty path)");
  EXPECT_FALSE(called("create_snapshot"));
}

TEST_F(SnapshotTest, CreateBackendErrorKeepsTheVmPaused) {
  boot_paused();
  backend_.errors["create_snapshot"] = "cannot write vm.mem: No space left on device";
  fails("PUT", "/snapshot/create", create_body().dump(),
        "Create snapshot error: cannot write vm.mem: No space left on device");
  EXPECT_EQ(state(), "Paused");
  backend_.errors.clear();
  ok("PUT", "/snapshot/create", create_body());
}

TEST_F(SnapshotTest, LoadOnAFreshProcessLeavesTheVmPaused) {
  // The logger and metrics may come first (they are not boot-specific).
  ok("PUT", "/logger", {{"log_path", dir_ + "/log"}, {"level", "Info"}});
  ok("PUT", "/metrics", {{"metrics_path", dir_ + "/metrics"}});
  json body = load_body();
  body["track_dirty_pages"] = true;
  body["network_overrides"] = {{{"iface_id", "eth1"}, {"host_dev_name", "vmtap9"}}};
  const auto r = call("PUT", "/snapshot/load", body.dump());
  EXPECT_EQ(r.status, 204) << r.body;
  EXPECT_TRUE(r.headers.empty());
  EXPECT_EQ(backend_.calls,
            (std::vector<std::string>{"configure_logger", "configure_metrics", "load_snapshot"}));
  ASSERT_TRUE(backend_.loaded);
  config::SnapshotLoad expected_load;
  expected_load.snapshot_path = "vm.snap";
  expected_load.mem_backend_path = "vm.mem";
  expected_load.track_dirty_pages = true;
  expected_load.network_overrides = {{"eth1", "vmtap9"}};
  EXPECT_EQ(*backend_.loaded, expected_load);
  EXPECT_EQ(state(), "Paused");
  EXPECT_EQ(controller_->state(), VmState::kPaused);

  // The restored VM, with the request's tracking and TAP names and this
  // process's logger and metrics.
  config::VmConfig expected = restored_vm();
  expected.machine_config.track_dirty_pages = true;
  expected.network_interfaces[1].host_dev_name = "vmtap9";
  expected.logger = config::LoggerConfig{dir_ + "/log", config::LoggerConfig::Level::kInfo};
  expected.metrics = config::MetricsConfig{dir_ + "/metrics"};
  EXPECT_EQ(controller_->config(), expected);
  EXPECT_EQ(get("/vm/config"), vm_config_to_json_value(expected));
  EXPECT_EQ(get("/machine-config")["vcpu_count"], 2);
  EXPECT_EQ(get("/machine-config")["track_dirty_pages"], true);

  // From here on the post-boot rules hold.
  fails("PUT", "/boot-source", json{{"kernel_image_path", kernel_}}.dump(), kPostBoot);
  fails("PUT", "/machine-config", R"({"vcpu_count": 1, "mem_size_mib": 128})", kPostBoot);
  fails("PUT", "/actions", R"({"action_type": "InstanceStart"})", kPostBoot);
  fails("PUT", "/snapshot/load", load_body().dump(), kPostBoot);
  EXPECT_FALSE(called("start"));
  ok("PATCH", "/drives/rootfs", {{"drive_id", "rootfs"}, {"path_on_host", data_}});
  EXPECT_EQ(backend_.drive_path, data_);
  // Tracking came with the load: a Diff snapshot may be taken.
  ok("PUT", "/snapshot/create", create_body("Diff"));
  ok("PATCH", "/vm", {{"state", "Resumed"}});
  EXPECT_EQ(backend_.calls.back(), "resume");
  EXPECT_EQ(state(), "Running");
  fails("PUT", "/snapshot/create", create_body().dump(), kWhileRunning);
}

TEST_F(SnapshotTest, LoadWithResumeVmLeavesTheVmRunning) {
  ok("PUT", "/snapshot/load", load_body(true));
  ASSERT_TRUE(backend_.loaded);
  EXPECT_TRUE(backend_.loaded->resume_vm);
  EXPECT_EQ(state(), "Running");
  // Without tracking asked for, none (whatever the snapshot's VM had).
  EXPECT_FALSE(controller_->config().machine_config.track_dirty_pages);
  // The restored VM's configuration, this process's (unset) logger.
  config::VmConfig expected = restored_vm();
  expected.logger.reset();
  EXPECT_EQ(get("/vm/config"), vm_config_to_json_value(expected));
  fails("PUT", "/snapshot/create", create_body().dump(), kWhileRunning);
  ok("PATCH", "/vm", {{"state", "Paused"}});
  fails("PUT", "/snapshot/create", create_body("Diff").dump(), kDiffNeedsTracking);
  ok("PUT", "/snapshot/create", create_body());
}

TEST_F(SnapshotTest, LoadRefusedAfterBootSpecificResources) {
  const std::string drive = root_drive().dump();
  const std::vector<std::tuple<std::string, std::string, std::string>> configure = {
      {"PUT", "/boot-source", json{{"kernel_image_path", kernel_}}.dump()},
      {"PUT", "/machine-config", R"({"vcpu_count": 2, "mem_size_mib": 256})"},
      {"PATCH", "/machine-config", R"({"vcpu_count": 2})"},
      {"PUT", "/drives/rootfs", drive},
      {"PUT", "/network-interfaces/eth0", R"({"iface_id": "eth0", "host_dev_name": "tap0"})"},
      {"PUT", "/entropy", "{}"},
  };
  for (const auto& [method, target, body] : configure) {
    SCOPED_TRACE(method + " " + target);
    fresh();
    const auto r = call(method, target, body);
    EXPECT_EQ(r.status, 204) << r.body;
    fails("PUT", "/snapshot/load", load_body().dump(), kLoadNotAllowed);
    EXPECT_FALSE(backend_.loaded);
    EXPECT_EQ(state(), "Not started");
  }
}

TEST_F(SnapshotTest, LoadRefusedEvenAfterAFailedConfiguration) {
  // Firecracker marks the boot path before it tries the request: a drive
  // whose file cannot be opened closes it too.
  fails("PUT", "/drives/rootfs",
        json{{"drive_id", "rootfs"}, {"path_on_host", dir_ + "/missing"}, {"is_root_device", true}}
            .dump(),
        "No such file or directory");
  fails("PUT", "/snapshot/load", load_body().dump(), kLoadNotAllowed);
  // Not a body its API thread refuses, nor an id that differs from the
  // path's.
  fresh();
  fails("PUT", "/boot-source", R"({"kernel": "x"})", "unknown field `kernel`");
  fails("PUT", "/drives/rootfs",
        json{{"drive_id", "other"}, {"path_on_host", rootfs_}, {"is_root_device", true}}.dump(),
        "does not match the id from the body");
  fails("PATCH", "/machine-config", R"({"vcpu_count": null})", "Empty PATCH request.");
  ok("PUT", "/snapshot/load", load_body());
}

TEST_F(SnapshotTest, LoggerMetricsAndSerialDoNotBlockALoad) {
  ok("PUT", "/logger", {{"level", "Debug"}});
  ok("PUT", "/metrics", {{"metrics_path", dir_ + "/metrics"}});
  // Firecracker keeps the serial configuration out of the boot path too.
  ok("PUT", "/serial", {{"serial_out_path", dir_ + "/serial"}});
  ok("PUT", "/snapshot/load", load_body());
  EXPECT_EQ(state(), "Paused");
  ASSERT_TRUE(controller_->config().serial);
  EXPECT_EQ(controller_->config().serial->serial_out_path, dir_ + "/serial");
  EXPECT_EQ(controller_->config().logger->level, config::LoggerConfig::Level::kDebug);
}

TEST_F(SnapshotTest, LoadRefusedAfterStart) {
  boot();
  fails("PUT", "/snapshot/load", load_body().dump(),
        "The requested operation is not supported after starting the microVM.");
  EXPECT_FALSE(backend_.loaded);
  fresh();
  controller_->mark_started();
  fails("PUT", "/snapshot/load", load_body().dump(), kPostBoot);
  EXPECT_FALSE(backend_.loaded);
}

TEST_F(SnapshotTest, LoadRefusedASecondTime) {
  ok("PUT", "/snapshot/load", load_body());
  backend_.loaded.reset();
  fails("PUT", "/snapshot/load", load_body(true).dump(), kPostBoot);
  EXPECT_FALSE(backend_.loaded);
  EXPECT_EQ(state(), "Paused");
}

TEST_F(SnapshotTest, FailedLoadLeavesTheProcessAsItWas) {
  ok("PUT", "/logger", {{"level", "Info"}});
  const config::VmConfig before = controller_->config();
  backend_.errors["load_snapshot"] = "Failed to open snapshot file: No such file or directory";
  fails("PUT", "/snapshot/load", load_body(true).dump(),
        "Load snapshot error: Failed to open snapshot file: No such file or directory");
  EXPECT_TRUE(backend_.loaded);
  EXPECT_EQ(state(), "Not started");
  EXPECT_EQ(controller_->config(), before);
  // Another load may follow...
  backend_.errors.clear();
  ok("PUT", "/snapshot/load", load_body(true));
  EXPECT_EQ(state(), "Running");

  // ... or a configuration and InstanceStart.
  fresh();
  backend_.errors["load_snapshot"] = "bad snapshot";
  fails("PUT", "/snapshot/load", load_body().dump(), "Load snapshot error: bad snapshot");
  boot();
  EXPECT_EQ(state(), "Running");
  EXPECT_EQ(controller_->config().boot_source->kernel_image_path, kernel_);
}

TEST_F(SnapshotTest, LoadBodyErrors) {
  constexpr const char* kDeser =
      "An error occurred when deserializing the json body of a request: ";
  fails(
      "PUT", "/snapshot/load", R"({"snapshot_path": "s"})",
      std::string(kDeser) + "missing field: either `mem_backend` or `mem_file_path` is required.");
  fails("PUT", "/snapshot/load",
        R"({"snapshot_path": "s", "mem_file_path": "m",
            "mem_backend": {"backend_path": "m", "backend_type": "File"}})",
        std::string(kDeser) +
            "too many fields: either `mem_backend` or `mem_file_path` exclusively is required.");
  fails("PUT", "/snapshot/load", R"({"mem_file_path": "m"})",
        std::string(kDeser) + "missing field `snapshot_path` at line 1 column 22.");
  fails("PUT", "/snapshot/load", R"({"snapshot_path": "s", "mem_backend": {"backend_path": "m"}})",
        "missing field `backend_type`");
  fails("PUT", "/snapshot/load",
        R"({"snapshot_path": "s", "mem_backend": {"backend_path": "m", "backend_type": "Mmap"}})",
        "unknown variant `Mmap`, expected `File` or `Uffd`");
  fails("PUT", "/snapshot/load", R"({"snapshot_path": "s", "mem_file_path": "m", "resume": 1})",
        "unknown field `resume`");
  fails("PUT", "/snapshot/load", R"({"snapshot_path": "s", "mem_file_path": "m", "resume_vm": 1})",
        "invalid type: integer `1`, expected a boolean");
  fails("PUT", "/snapshot/load",
        R"({"snapshot_path": "s", "mem_file_path": "m", "network_overrides": {}})",
        "invalid type: map, expected a sequence");
  fails("PUT", "/snapshot/load",
        R"({"snapshot_path": "s", "mem_file_path": "m", "network_overrides": [{"iface_id": "e"}]})",
        "missing field `host_dev_name`");
  // What hvz lacks, in its own words.
  fails("PUT", "/snapshot/load",
        R"({"snapshot_path": "s", "mem_file_path": "m", "vsock_override": {"uds_path": "v"}})",
        "vsock_override: vsock is not supported yet");
  // The parameters' own rules, after the state's.
  fails("PUT", "/snapshot/load",
        R"({"snapshot_path": "", "mem_backend": {"backend_path": "m", "backend_type": "Uffd"}})",
        "Load snapshot error: no snapshot_path given (empty path)");
  fails("PUT", "/snapshot/load", R"({"snapshot_path": "s", "mem_file_path": ""})",
        "Load snapshot error: no memory backend path given (empty path)");
  fails("PUT", "/snapshot/load",
        R"({"snapshot_path": "s", "mem_file_path": "m", "network_overrides": [
              {"iface_id": "eth0", "host_dev_name": "a"}, {"iface_id": "eth0", "host_dev_name": "b"}]})",
        "Load snapshot error: network_overrides: duplicate iface_id 'eth0'");
  fails("PUT", "/snapshot/load",
        R"({"snapshot_path": "s", "mem_file_path": "m", "network_overrides": [
              {"iface_id": "eth-0", "host_dev_name": "a"}]})",
        "Load snapshot error: network_overrides: invalid iface_id 'eth-0'");
  EXPECT_FALSE(backend_.loaded);
  EXPECT_EQ(state(), "Not started");
  // None of them used the one load.
  ok("PUT", "/snapshot/load", load_body());
}

TEST_F(SnapshotTest, DeprecatedLoadFieldsGetTheHeader) {
  auto r = call("PUT", "/snapshot/load", R"({"snapshot_path": "s", "mem_file_path": "m"})");
  EXPECT_EQ(r.status, 204) << r.body;
  ASSERT_EQ(r.headers.size(), 1u);
  EXPECT_EQ(r.headers[0], (std::pair<std::string, std::string>{"Deprecation", "true"}));
  ASSERT_TRUE(backend_.loaded);
  EXPECT_EQ(backend_.loaded->mem_backend_type, config::MemBackendType::kFile);
  EXPECT_EQ(backend_.loaded->mem_backend_path, "m");
  // Flagged whatever becomes of the request after parsing.
  r = call("PUT", "/snapshot/load",
           R"({"snapshot_path": "s", "mem_backend": {"backend_path": "m", "backend_type": "File"},
               "enable_diff_snapshots": true})");
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(r.headers.size(), 1u);
  fresh();
  r = call("PUT", "/snapshot/load",
           R"({"snapshot_path": "s", "mem_backend": {"backend_path": "m", "backend_type": "File"},
               "enable_diff_snapshots": true, "track_dirty_pages": false})");
  EXPECT_EQ(r.status, 204) << r.body;
  EXPECT_EQ(r.headers.size(), 1u);
  ASSERT_TRUE(backend_.loaded);
  EXPECT_TRUE(backend_.loaded->track_dirty_pages);
  EXPECT_TRUE(controller_->config().machine_config.track_dirty_pages);
  fresh();
  r = call("PUT", "/snapshot/load", load_body().dump());
  EXPECT_EQ(r.status, 204) << r.body;
  EXPECT_TRUE(r.headers.empty());
}

TEST_F(SnapshotTest, VmBackendIsNotWiredYet) {
  auto vm = VmBackend::create();
  ASSERT_TRUE(vm) << vm.error().message();
  Controller c(**vm, ControllerOptions{"real", false});
  const auto r = c.handle(HttpRequest{"PUT", "/snapshot/load", load_body().dump()});
  expect_fault(r, "Load snapshot error: snapshot loading is not wired to the VMM yet");
  EXPECT_EQ(c.state(), VmState::kNotStarted);
  EXPECT_FALSE((*vm)->create_snapshot(config::SnapshotCreate{}));
}

}  // namespace
}  // namespace hvz::api
