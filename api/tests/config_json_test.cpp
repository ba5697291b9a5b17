// Config-file JSON: Firecracker's shape accepted, everything else refused
// with a message naming the field.
#include "api/config_json.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace hvz::api {
namespace {

TEST(ConfigJson, ParsesFirecrackerConfigFile) {
  auto c = parse_vm_config(R"({
    "boot-source": {"kernel_image_path": "/k", "initrd_path": "/i", "boot_args": "console=ttyS0"},
    "machine-config": {"vcpu_count": 2, "mem_size_mib": 256, "smt": false, "huge_pages": "2M"},
    "drives": [], "network-interfaces": []
  })");
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(c->boot_source->kernel_image_path, "/k");
  EXPECT_EQ(c->boot_source->initrd_path, "/i");
  EXPECT_EQ(c->boot_source->boot_args, "console=ttyS0");
  EXPECT_EQ(c->machine_config.vcpu_count, 2u);
  EXPECT_EQ(c->machine_config.mem_size_mib, 256u);
  EXPECT_EQ(c->machine_config.huge_pages, config::HugePages::k2M);
}

TEST(ConfigJson, DefaultsWithoutMachineConfig) {
  auto c = parse_vm_config(R"({"boot-source": {"kernel_image_path": "/k"}})");
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(c->machine_config.vcpu_count, 1u);
  EXPECT_EQ(c->machine_config.mem_size_mib, 128u);
  EXPECT_FALSE(c->boot_source->boot_args);
}

void expect_error(const char* json, const char* fragment) {
  auto c = parse_vm_config(json);
  ASSERT_FALSE(c) << json;
  EXPECT_NE(c.error().message().find(fragment), std::string::npos)
      << c.error().message() << " lacks " << fragment;
}

TEST(ConfigJson, RefusesMalformedInput) {
  expect_error("", "malformed JSON");
  expect_error("{", "malformed JSON");
  expect_error("[]", "expected an object");
  expect_error(R"({"boot-source": {"kernel_image_path": "/k"}, "bogus": 1})",
               "unknown field 'bogus'");
  expect_error(R"({"machine-config": {"vcpu_count": 1, "mem_size_mib": 128}})",
               "missing boot-source");
  expect_error(R"({"boot-source": {}})", "missing kernel_image_path");
  expect_error(R"({"boot-source": {"kernel_image_path": 7}})",
               "kernel_image_path: expected a string");
  expect_error(R"({"boot-source": {"kernel_image_path": "/k", "x": 1}})", "unknown field 'x'");
  expect_error(R"({"boot-source": {"kernel_image_path": "/k"},
                   "machine-config": {"vcpu_count": -1, "mem_size_mib": 128}})",
               "vcpu_count: expected a non-negative integer");
  expect_error(R"({"boot-source": {"kernel_image_path": "/k"},
                   "machine-config": {"vcpu_count": "2", "mem_size_mib": 128}})",
               "vcpu_count");
  expect_error(
      R"({"boot-source": {"kernel_image_path": "/k"}, "machine-config": {"vcpu_count": 1}})",
      "missing mem_size_mib");
  expect_error(R"({"boot-source": {"kernel_image_path": "/k"},
                   "machine-config": {"vcpu_count": 1, "mem_size_mib": 128, "huge_pages": "1G"}})",
               "huge_pages");
  expect_error(R"({"boot-source": {"kernel_image_path": "/k"},
                   "machine-config": {"vcpu_count": 1, "mem_size_mib": 99999999999}})",
               "mem_size_mib");
  expect_error(R"({"boot-source": {"kernel_image_path": "/k"}, "drives": [{"drive_id": "a"}]})",
               "drives[0]: missing path_on_host");
  expect_error(R"({"boot-source": {"kernel_image_path": "/k"}, "drives": {}})",
               "drives: expected an array");
  expect_error(R"({"boot-source": {"kernel_image_path": "/k"}, "drives": [{"drive_id": "a",
                   "path_on_host": "/x", "is_root_device": "yes"}]})",
               "is_root_device: expected true or false");
  expect_error(R"({"boot-source": {"kernel_image_path": "/k"}, "drives": [{"drive_id": "a",
                   "path_on_host": "/x", "is_root_device": false, "bogus": 1}]})",
               "unknown field 'bogus'");
  expect_error(R"({"boot-source": {"kernel_image_path": "/k"},
                   "network-interfaces": [{"iface_id": "eth0"}]})",
               "missing host_dev_name");
  expect_error(R"({"boot-source": {"kernel_image_path": "/k"},
                   "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap0",
                                           "guest_mac": "06:00:zz:00:00:01"}]})",
               "guest_mac");
  expect_error(R"({"boot-source": {"kernel_image_path": "/k"},
                   "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap0",
                                           "rx_rate_limiter": {"bytes": {}}}]})",
               "network-interfaces[0].rx_rate_limiter: unknown field 'bytes'");
  expect_error(R"({"boot-source": {"kernel_image_path": "/k"}, "console": {"mode": "tty"}})",
               "console.mode");
}

