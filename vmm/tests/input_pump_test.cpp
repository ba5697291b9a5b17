// InputPump: host input reaches the UART's receive FIFO, and none does
// while the pump is paused (the VM's quiesce contract).
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "devices/serial.hpp"
#include "vmm/core/unique_fd.hpp"
#include "vmm/terminal.hpp"

namespace hvz::vmm {
namespace {

using namespace std::chrono_literals;

// Waits up to 2 s for the UART to hold `want` bytes of input.
bool wait_for_input(const devices::Serial& serial, std::size_t want) {
  for (int i = 0; i < 200; ++i) {
    if (devices::uart::kFifoSize - serial.input_space() >= want) return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

struct Pipe {
  Pipe() {
    int fds[2];
    EXPECT_EQ(::pipe(fds), 0);
    read_end = UniqueFd(fds[0]);
    write_end = UniqueFd(fds[1]);
  }
  void send(const char* text) const {
    const auto n = static_cast<ssize_t>(std::char_traits<char>::length(text));
    ASSERT_EQ(::write(write_end.get(), text, static_cast<std::size_t>(n)), n);
  }
  UniqueFd read_end;
  UniqueFd write_end;
};

TEST(InputPump, FeedsTheUartsReceiveFifo) {
  Pipe pipe;
  auto serial = std::make_shared<devices::Serial>(nullptr, nullptr);
  auto pump = InputPump::start(pipe.read_end.get(), serial);
  ASSERT_TRUE(pump) << pump.error().message();
  pipe.send("abc");
  EXPECT_TRUE(wait_for_input(*serial, 3));
}

TEST(InputPump, NothingReachesTheUartWhilePausedAndAllOfItAfterResume) {
  Pipe pipe;
  auto serial = std::make_shared<devices::Serial>(nullptr, nullptr);
  auto pump = InputPump::start(pipe.read_end.get(), serial);
  ASSERT_TRUE(pump) << pump.error().message();
  (*pump)->pause();
  pipe.send("while paused");
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(serial->input_space(), devices::uart::kFifoSize) << "input reached the UART";
  (*pump)->resume();
  EXPECT_TRUE(wait_for_input(*serial, 12));
}

TEST(InputPump, StopsWhilePaused) {
  Pipe pipe;
  auto serial = std::make_shared<devices::Serial>(nullptr, nullptr);
  auto pump = InputPump::start(pipe.read_end.get(), serial);
  ASSERT_TRUE(pump) << pump.error().message();
  (*pump)->pause();
  const auto start = std::chrono::steady_clock::now();
  pump->reset();  // joins the thread
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
}

}  // namespace
}  // namespace hvz::vmm
