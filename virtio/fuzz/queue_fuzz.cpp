// Fuzz harness for the split virtqueue (virtio/queue.hpp): Queue::pop and
// its descriptor-chain walk, the used ring, notification suppression and
// the Reader/Writer over a chain, on a small guest memory whose bytes come
// from the input. Between queue operations the input rewrites guest memory
// (the driver changing the ring under the device: the double-fetch case),
// and a chain popped earlier is read again after such writes.
//
// Input: u8 config (bits 0-1 memory layout, bit 2 EVENT_IDX, bit 3
// INDIRECT_DESC, bit 4 only go on when validate() accepts the layout), the
// queue registers (u16 size, u64 desc, u64 avail, u64 used), a u16-sized
// initial memory image, then operations (see the switch below).
#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <optional>

#include "virtio/fuzz/fuzz_support.hpp"
#include "virtio/queue.hpp"

namespace {

using namespace hvz;
using namespace hvz::virtio;
using namespace hvz::virtio::fuzz;

constexpr std::uint16_t kMaxQueueSize = 256;
constexpr unsigned kMaxOps = 256;
// Bytes moved through a Reader or Writer per chain at most: chains of
// overlapping descriptors may announce megabytes.
constexpr std::uint64_t kMaxCopy = 16 * 1024;
constexpr std::size_t kChunk = 512;

// How many bytes the next Reader/Writer step moves: 1-255 as the input
// says, a whole buffer once the input is spent (0), so a long chain does
// not crawl byte by byte.
std::uint64_t chunk(FuzzInput& in) {
  const std::uint8_t n = in.u8();
  return n == 0 ? kChunk : n;
}

enum Op : std::uint8_t {
  kPop,
  kMutate,
  kPostChain,
  kAddUsed,
  kNeedsNotification,
  kEnableNotification,
  kUndoPop,
  kReset,
  kReadHeld,
  kOpCount,
};

struct Harness {
  explicit Harness(const GuestMemory& m) : mem(m) {}
  const GuestMemory& mem;
  Queue queue{kMaxQueueSize};
  RingLayout ring;
  std::uint64_t features = kFeatureVersion1;
  bool broken = false;
  bool may_undo = false;
  std::optional<DescriptorChain> held;

  void configure(FuzzInput& in) {
    queue.reset();
    ring.size = in.u16();
    ring.desc = in.u64();
    ring.avail = in.u64();
    ring.used = in.u64();
    queue.set_size(ring.size);
    queue.set_desc_table(GuestAddress(ring.desc));
    queue.set_avail_ring(GuestAddress(ring.avail));
    queue.set_used_ring(GuestAddress(ring.used));
    queue.set_features(features);
    queue.set_ready(true);
    broken = false;
    may_undo = false;
    held.reset();
  }

  bool size_valid() const {
    return ring.size != 0 && ring.size <= kMaxQueueSize && (ring.size & (ring.size - 1)) == 0;
  }

  void check_chain(const DescriptorChain& chain) {
    check(!chain.descriptors.empty(), "pop returned an empty chain");
    check(chain.head < ring.size, "pop returned a head >= queue size");
    bool seen_writable = false;
    std::uint64_t total = 0;
    for (const Descriptor& d : chain.descriptors) {
      check(mem.contains(d.addr, d.len), "pop returned a descriptor outside guest RAM");
      check(d.device_writable || !seen_writable, "readable descriptor after a writable one");
      seen_writable = seen_writable || d.device_writable;
      total += d.len;
    }
    check(total <= std::numeric_limits<std::uint32_t>::max(), "chain length overflows u32");
    check(chain.readable_bytes() + chain.writable_bytes() == total, "byte counts disagree");
  }