TEST(ConfigJson, ParsesDrives) {
  auto c = parse_vm_config(R"({"boot-source": {"kernel_image_path": "/k"}, "drives": [
    {"drive_id": "rootfs", "path_on_host": "/r.ext4", "is_root_device": true, "is_read_only": false},
    {"drive_id": "data_1", "path_on_host": "/d.img", "is_root_device": false, "is_read_only": true,
     "cache_type": "Writeback", "io_engine": "Sync"}]})");
  ASSERT_TRUE(c) << c.error().message();
  ASSERT_EQ(c->drives.size(), 2u);
  EXPECT_EQ(c->drives[0].drive_id, "rootfs");
  EXPECT_TRUE(c->drives[0].is_root_device);
  EXPECT_TRUE(c->drives[1].is_read_only);
  EXPECT_EQ(config::kernel_cmdline(*c),
            std::string(config::kDefaultBootArgs) + " root=/dev/vda rw");
}

TEST(ConfigJson, ParsesNetworkInterfacesAndConsole) {
  auto c = parse_vm_config(R"({"boot-source": {"kernel_image_path": "/k"},
    "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap0",
                            "guest_mac": "06:00:AC:10:00:02"}],
    "console": {"mode": "file", "path": "/tmp/hvc0.log"}})");
  ASSERT_TRUE(c) << c.error().message();
  ASSERT_EQ(c->network_interfaces.size(), 1u);
  EXPECT_EQ(c->network_interfaces[0].host_dev_name, "tap0");
  ASSERT_TRUE(c->network_interfaces[0].guest_mac);
  EXPECT_EQ(config::format_mac(*c->network_interfaces[0].guest_mac), "06:00:ac:10:00:02");
  ASSERT_TRUE(c->console);
  EXPECT_EQ(c->console->mode, config::Console::Mode::kFile);
  EXPECT_EQ(c->console->path, "/tmp/hvc0.log");
  auto back = parse_vm_config(vm_config_to_json(*c));
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(back->network_interfaces[0].guest_mac, c->network_interfaces[0].guest_mac);
  EXPECT_EQ(back->console->path, "/tmp/hvc0.log");
}

TEST(ConfigJson, RoundTripsThroughJson) {
  config::VmConfig c;
  c.boot_source = config::BootSource{"/k", "/i", "quiet"};
  c.machine_config.vcpu_count = 4;
  c.machine_config.mem_size_mib = 512;
  config::Drive root;
  root.drive_id = "rootfs";
  root.path_on_host = "/r.ext4";
  root.is_root_device = true;
  root.is_read_only = true;
  root.partuuid = "0eaa91a0-01";
  c.drives.push_back(root);
  auto back = parse_vm_config(vm_config_to_json(c));
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(back->boot_source->kernel_image_path, "/k");
  EXPECT_EQ(back->boot_source->initrd_path, "/i");
  EXPECT_EQ(back->boot_source->boot_args, "quiet");
  EXPECT_EQ(back->machine_config.vcpu_count, 4u);
  EXPECT_EQ(back->machine_config.mem_size_mib, 512u);
  ASSERT_EQ(back->drives.size(), 1u);
  EXPECT_EQ(back->drives[0].partuuid, "0eaa91a0-01");
  EXPECT_EQ(config::kernel_cmdline(*back), "quiet root=PARTUUID=0eaa91a0-01 ro");
}

