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
  std::unique_ptr<InputPump> pump(new InputPump(fd, std::move(serial), std::move(*stop)));
  pump->thread_ = std::thread([p = pump.get()] { p->run(); });
  return pump;
}

InputPump::~InputPump() {
  (void)stop_.signal();
  if (thread_.joinable()) thread_.join();
}

void InputPump::run() {
  log::set_thread_name("stdin");
  std::uint8_t buf[64];
  std::size_t have = 0;
  std::size_t at = 0;
  while (true) {
    if (at < have) {
      // The guest has not drained the FIFO yet: offer the rest shortly.
      auto took = serial_->enqueue_input(std::span(buf + at, have - at));
      if (took) at += *took;
      if (at < have) {
        pollfd p{stop_.fd(), POLLIN, 0};
        if (::poll(&p, 1, 5) > 0) return;
        continue;
      }
    }
    pollfd fds[2] = {{fd_, POLLIN, 0}, {stop_.fd(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents) return;
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
