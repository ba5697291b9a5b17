// Shared pieces of the virtio fuzz harnesses: a synchronous EventLoop run
// by the harness thread (so device callbacks run when the input says, not
// when a thread gets scheduled), counting IrqLine and Interrupt, a disk
// image on a memfd, a driver's view of a split ring (descriptors written
// and heads published the way a guest does it), and check(), which turns a
// broken invariant into a crash libFuzzer records.
#pragma once

#include <poll.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "virtio/block/disk_image.hpp"
#include "virtio/queue.hpp"
#include "virtio/virtio_device.hpp"
#include "vmm/core/error.hpp"
#include "vmm/core/event_loop.hpp"
#include "vmm/core/fuzz/fuzz_input.hpp"
#include "vmm/core/guest_memory.hpp"
#include "vmm/core/irq.hpp"
#include "vmm/core/unique_fd.hpp"

namespace hvz::virtio::fuzz {

using hvz::fuzz::FuzzInput;

// A documented guarantee did not hold: report it as a crash so libFuzzer
// keeps the input.
inline void check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "hvz fuzz: invariant broken: %s\n", what);
  std::abort();
}

// A level-triggered EventLoop the harness runs itself with poll(2): run()
// dispatches ready callbacks until nothing is ready or the round budget is
// spent (a device that keeps an fd ready cannot hang the harness).
class SyncLoop : public EventLoop {
 public:
  Expected<void> add(int fd, std::uint32_t events, Callback cb) override {
    if (fds_.count(fd) != 0) return make_error(Errc::kBusy, "SyncLoop add: fd already added");
    fds_[fd] = Entry{events, std::make_shared<Callback>(std::move(cb))};
    return {};
  }
  Expected<void> modify(int fd, std::uint32_t events) override {
    auto it = fds_.find(fd);
    if (it == fds_.end()) return make_error(Errc::kInvalidArgument, "SyncLoop modify: no such fd");
    it->second.events = events;
    return {};
  }
  Expected<void> remove(int fd) override {
    if (fds_.erase(fd) == 0) return make_error(Errc::kInvalidArgument, "SyncLoop remove: no fd");
    return {};
  }
  std::size_t registered() const { return fds_.size(); }

  void run(int max_rounds = 32) {
    for (int round = 0; round < max_rounds && !fds_.empty(); ++round) {
      std::vector<pollfd> pfds;
      pfds.reserve(fds_.size());
      for (const auto& [fd, e] : fds_) {
        const short ev = static_cast<short>(((e.events & kReadable) ? POLLIN : 0) |
                                            ((e.events & kWritable) ? POLLOUT : 0));
        pfds.push_back(pollfd{fd, ev, 0});
      }
      if (::poll(pfds.data(), pfds.size(), 0) <= 0) return;
      for (const pollfd& p : pfds) {
        // An fd still registered after its owner closed it: a device left
        // a registration behind.
        check((p.revents & POLLNVAL) == 0, "a closed fd is still registered with the loop");
        if (p.revents == 0) continue;
        auto it = fds_.find(p.fd);
        if (it == fds_.end()) continue;  // removed by an earlier callback
        const std::shared_ptr<Callback> cb = it->second.cb;
        std::uint32_t ready = 0;
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) ready |= kReadable;
        if (p.revents & POLLOUT) ready |= kWritable;
        (*cb)(ready);
      }
    }
  }

 private:
  struct Entry {
    std::uint32_t events;
    std::shared_ptr<Callback> cb;
  };
  std::map<int, Entry> fds_;
};

class CountingIrq : public IrqLine {
 public:
  Expected<void> trigger() override {
    count.fetch_add(1);
    return {};
  }
  std::atomic<std::uint64_t> count{0};
};

class CountingInterrupt : public Interrupt {
 public:
  Expected<void> signal_used_queue() override {
    used.fetch_add(1);
    return {};
  }
  Expected<void> signal_config_change() override {
    config.fetch_add(1);
    return {};
  }
  void set_needs_reset() override { needs_reset.store(true); }
  std::atomic<std::uint64_t> used{0};
  std::atomic<std::uint64_t> config{0};
  std::atomic<bool> needs_reset{false};
};

// One guest memory per layout, made once per process and zeroed per input
// (mapping fresh memory for every run would dominate the run time).
//   layout 0: one 64 KiB region at 0
//   layout 1: two adjacent 32 KiB regions (a buffer may not span them)
//   layout 2: 32 KiB at 0 and 32 KiB at 36 KiB (a hole between)
inline constexpr std::uint64_t kSmallMemoryEnd = 0x11000;
inline GuestMemory& small_memory(unsigned layout) {
  static std::vector<std::unique_ptr<GuestMemory>> memories = [] {
    std::vector<std::unique_ptr<GuestMemory>> v;
    const std::vector<std::vector<MemoryRange>> layouts = {
        {{GuestAddress(0), 0x10000}},
        {{GuestAddress(0), 0x8000}, {GuestAddress(0x8000), 0x8000}},
        {{GuestAddress(0), 0x8000}, {GuestAddress(0x9000), 0x8000}},
    };
    for (const auto& l : layouts) {
      auto m = GuestMemory::create(l);
      if (!m) std::abort();
      v.push_back(std::make_unique<GuestMemory>(std::move(*m)));
    }
    return v;
  }();
  GuestMemory& mem = *memories[layout % memories.size()];
  for (const auto& r : mem.regions()) std::memset(r.mapping.data(), 0, r.size());
  return mem;
}

