// Controller: Firecracker's API semantics without sockets, on a recording
// Backend whose calls can be made to fail.
#include "api/controller.hpp"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "api/config_json.hpp"
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

  // Range checks happen at PUT/PATCH time and leave the config as it was.
  fails("PUT", "/machine-config", R"({"vcpu_count": 0, "mem_size_mib": 256})",
        "vcpu_count must be between 1 and 32");
  fails("PATCH", "/machine-config", R"({"vcpu_count": 33})", "vcpu_count must be between");
  fails("PATCH", "/machine-config", R"({"mem_size_mib": 1})", "mem_size_mib must be between");
  fails("PATCH", "/machine-config", R"({"smt": true})", "smt is not supported");
  fails("PATCH", "/machine-config", R"({"huge_pages": "2M", "mem_size_mib": 255})",
        "multiple of 2");
  fails("PATCH", "/machine-config", "{}", "Empty PATCH request.");
  fails("PATCH", "/machine-config", R"({"vcpu_count": null})", "Empty PATCH request.");
  fails("PUT", "/machine-config", R"({"vcpu_count": 2})", "machine-config: missing mem_size_mib");
  EXPECT_EQ(controller_->config().machine_config.vcpu_count, 3u);
  EXPECT_EQ(controller_->config().machine_config.mem_size_mib, 256u);
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
  fails("PUT", "/boot-source", json{{"kernel_image_path", dir_ + "/nope"}}.dump(),
        "boot-source.kernel_image_path: cannot use '" + dir_ + "/nope': No such file");
  fails("PUT", "/boot-source",
        json{{"kernel_image_path", kernel_}, {"initrd_path", dir_ + "/nope"}}.dump(),
        "boot-source.initrd_path: cannot use");
  fails("PUT", "/boot-source", json{{"kernel_image_path", dir_}}.dump(), "it is a directory");
  fails("PUT", "/boot-source", json{{"kernel_image_path", ""}}.dump(), "must not be empty");
  fails("PUT", "/drives/rootfs",
        json{{"drive_id", "rootfs"}, {"path_on_host", dir_ + "/nope"}, {"is_root_device", true}}
            .dump(),
        "drive.path_on_host: cannot use");
  EXPECT_FALSE(controller_->config().boot_source);
  EXPECT_TRUE(controller_->config().drives.empty());

  Controller unchecked(backend_, ControllerOptions{"x", false});
  auto r = unchecked.handle({"PUT", "/boot-source", R"({"kernel_image_path": "/no/such"})"});
  EXPECT_EQ(r.status, 204) << r.body;
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
  fails("PUT", "/network-interfaces/eth2", R"({"iface_id": "eth2", "host_dev_name": "tap0"})",
        "host_dev_name 'tap0' used twice");
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
  fails("PUT", "/logger", R"({"level": "Chatty"})", "logger.level: expected Error, Warning");
  fails("PUT", "/logger", R"({"module": "api_server::request"})",
        "logger.module: filtering by module is not supported yet");

  ok("PUT", "/metrics", {{"metrics_path", dir_ + "/metrics"}});
  ASSERT_TRUE(backend_.metrics);
  EXPECT_EQ(backend_.metrics->metrics_path, dir_ + "/metrics");
  EXPECT_EQ(controller_->config().metrics, backend_.metrics);
  fails("PUT", "/metrics", "{}", "metrics: missing metrics_path");

  ok("PUT", "/serial", {{"serial_out_path", dir_ + "/serial"}});
  EXPECT_EQ(controller_->config().serial->serial_out_path, dir_ + "/serial");
  ok("PUT", "/serial", json::object());
  EXPECT_EQ(controller_->config().serial->serial_out_path, "");

  ok("PUT", "/entropy", {{"rate_limiter", {{"bandwidth", {{"size", 64}, {"refill_time", 5}}}}}});
  EXPECT_EQ(controller_->config().entropy->rate_limiter->bandwidth->size, 64u);
  ok("PUT", "/entropy", json::object());
  EXPECT_FALSE(controller_->config().entropy->rate_limiter);
  fails("PUT", "/entropy", R"({"rng": 1})", "entropy: unknown field 'rng'");
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
  fails("PATCH", "/vm", R"({"state": "Stopped"})", "vm.state: expected one of Paused, Resumed");
  fails("PATCH", "/vm", R"({"state": "Paused", "x": 1})", "vm: unknown field 'x'");
  fails("PATCH", "/vm", R"({})", "vm: missing state");
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
  backend_.errors["update_drive"] = "cannot open /new: No such file";
  fails("PATCH", "/drives/rootfs", json{{"drive_id", "rootfs"}, {"path_on_host", "/new"}}.dump(),
        "cannot open /new");
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
  backend_.errors["configure_metrics"] = "metrics already configured";
  fails("PUT", "/metrics", json{{"metrics_path", "/m"}}.dump(), "metrics already configured");
  EXPECT_FALSE(controller_->config().metrics);
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

  fails("PATCH", "/drives/rootfs", R"({"drive_id": "rootfs"})", "nothing to update");
  fails("PATCH", "/drives/rootfs", R"({"drive_id": "rootfs", "is_read_only": true})",
        "drive: unknown field 'is_read_only'");
  fails("PATCH", "/drives/rootfs", R"({"drive_id": "rootfs", "path_on_host": ""})",
        "must not be empty");
  fails("PATCH", "/drives/nope", R"({"drive_id": "nope", "path_on_host": "/x"})",
        "no drive 'nope'");
  fails("PATCH", "/drives/rootfs",
        R"({"drive_id": "rootfs", "rate_limiter": {"ops": {"size": 100}}})",
        "drive.rate_limiter.ops: missing refill_time");
  fails("PATCH", "/drives/rootfs", R"({"path_on_host": "/x"})", "drive: missing drive_id");
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
        "network-interface.rx_rate_limiter: unknown field 'bytes'");
  fails("PATCH", "/network-interfaces/eth9", R"({"iface_id": "eth9"})", "no interface 'eth9'");
  backend_.errors["update_network_interface"] = "no such tap";
  fails("PATCH", "/network-interfaces/eth0", R"({"iface_id": "eth0", "tx_rate_limiter": {}})",
        "no such tap");
}

