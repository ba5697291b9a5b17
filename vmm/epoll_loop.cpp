// EpollLoop (see epoll_loop.hpp).
#include "vmm/epoll_loop.hpp"

#include <sys/epoll.h>

#include <cstring>

#include "vmm/core/log.hpp"

namespace hvz::vmm {
namespace {

std::uint32_t to_epoll(std::uint32_t events) {
  std::uint32_t e = 0;
  if (events & EventLoop::kReadable) e |= EPOLLIN;
  if (events & EventLoop::kWritable) e |= EPOLLOUT;
  return e;
}

}  // namespace

Expected<std::unique_ptr<EpollLoop>> EpollLoop::create() {
  UniqueFd ep(::epoll_create1(EPOLL_CLOEXEC));
  if (!ep) return sys_error("epoll_create1");
  auto wake = EventFd::create();
  if (!wake) return tl::unexpected(wake.error());
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = wake->fd();
  if (::epoll_ctl(ep.get(), EPOLL_CTL_ADD, wake->fd(), &ev) < 0) return sys_error("epoll_ctl");
  return std::unique_ptr<EpollLoop>(new EpollLoop(std::move(ep), std::move(*wake)));
}

EpollLoop::~EpollLoop() {
  stop();
}

Expected<void> EpollLoop::add(int fd, std::uint32_t events, Callback callback) {
  std::lock_guard lock(map_mutex_);
  if (callbacks_.count(fd)) return make_error(Errc::kBusy, "event loop: fd already added");
  epoll_event ev{};
  ev.events = to_epoll(events);
  ev.data.fd = fd;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) < 0) return sys_error("epoll_ctl add");
  callbacks_[fd] = std::make_shared<Callback>(std::move(callback));
  return {};
}

Expected<void> EpollLoop::modify(int fd, std::uint32_t events) {
  epoll_event ev{};
  ev.events = to_epoll(events);
  ev.data.fd = fd;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev) < 0) return sys_error("epoll_ctl mod");
  return {};
}

Expected<void> EpollLoop::remove(int fd) {
  {
    std::lock_guard lock(map_mutex_);
    if (callbacks_.erase(fd) == 0)
      return make_error(Errc::kInvalidArgument, "event loop: unknown fd");
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
  }
  // Wait out a callback of this fd that may be running right now.
  if (!on_loop_thread()) std::lock_guard wait(dispatch_mutex_);
  return {};
}

void EpollLoop::start() {
  thread_ = std::thread([this] {
    thread_id_.store(std::this_thread::get_id());
    run();
  });
}

void EpollLoop::pause() {
  {
    std::lock_guard lock(pause_mutex_);
    paused_ = true;
  }
  // Wait out the callback running now; later ones see paused_.
  if (!on_loop_thread()) std::lock_guard wait(dispatch_mutex_);
}

void EpollLoop::resume() {
  {
    std::lock_guard lock(pause_mutex_);
    paused_ = false;
  }
  pause_cv_.notify_all();
}

void EpollLoop::stop() {
  {
    std::lock_guard lock(pause_mutex_);
    stopping_.store(true);
  }
  pause_cv_.notify_all();
  (void)wake_.signal();
  if (thread_.joinable()) thread_.join();
}

void EpollLoop::run() {
  log::set_thread_name("evloop");
  epoll_event events[32];
  while (!stopping_.load()) {
    int n = ::epoll_wait(epoll_.get(), events, 32, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      LOG_ERROR("epoll_wait: %s", std::strerror(errno));
      return;
    }
    for (int i = 0; i < n && !stopping_.load(); ++i) {
      const int fd = events[i].data.fd;
      if (fd == wake_.fd()) {
        wake_.consume();
        continue;
      }
      {
        std::unique_lock lock(pause_mutex_);
        pause_cv_.wait(lock, [this] { return !paused_ || stopping_.load(); });
      }
      std::unique_lock dispatching(dispatch_mutex_);
      {
        // pause() may have begun between the wait and taking the mutex.
        std::lock_guard lock(pause_mutex_);
        if (paused_) {
          --i;  // dispatch this event after resume()
          continue;
        }
      }
      if (stopping_.load()) break;
      std::shared_ptr<Callback> cb;
      {
        std::lock_guard lock(map_mutex_);
        auto it = callbacks_.find(fd);
        if (it == callbacks_.end()) continue;  // removed meanwhile
        cb = it->second;
      }
      std::uint32_t ready = 0;
      if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) ready |= kReadable;
      if (events[i].events & EPOLLOUT) ready |= kWritable;
      (*cb)(ready);
    }
  }
}

}  // namespace hvz::vmm
