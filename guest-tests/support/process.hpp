// run_process: runs a program with arguments, stdin from /dev/null, and
// collects its combined stdout/stderr and exit status, killing it after a
// deadline. For guest tests that drive the hvz binary.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace hvz::testing {

struct ProcessResult {
  int exit_status = -1;  // exit code, or 128 + signal
  bool timed_out = false;
  std::string output;  // stdout and stderr, interleaved as written
  double seconds = 0;
};

struct ProcessOptions {
  // The child's stdout is a pipe that nobody reads (stderr is still
  // collected): a host-side reader that stalled.
  bool stdout_unread = false;
  // Extra environment entries ("NAME=value") on top of ours.
  std::vector<std::string> env;
  // Once the output contains this text, the child gets SIGKILL at once.
  std::string kill_on;
};

ProcessResult run_process(const std::vector<std::string>& argv, std::chrono::seconds timeout,
                          const ProcessOptions& options = {});

}  // namespace hvz::testing
