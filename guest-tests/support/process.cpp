// run_process (see process.hpp): fork/exec with a pipe and a poll deadline.
#include "guest-tests/support/process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

namespace hvz::testing {

ProcessResult run_process(const std::vector<std::string>& argv, std::chrono::seconds timeout,
                          const ProcessOptions& options) {
  ProcessResult result;
  const auto start = std::chrono::steady_clock::now();
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) < 0) return result;
  int unread[2] = {-1, -1};
  if (options.stdout_unread && ::pipe2(unread, O_CLOEXEC) < 0) return result;
  pid_t pid = ::fork();
  if (pid < 0) return result;
  if (pid == 0) {
    int null = ::open("/dev/null", O_RDONLY);
    ::dup2(null, 0);
    ::dup2(options.stdout_unread ? unread[1] : fds[1], 1);
    ::dup2(fds[1], 2);
    for (const auto& e : options.env) ::putenv(const_cast<char*>(e.c_str()));
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  if (options.stdout_unread) ::close(unread[1]);  // unread[0] stays open, unread
  const auto deadline = start + timeout;
  char buf[4096];
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      result.timed_out = true;
      ::kill(pid, SIGKILL);
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n <= 0) break;
    result.output.append(buf, static_cast<std::size_t>(n));
    if (!options.kill_on.empty() && result.output.find(options.kill_on) != std::string::npos) {
      ::kill(pid, SIGKILL);
      break;
    }
  }
  ::close(fds[0]);
  if (options.stdout_unread) ::close(unread[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  result.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace hvz::testing
