// Linux boot tests: the hvz binary boots Debian's cloud kernel with the test
// initramfs (scripts/guest-images) and the tests assert on what the guest
// prints and how hvz exits. Needs /dev/kvm: run through scripts/kvm-run.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iterator>

#include "guest-tests/support/process.hpp"
#include "guest-tests/support/toy_kernel.hpp"

namespace hvz::testing {
namespace {

constexpr auto kBootTimeout = std::chrono::seconds(300);

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

class LinuxBoot : public ::testing::Test {
 protected:
  void SetUp() override {
    hvz_ = env("HVZ_BINARY");
    images_ = env("HVZ_GUEST_IMAGES");
    ASSERT_FALSE(hvz_.empty() || images_.empty()) << "HVZ_BINARY / HVZ_GUEST_IMAGES not set";
    ASSERT_TRUE(std::ifstream(images_ + "/vmlinuz").good())
        << images_ << "/vmlinuz missing: run scripts/guest-images";
  }

  // reboot: the kernel's reboot= method, k (i8042) or a (ACPI reset register).
  ProcessResult boot(std::uint32_t vcpus, std::uint32_t memory_mib, const std::string& action,
                     const std::string& reboot = "k") {
    auto r = run_process(
        {hvz_, "--kernel", images_ + "/vmlinuz", "--initrd", images_ + "/initramfs.cpio.gz",
         "--vcpus", std::to_string(vcpus), "--memory", std::to_string(memory_mib), "--cmdline",
         "console=ttyS0 reboot=" + reboot + " panic=1 pci=off quiet hvz.action=" + action},
        kBootTimeout);
    std::printf("boot (%u vCPUs, %u MiB, %s): exit %d in %.1f s\n", vcpus, memory_mib,
                action.c_str(), r.exit_status, r.seconds);
    return r;
  }

  // The number after "hvz-guest: NAME " in the output, or -1. (No
  // std::regex: gcc 12 with sanitizers warns inside it.)
  static long field(const std::string& out, const std::string& name) {
    const std::string key = "hvz-guest: " + name + " ";
    const auto at = out.find(key);
    if (at == std::string::npos) return -1;
    const char* p = out.c_str() + at + key.size();
    char* end = nullptr;
    const long v = std::strtol(p, &end, 10);
    return end == p ? -1 : v;
  }

  std::string hvz_;
  std::string images_;
};

TEST_F(LinuxBoot, BootsToInitAndPowersOffWithStatusZero) {
  auto r = boot(1, 256, "poweroff");
  ASSERT_FALSE(r.timed_out) << r.output;
  EXPECT_NE(r.output.find("hvz-guest: init started"), std::string::npos) << r.output;
  EXPECT_EQ(field(r.output, "cpus"), 1) << r.output;
  // MemTotal excludes what the kernel reserves for itself; it must be most
  // of the 256 MiB and never more.
  const long kib = field(r.output, "memtotal_kib");
  EXPECT_GT(kib, 200 * 1024) << r.output;
  EXPECT_LE(kib, 256 * 1024) << r.output;
  EXPECT_NE(r.output.find("hvz-guest: clocksource kvm-clock"), std::string::npos) << r.output;
  // The guest's clock (kvmclock) and its CMOS RTC both tell the host's time.
  const long now = static_cast<long>(std::time(nullptr));
  EXPECT_NEAR(field(r.output, "date_epoch"), now, 300) << r.output;
  EXPECT_NEAR(field(r.output, "rtc_epoch"), now, 300) << r.output;
  EXPECT_EQ(r.exit_status, 0) << r.output;
}

TEST_F(LinuxBoot, BootsUncompressedElfThroughPvhEntry) {
  auto r = run_process({hvz_, "--kernel", images_ + "/vmlinux", "--initrd",
                        images_ + "/initramfs.cpio.gz", "--vcpus", "2", "--memory", "256",
                        "--cmdline", "console=ttyS0 reboot=k panic=1 pci=off quiet"},
                       kBootTimeout);
  std::printf("boot (PVH vmlinux, 2 vCPUs): exit %d in %.1f s\n", r.exit_status, r.seconds);
  ASSERT_FALSE(r.timed_out) << r.output;
  EXPECT_NE(r.output.find("hvz-guest: init started"), std::string::npos) << r.output;
  EXPECT_EQ(field(r.output, "cpus"), 2) << r.output;
  EXPECT_EQ(r.exit_status, 0) << r.output;
}

TEST_F(LinuxBoot, RebootThroughAcpiResetRegisterEndsWithStatusZero) {
  auto r = boot(1, 256, "reboot", "a");
  ASSERT_FALSE(r.timed_out) << r.output;
  EXPECT_NE(r.output.find("hvz-guest: init started"), std::string::npos) << r.output;
  EXPECT_EQ(r.exit_status, 0) << r.output;
}

// A PVH ELF kernel whose first instruction is ud2. With hvz's empty boot
// IDT, #UD escalates to a double fault and then a triple fault: the VM
// shuts down, and hvz must say so and exit 1.
std::string write_triple_fault_kernel(const std::string& path) {
  return ToyCode().ud2().write_elf(path);
}

TEST_F(LinuxBoot, TripleFaultExitsOneWithAClearMessage) {
  const auto kernel = write_triple_fault_kernel(::testing::TempDir() + "/hvz-ud2.elf");
  auto r = run_process({hvz_, "--kernel", kernel, "--memory", "64"}, std::chrono::seconds(120));
  ASSERT_FALSE(r.timed_out) << r.output;
  EXPECT_EQ(r.exit_status, 1) << r.output;
  EXPECT_NE(r.output.find("triple fault"), std::string::npos) << r.output;
}

TEST_F(LinuxBoot, SeesFourVcpusAndRebootEndsWithStatusZero) {
  auto r = boot(4, 256, "reboot");
  ASSERT_FALSE(r.timed_out) << r.output;
  EXPECT_EQ(field(r.output, "cpus"), 4) << r.output;
  EXPECT_EQ(r.exit_status, 0) << r.output;
}

TEST_F(LinuxBoot, ConfigFileBootsTwoVcpusAndMoreMemory) {
  const std::string path = ::testing::TempDir() + "/hvz-vm.json";
  {
    std::ofstream f(path);
    f << R"({"boot-source": {"kernel_image_path": ")" << images_ << R"(/vmlinuz",
              "initrd_path": ")"
      << images_ << R"(/initramfs.cpio.gz",
              "boot_args": "console=ttyS0 reboot=k panic=1 pci=off quiet"},
             "machine-config": {"vcpu_count": 2, "mem_size_mib": 512}})";
  }
  auto r = run_process({hvz_, "--config-file", path}, kBootTimeout);
  ASSERT_FALSE(r.timed_out) << r.output;
  EXPECT_EQ(field(r.output, "cpus"), 2) << r.output;
  EXPECT_GT(field(r.output, "memtotal_kib"), 400 * 1024) << r.output;
  EXPECT_EQ(r.exit_status, 0) << r.output;
}

