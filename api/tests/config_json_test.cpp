// Config-file JSON: Firecracker's shape accepted, everything else refused
// with a message naming the field.
#include "api/config_json.hpp"

#include <gtest/gtest.h>

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
                                           "rx_rate_limiter": {}}]})",
               "not supported yet");
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
  c.drives.push_back({"rootfs", "/r.ext4", true, true, "0eaa91a0-01"});
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

}  // namespace
}  // namespace hvz::api
