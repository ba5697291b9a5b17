// Uring: io_uring through liburing (see uring.hpp).
#include "virtio/block/uring.hpp"

#include <liburing.h>

namespace hvz::virtio::block {
namespace {

enum Op { kReadv, kWritev };

}  // namespace

struct Uring::Ring {
  io_uring ring{};
  bool live = false;
  ~Ring() {
    if (live) io_uring_queue_exit(&ring);
  }
};

Uring::Uring(std::unique_ptr<Ring> ring, EventFd event)
    : ring_(std::move(ring)), event_(std::move(event)) {}

Uring::~Uring() = default;

Expected<std::unique_ptr<Uring>> Uring::create(unsigned entries) {
  auto event = EventFd::create();
  if (!event) return tl::unexpected(event.error());
  auto ring = std::make_unique<Ring>();
  if (const int r = io_uring_queue_init(entries, &ring->ring, 0); r < 0) {
    return make_error(Errc::kUnsupported,
                      "io_uring_queue_init (io_uring refused: an old kernel, "
                      "kernel.io_uring_disabled or a seccomp filter)",
                      -r);
  }
  ring->live = true;
  if (const int r = io_uring_register_eventfd(&ring->ring, event->fd()); r < 0) {
    return make_error(Errc::kUnsupported, "io_uring_register_eventfd", -r);
  }
  return std::unique_ptr<Uring>(new Uring(std::move(ring), std::move(*event)));
}

bool Uring::queue(int op, int fd, std::span<const iovec> iov, std::uint64_t offset,
                  std::uint64_t user_data) {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_->ring);
  if (sqe == nullptr) {
    // The submission queue is full: hand it to the kernel and try again.
    if (!submit()) return false;
    sqe = io_uring_get_sqe(&ring_->ring);
    if (sqe == nullptr) return false;
  }
  const auto n = static_cast<unsigned>(iov.size());
  if (op == kReadv) {
    io_uring_prep_readv(sqe, fd, iov.data(), n, offset);
  } else {
    io_uring_prep_writev(sqe, fd, iov.data(), n, offset);
  }
  io_uring_sqe_set_data64(sqe, user_data);
  return true;
}

bool Uring::queue_readv(int fd, std::span<const iovec> iov, std::uint64_t offset,
                        std::uint64_t user_data) {
  return queue(kReadv, fd, iov, offset, user_data);
}

bool Uring::queue_writev(int fd, std::span<const iovec> iov, std::uint64_t offset,
                         std::uint64_t user_data) {
  return queue(kWritev, fd, iov, offset, user_data);
}

bool Uring::queue_fdatasync(int fd, std::uint64_t user_data) {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_->ring);
  if (sqe == nullptr) {
    if (!submit()) return false;
    sqe = io_uring_get_sqe(&ring_->ring);
    if (sqe == nullptr) return false;
  }
  io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
  io_uring_sqe_set_data64(sqe, user_data);
  return true;
}

Expected<void> Uring::submit() {
  while (io_uring_sq_ready(&ring_->ring) > 0) {
    const int r = io_uring_submit(&ring_->ring);
    if (r == -EINTR) continue;
    if (r < 0) return make_error(Errc::kSystem, "io_uring_submit", -r);
    if (r == 0) break;
  }
  return {};
}

unsigned Uring::unsubmitted() const {
  return io_uring_sq_ready(&ring_->ring);
}

std::size_t Uring::reap(std::span<Completion> out) {
  std::size_t n = 0;
  while (n < out.size()) {
    io_uring_cqe* cqe = nullptr;
    if (io_uring_peek_cqe(&ring_->ring, &cqe) != 0 || cqe == nullptr) break;
    out[n++] = Completion{io_uring_cqe_get_data64(cqe), cqe->res};
    io_uring_cqe_seen(&ring_->ring, cqe);
  }
  return n;
}

}  // namespace hvz::virtio::block
