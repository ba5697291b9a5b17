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
  expect_error("[]", "invalid type: sequence, expected struct VmmConfig at line 1 column 2");
  expect_error(R"({"boot-source": {"kernel_image_path": "/k"}, "bogus": 1})",
               "unknown field `bogus`, expected one of `balloon`, `drives`, `boot-source`");
  expect_error(R"({"machine-config": {"vcpu_count": 1, "mem_size_mib": 128}})",
               "missing field `boot-source` at line 1 column 58");
  expect_error(R"({"boot-source": {}})",
               "missing field `kernel_image_path` at line 1 column 18 (boot-source)");
  expect_error(R"({"boot-source": {"kernel_image_path": 7}})",
               "invalid type: integer `7`, expected a string at line 1 column 39 "
               "(boot-source.kernel_image_path)");
  expect_error(R"({"boot-source": {"kernel_image_path": "/k", "x": 1}})", "unknown field `x`");
  expect_error(
      R"({"boot-source": {"kernel_image_path": "/k"},
                   "machine-config": {"vcpu_count": -1, "mem_size_mib": 128}})",
      "invalid value: integer `-1`, expected u8 at line 2 column 54 (machine-config.vcpu_count)");
  expect_error(R"({"boot-source": {"kernel_image_path": "/k"},
                   "machine-config": {"vcpu_count": "2", "mem_size_mib": 128}})",
               "vcpu_count");
  expect_error(
      R"({"boot-source": {"kernel_image_path": "/k"}, "machine-config": {"vcpu_count": 1}})",
      "missing field `mem_size_mib` at line 1 column 80 (machine-config)");
  expect_error(
      R"({"boot-source": {"kernel_image_path": "/k"},
                   "machine-config": {"vcpu_count": 1, "mem_size_mib": 128, "huge_pages": "1G"}})",
      "unknown variant `1G`, expected one of `None`, `Transparent`, `2M` at line 2 column 94 "
      "(machine-config.huge_pages)");
  expect_error(R"({"boot-source": {"kernel_image_path": "/k"},
                   "machine-config": {"vcpu_count": 1, "mem_size_mib": 99999999999}})",
               "invalid value: integer `99999999999`, expected u32 at line 2 column 82 "
               "(machine-config.mem_size_mib)");
  expect_error(R"({"boot-source": {"kernel_image_path": "/k"}, "drives": [{"drive_id": "a"}]})",
               "missing field `is_root_device` at line 1 column 73 (drives[0])");
  expect_error(R"({"boot-source": {"kernel_image_path": "/k"},
                   "drives": [{"drive_id": "a", "is_root_device": true}]})",
               "missing field `path_on_host` at line 2 column 71 (drives[0])");
  expect_error(R"({"boot-source": {"kernel_image_path": "/k"}, "drives": {}})",
               "invalid type: map, expected a sequence at line 1 column 57 (drives)");
  expect_error(R"({"boot-source": {"kernel_image_path": "/k"}, "drives": null})",
               "invalid type: null, expected a sequence at line 1 column 59 (drives)");
  expect_error(R"({"boot-source": {"kernel_image_path": "/k"}, "drives": [{"drive_id": "a",
                   "path_on_host": "/x", "is_root_device": "yes"}]})",
               "invalid type: string \"yes\", expected a boolean at line 2 column 64 "
               "(drives[0].is_root_device)");
  expect_error(
      R"({"boot-source": {"kernel_image_path": "/k"}, "drives": [{"drive_id": "a",
                   "path_on_host": "/x", "is_root_device": false, "bogus": 1}]})",
      "unknown field `bogus`, expected one of `drive_id`, `partuuid`, `is_root_device`, "
      "`cache_type`, `is_read_only`, `path_on_host`, `rate_limiter`, `io_engine`, `socket` at "
      "line 2 column 73 (drives[0])");
  expect_error(R"({"boot-source": {"kernel_image_path": "/k"}, "drives": [7]})",
               "invalid type: integer `7`, expected struct BlockDeviceConfig at line 1 column 57 "
               "(drives[0])");
  expect_error(R"({"boot-source": {"kernel_image_path": "/k"},
                   "network-interfaces": [{"iface_id": "eth0"}]})",
               "missing field `host_dev_name`");
  expect_error(
      R"({"boot-source": {"kernel_image_path": "/k"},
                   "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap0",
                                           "guest_mac": "06:00:zz:00:00:01"}]})",
      "The provided MAC address is invalid. at line 3 column 75 (network-interfaces[0].guest_mac)");
  expect_error(R"({"boot-source": {"kernel_image_path": "/k"},
                   "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap0",
                                           "rx_rate_limiter": {"bytes": {}}}]})",
               "unknown field `bytes`, expected `bandwidth` or `ops` at line 3 column 70 "
               "(network-interfaces[0].rx_rate_limiter)");
  expect_error(
      R"({"boot-source": {"kernel_image_path": "/k"}, "console": {"mode": "tty"}})",
      "unknown variant `tty`, expected one of `stdio`, `file`, `socket` at line 1 column 70 "
      "(console.mode)");
  expect_error(R"({"boot-source": {"kernel_image_path": "/k"}, "boot-source": null})",
               "duplicate field `boot-source` at line 1 column 58");
}

