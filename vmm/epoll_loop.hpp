// EpollLoop: the VMM's EventLoop, one thread around epoll. Device callbacks
// run on it, never on vCPU threads. remove() called from another thread
// returns only once that fd's callback is no longer running, so a device
// can tear down what its callback uses right after.
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "vmm/core/event_fd.hpp"
#include "vmm/core/event_loop.hpp"
#include "vmm/core/unique_fd.hpp"

namespace hvz::vmm {

class EpollLoop : public EventLoop {
 public:
  static Expected<std::unique_ptr<EpollLoop>> create();
  ~EpollLoop() override;

  Expected<void> add(int fd, std::uint32_t events, Callback callback) override;
  Expected<void> modify(int fd, std::uint32_t events) override;
  Expected<void> remove(int fd) override;

  void start();
  void stop();
  // pause() returns once no callback runs and none will until resume():
  // ready fds wait (level-triggered, nothing is lost).
  void pause();
  void resume();

 private:
  EpollLoop(UniqueFd epoll, EventFd wake) : epoll_(std::move(epoll)), wake_(std::move(wake)) {}
  void run();
  bool on_loop_thread() const { return std::this_thread::get_id() == thread_id_.load(); }

  UniqueFd epoll_;
  EventFd wake_;
  std::mutex map_mutex_;
  std::map<int, std::shared_ptr<Callback>> callbacks_;
  std::mutex dispatch_mutex_;  // held while one callback runs
  std::atomic<bool> stopping_{false};
  std::mutex pause_mutex_;
  std::condition_variable pause_cv_;
  bool paused_ = false;  // under pause_mutex_
  std::thread thread_;
  std::atomic<std::thread::id> thread_id_{};
};

}  // namespace hvz::vmm
