// VmmLoop on a fake VM: actions posted from another thread are executed on
// the loop's thread and answered; a drive update learns how the drive was
// configured from the one configuration; when the VM stops or a stop
// signal arrives, queued and later actions are refused and run() says how
// the run ended.
#include "vmm/vmm_loop.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "vmm/core/event_fd.hpp"
#include "vmm/core/unique_fd.hpp"

namespace hvz::vmm {
namespace {

// What the fake VM was asked, in order, from whichever thread.
struct Calls {
  std::mutex mutex;
  std::vector<std::string> names;
  std::thread::id thread;  // of the last call
  void add(std::string name) {
    std::lock_guard lock(mutex);
    names.push_back(std::move(name));
    thread = std::this_thread::get_id();
  }
  std::vector<std::string> get() {
    std::lock_guard lock(mutex);
    return names;
  }
};

class FakeVm : public VmRuntime {
 public:
  FakeVm(Calls& calls, EventFd stop) : calls_(calls), stop_(std::move(stop)) {}
  Expected<void> start() override {
    calls_.add("start");
    return {};
  }
  Expected<RunOutcome> wait() override {
    calls_.add("wait");
    std::lock_guard lock(mutex_);
    return RunOutcome{reason_, detail_};
  }
  void request_stop(StopReason reason, std::string detail) override {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
      stopping_ = true;
      reason_ = reason;
      detail_ = std::move(detail);
    }
    (void)stop_.signal();
  }
  int stop_event_fd() const override { return stop_.fd(); }
  Expected<void> pause() override { return call("pause"); }
  Expected<void> resume() override { return call("resume"); }
  Expected<void> send_ctrl_alt_del() override { return call("send_ctrl_alt_del"); }
  Expected<void> update_drive(const UpdateDrive& update, bool read_only) override {
    return call("update_drive " + update.drive_id + (read_only ? " ro" : " rw") +
                (update.path_on_host ? " " + *update.path_on_host : std::string()));
  }
  Expected<void> update_network_interface(const UpdateNetworkInterface& update) override {
    return call("update_network_interface " + update.iface_id);
  }
  void dump_state() override { calls_.add("dump_state"); }

 private:
  Expected<void> call(std::string name) {
    calls_.add(std::move(name));
    return {};
  }
  Calls& calls_;
  EventFd stop_;
  std::mutex mutex_;
  bool stopping_ = false;
  StopReason reason_ = StopReason::kError;
  std::string detail_;
};

config::VmConfig test_config() {
  config::VmConfig c;
  c.boot_source = config::BootSource{"vmlinux", {}, {}};
  c.drives.push_back({"rootfs", "/r", true, false, {}, {}, {}, {}});
  c.drives.push_back({"data", "/d", false, true, {}, {}, {}, {}});
  return c;
}

class VmmLoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto channel = ActionChannel::create();
    ASSERT_TRUE(channel);
    channel_ = std::move(*channel);
    int fds[2];
    ASSERT_EQ(::pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
    signal_read_ = UniqueFd(fds[0]);
    signal_write_ = UniqueFd(fds[1]);
    loop_ = std::make_unique<VmmLoop>(
        *channel_, resources_,
        [this](const config::VmConfig& c) -> Expected<std::unique_ptr<VmRuntime>> {
          calls_.add("create " + std::to_string(c.drives.size()) + " drive(s)");
          if (fail_create_) return make_error(Errc::kUnsupported, "no KVM here");
          auto stop = EventFd::create();
          if (!stop) return tl::unexpected(stop.error());
          auto vm = std::make_unique<FakeVm>(calls_, std::move(*stop));
          vm_ = vm.get();
          return std::unique_ptr<VmRuntime>(std::move(vm));
        },
        signal_read_.get());
  }
  void TearDown() override {
    if (!runner_.valid()) return;
    if (vm_) {
      vm_->request_stop(StopReason::kPowerOff, "test over");
    } else {
      send_signal(SIGTERM);
    }
    (void)runner_.get();
  }

  // run() on its own thread: the VMM thread of these tests.
  void run_loop() {
    runner_ = std::async(std::launch::async, [this] {
      loop_thread_ = std::this_thread::get_id();
      return loop_->run();
    });
  }
  Expected<RunOutcome> outcome() { return runner_.get(); }
  void send_signal(int sig) {
    signalfd_siginfo info{};
    info.ssi_signo = static_cast<std::uint32_t>(sig);
    ASSERT_EQ(::write(signal_write_.get(), &info, sizeof info), static_cast<ssize_t>(sizeof info));
  }

  VmResources resources_{test_config()};
  std::unique_ptr<ActionChannel> channel_;
  UniqueFd signal_read_, signal_write_;
  Calls calls_;
  bool fail_create_ = false;
  FakeVm* vm_ = nullptr;
  std::unique_ptr<VmmLoop> loop_;
  std::future<Expected<RunOutcome>> runner_;
  std::thread::id loop_thread_;
};

