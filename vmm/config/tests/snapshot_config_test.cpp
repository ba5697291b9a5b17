// The snapshot parameters' I/O-free checks: paths given, network overrides
// with valid, distinct ids and TAP names.
#include "vmm/config/snapshot_config.hpp"

#include <gtest/gtest.h>

#include <string>

namespace hvz::config {
namespace {

SnapshotLoad good_load() {
  SnapshotLoad load;
  load.snapshot_path = "vm.snap";
  load.mem_backend_path = "vm.mem";
  load.network_overrides = {{"eth0", "tap0"}, {"eth1", "tap1"}};
  return load;
}

std::string message(const Expected<void>& result) {
  return result ? std::string("(ok)") : result.error().message();
}

TEST(SnapshotConfig, DefaultsAreFirecrackers) {
  EXPECT_EQ(SnapshotCreate{}.type, SnapshotType::kFull);
  const SnapshotLoad load;
  EXPECT_EQ(load.mem_backend_type, MemBackendType::kFile);
  EXPECT_FALSE(load.track_dirty_pages);
  EXPECT_FALSE(load.resume_vm);
  EXPECT_TRUE(load.network_overrides.empty());
}

TEST(SnapshotConfig, CreateNeedsBothPaths) {
  SnapshotCreate create{SnapshotType::kDiff, "vm.snap", "vm.mem"};
  EXPECT_TRUE(validate(create)) << message(validate(create));
  create.snapshot_path.clear();
  EXPECT_EQ(message(validate(create)), "no snapshot_path given (empty path)");
  create.snapshot_path = "vm.snap";
  create.mem_file_path.clear();
  EXPECT_EQ(message(validate(create)), "no mem_file_path given (empty path)");
  EXPECT_EQ(validate(create).error().code(), Errc::kInvalidArgument);
}

TEST(SnapshotConfig, LoadNeedsBothPaths) {
  EXPECT_TRUE(validate(good_load())) << message(validate(good_load()));
  auto load = good_load();
  load.snapshot_path.clear();
  EXPECT_EQ(message(validate(load)), "no snapshot_path given (empty path)");
  load = good_load();
  load.mem_backend_path.clear();
  EXPECT_EQ(message(validate(load)), "no memory backend path given (empty path)");
}

TEST(SnapshotConfig, LoadChecksOverrideIds) {
  auto load = good_load();
  load.network_overrides[1].iface_id = "eth/1";
  EXPECT_EQ(message(validate(load)),
            "network_overrides: invalid iface_id 'eth/1': use 1-64 of A-Z, a-z, 0-9, _");
  load.network_overrides[1].iface_id = "";
  EXPECT_FALSE(validate(load));
  load.network_overrides[1].iface_id = std::string(65, 'a');
  EXPECT_FALSE(validate(load));
  load.network_overrides[1].iface_id = "eth0";
  EXPECT_EQ(message(validate(load)), "network_overrides: duplicate iface_id 'eth0'");
}

TEST(SnapshotConfig, LoadChecksOverrideTapNames) {
  auto load = good_load();
  load.network_overrides[1].host_dev_name = "tap0";
  EXPECT_EQ(message(validate(load)), "network_overrides: host_dev_name 'tap0' used twice");
  load.network_overrides[1].host_dev_name = "";
  EXPECT_EQ(message(validate(load)),
            "network_overrides: interface 'eth1': host_dev_name must be 1-15 characters");
  load.network_overrides[1].host_dev_name = std::string(16, 't');
  EXPECT_FALSE(validate(load));
  load.network_overrides[1].host_dev_name = std::string(15, 't');
  EXPECT_TRUE(validate(load)) << message(validate(load));
}

}  // namespace
}  // namespace hvz::config