TEST(ConfigJson, MessagesPointWhereSerdeDoes) {
  // serde_json's positions: the line, and the column of the last byte of
  // the token that ends the error (a key, a value, an object's brace).
  auto doc = JsonDocument::parse("{\n  \"a\": [1, {\"b\": true}],\n  \"c\": \"x\"\n}");
  ASSERT_TRUE(doc) << doc.error().message();
  const auto& root = doc->root();
  auto pos = [](const std::optional<TextPosition>& p) {
    return p ? std::to_string(p->line) + ":" + std::to_string(p->column) : std::string("none");
  };
  EXPECT_EQ(pos(doc->end_of(root)), "4:1");
  EXPECT_EQ(pos(doc->key_end(root["a"])), "2:5");
  EXPECT_EQ(pos(doc->end_of(root["a"])), "2:23");
  EXPECT_EQ(pos(doc->element_end(root["a"], 0)), "2:9");
  EXPECT_EQ(pos(doc->element_end(root["a"], 1)), "2:22");
  EXPECT_EQ(pos(doc->end_of(root["a"][1]["b"])), "2:21");
  EXPECT_EQ(pos(doc->key_end(root["c"])), "3:5");
  EXPECT_EQ(pos(doc->end_of(root["c"])), "3:10");
  EXPECT_EQ(pos(doc->element_end(root["a"], 2)), "none");
  // A copy is not of the document.
  const nlohmann::json copy = root["a"];
  EXPECT_EQ(pos(doc->key_end(copy)), "none");

  auto dup = JsonDocument::parse(R"({"a": {"x": 1, "y": 2, "x": 3}})");
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().message(), "duplicate field `x` at line 1 column 26");
  auto deep = JsonDocument::parse(std::string(200, '{'));
  ASSERT_FALSE(deep);
  EXPECT_EQ(deep.error().message(), "recursion limit exceeded at line 1 column 128");
  auto bad = JsonDocument::parse("{\"a\": tru}");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("syntax error"), std::string::npos) << bad.error().message();
  // Strings with escapes, multi-byte characters and brackets inside.
  auto tricky = JsonDocument::parse(R"({"k\"}": "a\\\"[{", "\u00e9\u00e9": "Ã©", "n": -1.5e3})");
  ASSERT_TRUE(tricky) << tricky.error().message();
  EXPECT_EQ(
      pos(tricky->end_of(tricky->root()["n"])),
      "1:" + std::to_string(
                 std::string(R"({"k\"}": "a\\\"[{", "\u00e9\u00e9": "Ã©", "n": -1.5e3)").size()));
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
  EXPECT_FALSE(n.tx_rate_limiter);  // {}: no bucket, so none (as Firecracker keeps it)

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
               "missing field `refill_time` at line 2 column 104 (drives[0].rate_limiter.ops)");
  expect_error(with_kernel(drive + R"("rate_limiter": {"ops": {"refill_time": 100}}}])").c_str(),
               "missing field `size` at line 2 column 111 (drives[0].rate_limiter.ops)");
  expect_error(
      with_kernel(drive + R"("rate_limiter": {"bandwidth": {"size": -1, "refill_time": 1}}}])")
          .c_str(),
      "invalid value: integer `-1`, expected u64 at line 2 column 108 "
      "(drives[0].rate_limiter.bandwidth.size)");
  expect_error(
      with_kernel(drive + R"("rate_limiter": {"bandwidth": {"size": 1.5, "refill_time": 1}}}])")
          .c_str(),
      "invalid type: floating point `1.5`, expected u64 at line 2 column 109 "
      "(drives[0].rate_limiter.bandwidth.size)");
  expect_error(
      with_kernel(drive + R"("rate_limiter": {"ops": {"size": 1, "refill_time": 1,
                                                                "bogus": 2}}}])")
          .c_str(),
      "unknown field `bogus`, expected one of `size`, `one_time_burst`, `refill_time` at line 3 "
      "column 71 (drives[0].rate_limiter.ops)");
  expect_error(with_kernel(drive + R"("rate_limiter": 5}])").c_str(),
               "invalid type: integer `5`, expected struct RateLimiterConfig at line 2 column 84 "
               "(drives[0].rate_limiter)");
  expect_error(with_kernel(drive + R"("io_engine": "Uring"}])").c_str(),
               "unknown variant `Uring`, expected `Sync` or `Async` at line 2 column 87 "
               "(drives[0].io_engine)");
  expect_error(with_kernel(drive + R"("socket": "/vhost.sock"}])").c_str(),
               "drives[0].socket: vhost-user drives are not supported yet");
  // u64 limits: the largest value passes, one above is not an integer of ours.
  auto big = parse_vm_config(with_kernel(
      drive + R"("rate_limiter": {"ops": {"size": 18446744073709551615, "refill_time": 1}}}])"));
  ASSERT_TRUE(big) << big.error().message();
  EXPECT_EQ(big->drives[0].rate_limiter->ops->size, 18446744073709551615u);
  expect_error(
      with_kernel(drive + R"("rate_limiter": {"ops": {"size": 18446744073709551616,
                                                                "refill_time": 1}}}])")
          .c_str(),
      "invalid type: floating point `1.8446744073709552e+19`, expected u64 at line 2 column 120 "
      "(drives[0].rate_limiter.ops.size)");
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
      {"Error", Level::kError}, {"WARNING", Level::kWarn}, {"warn", Level::kWarn},
      {"Info", Level::kInfo},   {"Debug", Level::kDebug},  {"trace", Level::kTrace},
      {"Off", Level::kOff},
  };
  for (const auto& [text, level] : cases) {
    auto l = parse_logger(nlohmann::json{{"level", text}}, "logger");
    ASSERT_TRUE(l) << text << ": " << l.error().message();
    EXPECT_EQ(l->level, level) << text;
  }
  auto bad = parse_logger(nlohmann::json{{"level", "Loud"}}, "logger");
  ASSERT_FALSE(bad);
  EXPECT_NE(
      bad.error().message().find(
          "Invalid LevelFilter: expected Error, Warning, Info, Debug, Trace or Off, not \"Loud\" "
          "(logger.level)"),
      std::string::npos)
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
  expect_error(
      with_kernel(R"("logger": {"log_path": 3})").c_str(),
      "invalid type: integer `3`, expected path string at line 1 column 69 (logger.log_path)");
  expect_error(with_kernel(R"("logger": {"show_level": "yes"})").c_str(),
               "invalid type: string \"yes\", expected a boolean at line 1 column 75 "
               "(logger.show_level)");
  expect_error(with_kernel(R"("logger": {"bogus": 1})").c_str(),
               "unknown field `bogus`, expected one of `log_path`, `level`, `show_level`, "
               "`show_log_origin`, `module` at line 1 column 63 (logger)");
  expect_error(with_kernel(R"("metrics": {})").c_str(),
               "missing field `metrics_path` at line 1 column 58 (metrics)");
  expect_error(with_kernel(R"("metrics": {"metrics_path": ""})").c_str(),
               "invalid value: string \"\", expected a file path at line 1 column 75 "
               "(metrics.metrics_path)");
  expect_error(with_kernel(R"("serial": {"rate_limiter": {"size": 1, "refill_time": 1}})").c_str(),
               "serial.rate_limiter: rate limiting the serial console is not supported yet");
  expect_error(with_kernel(R"("entropy": {"rate_limiter": []})").c_str(),
               "invalid type: sequence, expected struct RateLimiterConfig at line 1 column 75 "
               "(entropy.rate_limiter)");
  expect_error(with_kernel(R"("vsock": {"guest_cid": 3, "uds_path": "/v.sock"})").c_str(),
               "vsock: vsock is not supported yet");
  expect_error(with_kernel(R"("balloon": {"amount_mib": 0, "deflate_on_oom": false})").c_str(),
               "balloon: the balloon device is not supported yet");
  expect_error(with_kernel(R"("mmds-config": {"network_interfaces": ["eth0"]})").c_str(),
               "mmds-config: MMDS is not supported yet");
  expect_error(with_kernel(R"("pmem": [{"id": "p"}])").c_str(),
               "pmem[0]: pmem devices are not supported yet");
  expect_error(with_kernel(R"("cpu-config": {})").c_str(),
               "cpu-config: custom CPU templates are not supported yet");
  expect_error(with_kernel(R"("memory-hotplug": {})").c_str(),
               "memory-hotplug: memory hotplug is not supported yet");
  expect_error(with_kernel(R"("network-interfaces": [{"iface_id": "e", "host_dev_name": "t",
                                                      "mtu": 9000}])")
                   .c_str(),
               "network-interfaces[0].mtu: an MTU is not supported yet");
  expect_error(with_kernel(R"("machine-config": {"vcpu_count": 1, "mem_size_mib": 128,
                                                  "track_dirty_pages": 1})")
                   .c_str(),
               "invalid type: integer `1`, expected a boolean at line 2 column 72 "
               "(machine-config.track_dirty_pages)");
}

