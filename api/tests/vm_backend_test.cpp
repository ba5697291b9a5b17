// VmBackend + VmmLoop: the Controller's calls reach the VM only as actions
// executed on the VMM thread; once the guest has finished, PATCH /vm and
// the other VM calls are 400s, never a silent 204 or a hang.
#include "api/vm_backend.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include "vmm/core/event_fd.hpp"
#include "vmm/vmm_loop.hpp"

namespace hvz::api {
namespace {

using nlohmann::json;

// A VM that records its calls and the thread that made them.
class FakeVm : public vmm::VmRuntime {
 public:
  explicit FakeVm(EventFd stop) : stop_(std::move(stop)) {}
  Expected<void> start() override { return record("start"); }
  Expected<vmm::RunOutcome> wait() override {
    return vmm::RunOutcome{vmm::StopReason::kPowerOff, "guest powered off"};
  }
  void request_stop(vmm::StopReason, std::string) override { (void)stop_.signal(); }
  int stop_event_fd() const override { return stop_.fd(); }
  Expected<void> pause() override { return record("pause"); }
  Expected<void> resume() override { return record("resume"); }
  Expected<void> send_ctrl_alt_del() override { return record("send_ctrl_alt_del"); }
  Expected<void> update_drive(const vmm::UpdateDrive& u, bool read_only) override {
    drive_limiter = u.rate_limiter;
    return record(std::string("update_drive ") + (read_only ? "ro" : "rw"));
  }
  Expected<void> update_network_interface(const vmm::UpdateNetworkInterface&) override {
    return record("update_network_interface");
  }
  void dump_state() override {}

  std::vector<std::string> calls;
  std::vector<std::thread::id> threads;
  std::optional<config::RateLimiterConfig> drive_limiter;

 private:
  Expected<void> record(const char* name) { return record(std::string(name)); }
  Expected<void> record(std::string name) {
    calls.push_back(std::move(name));
    threads.push_back(std::this_thread::get_id());
    return {};
  }
  EventFd stop_;
};

TEST(VmBackend, ControllerCallsRunOnTheVmmThreadAndFailOnceTheGuestHasFinished) {
  auto backend = VmBackend::create();
  ASSERT_TRUE(backend);
  config::VmConfig initial;
  initial.boot_source = config::BootSource{"/k", {}, {}};
  initial.drives.push_back({"data", "/d", false, true, {}, {}, {}, {}});
  vmm::VmResources resources(initial);
  FakeVm* vm = nullptr;
  vmm::VmmLoop loop((*backend)->actions(), resources,
                    [&](const config::VmConfig&) -> Expected<std::unique_ptr<vmm::VmRuntime>> {
                      auto stop = EventFd::create();
                      if (!stop) return tl::unexpected(stop.error());
                      auto fake = std::make_unique<FakeVm>(std::move(*stop));
                      vm = fake.get();
                      return std::unique_ptr<vmm::VmRuntime>(std::move(fake));
                    },
                    -1);
  Controller controller(**backend, {"vmm-thread", false}, resources);
  std::thread::id vmm_thread;
  auto runner = std::async(std::launch::async, [&] {
    vmm_thread = std::this_thread::get_id();
    return loop.run();
  });
  auto call = [&](const char* method, const char* target, const json& body) {
    return controller.handle({method, target, body.dump()});
  };
  EXPECT_EQ(call("PUT", "/actions", {{"action_type", "InstanceStart"}}).status, 204);
  EXPECT_EQ(call("PATCH", "/vm", {{"state", "Paused"}}).status, 204);
  EXPECT_EQ(call("PATCH", "/vm", {{"state", "Resumed"}}).status, 204);
  auto r = call(
      "PATCH", "/drives/data",
      {{"drive_id", "data"}, {"rate_limiter", {{"ops", {{"size", 10}, {"refill_time", 100}}}}}});
  EXPECT_EQ(r.status, 204) << r.body;
  ASSERT_NE(vm, nullptr);
  EXPECT_EQ(vm->calls, (std::vector<std::string>{"start", "pause", "resume", "update_drive ro"}));
  for (const auto& t : vm->threads) EXPECT_EQ(t, vmm_thread);
  ASSERT_TRUE(vm->drive_limiter && vm->drive_limiter->ops);
  EXPECT_EQ(vm->drive_limiter->ops->size, 10u);
  // The one configuration has the PATCH, merged.
  EXPECT_EQ(resources.snapshot().drives[0].rate_limiter, vm->drive_limiter);

  // The guest powers off: the loop ends, and later calls are refused.
  vm->request_stop(vmm::StopReason::kPowerOff, "guest powered off");
  ASSERT_TRUE(runner.get());
  r = call("PATCH", "/vm", {{"state", "Paused"}});
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(json::parse(r.body).value("fault_message", ""), "the microVM has stopped");
  EXPECT_EQ(call("PUT", "/actions", {{"action_type", "SendCtrlAltDel"}}).status, 400);
}

}  // namespace
}  // namespace hvz::api
