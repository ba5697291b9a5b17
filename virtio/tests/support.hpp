// Shared helpers for the virtio device tests: a split virtqueue laid out by
// hand in guest memory (as a driver would), an Interrupt that counts what
// the device signals, and a small level-triggered epoll EventLoop run by the
// test thread.
#pragma once

#include <sys/epoll.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "virtio/queue.hpp"
#include "virtio/virtio_device.hpp"
#include "vmm/core/error.hpp"
#include "vmm/core/event_loop.hpp"
#include "vmm/core/guest_memory.hpp"
#include "vmm/core/unique_fd.hpp"

namespace hvz::virtio::testing {

// Lays out a split virtqueue of `size` entries in guest memory: the
// descriptor table at `base`, the avail ring at `base + stride` and the used
// ring at `base + 2 * stride`; posts chains and reads back used entries.
class TestRing {
 public:
  TestRing(const GuestMemory& mem, std::uint64_t base, std::uint16_t size = 16,
           std::uint64_t stride = 0x400)
      : mem_(mem),
        size_(size),
        desc_(base),
        avail_(base + stride),
        used_(base + 2 * stride),
        queue_(size) {
    queue_.set_desc_table(desc_);
    queue_.set_avail_ring(avail_);
    queue_.set_used_ring(used_);
    queue_.set_ready(true);
    EXPECT_TRUE(queue_.validate(mem_));
  }
  Queue& queue() { return queue_; }

  // Writes `descs` as a chain starting at the next free table slot and
  // publishes its head. Returns the head.
  std::uint16_t post(const std::vector<Descriptor>& descs) {
    const std::uint16_t head = next_desc_;
    for (std::size_t i = 0; i < descs.size(); ++i) {
      const auto idx = static_cast<std::uint16_t>((head + i) % size_);
      const bool last = i + 1 == descs.size();
      put_desc(idx, descs[i].addr.value(), descs[i].len,
               static_cast<std::uint16_t>((descs[i].device_writable ? kDescFlagWrite : 0) |
                                          (last ? 0 : kDescFlagNext)),
               static_cast<std::uint16_t>((idx + 1) % size_));
    }
    next_desc_ = static_cast<std::uint16_t>((head + descs.size()) % size_);
    publish(head);
    return head;
  }
  void put_desc(std::uint16_t idx, std::uint64_t addr, std::uint32_t len, std::uint16_t flags,
                std::uint16_t next) {
    const GuestAddress d(desc_.value() + 16u * idx);
    EXPECT_TRUE(mem_.write_obj<std::uint64_t>(d, addr));
    EXPECT_TRUE(mem_.write_obj<std::uint32_t>(GuestAddress(d.value() + 8), len));
    EXPECT_TRUE(mem_.write_obj<std::uint16_t>(GuestAddress(d.value() + 12), flags));
    EXPECT_TRUE(mem_.write_obj<std::uint16_t>(GuestAddress(d.value() + 14), next));
  }
  void publish(std::uint16_t head) {
    EXPECT_TRUE(mem_.write_obj<std::uint16_t>(
        GuestAddress(avail_.value() + 4 + 2u * (avail_idx_ % size_)), head));
    ++avail_idx_;
    EXPECT_TRUE(mem_.write_obj<std::uint16_t>(GuestAddress(avail_.value() + 2), avail_idx_));
  }
  std::uint16_t used_idx() const {
    return *mem_.read_obj<std::uint16_t>(GuestAddress(used_.value() + 2));
  }
  // (id, len) of used element `i`.
  std::pair<std::uint32_t, std::uint32_t> used(std::uint16_t i) const {
    const GuestAddress e(used_.value() + 4 + 8u * (i % size_));
    return {*mem_.read_obj<std::uint32_t>(e),
            *mem_.read_obj<std::uint32_t>(GuestAddress(e.value() + 4))};
  }
  // The used length reported for chain `head` (searched among the first n).
  std::optional<std::uint32_t> used_len_of(std::uint16_t head, std::uint16_t n) const {
    for (std::uint16_t i = 0; i < n; ++i) {
      if (used(i).first == head) return used(i).second;
    }
    return std::nullopt;
  }