constexpr const char* kKernel = R"("boot-source": {"kernel_image_path": "/k"})";

std::string with_kernel(const std::string& rest) {
  return std::string("{") + kKernel + ", " + rest + "}";
}

TEST(ConfigJson, ParsesRateLimitersAndIoEngine) {
  auto c = parse_vm_config(with_kernel(R"(
    "drives": [{"drive_id": "rootfs", "path_on_host": "/r", "is_root_device": true,
                "io_engine": "Async",
                "rate_limiter": {"bandwidth": {"size": 1048576, "one_time_burst": 4096,
                                               "refill_time": 100},
                                 "ops": {"size": 1000, "refill_time": 1000}}}],
    "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap0",
                            "rx_rate_limiter": {"ops": {"size": 5, "refill_time": 7,
                                                        "one_time_burst": null}},
                            "tx_rate_limiter": {}}])"));
  ASSERT_TRUE(c) << c.error().message();
  const auto& d = c->drives.at(0);
  EXPECT_EQ(d.io_engine, config::IoEngine::kAsync);
  ASSERT_TRUE(d.rate_limiter);
  ASSERT_TRUE(d.rate_limiter->bandwidth);
  EXPECT_EQ(d.rate_limiter->bandwidth->size, 1048576u);
  EXPECT_EQ(d.rate_limiter->bandwidth->one_time_burst, 4096u);
  EXPECT_EQ(d.rate_limiter->bandwidth->refill_time_ms, 100u);
  ASSERT_TRUE(d.rate_limiter->ops);
  EXPECT_EQ(d.rate_limiter->ops->size, 1000u);
  EXPECT_EQ(d.rate_limiter->ops->one_time_burst, 0u);
  const auto& n = c->network_interfaces.at(0);
  ASSERT_TRUE(n.rx_rate_limiter);
  EXPECT_FALSE(n.rx_rate_limiter->bandwidth);
  EXPECT_EQ(n.rx_rate_limiter->ops->refill_time_ms, 7u);
  ASSERT_TRUE(n.tx_rate_limiter);  // {}: present, no bucket
  EXPECT_FALSE(n.tx_rate_limiter->bandwidth);
  EXPECT_FALSE(n.tx_rate_limiter->ops);

  auto sync = parse_vm_config(with_kernel(
      R"("drives": [{"drive_id": "a", "path_on_host": "/a", "is_root_device": false}])"));
  ASSERT_TRUE(sync) << sync.error().message();
  EXPECT_EQ(sync->drives[0].io_engine, config::IoEngine::kSync);
  EXPECT_FALSE(sync->drives[0].rate_limiter);
}

TEST(ConfigJson, RefusesBadRateLimiters) {
  const std::string drive = R"("drives": [{"drive_id": "a", "path_on_host": "/a",
                                          "is_root_device": false, )";
  expect_error(with_kernel(drive + R"("rate_limiter": {"ops": {"size": 100}}}])").c_str(),
               "drives[0].rate_limiter.ops: missing refill_time");
  expect_error(with_kernel(drive + R"("rate_limiter": {"ops": {"refill_time": 100}}}])").c_str(),
               "drives[0].rate_limiter.ops: missing size");
  expect_error(
      with_kernel(drive + R"("rate_limiter": {"bandwidth": {"size": -1, "refill_time": 1}}}])")
          .c_str(),
      "drives[0].rate_limiter.bandwidth.size: expected a non-negative integer");
  expect_error(
      with_kernel(drive + R"("rate_limiter": {"bandwidth": {"size": 1.5, "refill_time": 1}}}])")
          .c_str(),
      "bandwidth.size: expected a non-negative integer");
  expect_error(with_kernel(drive + R"("rate_limiter": {"ops": {"size": 1, "refill_time": 1,
                                                                "bogus": 2}}}])")
                   .c_str(),
               "drives[0].rate_limiter.ops: unknown field 'bogus'");
  expect_error(with_kernel(drive + R"("rate_limiter": 5}])").c_str(),
               "drives[0].rate_limiter: expected an object");
  expect_error(with_kernel(drive + R"("io_engine": "Uring"}])").c_str(),
               "drives[0].io_engine: expected \"Sync\" or \"Async\"");
  expect_error(with_kernel(drive + R"("socket": "/vhost.sock"}])").c_str(),
               "drives[0].socket: vhost-user drives are not supported yet");
  // u64 limits: the largest value passes, one above is not an integer of ours.
  auto big = parse_vm_config(with_kernel(
      drive + R"("rate_limiter": {"ops": {"size": 18446744073709551615, "refill_time": 1}}}])"));
  ASSERT_TRUE(big) << big.error().message();
  EXPECT_EQ(big->drives[0].rate_limiter->ops->size, 18446744073709551615u);
  expect_error(with_kernel(drive + R"("rate_limiter": {"ops": {"size": 18446744073709551616,
                                                                "refill_time": 1}}}])")
                   .c_str(),
               "ops.size: expected a non-negative integer");
}

