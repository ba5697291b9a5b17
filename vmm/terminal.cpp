// Serial console plumbing to the host's stdin/stdout (see terminal.hpp).
#include "vmm/terminal.hpp"

#include <poll.h>
#include <signal.h>
#include <termios.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "vmm/core/log.hpp"

namespace hvz::vmm {
namespace {

// The saved terminal state, for the fatal-signal path (async-signal-safe:
// only tcsetattr and raise are called there).
termios g_saved{};
std::atomic<int> g_raw_fd{-1};

void restore_terminal() {
  const int fd = g_raw_fd.exchange(-1);
  if (fd >= 0) ::tcsetattr(fd, TCSANOW, &g_saved);
}

void on_fatal_signal(int sig) {
  restore_terminal();
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

}  // namespace

FdOutput::FdOutput(int fd)
    : fd_(fd),
      missed_(metrics::registry().group("uart").counter("missed_write_count")),
      written_(metrics::registry().group("uart").counter("write_count")) {}

void FdOutput::write(std::span<const std::uint8_t> bytes) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd_, bytes.data() + done, bytes.size() - done);
    if (n > 0) {
      done += static_cast<std::size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      // Full (the reader stalled) or failed: a vCPU must not wait for the
      // host's reader, so the rest is lost and counted.
      missed_.add(bytes.size() - done);
      static log::RateLimit limit;
      if (limit.allow()) {
        LOG_WARN("serial output lost: %s", n < 0 ? std::strerror(errno) : "nothing written");
      }
      break;
    }
  }
  written_.add(done);
}

RawTerminal::RawTerminal(int fd) {
  if (!::isatty(fd) || ::tcgetattr(fd, &g_saved) < 0) return;
  termios raw = g_saved;
  // Keys go to the guest as typed: no line editing, echo or signals (Ctrl-C
  // reaches the guest, as on a serial line). Output processing stays on.
  raw.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO | ISIG | IEXTEN);
  raw.c_iflag &= ~static_cast<tcflag_t>(IXON | ICRNL);
  raw.c_cc[VMIN] = 1;
  raw.c_cc[VTIME] = 0;
  if (::tcsetattr(fd, TCSANOW, &raw) < 0) return;
  g_raw_fd.store(fd);
  for (int sig : {SIGTERM, SIGHUP, SIGQUIT, SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT}) {
    ::signal(sig, on_fatal_signal);
  }
}

RawTerminal::~RawTerminal() {
  restore_terminal();
}

Expected<std::unique_ptr<InputPump>> InputPump::start(int fd,
                                                      std::shared_ptr<devices::Serial> serial) {
  auto stop = EventFd::create();
  if (!stop) return tl::unexpected(stop.error());
  auto wake = EventFd::create();
  if (!wake) return tl::unexpected(wake.error());
  std::unique_ptr<InputPump> pump(
      new InputPump(fd, std::move(serial), std::move(*stop), std::move(*wake)));
  pump->thread_ = std::thread([p = pump.get()] { p->run(); });
  return pump;
}

InputPump::~InputPump() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  (void)stop_.signal();
  if (thread_.joinable()) thread_.join();
}

void InputPump::pause() {
  std::lock_guard lock(mutex_);  // not while bytes go into the UART
  paused_ = true;
  (void)wake_.signal();
}

void InputPump::resume() {
  {
    std::lock_guard lock(mutex_);
    paused_ = false;
  }
  cv_.notify_all();
}

bool InputPump::wait_unpaused() {
  std::unique_lock lock(mutex_);
  cv_.wait(lock, [this] { return !paused_ || stopping_; });
  return !stopping_;
}

void InputPump::run() {
  log::set_thread_name("stdin");
  std::uint8_t buf[64];
  std::size_t have = 0;
  std::size_t at = 0;
  while (wait_unpaused()) {
    if (at < have) {
      // The guest has not drained the FIFO yet: offer the rest shortly.
      {
        std::lock_guard lock(mutex_);
        if (paused_) continue;
        auto took = serial_->enqueue_input(std::span(buf + at, have - at));
        if (took) at += *took;
      }
      if (at < have) {
        pollfd p[2] = {{stop_.fd(), POLLIN, 0}, {wake_.fd(), POLLIN, 0}};
        if (::poll(p, 2, 5) > 0 && p[0].revents) return;
        wake_.consume();
        continue;
      }
    }
    pollfd fds[3] = {{fd_, POLLIN, 0}, {stop_.fd(), POLLIN, 0}, {wake_.fd(), POLLIN, 0}};
    if (::poll(fds, 3, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents) return;
    if (fds[2].revents) {
      wake_.consume();  // paused: park before reading anything
      continue;
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = ::read(fd_, buf, sizeof buf);
      if (n <= 0) {
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        // EOF or error on stdin: the guest keeps running without input.
        pollfd p{stop_.fd(), POLLIN, 0};
        ::poll(&p, 1, -1);
        return;
      }
      have = static_cast<std::size_t>(n);
      at = 0;
    }
  }
}

}  // namespace hvz::vmm