TEST(ConfigJson, TrackDirtyPages) {
  auto c = parse_vm_config(with_kernel(R"("machine-config": {"vcpu_count": 1, "mem_size_mib": 128,
                                                              "track_dirty_pages": true})"));
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_TRUE(c->machine_config.track_dirty_pages);
  EXPECT_EQ(to_json(c->machine_config)["track_dirty_pages"], true);
  // Off by default; a PUT without it turns it off, a PATCH without it
  // leaves it.
  auto put = parse_machine_config(nlohmann::json{{"vcpu_count", 1}, {"mem_size_mib", 128}}, "");
  ASSERT_TRUE(put) << put.error().message();
  EXPECT_FALSE(put->track_dirty_pages);
  EXPECT_EQ(to_json(*put)["track_dirty_pages"], false);
  auto patched = parse_machine_config(nlohmann::json{{"vcpu_count", 2}}, "", &c->machine_config);
  ASSERT_TRUE(patched) << patched.error().message();
  EXPECT_TRUE(patched->track_dirty_pages);
  patched =
      parse_machine_config(nlohmann::json{{"track_dirty_pages", false}}, "", &c->machine_config);
  ASSERT_TRUE(patched) << patched.error().message();
  EXPECT_FALSE(patched->track_dirty_pages);
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
  // Without a document there is no position to give.
  EXPECT_EQ(missing.error().message(), "missing field `mem_size_mib` (machine-config)");
  // Ranges are the controller's (Firecracker checks them after parsing).
  auto zero = parse_machine_config(nlohmann::json{{"vcpu_count", 0}, {"mem_size_mib", 0}}, "");
  ASSERT_TRUE(zero) << zero.error().message();
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
  auto bad = parse_drive(nlohmann::json{{"drive_id", "x"}, {"is_root_device", false}}, "drive");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message(), "missing field `path_on_host` (drive)");
}