  // Moves the chain's bytes through a Reader and a Writer the way devices
  // do (objects, raw reads, slices) and checks the byte accounting.
  std::uint32_t consume(const DescriptorChain& chain, FuzzInput& in) {
    std::array<std::byte, kChunk> buf{};
    Reader reader(mem, chain);
    check(reader.remaining() == chain.readable_bytes(), "Reader::remaining at start");
    std::uint64_t budget = kMaxCopy;
    while (reader.remaining() > 0 && budget > 0) {
      const std::uint64_t before = reader.remaining();
      const std::uint64_t want = std::min<std::uint64_t>({before, budget, buf.size(), chunk(in)});
      if (in.flag()) {
        auto s = reader.slices(want);
        check(s.has_value(), "Reader::slices within remaining() failed");
        std::uint64_t n = 0;
        for (const auto& piece : *s) n += piece.size();
        check(n == want, "Reader::slices returned the wrong byte count");
      } else {
        check(reader.read(std::span(buf).first(want)).has_value(),
              "Reader::read within remaining() failed");
      }
      check(reader.remaining() == before - want, "Reader::remaining did not drop by the read");
      budget -= want;
    }
    // Past the end: an error, and nothing consumed.
    const std::uint64_t left = reader.remaining();
    if (left < buf.size()) {
      check(!reader.read(std::span(buf).first(left + 1)), "Reader read past its end");
      check(reader.remaining() == left, "failed Reader::read consumed bytes");
    }

    Writer writer(mem, chain);
    check(writer.remaining() == chain.writable_bytes(), "Writer::remaining at start");
    budget = kMaxCopy;
    buf.fill(std::byte{0xa5});
    while (writer.remaining() > 0 && budget > 0) {
      const std::uint64_t before = writer.remaining();
      const std::uint64_t written = writer.written();
      const std::uint64_t want = std::min<std::uint64_t>({before, budget, buf.size(), chunk(in)});
      if (in.flag()) {
        auto s = writer.slices(want);
        check(s.has_value(), "Writer::slices within remaining() failed");
      } else {
        check(writer.write(std::span<const std::byte>(buf).first(want)).has_value(),
              "Writer::write within remaining() failed");
      }
      check(writer.remaining() == before - want, "Writer::remaining did not drop");
      check(writer.written() == written + want, "Writer::written did not grow");
      budget -= want;
    }
    const std::uint64_t wleft = writer.remaining();
    if (wleft < buf.size()) {
      check(!writer.write(std::span<const std::byte>(buf).first(wleft + 1)),
            "Writer wrote past its end");
      check(writer.remaining() == wleft, "failed Writer::write consumed bytes");
    }
    return static_cast<std::uint32_t>(std::min<std::uint64_t>(writer.written(), UINT32_MAX));
  }

  void pop(FuzzInput& in) {
    // What the ring says before the pop, to hold pop() to its contract.
    const auto avail_idx = mem.read_obj<std::uint16_t>(GuestAddress(ring.avail + 2));
    const std::uint16_t next_before = queue.next_avail();
    auto r = queue.pop(mem);
    if (broken) {
      check(!r.has_value(), "a broken queue popped again without a reset");
      return;
    }
    if (!r) {
      broken = true;
      may_undo = false;
      return;
    }
    if (avail_idx && ring.avail + 4 > ring.avail && size_valid()) {
      const auto pending = static_cast<std::uint16_t>(*avail_idx - next_before);
      check(pending <= ring.size, "pop accepted an avail idx too far ahead");
      check((pending == 0) == !r->has_value(), "pop disagrees with the avail idx");
    }
    if (!*r) return;
    check(queue.next_avail() == static_cast<std::uint16_t>(next_before + 1),
          "pop did not advance next_avail by one");
    const DescriptorChain& chain = **r;
    check_chain(chain);
    const std::uint32_t len = consume(chain, in);
    if (in.flag()) {
      // Kept (not yet used): read again after later memory writes, or put
      // back with undo_pop() as RX paths do.
      held = chain;
      may_undo = true;
    } else {
      (void)queue.add_used(mem, chain.head, len);
      may_undo = false;
    }
  }

  void run(FuzzInput& in) {
    for (unsigned op = 0; op < kMaxOps && !in.empty(); ++op) {
      switch (in.u8() % kOpCount) {
        case kPop:
          pop(in);
          break;
        case kMutate:
          mutate_memory(mem, in, kSmallMemoryEnd);
          break;
        case kPostChain:
          post_chain(mem, ring, in);
          break;
        case kAddUsed: {
          const std::uint16_t head = in.u16();
          const std::uint32_t len = in.u32();
          (void)queue.add_used(mem, head, len);
          break;
        }
        case kNeedsNotification:
          (void)queue.needs_notification(mem);
          break;
        case kEnableNotification:
          (void)queue.enable_notification(mem);
          break;
        case kUndoPop:
          // Devices undo only the pop they just made.
          if (may_undo) {
            queue.undo_pop();
            held.reset();
          }
          may_undo = false;
          break;
        case kReset:
          configure(in);
          break;
        case kReadHeld:
          if (held) {
            // Descriptors were checked once, at pop; the regions do not
            // move, so reading them again must stay inside RAM.
            check_chain(*held);
            (void)consume(*held, in);
            (void)queue.add_used(mem, held->head, 0);
            held.reset();
            may_undo = false;
          }
          break;
      }
    }
  }
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  hvz::fuzz::quiet_logs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzInput in(data, size);
  const std::uint8_t cfg = in.u8();
  const GuestMemory& mem = small_memory(cfg & 3);
  Harness h(mem);
  if (cfg & 4) h.features |= kFeatureEventIdx;
  if (cfg & 8) h.features |= kFeatureIndirectDesc;
  h.configure(in);
  fill_memory(mem, in.sized_bytes(kSmallMemoryEnd));
  if ((cfg & 16) && !h.queue.validate(mem)) return 0;
  h.run(in);
  return 0;
}
