// virtio-blk guest tests: Debian's cloud kernel boots with its root on a
// virtio-blk drive (found through the ACPI DSDT, LNRO0005), writes survive
// power-off, a read-only drive refuses writes, two drives work at once.
// Needs /dev/kvm: run through scripts/kvm-run.
#include <gtest/gtest.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "guest-tests/support/process.hpp"

namespace hvz::testing {
namespace {

constexpr auto kBootTimeout = std::chrono::seconds(300);

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

class VirtioBlock : public ::testing::Test {
 protected:
  void SetUp() override {
    hvz_ = env("HVZ_BINARY");
    images_ = env("HVZ_GUEST_IMAGES");
    ASSERT_FALSE(hvz_.empty() || images_.empty()) << "HVZ_BINARY / HVZ_GUEST_IMAGES not set";
    ASSERT_TRUE(std::filesystem::exists(images_ + "/rootfs.ext4")) << "run scripts/guest-images";
    // A tmpfs when there is one: under scripts/kvm-run's emulated host
    // /tmp is a 9p share, and copying 64 MiB images over it takes minutes.
    const std::string base =
        ::access("/dev/shm", W_OK) == 0 ? std::string("/dev/shm/") : ::testing::TempDir();
    dir_ = base + "/hvz-block-" + std::to_string(::getpid());
    std::filesystem::create_directories(dir_);
    root_ = dir_ + "/rootfs.ext4";
    std::filesystem::copy_file(images_ + "/rootfs.ext4", root_,
                               std::filesystem::copy_options::overwrite_existing);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  ProcessResult boot(const std::string& action, const std::string& extra_drives,
                     const std::vector<std::string>& flags = {}, const std::string& root_extra = "",
                     const ProcessOptions& options = {}) {
    const std::string config = dir_ + "/vm.json";
    std::ofstream(config)
        << R"({"boot-source": {"kernel_image_path": ")" << images_
        << R"(/vmlinuz", "initrd_path": ")" << images_
        << R"(/initramfs.cpio.gz", "boot_args": "console=ttyS0 reboot=k panic=1 pci=off quiet hvz.action=)"
        << action << R"("},
      "machine-config": {"vcpu_count": 1, "mem_size_mib": 256},
      "drives": [{"drive_id": "rootfs", "path_on_host": ")"
        << root_ << R"(", "is_root_device": true, "is_read_only": false)" << root_extra << "}"
        << extra_drives << "]}";
    std::vector<std::string> argv = {hvz_, "--config-file", config};
    argv.insert(argv.end(), flags.begin(), flags.end());
    auto r = run_process(argv, kBootTimeout, options);
    std::printf("boot (%s): exit %d in %.1f s\n", action.c_str(), r.exit_status, r.seconds);
    return r;
  }

  std::string hvz_, images_, dir_, root_;
};

TEST_F(VirtioBlock, RootOnVirtioBlkAndWritesSurvivePowerOff) {
  auto r = boot("writefile", "");
  ASSERT_FALSE(r.timed_out) << r.output;
  EXPECT_NE(r.output.find("hvz-guest: rootfs /dev/vda"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("hvz-guest: wrote file"), std::string::npos) << r.output;
  EXPECT_EQ(r.exit_status, 0) << r.output;
  // Read the file back from the image on the host, without mounting it.
  auto cat =
      run_process({"/sbin/debugfs", "-R", "cat /hvz-guest-file", root_}, std::chrono::seconds(60));
  EXPECT_NE(cat.output.find("written by the guest"), std::string::npos) << cat.output;
}

// What the guest's sync returned for is on the host, whatever happens to
// hvz next: SIGKILL right after the sync, then the image (its journal
// replayed, as the next mount would) holds the file. Both I/O engines.
TEST_F(VirtioBlock, DataSyncedByTheGuestSurvivesSigkill) {
  for (const char* engine : {"Sync", "Async"}) {
    std::filesystem::copy_file(images_ + "/rootfs.ext4", root_,
                               std::filesystem::copy_options::overwrite_existing);
    ProcessOptions options;
    options.kill_on = "hvz-guest: synced";
    auto r = boot("durable", "", {}, std::string(R"(, "io_engine": ")") + engine + "\"", options);
    ASSERT_FALSE(r.timed_out) << r.output;
    ASSERT_NE(r.output.find("hvz-guest: synced"), std::string::npos) << engine << "\n" << r.output;
    EXPECT_EQ(r.exit_status, 128 + SIGKILL) << engine;
    const std::string key = "hvz-guest: durable sha256 ";
    const auto at = r.output.find(key);
    ASSERT_NE(at, std::string::npos) << r.output;
    const std::string want = r.output.substr(at + key.size(), 64);
    auto check = run_process(
        {"/bin/sh", "-c",
         "/sbin/e2fsck -fy '" + root_ + "' >/dev/null 2>&1; /sbin/debugfs -R 'cat /hvz-durable' '" +
             root_ + "' 2>/dev/null | sha256sum"},
        std::chrono::seconds(120));
    EXPECT_EQ(check.output.substr(0, 64), want)
        << engine << ": the synced file is not in the image";
  }
}

TEST_F(VirtioBlock, TwoDrivesAndTheReadOnlyOneRefusesWrites) {
  const std::string data = dir_ + "/data.img";
  std::string content(1 << 20, '\0');
  content.replace(0, 16, "HVZDATA123456789");
  std::ofstream(data, std::ios::binary) << content;
  // Also list the devices on the command line: Debian's virtio_mmio module
  // lacks that parameter and must still find both drives through ACPI.
  auto r = boot("drives",
                R"(, {"drive_id": "data", "path_on_host": ")" + data +
                    R"(", "is_root_device": false, "is_read_only": true})",
                {"--virtio-mmio-cmdline"});
  EXPECT_NE(r.output.find("virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6"),
            std::string::npos)
      << r.output;
  ASSERT_FALSE(r.timed_out) << r.output;
  EXPECT_NE(r.output.find("hvz-guest: drive vda"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("hvz-guest: drive vdb sectors 2048 ro 1 head HVZDATA123456789"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("hvz-guest: vdb write refused"), std::string::npos) << r.output;
  EXPECT_EQ(r.exit_status, 0) << r.output;
  EXPECT_EQ(read_all(data), content);
}

TEST_F(VirtioBlock, BadDrivesExitTwo) {
  const std::string odd = dir_ + "/odd.img";
  std::ofstream(odd) << std::string(1000, 'x');  // not a multiple of 512
  for (const std::string& extra :
       {std::string(R"(, {"drive_id": "data", "path_on_host": "/nonexistent.img",
                          "is_root_device": false})"),
        R"(, {"drive_id": "data", "path_on_host": ")" + odd + R"(", "is_root_device": false})",
        std::string(
            R"(, {"drive_id": "rootfs", "path_on_host": "/x", "is_root_device": false})")}) {
    auto r = boot("poweroff", extra);
    EXPECT_EQ(r.exit_status, 2) << extra << "\n" << r.output;
    EXPECT_EQ(r.output.rfind("hvz: error: ", 0), 0u) << r.output;
  }
}

}  // namespace
}  // namespace hvz::testing