TEST(ConfigJson, ParsesLoggerMetricsSerialEntropy) {
  auto c = parse_vm_config(with_kernel(R"(
    "logger": {"log_path": "/tmp/fc.log", "level": "debug", "show_level": false,
               "show_log_origin": true},
    "metrics": {"metrics_path": "/tmp/metrics.fifo"},
    "serial": {"serial_out_path": "/tmp/serial.out"},
    "entropy": {"rate_limiter": {"bandwidth": {"size": 10, "refill_time": 20}}},
    "vsock": null, "balloon": null, "mmds-config": null)"));
  ASSERT_TRUE(c) << c.error().message();
  ASSERT_TRUE(c->logger);
  EXPECT_EQ(c->logger->log_path, "/tmp/fc.log");
  EXPECT_EQ(c->logger->level, config::LoggerConfig::Level::kDebug);
  EXPECT_FALSE(c->logger->show_level);
  EXPECT_TRUE(c->logger->show_log_origin);
  ASSERT_TRUE(c->metrics);
  EXPECT_EQ(c->metrics->metrics_path, "/tmp/metrics.fifo");
  ASSERT_TRUE(c->serial);
  EXPECT_EQ(c->serial->serial_out_path, "/tmp/serial.out");
  ASSERT_TRUE(c->entropy);
  ASSERT_TRUE(c->entropy->rate_limiter);
  EXPECT_EQ(c->entropy->rate_limiter->bandwidth->size, 10u);

  // Defaults: absent fields keep LoggerConfig's defaults.
  auto d = parse_vm_config(with_kernel(R"("logger": {}, "entropy": {}, "serial": {})"));
  ASSERT_TRUE(d) << d.error().message();
  EXPECT_EQ(d->logger, config::LoggerConfig{});
  EXPECT_EQ(d->entropy, config::EntropyConfig{});
  EXPECT_EQ(d->serial, config::SerialConfig{});
}

TEST(ConfigJson, LoggerLevelsAreCaseInsensitive) {
  using Level = config::LoggerConfig::Level;
  const std::pair<const char*, Level> cases[] = {
      {"Error", Level::kError}, {"WARNING", Level::kWarning}, {"warn", Level::kWarning},
      {"Info", Level::kInfo},   {"Debug", Level::kDebug},     {"trace", Level::kTrace},
      {"Off", Level::kOff},
  };
  for (const auto& [text, level] : cases) {
    auto l = parse_logger(nlohmann::json{{"level", text}}, "logger");
    ASSERT_TRUE(l) << text << ": " << l.error().message();
    EXPECT_EQ(l->level, level) << text;
  }
  auto bad = parse_logger(nlohmann::json{{"level", "Loud"}}, "logger");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("logger.level: expected Error, Warning"), std::string::npos)
      << bad.error().message();
  // PUT /logger semantics: absent fields keep the base's values.
  config::LoggerConfig base;
  base.log_path = "/old";
  base.show_log_origin = true;
  auto upd = parse_logger(nlohmann::json{{"level", "Info"}}, "logger", base);
  ASSERT_TRUE(upd) << upd.error().message();
  EXPECT_EQ(upd->log_path, "/old");
  EXPECT_TRUE(upd->show_log_origin);
  EXPECT_EQ(upd->level, Level::kInfo);
}

