// Uring: the small part of io_uring (through liburing) the Async I/O engine
// needs — vectored reads and writes, fdatasync, and completions announced
// on an eventfd registered with the ring, so the device's I/O thread can
// wait for them beside its other wake-ups with ppoll. liburing stays inside
// uring.cpp. Used by one thread at a time (the device's I/O thread).
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <span>

#include "vmm/core/error.hpp"
#include "vmm/core/event_fd.hpp"

namespace hvz::virtio::block {

class Uring {
 public:
  struct Completion {
    std::uint64_t user_data;
    int res;  // bytes transferred, or -errno
  };

  // A ring with `entries` submission slots (a power of two), its completion
  // eventfd registered. Fails with a message naming io_uring when the host
  // refuses it (old kernel, io_uring disabled by sysctl or seccomp).
  static Expected<std::unique_ptr<Uring>> create(unsigned entries);
  ~Uring();
  Uring(const Uring&) = delete;
  Uring& operator=(const Uring&) = delete;

  // Readable when completions may be waiting; reset it with consume_event().
  int event_fd() const { return event_.fd(); }
  void consume_event() const { [[maybe_unused]] auto n = event_.consume(); }

  // Queue one operation (submitted by the next submit()). False when the
  // submission queue is full even after submitting what it holds. `iov`
  // must stay valid until the operation completes.
  bool queue_readv(int fd, std::span<const iovec> iov, std::uint64_t offset,
                   std::uint64_t user_data);
  bool queue_writev(int fd, std::span<const iovec> iov, std::uint64_t offset,
                    std::uint64_t user_data);
  bool queue_fdatasync(int fd, std::uint64_t user_data);

  // Hands the queued operations to the kernel, retrying on EINTR. Errors
  // (e.g. EAGAIN, EBUSY) leave them queued for the next call.
  Expected<void> submit();
  // Operations queued but not yet handed to the kernel.
  unsigned unsubmitted() const;
  // Copies up to out.size() ready completions into `out`; returns the count.
  std::size_t reap(std::span<Completion> out);

 private:
  struct Ring;
  Uring(std::unique_ptr<Ring> ring, EventFd event);
  bool queue(int op, int fd, std::span<const iovec> iov, std::uint64_t offset,
             std::uint64_t user_data);

  std::unique_ptr<Ring> ring_;
  EventFd event_;
};

}  // namespace hvz::virtio::block