TEST_F(LinuxBoot, VirtioConsoleOutputReachesItsFile) {
  const std::string log = ::testing::TempDir() + "/hvz-hvc0.log";
  std::remove(log.c_str());
  const std::string path = ::testing::TempDir() + "/hvz-console.json";
  std::ofstream(path)
      << R"({"boot-source": {"kernel_image_path": ")" << images_ << R"(/vmlinuz", "initrd_path": ")"
      << images_
      << R"(/initramfs.cpio.gz", "boot_args": "console=ttyS0 reboot=k panic=1 pci=off quiet hvz.action=hvc"},
       "console": {"mode": "file", "path": ")"
      << log << R"("}})";
  auto r = run_process({hvz_, "--config-file", path}, kBootTimeout);
  ASSERT_FALSE(r.timed_out) << r.output;
  EXPECT_NE(r.output.find("hvz-guest: wrote hvc0"), std::string::npos) << r.output;
  EXPECT_EQ(r.exit_status, 0) << r.output;
  std::ifstream f(log);
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("hvz-guest: hello over hvc0"), std::string::npos) << text;
}

TEST_F(LinuxBoot, KernelPanicEndsHvz) {
  auto r = boot(1, 256, "panic");
  ASSERT_FALSE(r.timed_out) << r.output;
  EXPECT_NE(r.output.find("Kernel panic"), std::string::npos) << r.output;
  // panic=1 reboots through the i8042 (reboot=k): hvz ends like Firecracker.
  EXPECT_EQ(r.exit_status, 0) << r.output;
}

TEST_F(LinuxBoot, BadImagesAndArgumentsExitTwoWithOneLine) {
  const std::string junk = ::testing::TempDir() + "/hvz-junk-kernel";
  {
    std::ofstream f(junk);
    f << std::string(4096, 'x');
  }
  const std::vector<std::vector<std::string>> cases = {
      {hvz_, "--kernel", junk},
      {hvz_, "--kernel", "/nonexistent/vmlinuz"},
      {hvz_, "--kernel", images_ + "/vmlinuz", "--initrd", "/nonexistent/initrd"},
      {hvz_, "--kernel", images_ + "/vmlinuz", "--vcpus", "0"},
      {hvz_, "--kernel", images_ + "/vmlinuz", "--vcpus", "many"},
      {hvz_, "--kernel", images_ + "/vmlinuz", "--memory", "4"},
      {hvz_, "--no-such-flag"},
      {hvz_},
      {hvz_, "--config-file", "/nonexistent.json"},
      {hvz_, "--config-file", junk},
  };
  for (const auto& argv : cases) {
    auto r = run_process(argv, std::chrono::seconds(60));
    std::string cmd;
    for (const auto& a : argv) cmd += a + " ";
    EXPECT_EQ(r.exit_status, 2) << cmd << "\n" << r.output;
    EXPECT_EQ(r.output.rfind("hvz: error: ", 0), 0u) << cmd << "\n" << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << cmd << "\n" << r.output;
  }
}

}  // namespace
}  // namespace hvz::testing