// Copies `bytes` into guest memory from address 0 on, region by region
// (what does not fit is dropped).
inline void fill_memory(const GuestMemory& mem, std::span<const std::uint8_t> bytes) {
  std::size_t done = 0;
  for (const auto& r : mem.regions()) {
    if (done >= bytes.size()) return;
    const std::size_t n = std::min<std::size_t>(r.size(), bytes.size() - done);
    std::memcpy(r.mapping.data(), bytes.data() + done, n);
    done += n;
  }
}

// A guest write between device steps: the driver changing ring or buffer
// bytes under the device's feet. Writes that leave RAM are dropped.
inline void mutate_memory(const GuestMemory& mem, FuzzInput& in, std::uint64_t span) {
  const std::uint64_t addr = in.u32() % span;
  auto b = in.bytes(in.u8());
  (void)mem.write(GuestAddress(addr), std::as_bytes(b));
}

// A raw disk image on a memfd, reopened through /proc/self/fd as
// DiskImage::open does with a path: no file system is touched, and the
// size (hence the content, zeroed by truncation) is set per input.
class MemDisk {
 public:
  MemDisk() : fd_(::memfd_create("hvz-fuzz-disk", MFD_CLOEXEC)) {
    if (!fd_) std::abort();
    path_ = "/proc/self/fd/" + std::to_string(fd_.get());
  }
  Expected<block::DiskImage> open(std::uint64_t size, bool read_only) {
    if (::ftruncate(fd_.get(), 0) != 0 || ::ftruncate(fd_.get(), static_cast<off_t>(size)) != 0) {
      return sys_error("ftruncate memfd");
    }
    return block::DiskImage::open(path_, read_only);
  }

 private:
  UniqueFd fd_;
  std::string path_;
};

// The driver side of a split ring laid out in guest memory: writes
// descriptors and publishes heads as a guest driver does, reading the
// current avail idx from memory (the input may have rewritten it).
struct RingLayout {
  std::uint64_t desc = 0;
  std::uint64_t avail = 0;
  std::uint64_t used = 0;
  std::uint16_t size = 0;
};

inline void put_desc(const GuestMemory& mem, const RingLayout& ring, std::uint16_t index,
                     std::uint64_t addr, std::uint32_t len, std::uint16_t flags,
                     std::uint16_t next) {
  struct {
    std::uint64_t addr;
    std::uint32_t len;
    std::uint16_t flags;
    std::uint16_t next;
  } d{addr, len, flags, next};
  (void)mem.write_obj(GuestAddress(ring.desc + 16ull * index), d);
}

inline void publish(const GuestMemory& mem, const RingLayout& ring, std::uint16_t head) {
  if (ring.size == 0) return;
  const auto idx = mem.read_obj<std::uint16_t>(GuestAddress(ring.avail + 2));
  if (!idx) return;
  (void)mem.write_obj<std::uint16_t>(GuestAddress(ring.avail + 4 + 2ull * (*idx % ring.size)),
                                     head);
  (void)mem.write_obj<std::uint16_t>(GuestAddress(ring.avail + 2),
                                     static_cast<std::uint16_t>(*idx + 1));
}

// Decodes one chain from the input, writes its descriptors from table slot
// `first` on and publishes its head. Per descriptor: u16 address (scaled by
// `addr_scale`), u16 length, u8 flags byte: bit 0 device-writable, bit 1
// indirect, bit 2 "raw": then the descriptor's flags are bits 3..5 and its
// next index is the following byte, as given (loops, bad indices...).
// Without "raw" descriptors link to the next slot and the last ends the
// chain.
inline void post_chain(const GuestMemory& mem, const RingLayout& ring, FuzzInput& in,
                       std::uint64_t addr_scale = 1) {
  if (ring.size == 0) return;
  const unsigned count = 1 + in.u8() % 8;
  const std::uint16_t first = static_cast<std::uint16_t>(in.u8() % ring.size);
  for (unsigned i = 0; i < count; ++i) {
    const std::uint16_t slot = static_cast<std::uint16_t>((first + i) % ring.size);
    const std::uint64_t addr = std::uint64_t{in.u16()} * addr_scale;
    const std::uint32_t len = in.u16();
    const std::uint8_t f = in.u8();
    std::uint16_t flags = 0;
    std::uint16_t next = static_cast<std::uint16_t>((slot + 1) % ring.size);
    if (f & 4) {
      flags = static_cast<std::uint16_t>((f >> 3) & 7);
      next = in.u8();
    } else {
      if (f & 1) flags |= kDescFlagWrite;
      if (f & 2) flags |= kDescFlagIndirect;
      if (i + 1 < count) flags |= kDescFlagNext;
    }
    put_desc(mem, ring, slot, addr, len, flags, next);
  }
  publish(mem, ring, first);
}

}  // namespace hvz::virtio::fuzz
