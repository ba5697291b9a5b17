// OutputRelay and the UART's FdOutput: console output reaches its host fd
// complete and in order; a stalled reader, a FIFO without a reader or a
// terminal that blocks never blocks the producer (a vCPU); a regular file
// stops growing at the limit; destruction ends within the drain time.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "vmm/core/log.hpp"
#include "vmm/core/metrics.hpp"
#include "vmm/core/unique_fd.hpp"
#include "vmm/output_relay.hpp"
#include "vmm/terminal.hpp"

namespace hvz::vmm {
namespace {

using namespace std::chrono_literals;

struct Pipe {
  UniqueFd read;
  UniqueFd write;
};

Pipe make_pipe() {
  int fds[2];
  EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

std::string temp_path(const char* name) {
  const char* dir = std::getenv("TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/hvz-relay-" + std::to_string(::getpid()) +
         "-" + name;
}

std::uint64_t missed() {
  return metrics::registry().group("uart").counter("missed_write_count").value();
}

TEST(OutputRelay, CarriesEverythingInOrder) {
  Pipe target = make_pipe();
  std::string received;
  std::thread reader([&] {
    char buf[4096];
    ssize_t n;
    while ((n = ::read(target.read.get(), buf, sizeof buf)) > 0) received.append(buf, n);
  });
  std::string sent;
  {
    auto relay = OutputRelay::start(target.write.get(), 0, "test-out");
    ASSERT_TRUE(relay) << relay.error().message();
    FdOutput out((*relay)->input_fd());
    for (int i = 0; i < 2000; ++i) {
      const std::string line = "line " + std::to_string(i) + "\n";
      out.write(std::span(reinterpret_cast<const std::uint8_t*>(line.data()), line.size()));
      sent += line;
    }
  }  // drains
  target.write.reset();
  reader.join();
  EXPECT_EQ(received, sent);
}

// The UART's producer is a vCPU holding the UART's lock: a reader that
// never reads must cost bytes, never a blocked vCPU.
TEST(OutputRelay, StalledReaderNeverBlocksTheProducer) {
  Pipe target = make_pipe();  // nobody reads it
  const std::uint64_t missed_before = missed();
  auto relay = OutputRelay::start(target.write.get(), 0, "test-out", 200ms);
  ASSERT_TRUE(relay);
  FdOutput out((*relay)->input_fd());
  const std::vector<std::uint8_t> chunk(4096, 'x');
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 1024; ++i) out.write(chunk);  // 4 MiB: more than both pipes hold
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_GT(missed() - missed_before, 0u);
  // The relay thread is blocked writing to the full target: destruction
  // interrupts it once the drain time is over.
  const auto stop = std::chrono::steady_clock::now();
  relay->reset();
  EXPECT_LT(std::chrono::steady_clock::now() - stop, 3s);
}

TEST(OutputRelay, FifoWithoutReaderBlocksNothing) {
  const std::string path = temp_path("fifo");
  ::unlink(path.c_str());
  ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0);
  // Opening a FIFO for writing would wait for a reader; the log's opener
  // does not (read-write, non-blocking), and neither does the relay.
  auto fd = log::open_output_file(path);
  ASSERT_TRUE(fd) << fd.error().message();
  {
    auto relay = OutputRelay::start(fd->get(), 0, "test-out", 200ms);
    ASSERT_TRUE(relay);
    FdOutput out((*relay)->input_fd());
    const std::vector<std::uint8_t> chunk(4096, 'y');
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < 1024; ++i) out.write(chunk);
    EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
    const auto stop = std::chrono::steady_clock::now();
    relay->reset();
    EXPECT_LT(std::chrono::steady_clock::now() - stop, 3s);
  }
  ::unlink(path.c_str());
}

TEST(OutputRelay, RegularFileStopsGrowingAtTheLimit) {
  const std::string path = temp_path("file");
  ::unlink(path.c_str());
  auto fd = log::open_output_file(path);
  ASSERT_TRUE(fd);
  constexpr std::uint64_t kLimit = 100'000;
  std::uint64_t cut = 0;
  {
    auto relay = OutputRelay::start(fd->get(), kLimit, "test-out");
    ASSERT_TRUE(relay);
    const std::vector<std::uint8_t> chunk(1000, 'z');
    for (int i = 0; i < 300; ++i) {
      // A blocking producer (like virtio-console waiting for writability):
      // every byte enters the pipe.
      std::size_t done = 0;
      while (done < chunk.size()) {
        const ssize_t n = ::write((*relay)->input_fd(), chunk.data() + done, chunk.size() - done);
        if (n > 0) {
          done += static_cast<std::size_t>(n);
        } else {
          std::this_thread::sleep_for(1ms);
        }
      }
    }
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while ((*relay)->written() + (*relay)->cut() < 300'000 &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(1ms);
    }
    cut = (*relay)->cut();
  }
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(static_cast<std::uint64_t>(st.st_size), kLimit);
  EXPECT_EQ(cut, 200'000u);
  ::unlink(path.c_str());
}

TEST(OutputRelay, ReaderGoneIsNotAFatalSignal) {
  Pipe target = make_pipe();
  target.read.reset();  // writes now fail with EPIPE (and would raise SIGPIPE)
  auto relay = OutputRelay::start(target.write.get(), 0, "test-out");
  ASSERT_TRUE(relay);
  FdOutput out((*relay)->input_fd());
  const std::vector<std::uint8_t> chunk(100, 'q');
  out.write(chunk);
  relay->reset();  // the process is still alive to get here
  SUCCEED();
}

}  // namespace
}  // namespace hvz::vmm