TEST_F(VmmLoopTest, ActionsAreExecutedOnTheLoopThreadAndAnswered) {
  run_loop();
  EXPECT_EQ(channel_->post(Pause{}).error().message(), "the microVM is not started");
  ASSERT_TRUE(channel_->post(StartInstance{resources_.snapshot()}));
  EXPECT_TRUE(loop_->started());
  EXPECT_EQ(channel_->post(StartInstance{resources_.snapshot()}).error().message(),
            "the microVM is already started");
  EXPECT_TRUE(channel_->post(Pause{}));
  EXPECT_TRUE(channel_->post(Resume{}));
  EXPECT_TRUE(channel_->post(SendCtrlAltDel{}));
  EXPECT_TRUE(channel_->post(UpdateNetworkInterface{"eth0", {}, {}}));
  EXPECT_EQ(calls_.thread, loop_thread_);
  EXPECT_EQ(calls_.get(),
            (std::vector<std::string>{"create 2 drive(s)", "start", "pause", "resume",
                                      "send_ctrl_alt_del", "update_network_interface eth0"}));
}

TEST_F(VmmLoopTest, DriveUpdatesOpenFilesAsTheDriveIsConfigured) {
  ASSERT_TRUE(loop_->start(resources_.snapshot()));
  run_loop();
  EXPECT_TRUE(channel_->post(UpdateDrive{"data", "/new", {}}));
  EXPECT_TRUE(channel_->post(UpdateDrive{"rootfs", {}, config::RateLimiterConfig{}}));
  const auto calls = calls_.get();
  ASSERT_EQ(calls.size(), 4u);
  EXPECT_EQ(calls[2], "update_drive data ro /new");
  EXPECT_EQ(calls[3], "update_drive rootfs rw");
}

TEST_F(VmmLoopTest, AFailedStartLeavesTheVmUnstarted) {
  fail_create_ = true;
  run_loop();
  EXPECT_EQ(channel_->post(StartInstance{resources_.snapshot()}).error().message(), "no KVM here");
  EXPECT_FALSE(loop_->started());
  fail_create_ = false;
  EXPECT_TRUE(channel_->post(StartInstance{resources_.snapshot()}));
}

TEST_F(VmmLoopTest, WhenTheGuestStopsLateActionsAreRefused) {
  ASSERT_TRUE(loop_->start(resources_.snapshot()));
  run_loop();
  vm_->request_stop(StopReason::kPowerOff, "guest powered off (ACPI S5)");
  const auto end = outcome();
  ASSERT_TRUE(end);
  EXPECT_EQ(end->reason, StopReason::kPowerOff);
  EXPECT_EQ(end->detail, "guest powered off (ACPI S5)");
  // PATCH /vm Paused after the guest has finished: an error, not a 204.
  const VmmResult late = channel_->post(Pause{});
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error().message(), "the microVM has stopped");
  EXPECT_EQ(calls_.get().back(), "wait");
}

TEST_F(VmmLoopTest, AnActionQueuedAsTheGuestStopsIsRefused) {
  ASSERT_TRUE(loop_->start(resources_.snapshot()));
  // Both are ready when the loop first looks: the stop wins.
  vm_->request_stop(StopReason::kReset, "guest reset");
  auto queued = std::async(std::launch::async, [this] { return channel_->post(Pause{}); });
  pollfd p{channel_->event_fd(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 5000), 1);
  run_loop();
  ASSERT_TRUE(outcome());
  EXPECT_FALSE(queued.get());
  EXPECT_EQ(calls_.get(), (std::vector<std::string>{"create 2 drive(s)", "start", "wait"}));
}

TEST_F(VmmLoopTest, StopSignalEndsTheRunWithOrWithoutAVm) {
  run_loop();
  send_signal(SIGTERM);
  auto end = outcome();
  ASSERT_TRUE(end);
  EXPECT_EQ(end->reason, StopReason::kSignal);
  EXPECT_EQ(end->signal, SIGTERM);
  EXPECT_EQ(channel_->post(StartInstance{resources_.snapshot()}).error().message(),
            "hvz is stopping (signal " + std::to_string(SIGTERM) + ")");
  EXPECT_TRUE(calls_.get().empty());
}

TEST_F(VmmLoopTest, StopSignalStopsTheVmAndUsr1DumpsItsState) {
  ASSERT_TRUE(loop_->start(resources_.snapshot()));
  run_loop();
  send_signal(SIGUSR1);
  send_signal(SIGINT);
  auto end = outcome();
  ASSERT_TRUE(end);
  EXPECT_EQ(end->reason, StopReason::kSignal);
  EXPECT_EQ(end->signal, SIGINT);
  EXPECT_EQ(calls_.get(),
            (std::vector<std::string>{"create 2 drive(s)", "start", "dump_state", "wait"}));
}

}  // namespace
}  // namespace hvz::vmm
