// VmConfig's I/O-free rules: ids (which hvzctl and the API also put in
// request paths), MAC addresses and the kernel command line.
#include "vmm/config/vm_config.hpp"

#include <gtest/gtest.h>

#include <string>

namespace hvz::config {
namespace {

TEST(ValidId, TakesLettersDigitsAndUnderscore) {
  EXPECT_TRUE(valid_id("rootfs"));
  EXPECT_TRUE(valid_id("drive_0"));
  EXPECT_TRUE(valid_id("ABC_xyz_019"));
  EXPECT_TRUE(valid_id("_"));
  EXPECT_TRUE(valid_id(std::string(64, 'a')));
}

TEST(ValidId, RefusesEmptyLongAndPathCharacters) {
  EXPECT_FALSE(valid_id(""));
  EXPECT_FALSE(valid_id(std::string(65, 'a')));
  for (const char* bad : {"a/b", "..", "a b", "a-b", "a?x", "a%2f", "a\n", "é"}) {
    EXPECT_FALSE(valid_id(bad)) << bad;
  }
  EXPECT_FALSE(valid_id(std::string("a\0b", 3)));
}

TEST(Mac, ParsesAndFormatsBack) {
  const auto mac = parse_mac("02:AB:cd:00:ff:10");
  ASSERT_TRUE(mac);
  EXPECT_EQ(format_mac(*mac), "02:ab:cd:00:ff:10");
  EXPECT_FALSE(parse_mac("02:ab:cd:00:ff"));
  EXPECT_FALSE(parse_mac("02-ab-cd-00-ff-10"));
  EXPECT_FALSE(parse_mac("02:ab:cd:00:ff:1g"));
}

TEST(KernelCmdline, AddsTheRootDrive) {
  VmConfig c;
  EXPECT_EQ(kernel_cmdline(c), kDefaultBootArgs);
  c.boot_source = BootSource{"vmlinux", std::nullopt, "console=ttyS0"};
  Drive& root = c.drives.emplace_back();
  root.drive_id = "rootfs";
  root.path_on_host = "disk";
  root.is_root_device = true;
  root.is_read_only = true;
  EXPECT_EQ(kernel_cmdline(c), "console=ttyS0 root=/dev/vda ro");
}

}  // namespace
}  // namespace hvz::config