TEST(ConfigJson, RefusesBadNewSections) {
  expect_error(with_kernel(R"("logger": {"module": "api_server"})").c_str(),
               "logger.module: filtering by module is not supported yet");
  expect_error(with_kernel(R"("logger": {"log_path": 3})").c_str(),
               "logger.log_path: expected a string");
  expect_error(with_kernel(R"("logger": {"show_level": "yes"})").c_str(),
               "logger.show_level: expected true or false");
  expect_error(with_kernel(R"("logger": {"bogus": 1})").c_str(), "logger: unknown field 'bogus'");
  expect_error(with_kernel(R"("metrics": {})").c_str(), "metrics: missing metrics_path");
  expect_error(with_kernel(R"("metrics": {"metrics_path": ""})").c_str(),
               "metrics.metrics_path: must not be empty");
  expect_error(with_kernel(R"("serial": {"rate_limiter": {"size": 1, "refill_time": 1}})").c_str(),
               "serial.rate_limiter: rate limiting the serial console is not supported yet");
  expect_error(with_kernel(R"("entropy": {"rate_limiter": []})").c_str(),
               "entropy.rate_limiter: expected an object");
  expect_error(with_kernel(R"("vsock": {"guest_cid": 3, "uds_path": "/v.sock"})").c_str(),
               "vsock: vsock is not supported yet");
  expect_error(with_kernel(R"("balloon": {"amount_mib": 0, "deflate_on_oom": false})").c_str(),
               "balloon: the balloon device is not supported yet");
  expect_error(with_kernel(R"("mmds-config": {"network_interfaces": ["eth0"]})").c_str(),
               "mmds-config: MMDS is not supported yet");
  expect_error(with_kernel(R"("pmem": [])").c_str(), "config: unknown field 'pmem'");
  expect_error(with_kernel(R"("network-interfaces": [{"iface_id": "e", "host_dev_name": "t",
                                                      "mtu": 9000}])")
                   .c_str(),
               "network-interfaces[0].mtu: an MTU is not supported yet");
  expect_error(with_kernel(R"("machine-config": {"vcpu_count": 1, "mem_size_mib": 128,
                                                  "track_dirty_pages": true})")
                   .c_str(),
               "machine-config.track_dirty_pages: not supported yet");
}

TEST(ConfigJson, MachineConfigPatchSemantics) {
  config::MachineConfig base;
  base.vcpu_count = 4;
  base.mem_size_mib = 512;
  base.huge_pages = config::HugePages::k2M;
  auto patched =
      parse_machine_config(nlohmann::json{{"mem_size_mib", 1024}}, "machine-config", &base);
  ASSERT_TRUE(patched) << patched.error().message();
  EXPECT_EQ(patched->vcpu_count, 4u);
  EXPECT_EQ(patched->mem_size_mib, 1024u);
  EXPECT_EQ(patched->huge_pages, config::HugePages::k2M);
  // PUT semantics: both sizes required, the rest back to defaults.
  auto put = parse_machine_config(nlohmann::json{{"vcpu_count", 2}, {"mem_size_mib", 256}},
                                  "machine-config");
  ASSERT_TRUE(put) << put.error().message();
  EXPECT_EQ(put->huge_pages, config::HugePages::kNone);
  auto missing = parse_machine_config(nlohmann::json{{"vcpu_count", 2}}, "machine-config");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().message(), "machine-config: missing mem_size_mib");
}

