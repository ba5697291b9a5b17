// OutputRelay (see output_relay.hpp).
#include "vmm/output_relay.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "vmm/core/log.hpp"
#include "vmm/vcpu.hpp"

namespace hvz::vmm {
namespace {

// What the pipe buffers (F_SETPIPE_SZ; 1 MiB is the default ceiling for an
// unprivileged process): output a stalled reader may still receive.
constexpr int kPipeSize = 1 << 20;
constexpr std::size_t kChunk = 64 * 1024;

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

Expected<std::unique_ptr<OutputRelay>> OutputRelay::start(int target, std::uint64_t limit,
                                                          std::string name,
                                                          std::chrono::milliseconds drain_time) {
  struct stat st {};
  if (::fstat(target, &st) < 0) return sys_error(name + ": output fd");
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0) return sys_error(name + ": pipe2");
  UniqueFd read_end(fds[0]);
  UniqueFd write_end(fds[1]);
  (void)::fcntl(write_end.get(), F_SETPIPE_SZ, kPipeSize);  // best effort
  auto stop = EventFd::create();
  if (!stop) return tl::unexpected(stop.error());
  // The thread is interrupted out of a blocked write() with the vCPU kick
  // signal (a handler without SA_RESTART).
  if (auto r = Vcpu::install_kick_signal(); !r) return tl::unexpected(r.error());
  std::unique_ptr<OutputRelay> relay(
      new OutputRelay(target, limit, S_ISREG(st.st_mode), std::move(name), drain_time,
                      std::move(read_end), std::move(write_end), std::move(*stop)));
  relay->thread_ = std::thread([r = relay.get()] { r->run(); });
  return relay;
}

OutputRelay::~OutputRelay() {
  deadline_ns_.store(now_ns() + std::chrono::nanoseconds(drain_time_).count());
  stopping_.store(true);
  (void)stop_.signal();
  // Past the deadline a write() blocked on the target is interrupted (the
  // thread then sees the deadline and ends); repeated in case the signal
  // came just before the call.
  while (!exited_.load()) {
    if (past_deadline()) ::pthread_kill(thread_.native_handle(), SIGRTMIN);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  thread_.join();
}

bool OutputRelay::past_deadline() const {
  return stopping_.load() && now_ns() >= deadline_ns_.load();
}

void OutputRelay::run() {
  log::set_thread_name(name_.c_str());
  // A target whose reader went away answers EPIPE here instead of killing
  // hvz (and its guest) with SIGPIPE.
  sigset_t pipe_signal;
  sigemptyset(&pipe_signal);
  sigaddset(&pipe_signal, SIGPIPE);
  ::pthread_sigmask(SIG_BLOCK, &pipe_signal, nullptr);
  std::unique_ptr<char[]> buf(new char[kChunk]);
  for (;;) {
    pollfd fds[2] = {{read_end_.get(), POLLIN, 0}, {stop_.fd(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0 && errno != EINTR) break;
    const ssize_t n = ::read(read_end_.get(), buf.get(), kChunk);
    if (n > 0) {
      if (!deliver(buf.get(), static_cast<std::size_t>(n))) break;
      continue;
    }
    // Nothing buffered: done if stopping (the producers have stopped).
    if (stopping_.load() || past_deadline()) break;
  }
  exited_.store(true);
}

bool OutputRelay::deliver(const char* buf, std::size_t len) {
  std::size_t allowed = len;
  if (is_file_ && limit_ != 0) {
    const std::uint64_t room = limit_ - std::min(limit_, written_.load());
    allowed = static_cast<std::size_t>(std::min<std::uint64_t>(len, room));
    if (allowed < len) {
      cut_.fetch_add(len - allowed);
      if (!limit_logged_) {
        limit_logged_ = true;
        LOG_WARN("%s: output limit of %llu bytes reached; further output is dropped", name_.c_str(),
                 static_cast<unsigned long long>(limit_));
      }
    }
  }
  std::size_t done = 0;
  while (done < allowed) {
    const ssize_t w = ::write(target_, buf + done, allowed - done);
    if (w > 0) {
      done += static_cast<std::size_t>(w);
      written_.fetch_add(static_cast<std::uint64_t>(w));
      continue;
    }
    if (w < 0 && errno == EINTR) {
      if (past_deadline()) return false;
      continue;
    }
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      // A non-blocking target (a FIFO opened by hvz): wait until it takes
      // more, or until a stop's deadline.
      int timeout = -1;
      if (stopping_.load()) {
        const std::int64_t left = deadline_ns_.load() - now_ns();
        if (left <= 0) return false;
        timeout = static_cast<int>(left / 1'000'000 + 1);
      }
      pollfd p[2] = {{target_, POLLOUT, 0}, {stop_.fd(), POLLIN, 0}};
      // Once stopping, the stop fd stays readable: wait on the target only.
      ::poll(p, stopping_.load() ? 1 : 2, timeout);
      continue;
    }
    static log::RateLimit failures;
    if (failures.allow()) {
      LOG_WARN("%s: writing output: %s; %zu bytes lost", name_.c_str(),
               w < 0 ? std::strerror(errno) : "nothing written", allowed - done);
    }
    cut_.fetch_add(allowed - done);
    return true;
  }
  return true;
}

}  // namespace hvz::vmm
