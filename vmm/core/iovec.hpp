// to_iovecs: guest (or host) buffers as the iovec array readv/writev and
// io_uring take. Empty buffers are left out; `max` caps the count (a caller
// writing in several calls passes IOV_MAX and goes on with the rest).
#pragma once

#include <sys/uio.h>

#include <algorithm>
#include <cstddef>
#include <limits>
#include <span>
#include <vector>

namespace hvz {

inline std::vector<iovec> to_iovecs(std::span<const std::span<std::byte>> bufs,
                                    std::size_t max = std::numeric_limits<std::size_t>::max()) {
  std::vector<iovec> iov;
  iov.reserve(std::min(bufs.size(), max));
  for (const auto& b : bufs) {
    if (b.empty()) continue;
    if (iov.size() == max) break;
    iov.push_back(iovec{b.data(), b.size()});
  }
  return iov;
}

// For writes: writev and io_uring do not write through iov_base; iovec
// merely lacks const.
inline std::vector<iovec> to_iovecs(std::span<const std::span<const std::byte>> bufs,
                                    std::size_t max = std::numeric_limits<std::size_t>::max()) {
  std::vector<iovec> iov;
  iov.reserve(std::min(bufs.size(), max));
  for (const auto& b : bufs) {
    if (b.empty()) continue;
    if (iov.size() == max) break;
    iov.push_back(iovec{const_cast<std::byte*>(b.data()), b.size()});
  }
  return iov;
}

}  // namespace hvz