TEST_F(ControllerTest, Actions) {
  fails("PUT", "/actions", R"({"action_type": "SendCtrlAltDel"})", kPreBoot);
  fails("PUT", "/actions", R"({"action_type": "FlushMetrics"})", kPreBoot);
  fails("PUT", "/actions", R"({"action_type": "Reboot"})",
        "actions.action_type: expected one of InstanceStart, SendCtrlAltDel, FlushMetrics");
  fails("PUT", "/actions", R"({"action_type": 1})", "actions.action_type: expected one of");
  fails("PUT", "/actions", R"({"action_type": "InstanceStart", "now": true})",
        "actions: unknown field 'now'");
  fails("PUT", "/actions", R"({})", "actions: missing action_type");
  fails("PUT", "/actions", R"(["InstanceStart"])", "actions: expected an object");
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
  fails("PUT", "/boot-source", json{{"kernel_image_path", kernel_}, {"x", 1}}.dump(),
        "boot-source: unknown field 'x'");
  fails("PUT", "/boot-source", R"({"kernel_image_path": 5})",
        "boot-source.kernel_image_path: expected a string");
  fails("PUT", "/boot-source", R"({"boot_args": "quiet"})",
        "boot-source: missing kernel_image_path");
  fails("PUT", "/machine-config", R"({"vcpu_count": "2", "mem_size_mib": 128})",
        "machine-config.vcpu_count: expected a non-negative integer");
  fails("PUT", "/machine-config", R"({"vcpu_count": -2, "mem_size_mib": 128})",
        "machine-config.vcpu_count: expected a non-negative integer");
  fails("PUT", "/drives/rootfs", R"({"drive_id": "rootfs", "path_on_host": "/r"})",
        "drive: missing is_root_device");
  fails("PUT", "/drives/rootfs",
        R"({"drive_id": "rootfs", "path_on_host": "/r", "is_root_device": "true"})",
        "drive.is_root_device: expected true or false");
  fails("PUT", "/network-interfaces/eth0",
        R"({"iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": "nope"})",
        "network-interface.guest_mac: expected aa:bb:cc:dd:ee:ff");
  // Bad JSON and bodies that are not objects.
  fails("PUT", "/boot-source", "{", "An error occurred when deserializing the json body");
  fails("PUT", "/boot-source", "{\"kernel_image_path\": \"/k\",}", "deserializing");
  fails("PUT", "/boot-source", "   ", "deserializing");
  fails("PUT", "/boot-source", "\"text\"", "boot-source: expected an object");
  fails("PUT", "/boot-source", "null", "boot-source: expected an object");
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
  fails("PUT", "/snapshot/create", R"({"snapshot_path": "/s", "mem_file_path": "/m"})",
        "snapshots are not supported yet");
  fails("PUT", "/snapshot/load", R"({"snapshot_path": "/s"})", "snapshots are not supported yet");
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
  fails("PUT", "/boot-source", std::string(20000, '[') + std::string(20000, ']'),
        "boot-source: expected an object");
  fails("PUT", "/boot-source", std::string(20000, '['), "deserializing");
  fails("PUT", "/drives/\xff\xfe", root_drive().dump(), "API Resource IDs");
  fails("GET", "/\xff", "", "Invalid request method and/or path");
  fails("PUT", "/boot-source", std::string("{\"kernel_image_path\": \"a\0b\"}", 28),
        "deserializing");
  fails("PUT", "/machine-config", R"({"vcpu_count": 1e400, "mem_size_mib": 1})", "");
  fails("PUT", "/machine-config", R"({"vcpu_count": 4294967296, "mem_size_mib": 128})",
        "vcpu_count: expected a non-negative integer");
  Controller unchecked(backend_, ControllerOptions{"x", false});
  auto r = unchecked.handle({"PUT", "/boot-source", "{\"kernel_image_path\": \"/k\\u0000\"}"});
  EXPECT_EQ(r.status, 204) << r.body;
  r = unchecked.handle({"GET", "/vm/config", ""});
  EXPECT_EQ(r.status, 200);
  EXPECT_NO_THROW(json::parse(r.body));
}

}  // namespace
}  // namespace hvz::api