TEST(ConfigJson, FullConfigRoundTripsIdentically) {
  config::VmConfig c;
  c.boot_source = config::BootSource{"/k", std::nullopt, std::nullopt};  // no boot_args: stays so
  c.machine_config.vcpu_count = 3;
  c.machine_config.mem_size_mib = 300;
  c.machine_config.huge_pages = config::HugePages::k2M;
  c.machine_config.virtio_mmio_cmdline = true;
  c.machine_config.track_dirty_pages = true;
  config::RateLimiterConfig limiter;
  limiter.bandwidth = config::TokenBucketConfig{1000, 10, 100};
  config::RateLimiterConfig ops_only;
  ops_only.ops = config::TokenBucketConfig{5, 0, 1};
  config::Drive root{"rootfs", "/r.ext4", true, false, "abcd-01", config::IoEngine::kAsync,
                     limiter};
  config::Drive data{"data",       "/d.img",
                     false,        true,
                     std::nullopt, config::IoEngine::kSync,
                     std::nullopt, config::CacheType::kWriteback};
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
  EXPECT_EQ(j["machine-config"]["track_dirty_pages"], true);
  EXPECT_TRUE(j["boot-source"]["boot_args"].is_null());
  EXPECT_EQ(j["drives"][1]["cache_type"], "Writeback");
  EXPECT_EQ(j["drives"][0]["cache_type"], "Unsafe");

  // Minimal config: optional sections null (or absent: hvz's own).
  config::VmConfig minimal;
  minimal.boot_source = config::BootSource{"/k", std::nullopt, std::nullopt};
  auto min_back = parse_vm_config(vm_config_to_json(minimal));
  ASSERT_TRUE(min_back) << min_back.error().message();
  EXPECT_TRUE(*min_back == minimal);
  // No boot source yet: Firecracker's default object, read back as none.
  auto none_back = parse_vm_config(vm_config_to_json(config::VmConfig{}));
  ASSERT_TRUE(none_back) << none_back.error().message();
  EXPECT_TRUE(*none_back == config::VmConfig{});
}

