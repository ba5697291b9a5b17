// exit_status: how a run's end maps to hvz's exit status (0 the guest
// powered off or rebooted, 1 it crashed or hvz failed, 128+N signal N).
#include "api/hvz/run.hpp"

#include <signal.h>

#include <gtest/gtest.h>

namespace hvz::api {
namespace {

using vmm::RunOutcome;
using vmm::StopReason;

TEST(ExitStatus, PowerOffAndRebootAreSuccess) {
  EXPECT_EQ(exit_status(RunOutcome{StopReason::kPowerOff, "guest powered off (ACPI S5)"}), 0);
  EXPECT_EQ(exit_status(RunOutcome{StopReason::kReset, "guest reset through the i8042"}), 0);
}

TEST(ExitStatus, CrashesAndFailuresAreOne) {
  EXPECT_EQ(exit_status(RunOutcome{StopReason::kGuestCrash, "vcpu0: triple fault"}), 1);
  EXPECT_EQ(exit_status(RunOutcome{StopReason::kError, "vcpu0: KVM_RUN failed"}), 1);
  EXPECT_EQ(exit_status(tl::unexpected(Error(Errc::kSystem, "poll", EBADF))), 1);
}

TEST(ExitStatus, SignalNIs128PlusN) {
  EXPECT_EQ(exit_status(RunOutcome{StopReason::kSignal, "stopped by signal", SIGTERM}), 128 + 15);
  EXPECT_EQ(exit_status(RunOutcome{StopReason::kSignal, "stopped by signal", SIGINT}), 130);
  EXPECT_EQ(exit_status(RunOutcome{StopReason::kSignal, "stopped by signal", SIGHUP}), 129);
}

}  // namespace
}  // namespace hvz::api
