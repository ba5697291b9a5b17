// build_virtio_devices: which devices a configuration gives, in which
// order (the guest names them by it), with what, and how a failure is
// reported — on a real DeviceManager with a fake DeviceWiring and fake host
// resources (a TAP over a socketpair, the console on a pipe).
#include "vmm/virtio_builder.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <memory>
#include <string>
#include <vector>

#include "virtio/block/block_device.hpp"
#include "virtio/mmio_transport.hpp"
#include "virtio/net/net_device.hpp"
#include "virtio/tests/block_support.hpp"
#include "vmm/epoll_loop.hpp"
#include "vmm/tests/fake_wiring.hpp"
#include "vmm/x86_64/layout.hpp"

namespace hvz::vmm {
namespace {

using virtio::block::kDiskBytes;
using virtio::block::TempFile;

constexpr std::uint32_t kBlock = 2;
constexpr std::uint32_t kNet = 1;
constexpr std::uint32_t kConsole = 3;
constexpr std::uint32_t kRng = 4;

// Hands out TAPs over socketpairs and the console's fds from a pipe;
// records what was asked; fails on demand.
class FakeHost : public HostResources {
 public:
  ~FakeHost() override {
    for (int fd : fds_) ::close(fd);
  }
  Expected<virtio::net::Tap> open_tap(const std::string& name) override {
    taps.push_back(name);
    if (name == fail_tap) return make_error(Errc::kSystem, "TUNSETIFF", EBUSY);
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv), 0);
    fds_.push_back(sv[1]);
    return virtio::net::Tap::from_fd(UniqueFd(sv[0]));
  }
  Expected<ConsoleFds> console_fds(const config::Console& console) override {
    consoles.push_back(console.path);
    if (fail_console) return make_error(Errc::kInvalidArgument, "console: cannot connect");
    int p[2];
    EXPECT_EQ(::pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    fds_.push_back(p[0]);
    fds_.push_back(p[1]);
    return ConsoleFds{p[1], -1};
  }

  std::string fail_tap;
  bool fail_console = false;
  std::vector<std::string> taps;
  std::vector<std::string> consoles;

 private:
  std::vector<int> fds_;
};

class VirtioBuilderTest : public ::testing::Test {
 protected:
  VirtioBuilderTest() {
    auto loop = EpollLoop::create();
    EXPECT_TRUE(loop) << loop.error().message();
    loop_ = std::move(*loop);
    manager_ =
        std::make_unique<DeviceManager>(mem_, *loop_, wiring_,
                                        MmioSlots(x86_64::kVirtioMmioStart, x86_64::kVirtioMmioSize,
                                                  x86_64::kVirtioGsiBase, x86_64::kIoapicPins));
  }

  config::Drive drive(const std::string& id, const TempFile& file, bool root = false) {
    config::Drive d;
    d.drive_id = id;
    d.path_on_host = file.path();
    d.is_root_device = root;
    return d;
  }
  config::NetworkInterface net(const std::string& id, const std::string& tap) {
    config::NetworkInterface n;
    n.iface_id = id;
    n.host_dev_name = tap;
    return n;
  }

  // Each device as "kind:id" in slot order (id: drive_id, iface_id or
  // nothing), the kind from its virtio device type.
  std::vector<std::string> layout() const {
    std::vector<std::string> out;
    for (const auto& t : manager_->transports()) {
      auto* dev = t->device().get();
      std::string id;
      if (auto* b = dynamic_cast<virtio::block::BlockDevice*>(dev)) id = b->save().drive_id;
      if (auto* n = dynamic_cast<virtio::net::NetDevice*>(dev)) id = n->iface_id();
      const char* kind = "?";
      switch (dev->device_type()) {
        case kBlock:
          kind = "block";
          break;
        case kNet:
          kind = "net";
          break;
        case kConsole:
          kind = "console";
          break;
        case kRng:
          kind = "rng";
          break;
      }
      out.push_back(std::string(kind) + ":" + id);
    }
    return out;
  }