TEST(ConfigJson, LimitersThatLimitNothingAreNone) {
  // Firecracker's TokenBucket::new gives no bucket for a size or refill
  // time of 0, and a limiter without buckets shows as null.
  auto c = parse_vm_config(with_kernel(R"(
    "drives": [{"drive_id": "a", "path_on_host": "/a", "is_root_device": false,
                "rate_limiter": {"bandwidth": {"size": 0, "refill_time": 100},
                                 "ops": {"size": 10, "refill_time": 100}}},
               {"drive_id": "b", "path_on_host": "/b", "is_root_device": false,
                "rate_limiter": {}}],
    "entropy": {"rate_limiter": {"ops": {"size": 5, "refill_time": 0}}})"));
  ASSERT_TRUE(c) << c.error().message();
  ASSERT_TRUE(c->drives[0].rate_limiter);
  EXPECT_FALSE(c->drives[0].rate_limiter->bandwidth);
  EXPECT_EQ(c->drives[0].rate_limiter->ops->size, 10u);
  EXPECT_FALSE(c->drives[1].rate_limiter);
  EXPECT_FALSE(c->entropy->rate_limiter);
  // A PATCH body keeps them: there an empty bucket removes one.
  auto patch = parse_drive_update(
      nlohmann::json::parse(
          R"({"drive_id": "a", "rate_limiter": {"ops": {"size": 0, "refill_time": 0}}})"),
      "");
  ASSERT_TRUE(patch) << patch.error().message();
  ASSERT_TRUE(patch->rate_limiter && patch->rate_limiter->ops);
  EXPECT_EQ(to_json(std::optional<config::RateLimiterConfig>(*patch->rate_limiter)), nullptr);
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
