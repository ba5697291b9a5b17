// parse_options: hvz's flags as a VmConfig and run settings; conflicting
// or incomplete flags are usage errors (status 2), --help is status 0.
#include "api/hvz/options.hpp"

#include <unistd.h>

#include <gtest/gtest.h>

#include <fstream>
#include <initializer_list>
#include <string>
#include <vector>

namespace hvz::api {
namespace {

std::variant<Options, OptionsExit> parse(std::initializer_list<const char*> args) {
  std::vector<const char*> argv{"hvz"};
  argv.insert(argv.end(), args.begin(), args.end());
  return parse_options(static_cast<int>(argv.size()), argv.data());
}

Options parsed(std::initializer_list<const char*> args) {
  auto r = parse(args);
  if (auto* exit = std::get_if<OptionsExit>(&r)) {
    ADD_FAILURE() << "exit " << exit->status << ": " << exit->text;
    return {};
  }
  return std::get<Options>(r);
}

// A usage error whose text contains `fragment`.
void usage_error(std::initializer_list<const char*> args, const std::string& fragment) {
  auto r = parse(args);
  ASSERT_TRUE(std::holds_alternative<OptionsExit>(r));
  const auto& exit = std::get<OptionsExit>(r);
  EXPECT_EQ(exit.status, kExitUsage);
  EXPECT_EQ(exit.text.rfind("hvz: error: ", 0), 0u) << exit.text;
  EXPECT_NE(exit.text.find(fragment), std::string::npos) << exit.text << " lacks " << fragment;
}

TEST(ParseOptions, KernelFlagsMakeTheVmConfig) {
  const Options o = parsed({"--kernel", "/k", "--initrd", "/i", "--cmdline", "quiet", "--vcpus",
                            "4", "--memory", "512", "--huge-pages", "--virtio-mmio-cmdline"});
  EXPECT_TRUE(o.boot_now);
  ASSERT_TRUE(o.config.boot_source);
  EXPECT_EQ(o.config.boot_source->kernel_image_path, "/k");
  EXPECT_EQ(o.config.boot_source->initrd_path, "/i");
  EXPECT_EQ(o.config.boot_source->boot_args, "quiet");
  EXPECT_EQ(o.config.machine_config.vcpu_count, 4u);
  EXPECT_EQ(o.config.machine_config.mem_size_mib, 512u);
  EXPECT_EQ(o.config.machine_config.huge_pages, config::HugePages::k2M);
  EXPECT_TRUE(o.config.machine_config.virtio_mmio_cmdline);
  EXPECT_TRUE(o.api_sock.empty());
}

TEST(ParseOptions, DefaultsWithAKernelOnly) {
  const Options o = parsed({"--kernel", "/k"});
  ASSERT_TRUE(o.config.boot_source);
  EXPECT_FALSE(o.config.boot_source->initrd_path);
  EXPECT_FALSE(o.config.boot_source->boot_args);  // kDefaultBootArgs at boot
  EXPECT_EQ(o.config.machine_config, config::MachineConfig{});
  EXPECT_EQ(o.instance_id, "anonymous-instance");
  EXPECT_EQ(o.max_payload, 51200u);
  EXPECT_EQ(o.output_limit, 256ull << 20);
  EXPECT_EQ(o.log_level, log::Level::kWarn);
}

TEST(ParseOptions, ApiSocketAloneWaitsForTheApi) {
  const Options o = parsed({"--api-sock", "/tmp/x.sock", "--id", "vm-1_a", "--log-level", "debug",
                            "--http-api-max-payload-size", "100", "--output-limit-mib", "0"});
  EXPECT_FALSE(o.boot_now);
  EXPECT_EQ(o.api_sock, "/tmp/x.sock");
  EXPECT_FALSE(o.config.boot_source);
  EXPECT_EQ(o.instance_id, "vm-1_a");
  EXPECT_EQ(o.log_level, log::Level::kDebug);
  EXPECT_EQ(o.max_payload, 100u);
  EXPECT_EQ(o.output_limit, 0u);
  EXPECT_EQ(parsed({"--api-sock", "/s", "--log-level", "off"}).log_level, log::Level::kOff);
  EXPECT_EQ(parsed({"--api-sock", "/s", "--log-level", "trace"}).log_level, log::Level::kTrace);
}

TEST(ParseOptions, ConfigFileBootsAtOnce) {
  const std::string path = ::testing::TempDir() + "hvz-options-" + std::to_string(::getpid());
  std::ofstream(path) << R"({"boot-source": {"kernel_image_path": "/k"},
      "machine-config": {"vcpu_count": 2, "mem_size_mib": 256}})";
  const Options o = parsed({"--config-file", path.c_str(), "--virtio-mmio-cmdline"});
  EXPECT_TRUE(o.boot_now);
  EXPECT_EQ(o.config.boot_source->kernel_image_path, "/k");
  EXPECT_EQ(o.config.machine_config.vcpu_count, 2u);
  EXPECT_TRUE(o.config.machine_config.virtio_mmio_cmdline);
  std::ofstream(path) << "{";
  usage_error({"--config-file", path.c_str()}, path + ": ");
  ::unlink(path.c_str());
  usage_error({"--config-file", path.c_str()}, "cannot read config file");
}

TEST(ParseOptions, ConflictsAndGapsAreUsageErrors) {
  usage_error({}, "--kernel, --config-file or --api-sock is required");
  usage_error({"--config-file", "/c", "--kernel", "/k"}, "excludes");
  usage_error({"--api-sock", "/s", "--no-api", "--kernel", "/k"}, "excludes");
  usage_error({"--api-sock", "/s", "--vcpus", "2"}, "--vcpus needs --kernel");
  usage_error({"--api-sock", "/s", "--initrd", "/i"}, "--initrd needs --kernel");
  usage_error({"--kernel", "/k", "--id", "bad id"}, "--id 'bad id' is invalid");
  usage_error({"--kernel", "/k", "--log-level", "chatty"}, "--log-level");
  usage_error({"--kernel", "/k", "--http-api-max-payload-size", "0"}, "payload");
  usage_error({"--kernel", "/k", "--vcpus", "many"}, "--vcpus");
  usage_error({"--bogus"}, "bogus");
}

TEST(ParseOptions, HelpIsStatusZeroOnStdout) {
  auto r = parse({"--help"});
  ASSERT_TRUE(std::holds_alternative<OptionsExit>(r));
  const auto& exit = std::get<OptionsExit>(r);
  EXPECT_EQ(exit.status, kExitOk);
  EXPECT_NE(exit.text.find("--api-sock"), std::string::npos);
  EXPECT_NE(exit.text.find("128+N stopped by signal N"), std::string::npos);
}

}  // namespace
}  // namespace hvz::api