  GuestMemory mem_ = std::move(*GuestMemory::create({{GuestAddress(0), 1 << 20}}));
  std::unique_ptr<EpollLoop> loop_;
  testing::FakeWiring wiring_;
  FakeHost host_;
  std::unique_ptr<DeviceManager> manager_;
  TempFile a_{kDiskBytes};
  TempFile b_{kDiskBytes};
  TempFile c_{kDiskBytes};
};

TEST_F(VirtioBuilderTest, TheRootDriveComesFirstThenNetsConsoleAndEntropy) {
  config::VmConfig config;
  config.drives = {drive("data1", a_), drive("rootfs", b_, true), drive("data2", c_)};
  config.network_interfaces = {net("eth0", "tap0"), net("eth1", "tap1")};
  config.console = config::Console{config::Console::Mode::kFile, "/dev/null"};
  config.entropy = config::EntropyConfig{};
  auto r = build_virtio_devices(config, *manager_, host_);
  ASSERT_TRUE(r) << r.error().message();
  const std::vector<std::string> want = {
      "block:rootfs", "block:data1", "block:data2", "net:eth0", "net:eth1", "console:", "rng:",
  };
  EXPECT_EQ(layout(), want);
  EXPECT_EQ(host_.taps, (std::vector<std::string>{"tap0", "tap1"}));
  EXPECT_EQ(host_.consoles, (std::vector<std::string>{"/dev/null"}));
  // Each device got its own window and GSI, in the same order.
  ASSERT_EQ(manager_->mmio_info().size(), 7u);
  for (std::size_t i = 0; i < 7; ++i) {
    EXPECT_EQ(manager_->mmio_info()[i].gsi, x86_64::kVirtioGsiBase + i);
  }
  // Runtime updates find the drives and interfaces by id.
  EXPECT_TRUE(manager_->update_drive(UpdateDrive{"data2", std::nullopt, std::nullopt}, false));
  EXPECT_TRUE(manager_->update_network_interface(UpdateNetworkInterface{"eth1", {}, {}}));
}

TEST_F(VirtioBuilderTest, NothingConfiguredGivesNoDevices) {
  config::VmConfig config;
  ASSERT_TRUE(build_virtio_devices(config, *manager_, host_));
  EXPECT_TRUE(layout().empty());
  EXPECT_TRUE(host_.taps.empty());
  EXPECT_TRUE(host_.consoles.empty());
}

TEST_F(VirtioBuilderTest, ATapThatCannotBeOpenedIsNamedAndStopsTheBuild) {
  config::VmConfig config;
  config.drives = {drive("rootfs", a_, true)};
  config.network_interfaces = {net("eth0", "tap0"), net("eth1", "busy0"), net("eth2", "tap2")};
  config.entropy = config::EntropyConfig{};
  host_.fail_tap = "busy0";
  auto r = build_virtio_devices(config, *manager_, host_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(),
            "network interface 'eth1' (TAP busy0): TUNSETIFF: Device or resource busy");
  EXPECT_EQ(r.error().sys_errno(), EBUSY);
  EXPECT_EQ(layout(), (std::vector<std::string>{"block:rootfs", "net:eth0"}));
  EXPECT_EQ(host_.taps, (std::vector<std::string>{"tap0", "busy0"}));
}

TEST_F(VirtioBuilderTest, ADriveThatCannotBeOpenedStopsTheBuildBeforeAnyTap) {
  config::VmConfig config;
  config.drives = {drive("rootfs", a_, true), drive("gone", a_)};
  config.drives[1].path_on_host = "/nonexistent/disk.img";
  config.network_interfaces = {net("eth0", "tap0")};
  auto r = build_virtio_devices(config, *manager_, host_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message().rfind("drive 'gone' (/nonexistent/disk.img): ", 0), 0u)
      << r.error().message();
  EXPECT_TRUE(host_.taps.empty());
}

TEST_F(VirtioBuilderTest, AConsoleErrorPassesThroughUnchanged) {
  config::VmConfig config;
  config.console = config::Console{config::Console::Mode::kSocket, "/run/none.sock"};
  config.entropy = config::EntropyConfig{};
  host_.fail_console = true;
  auto r = build_virtio_devices(config, *manager_, host_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(), "console: cannot connect");
  EXPECT_TRUE(layout().empty());
}

}  // namespace
}  // namespace hvz::vmm