TEST(ConfigJson, OneDriveParserForFileAndApi) {
  // The body of PUT /drives/{id} is one entry of "drives": same parser,
  // same result, only the message prefix differs.
  const auto entry = nlohmann::json::parse(R"({"drive_id": "data", "path_on_host": "/d",
      "is_root_device": false, "is_read_only": true, "io_engine": "Async"})");
  auto api = parse_drive(entry, "drive");
  auto file = parse_vm_config(
      nlohmann::json{{"boot-source", {{"kernel_image_path", "/k"}}}, {"drives", {entry}}}.dump());
  ASSERT_TRUE(api) << api.error().message();
  ASSERT_TRUE(file) << file.error().message();
  EXPECT_EQ(*api, file->drives.at(0));
  auto bad = parse_drive(nlohmann::json{{"drive_id", "x"}}, "drive");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message(), "drive: missing path_on_host");
}

TEST(ConfigJson, FullConfigRoundTripsIdentically) {
  config::VmConfig c;
  c.boot_source = config::BootSource{"/k", std::nullopt, std::nullopt};  // no boot_args: stays so
  c.machine_config.vcpu_count = 3;
  c.machine_config.mem_size_mib = 300;
  c.machine_config.huge_pages = config::HugePages::k2M;
  c.machine_config.virtio_mmio_cmdline = true;
  config::RateLimiterConfig limiter;
  limiter.bandwidth = config::TokenBucketConfig{1000, 10, 100};
  config::RateLimiterConfig ops_only;
  ops_only.ops = config::TokenBucketConfig{5, 0, 1};
  config::Drive root{"rootfs", "/r.ext4", true, false, "abcd-01", config::IoEngine::kAsync,
                     limiter};
  config::Drive data{"data",
                     "/d.img",
                     false,
                     true,
                     std::nullopt,
                     config::IoEngine::kSync,
                     config::RateLimiterConfig{}};
  c.drives = {root, data};
  config::NetworkInterface eth0{"eth0", "tap0", config::parse_mac("06:00:ac:10:00:02"), limiter,
                                ops_only};
  config::NetworkInterface eth1{"eth1", "tap1", std::nullopt, std::nullopt, std::nullopt};
  c.network_interfaces = {eth0, eth1};
  c.console = config::Console{config::Console::Mode::kSocket, "/tmp/hvc0.sock"};
  c.logger = config::LoggerConfig{"/tmp/log", config::LoggerConfig::Level::kTrace, false, true};
  c.metrics = config::MetricsConfig{"/tmp/metrics"};
  c.serial = config::SerialConfig{"/tmp/serial"};
  c.entropy = config::EntropyConfig{ops_only};
  const std::string text = vm_config_to_json(c);
  auto back = parse_vm_config(text);
  ASSERT_TRUE(back) << back.error().message() << "\n" << text;
  EXPECT_TRUE(*back == c) << text;
  EXPECT_EQ(vm_config_to_json(*back), text);

  // Firecracker's field names in the output.
  const auto j = nlohmann::json::parse(text);
  EXPECT_EQ(j["drives"][0]["rate_limiter"]["bandwidth"]["refill_time"], 100);
  EXPECT_EQ(j["drives"][0]["io_engine"], "Async");
  EXPECT_EQ(j["network-interfaces"][0]["tx_rate_limiter"]["ops"]["size"], 5);
  EXPECT_EQ(j["logger"]["level"], "Trace");
  EXPECT_EQ(j["machine-config"]["track_dirty_pages"], false);
  EXPECT_FALSE(j["boot-source"].contains("boot_args"));

  // Minimal config: optional sections stay absent.
  config::VmConfig minimal;
  minimal.boot_source = config::BootSource{"/k", std::nullopt, std::nullopt};
  auto min_back = parse_vm_config(vm_config_to_json(minimal));
  ASSERT_TRUE(min_back) << min_back.error().message();
  EXPECT_TRUE(*min_back == minimal);
}

TEST(ConfigJson, DumpNeverThrowsOnBadUtf8) {
  config::VmConfig c;
  c.boot_source = config::BootSource{"/k\xff\xfe", std::nullopt, std::nullopt};
  std::string text;
  ASSERT_NO_THROW(text = vm_config_to_json(c));
  EXPECT_NE(text.find("\xef\xbf\xbd"), std::string::npos);  // U+FFFD
}

}  // namespace
}  // namespace hvz::api
