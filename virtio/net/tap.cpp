// Tap (see tap.hpp): /dev/net/tun setup and frame I/O with readv/writev.
#include "virtio/net/tap.hpp"

#include <fcntl.h>
#include <limits.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <sys/uio.h>

#include <cstring>
#include <vector>

#include "vmm/core/iovec.hpp"

namespace hvz::virtio::net {
namespace {

// One readv/writev per frame: a frame in more pieces than it takes is refused.
Expected<void> check_pieces(std::size_t count) {
  if (count > IOV_MAX) {
    return make_error(Errc::kInvalidArgument,
                      "tap: frame in " + std::to_string(count) + " pieces, more than IOV_MAX");
  }
  return {};
}

}  // namespace

Expected<Tap> Tap::open(const std::string& if_name) {
  if (if_name.empty() || if_name.size() >= IFNAMSIZ) {
    return make_error(Errc::kInvalidArgument, "tap: interface name \"" + if_name +
                                                  "\" must have 1 to " +
                                                  std::to_string(IFNAMSIZ - 1) + " characters");
  }
  if (if_name.find('/') != std::string::npos || if_name.find('\0') != std::string::npos) {
    return make_error(Errc::kInvalidArgument, "tap: invalid interface name \"" + if_name + "\"");
  }
  UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (!fd) return sys_error("tap: open /dev/net/tun");

  ifreq ifr{};
  std::memcpy(ifr.ifr_name, if_name.data(), if_name.size());
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  if (::ioctl(fd.get(), TUNSETIFF, &ifr) < 0) return sys_error("tap: TUNSETIFF " + if_name);
  // The kernel fills in the real name (templates such as "tap%d").
  ifr.ifr_name[IFNAMSIZ - 1] = '\0';
  std::string real_name(ifr.ifr_name);

  int hdr_size = static_cast<int>(kVnetHdrSize);
  if (::ioctl(fd.get(), TUNSETVNETHDRSZ, &hdr_size) < 0) {
    return sys_error("tap: TUNSETVNETHDRSZ " + real_name);
  }
  // Probe offload support once: CSUM is the base every other offload needs.
  bool offloads = ::ioctl(fd.get(), TUNSETOFFLOAD, static_cast<unsigned long>(TUN_F_CSUM)) == 0;
  if (offloads && ::ioctl(fd.get(), TUNSETOFFLOAD, 0UL) < 0) offloads = false;
  return Tap(std::move(fd), std::move(real_name), offloads, true);
}

Tap Tap::from_fd(UniqueFd fd, bool fake_offloads) {
  // The event loop must never block in a read: make sure of O_NONBLOCK.
  const int fl = ::fcntl(fd.get(), F_GETFL);
  if (fl >= 0 && !(fl & O_NONBLOCK)) ::fcntl(fd.get(), F_SETFL, fl | O_NONBLOCK);
  return Tap(std::move(fd), std::string(), fake_offloads, false);
}

Expected<void> Tap::set_offloads(unsigned flags) {
  if (flags == offloads_) return {};
  if (!supports_offloads_) {
    return make_error(Errc::kUnsupported, "tap: TUNSETOFFLOAD not supported");
  }
  if (is_tap_ && ::ioctl(fd_.get(), TUNSETOFFLOAD, static_cast<unsigned long>(flags)) < 0) {
    return sys_error("tap: TUNSETOFFLOAD " + if_name_);
  }
  offloads_ = flags;
  return {};
}

Expected<std::optional<std::size_t>> Tap::read_frame(std::span<const std::span<std::byte>> bufs) {
  if (auto r = check_pieces(bufs.size()); !r) return tl::unexpected(r.error());
  const std::vector<iovec> iov = to_iovecs(bufs);
  for (;;) {
    const ssize_t n = ::readv(fd_.get(), iov.data(), static_cast<int>(iov.size()));
    if (n >= 0) return std::optional<std::size_t>(static_cast<std::size_t>(n));
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return std::optional<std::size_t>();
    return sys_error("tap: readv");
  }
}

Expected<std::size_t> Tap::write_frame(std::span<const std::span<const std::byte>> bufs) {
  if (auto r = check_pieces(bufs.size()); !r) return tl::unexpected(r.error());
  const std::vector<iovec> iov = to_iovecs(bufs);
  for (;;) {
    const ssize_t n = ::writev(fd_.get(), iov.data(), static_cast<int>(iov.size()));
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno == EINTR) continue;
    return sys_error("tap: writev");
  }
}

}  // namespace hvz::virtio::net