 private:
  const GuestMemory& mem_;
  std::uint16_t size_;
  GuestAddress desc_;
  GuestAddress avail_;
  GuestAddress used_;
  Queue queue_;
  std::uint16_t next_desc_ = 0;
  std::uint16_t avail_idx_ = 0;
};

// Counts the interrupts a device raises.
class FakeInterrupt : public Interrupt {
 public:
  Expected<void> signal_used_queue() override {
    ++used;
    return {};
  }
  Expected<void> signal_config_change() override {
    ++config;
    return {};
  }
  void set_needs_reset() override { ++needs_reset; }
  std::atomic<int> used{0};
  std::atomic<int> config{0};
  std::atomic<int> needs_reset{0};
};

// A tiny level-triggered epoll EventLoop run by the test thread; it reports
// the real readiness (HUP/ERR as readable, like the VMM's loop) and counts
// dispatches, in all and per fd, so a spinning device shows. `timeout` is
// the default hang guard of run_until.
class EpollLoop : public EventLoop {
 public:
  explicit EpollLoop(std::chrono::milliseconds timeout = std::chrono::seconds(10))
      : epfd_(::epoll_create1(EPOLL_CLOEXEC)), timeout_(timeout) {}
  Expected<void> add(int fd, std::uint32_t events, Callback cb) override {
    std::lock_guard lock(mu_);
    epoll_event ev{};
    ev.events = to_epoll(events);
    ev.data.fd = fd;
    if (::epoll_ctl(epfd_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) return sys_error("epoll add");
    callbacks_[fd] = std::make_shared<Callback>(std::move(cb));
    return {};
  }
  Expected<void> modify(int fd, std::uint32_t events) override {
    std::lock_guard lock(mu_);
    epoll_event ev{};
    ev.events = to_epoll(events);
    ev.data.fd = fd;
    if (::epoll_ctl(epfd_.get(), EPOLL_CTL_MOD, fd, &ev) != 0) return sys_error("epoll mod");
    return {};
  }
  Expected<void> remove(int fd) override {
    std::lock_guard lock(mu_);
    if (::epoll_ctl(epfd_.get(), EPOLL_CTL_DEL, fd, nullptr) != 0) return sys_error("epoll del");
    callbacks_.erase(fd);
    return {};
  }
  // Whether `fd` is registered.
  bool registered(int fd) {
    std::lock_guard lock(mu_);
    return callbacks_.count(fd) != 0;
  }
  // How many fds are registered.
  std::size_t registered() {
    std::lock_guard lock(mu_);
    return callbacks_.size();
  }
  // Callbacks dispatched so far, in all and for `fd`.
  int dispatched() {
    std::lock_guard lock(mu_);
    return dispatched_;
  }
  int dispatches(int fd) {
    std::lock_guard lock(mu_);
    return dispatches_[fd];
  }

  // Dispatches events until `done()` holds or `timeout` passes.
  bool run_until(const std::function<bool()>& done,
                 std::optional<std::chrono::milliseconds> timeout = std::nullopt) {
    const auto deadline = std::chrono::steady_clock::now() + timeout.value_or(timeout_);
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      poll_once();
    }
    return true;
  }
  // Dispatches whatever is ready for `span`.
  void run_for(std::chrono::milliseconds span) {
    const auto deadline = std::chrono::steady_clock::now() + span;
    while (std::chrono::steady_clock::now() < deadline) poll_once();
  }

 private:
  void poll_once() {
    epoll_event ev{};
    if (::epoll_wait(epfd_.get(), &ev, 1, 5) != 1) return;
    std::shared_ptr<Callback> cb;  // the callback may remove itself
    {
      std::lock_guard lock(mu_);
      auto it = callbacks_.find(ev.data.fd);
      if (it == callbacks_.end()) return;
      cb = it->second;
      ++dispatched_;
      ++dispatches_[ev.data.fd];
    }
    std::uint32_t ready = 0;
    if (ev.events & (EPOLLIN | EPOLLHUP | EPOLLERR)) ready |= kReadable;
    if (ev.events & EPOLLOUT) ready |= kWritable;
    (*cb)(ready);
  }
  static std::uint32_t to_epoll(std::uint32_t events) {
    return ((events & kReadable) ? EPOLLIN : 0u) | ((events & kWritable) ? EPOLLOUT : 0u);
  }
  UniqueFd epfd_;
  std::chrono::milliseconds timeout_;
  std::mutex mu_;
  std::map<int, std::shared_ptr<Callback>> callbacks_;
  std::map<int, int> dispatches_;
  int dispatched_ = 0;
};

}  // namespace hvz::virtio::testing
