// Tap: a host TAP interface (or, for tests, any datagram fd carrying whole
// frames) that exchanges Ethernet frames, each preceded by a 12-byte
// struct virtio_net_hdr_v1, with the host kernel. Frames move with
// readv/writev straight from or into guest slices.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "vmm/core/error.hpp"
#include "vmm/core/unique_fd.hpp"

namespace hvz::virtio::net {

// sizeof(struct virtio_net_hdr_v1): the header VERSION_1 drivers use on
// both queues, and the one the TAP is told to expect (TUNSETVNETHDRSZ).
inline constexpr std::size_t kVnetHdrSize = 12;

// TUNSETOFFLOAD flags (<linux/if_tun.h>), repeated so users need not
// include kernel headers.
inline constexpr unsigned kTunOffloadCsum = 0x01;
inline constexpr unsigned kTunOffloadTso4 = 0x02;
inline constexpr unsigned kTunOffloadTso6 = 0x04;
inline constexpr unsigned kTunOffloadTsoEcn = 0x08;
inline constexpr unsigned kTunOffloadUfo = 0x10;

class Tap {
 public:
  // Opens /dev/net/tun and attaches to (or creates) interface `if_name`
  // (a "%d" template is allowed; if_name() then tells the real name) as a
  // TAP with IFF_NO_PI | IFF_VNET_HDR, non-blocking and close-on-exec, with
  // a 12-byte vnet header. Probes once whether TUNSETOFFLOAD works.
  static Expected<Tap> open(const std::string& if_name);
  // Wraps a datagram fd (made non-blocking) (e.g. one end of a SOCK_SEQPACKET
  // socketpair) whose every message is one vnet header + frame. There is
  // no kernel offload to configure: with `fake_offloads` the Tap claims
  // offload support and set_offloads() only records the flags (for tests
  // of feature negotiation); without it only set_offloads(0) succeeds.
  static Tap from_fd(UniqueFd fd, bool fake_offloads = false);

  int fd() const { return fd_.get(); }
  const std::string& if_name() const { return if_name_; }
  // Whether the kernel accepts TUNSETOFFLOAD on this fd (checked at open).
  bool supports_offloads() const { return supports_offloads_; }
  // Tells the kernel which offloads the reader (the guest) copes with, so
  // it may hand us partially checksummed or GSO frames (kTunOffload*).
  Expected<void> set_offloads(unsigned flags);
  // The flags last set successfully.
  unsigned offloads() const { return offloads_; }

  // Reads one frame (header included) into `bufs` in order. Returns its
  // length, which is the full length only if it fit (a datagram larger
  // than `bufs` is truncated: callers pass one byte more than their limit
  // to tell), or nullopt when none is waiting.
  Expected<std::optional<std::size_t>> read_frame(std::span<const std::span<std::byte>> bufs);
  // Writes `bufs` as one frame (header included). Returns the bytes
  // written; a full queue (EAGAIN) is an error like any other.
  Expected<std::size_t> write_frame(std::span<const std::span<const std::byte>> bufs);

 private:
  Tap(UniqueFd fd, std::string if_name, bool supports_offloads, bool is_tap)
      : fd_(std::move(fd)),
        if_name_(std::move(if_name)),
        supports_offloads_(supports_offloads),
        is_tap_(is_tap) {}

  UniqueFd fd_;
  std::string if_name_;
  bool supports_offloads_;
  bool is_tap_;
  unsigned offloads_ = 0;
};

}  // namespace hvz::virtio::net
