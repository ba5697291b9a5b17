// OutputRelay: carries a device's output to a host fd (stdout, a file, a
// FIFO) on a thread of its own, so that whoever produces the output never
// blocks on the host side: producers write to the relay's pipe, whose write
// end is non-blocking, and the relay thread copies the pipe to the target.
// What a full pipe means is the producer's choice: the UART drops and
// counts (a vCPU must not wait), virtio-console waits for writability (the
// guest is throttled, nothing is lost). The target itself is never switched
// to non-blocking (stdout is shared with the shell that started hvz).
//
// A regular-file target stops growing after `limit` bytes (0: no limit), so
// a guest cannot fill the host's disk through its console; what is cut is
// counted and a warning is logged once.
//
// Destruction drains what is buffered for at most `drain_time`, then stops
// the thread even if the target blocks (a stalled reader, a terminal
// stopped with Ctrl-S): the thread is interrupted with a signal.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "vmm/core/error.hpp"
#include "vmm/core/event_fd.hpp"
#include "vmm/core/unique_fd.hpp"

namespace hvz::vmm {

class OutputRelay {
 public:
  // `target` is not owned and must stay open while the relay lives; `name`
  // names the thread and its log lines.
  static Expected<std::unique_ptr<OutputRelay>> start(
      int target, std::uint64_t limit, std::string name,
      std::chrono::milliseconds drain_time = std::chrono::seconds(2));
  ~OutputRelay();
  OutputRelay(const OutputRelay&) = delete;
  OutputRelay& operator=(const OutputRelay&) = delete;

  // The pipe's write end (non-blocking, close-on-exec): where producers write.
  int input_fd() const { return write_end_.get(); }
  // Bytes written to the target so far, and bytes cut by the limit.
  std::uint64_t written() const { return written_.load(std::memory_order_relaxed); }
  std::uint64_t cut() const { return cut_.load(std::memory_order_relaxed); }

 private:
  OutputRelay(int target, std::uint64_t limit, bool is_file, std::string name,
              std::chrono::milliseconds drain_time, UniqueFd read_end, UniqueFd write_end,
              EventFd stop)
      : target_(target),
        limit_(limit),
        is_file_(is_file),
        name_(std::move(name)),
        drain_time_(drain_time),
        read_end_(std::move(read_end)),
        write_end_(std::move(write_end)),
        stop_(std::move(stop)) {}
  void run();
  // Writes `len` bytes of `buf` to the target (minus what the limit cuts);
  // false when the thread must end (stopping and past the deadline).
  bool deliver(const char* buf, std::size_t len);
  bool past_deadline() const;

  const int target_;
  const std::uint64_t limit_;
  const bool is_file_;
  const std::string name_;
  const std::chrono::milliseconds drain_time_;
  UniqueFd read_end_;
  UniqueFd write_end_;
  EventFd stop_;
  std::atomic<bool> stopping_{false};
  std::atomic<std::int64_t> deadline_ns_{0};  // steady clock, once stopping
  std::atomic<bool> exited_{false};
  std::atomic<std::uint64_t> written_{0};
  std::atomic<std::uint64_t> cut_{0};
  bool limit_logged_ = false;  // relay thread
  std::thread thread_;
};

}  // namespace hvz::vmm
