// The split virtqueue: ring validation, the checked descriptor-chain walk,
// the used ring, notification suppression (EVENT_IDX) and the Reader/Writer
// over a chain's buffers (see queue.hpp).
//
// Ring layout (virtio 1.2 §2.7, little-endian; the host is x86-64 so fields
// are read natively):
//   descriptor table: n x {u64 addr, u32 len, u16 flags, u16 next}
//   available ring:   u16 flags, u16 idx, u16 ring[n], u16 used_event
//   used ring:        u16 flags, u16 idx, {u32 id, u32 len}[n], u16 avail_event
// Every guest field is copied out exactly once and checked before use; every
// address is computed with checked_add and accessed through GuestMemory, so
// even a queue used without validate() cannot reach outside guest RAM.
#include "virtio/queue.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <limits>
#include <string>
#include <utility>

namespace hvz::virtio {
namespace {

struct RawDescriptor {
  std::uint64_t addr;
  std::uint32_t len;
  std::uint16_t flags;
  std::uint16_t next;
};
static_assert(sizeof(RawDescriptor) == 16);

constexpr std::uint64_t kDescSize = sizeof(RawDescriptor);
constexpr std::uint64_t kAvailHeader = 4;  // flags + idx
constexpr std::uint64_t kUsedHeader = 4;   // flags + idx
constexpr std::uint64_t kUsedElemSize = 8;
constexpr std::uint64_t kAvailIdxOffset = 2;
constexpr std::uint64_t kUsedIdxOffset = 2;
constexpr std::uint16_t kAvailFlagNoInterrupt = 1;
constexpr std::uint64_t kMaxChainBytes = std::numeric_limits<std::uint32_t>::max();

Expected<GuestAddress> at(GuestAddress base, std::uint64_t offset, const char* what) {
  auto a = base.checked_add(offset);
  if (!a)
    return make_error(Errc::kOutOfRange, std::string("virtqueue: ") + what + " address wraps");
  return *a;
}

template <typename T>
Expected<T> read_at(const GuestMemory& mem, GuestAddress base, std::uint64_t offset,
                    const char* what) {
  auto a = at(base, offset, what);
  if (!a) return tl::unexpected(a.error());
  auto v = mem.read_obj<T>(*a);
  if (!v) {
    return make_error(Errc::kOutOfRange,
                      std::string("virtqueue: reading ") + what + ": " + v.error().message());
  }
  return *v;
}

template <typename T>
Expected<void> write_at(const GuestMemory& mem, GuestAddress base, std::uint64_t offset,
                        const T& value, const char* what) {
  auto a = at(base, offset, what);
  if (!a) return tl::unexpected(a.error());
  auto r = mem.write_obj<T>(*a, value);
  if (!r) {
    return make_error(Errc::kOutOfRange,
                      std::string("virtqueue: writing ") + what + ": " + r.error().message());
  }
  return {};
}

tl::unexpected<Error> chain_error(const std::string& what) {
  return make_error(Errc::kInvalidArgument, "virtqueue: descriptor chain: " + what);
}

// Accumulates validated descriptors into a chain, enforcing the rules that
// apply to direct and indirect descriptors alike.
class ChainBuilder {
 public:
  ChainBuilder(const GuestMemory& mem, std::uint16_t head) : mem_(mem), chain_{head, {}} {}

  Expected<void> add(const RawDescriptor& d) {
    const bool writable = (d.flags & kDescFlagWrite) != 0;
    if (!writable && seen_writable_) {
      return chain_error("driver-readable descriptor after a device-writable one");
    }
    total_ += d.len;
    if (total_ > kMaxChainBytes) return chain_error("total length overflows 32 bits");
    // A zero-length descriptor is legal (it contributes no bytes) but its
    // address must still be inside RAM: the rule is the same for every
    // descriptor, and nothing ever dereferences it.
    const GuestAddress addr(d.addr);
    if (!addr.checked_add(d.len) || !mem_.contains(addr, d.len)) {
      return chain_error("buffer [" + std::to_string(d.addr) + ", +" + std::to_string(d.len) +
                         ") is not inside guest RAM");
    }
    seen_writable_ = seen_writable_ || writable;
    chain_.descriptors.push_back(Descriptor{addr, d.len, writable});
    return {};
  }

  DescriptorChain take() { return std::move(chain_); }

 private:
  const GuestMemory& mem_;
  DescriptorChain chain_;
  bool seen_writable_ = false;
  std::uint64_t total_ = 0;
};

// Walks the indirect table that `ind` points at (spec §2.7.5.3). Its entry
// count is bounded by the queue size: the spec forbids chains longer than the
// queue size (§2.7.5.3.1 / §2.7.13.1), and Linux bounds a request's segments
// by the device's seg_max, which a device should keep below the queue size.
Expected<void> walk_indirect(const GuestMemory& mem, const RawDescriptor& ind,
                             std::uint16_t queue_size, ChainBuilder& builder) {
  if ((ind.flags & kDescFlagNext) != 0) {
    return chain_error("indirect descriptor also has the NEXT flag");
  }
  if (ind.len == 0 || ind.len % kDescSize != 0) {
    return chain_error("indirect table length " + std::to_string(ind.len) +
                       " is not a non-zero multiple of 16");
  }
  const std::uint64_t count = ind.len / kDescSize;
  if (count > queue_size) {
    return chain_error("indirect table has " + std::to_string(count) +
                       " entries, more than the queue size");
  }
  const GuestAddress table(ind.addr);
  if (!table.checked_add(ind.len) || !mem.contains(table, ind.len)) {
    return chain_error("indirect table is not inside guest RAM");
  }
  std::uint64_t index = 0;
  for (std::uint64_t hops = 0;; ++hops) {
    if (hops >= count) return chain_error("indirect chain loops or exceeds its table");
    auto d = read_at<RawDescriptor>(mem, table, index * kDescSize, "indirect descriptor");
    if (!d) return tl::unexpected(d.error());
    if ((d->flags & kDescFlagIndirect) != 0) return chain_error("nested indirect descriptor");
    if (auto r = builder.add(*d); !r) return r;
    if ((d->flags & kDescFlagNext) == 0) return {};
    if (d->next >= count) {
      return chain_error("indirect next index " + std::to_string(d->next) + " out of range");
    }
    index = d->next;
  }
}

}  // namespace

std::uint64_t DescriptorChain::readable_bytes() const {
  std::uint64_t n = 0;
  for (const auto& d : descriptors) {
    if (!d.device_writable) n += d.len;
  }
  return n;
}

std::uint64_t DescriptorChain::writable_bytes() const {
  std::uint64_t n = 0;
  for (const auto& d : descriptors) {
    if (d.device_writable) n += d.len;
  }
  return n;
}

void Queue::reset() {
  size_ = max_size_;
  ready_ = false;
  desc_table_ = GuestAddress();
  avail_ring_ = GuestAddress();
  used_ring_ = GuestAddress();
  features_ = 0;
  next_avail_ = 0;
  next_used_ = 0;
  signalled_used_ = 0;
  signalled_used_valid_ = false;
  broken_ = false;
}

QueueState Queue::save() const {
  QueueState s;
  s.max_size = max_size_;
  s.size = size_;
  s.ready = ready_;
  s.desc_table = desc_table_.value();
  s.avail_ring = avail_ring_.value();
  s.used_ring = used_ring_.value();
  s.features = features_;
  s.next_avail = next_avail_;
  s.next_used = next_used_;
  s.signalled_used = signalled_used_;
  s.signalled_used_valid = signalled_used_valid_;
  s.broken = broken_;
  return s;
}

Expected<void> Queue::restore(const QueueState& state, const GuestMemory& mem, bool active) {
  if (state.max_size != max_size_) {
    return make_error(Errc::kInvalidArgument,
                      "virtqueue restore: maximum size " + std::to_string(state.max_size) +
                          " differs from the device's " + std::to_string(max_size_));
  }
  Queue q(max_size_);
  q.size_ = state.size;
  q.ready_ = state.ready;
  q.desc_table_ = GuestAddress(state.desc_table);
  q.avail_ring_ = GuestAddress(state.avail_ring);
  q.used_ring_ = GuestAddress(state.used_ring);
  q.features_ = state.features;  // only the ring bits matter
  q.next_avail_ = state.next_avail;
  q.next_used_ = state.next_used;
  q.signalled_used_ = state.signalled_used;
  q.signalled_used_valid_ = state.signalled_used_valid;
  q.broken_ = state.broken;
  if (active) {
    if (!q.ready_)
      return make_error(Errc::kInvalidArgument, "virtqueue restore: active but not ready");
    if (auto r = q.validate(mem); !r) return r;
  }
  *this = q;
  return {};
}

bool Queue::size_is_valid() const {
  return size_ != 0 && size_ <= max_size_ && (size_ & (size_ - 1)) == 0;
}

Expected<void> Queue::validate(const GuestMemory& mem) const {
  if (!size_is_valid()) {
    return make_error(Errc::kInvalidArgument, "virtqueue: size " + std::to_string(size_) +
                                                  " is not a power of two in [1, " +
                                                  std::to_string(max_size_) + "]");
  }
  const std::uint64_t n = size_;
  // The spec's sizes (§2.7) already include used_event and avail_event, so
  // they are the same with or without EVENT_IDX.
  struct Area {
    const char* name;
    GuestAddress addr;
    std::uint64_t len;
    std::uint64_t align;
  };
  const Area areas[] = {
      {"descriptor table", desc_table_, kDescSize * n, 16},
      {"available ring", avail_ring_, kAvailHeader + 2 * n + 2, 2},
      {"used ring", used_ring_, kUsedHeader + kUsedElemSize * n + 2, 4},
  };
  for (const auto& a : areas) {
    if (a.addr.value() % a.align != 0) {
      return make_error(Errc::kInvalidArgument, std::string("virtqueue: ") + a.name + " is not " +
                                                    std::to_string(a.align) + "-byte aligned");
    }
    if (!a.addr.checked_add(a.len) || !mem.contains(a.addr, a.len)) {
      return make_error(Errc::kOutOfRange,
                        std::string("virtqueue: ") + a.name + " is not inside guest RAM");
    }
  }
  return {};
}

Expected<DescriptorChain> Queue::walk_chain(const GuestMemory& mem, std::uint16_t head) const {
  ChainBuilder builder(mem, head);
  std::uint16_t index = head;
  // Hop budget: a chain has at most `size` descriptors, so a loop ends here.
  for (std::uint32_t hops = 0;; ++hops) {
    if (hops >= size_) return chain_error("chain loops or is longer than the queue size");
    auto d =
        read_at<RawDescriptor>(mem, desc_table_, std::uint64_t{index} * kDescSize, "descriptor");
    if (!d) return tl::unexpected(d.error());
    if ((d->flags & kDescFlagIndirect) != 0) {
      if ((features_ & kFeatureIndirectDesc) == 0) {
        return chain_error("indirect descriptor without VIRTIO_F_INDIRECT_DESC");
      }
      // The indirect descriptor has no NEXT (checked inside), so it ends the
      // chain; its WRITE flag is ignored as the spec requires.
      if (auto r = walk_indirect(mem, *d, size_, builder); !r) return tl::unexpected(r.error());
      break;
    }
    if (auto r = builder.add(*d); !r) return tl::unexpected(r.error());
    if ((d->flags & kDescFlagNext) == 0) break;
    if (d->next >= size_) {
      return chain_error("next index " + std::to_string(d->next) + " out of range");
    }
    index = d->next;
  }
  return builder.take();
}

Expected<std::optional<DescriptorChain>> Queue::pop(const GuestMemory& mem) {
  auto fail = [this](Error e) -> Expected<std::optional<DescriptorChain>> {
    broken_ = true;
    return tl::unexpected(std::move(e));
  };
  if (broken_) {
    return make_error(Errc::kInvalidArgument, "virtqueue: queue is broken until reset");
  }
  if (!size_is_valid()) {
    return fail(Error(Errc::kInvalidArgument, "virtqueue: invalid queue size"));
  }
  auto avail_idx = read_at<std::uint16_t>(mem, avail_ring_, kAvailIdxOffset, "avail idx");
  if (!avail_idx) return fail(avail_idx.error());
  const std::uint16_t pending = static_cast<std::uint16_t>(*avail_idx - next_avail_);
  if (pending > size_) {
    return fail(Error(Errc::kInvalidArgument, "virtqueue: avail idx " + std::to_string(*avail_idx) +
                                                  " is " + std::to_string(pending) +
                                                  " entries ahead of a queue of size " +
                                                  std::to_string(size_)));
  }
  if (pending == 0) return std::optional<DescriptorChain>();
  // Read the ring entry and descriptors only after seeing the index that
  // published them.
  std::atomic_thread_fence(std::memory_order_acquire);
  const std::uint64_t slot = next_avail_ % size_;
  auto head = read_at<std::uint16_t>(mem, avail_ring_, kAvailHeader + 2 * slot, "avail ring");
  if (!head) return fail(head.error());
  if (*head >= size_) {
    return fail(Error(Errc::kInvalidArgument,
                      "virtqueue: head index " + std::to_string(*head) + " out of range"));
  }
  auto chain = walk_chain(mem, *head);
  if (!chain) return fail(chain.error());
  ++next_avail_;
  return std::optional<DescriptorChain>(std::move(*chain));
}

void Queue::undo_pop() {
  --next_avail_;
}

Expected<void> Queue::add_used(const GuestMemory& mem, std::uint16_t head, std::uint32_t len) {
  if (!size_is_valid()) return make_error(Errc::kInvalidArgument, "virtqueue: invalid queue size");
  if (head >= size_) {
    return make_error(Errc::kInvalidArgument,
                      "virtqueue: used head " + std::to_string(head) + " out of range");
  }
  const std::uint64_t slot = next_used_ % size_;
  const std::uint64_t off = kUsedHeader + kUsedElemSize * slot;
  if (auto r = write_at<std::uint32_t>(mem, used_ring_, off, head, "used element id"); !r) return r;
  if (auto r = write_at<std::uint32_t>(mem, used_ring_, off + 4, len, "used element len"); !r) {
    return r;
  }
  // The element must be visible before the index that publishes it.
  std::atomic_thread_fence(std::memory_order_release);
  const auto next = static_cast<std::uint16_t>(next_used_ + 1);
  if (auto r = write_at<std::uint16_t>(mem, used_ring_, kUsedIdxOffset, next, "used idx"); !r) {
    return r;
  }
  next_used_ = next;
  return {};
}

Expected<bool> Queue::needs_notification(const GuestMemory& mem) {
  if (!size_is_valid()) return make_error(Errc::kInvalidArgument, "virtqueue: invalid queue size");
  // Order our used idx store before reading the driver's suppression field.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if ((features_ & kFeatureEventIdx) == 0) {
    auto flags = read_at<std::uint16_t>(mem, avail_ring_, 0, "avail flags");
    if (!flags) return tl::unexpected(flags.error());
    return (*flags & kAvailFlagNoInterrupt) == 0;
  }
  auto used_event = read_at<std::uint16_t>(mem, avail_ring_,
                                           kAvailHeader + 2 * std::uint64_t{size_}, "used_event");
  if (!used_event) return tl::unexpected(used_event.error());
  const std::uint16_t new_idx = next_used_;
  const std::uint16_t old_idx = signalled_used_;
  const bool valid = signalled_used_valid_;
  signalled_used_ = new_idx;
  signalled_used_valid_ = true;
  if (!valid) return true;
  // vring_need_event(): notify when used_event lies in [old, new).
  return static_cast<std::uint16_t>(new_idx - *used_event - 1) <
         static_cast<std::uint16_t>(new_idx - old_idx);
}

Expected<bool> Queue::enable_notification(const GuestMemory& mem) {
  if (!size_is_valid()) return make_error(Errc::kInvalidArgument, "virtqueue: invalid queue size");
  if ((features_ & kFeatureEventIdx) != 0) {
    const std::uint64_t off = kUsedHeader + kUsedElemSize * size_;
    if (auto r = write_at<std::uint16_t>(mem, used_ring_, off, next_avail_, "avail_event"); !r) {
      return tl::unexpected(r.error());
    }
  } else {
    // Clear VIRTQ_USED_F_NO_NOTIFY (the only used ring flag).
    if (auto r = write_at<std::uint16_t>(mem, used_ring_, 0, std::uint16_t{0}, "used flags"); !r) {
      return tl::unexpected(r.error());
    }
  }
  // Our store must be visible before we re-read avail idx, or a buffer
  // published in between would be missed with no notification coming.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  auto avail_idx = read_at<std::uint16_t>(mem, avail_ring_, kAvailIdxOffset, "avail idx");
  if (!avail_idx) return tl::unexpected(avail_idx.error());
  return *avail_idx != next_avail_;
}

// ---- Reader / Writer ----

namespace {

std::vector<Descriptor> filter(const DescriptorChain& chain, bool writable) {
  std::vector<Descriptor> out;
  for (const auto& d : chain.descriptors) {
    if (d.device_writable == writable && d.len != 0) out.push_back(d);
  }
  return out;
}

std::uint64_t sum(const std::vector<Descriptor>& descs) {
  std::uint64_t n = 0;
  for (const auto& d : descs) n += d.len;
  return n;
}

// Takes up to `want` bytes from the current descriptor as a guest slice and
// advances the cursor (index, offset) past them. A slice taken for the
// device to write is marked dirty (GuestMemory::mark_dirty: KVM's dirty log
// sees only the guest's own writes).
enum class Access { kRead, kWrite };
Expected<std::span<std::byte>> take(const GuestMemory& mem, const std::vector<Descriptor>& descs,
                                    std::size_t& index, std::uint64_t& offset, std::uint64_t want,
                                    Access access) {
  const Descriptor& d = descs[index];
  const std::uint64_t n = std::min<std::uint64_t>(want, d.len - offset);
  // pop() has checked addr + len, but a chain may be built by hand too.
  auto addr = d.addr.checked_add(offset);
  if (!addr) return make_error(Errc::kOutOfRange, "virtqueue: buffer address wraps");
  auto slice = mem.get_slice(*addr, n);
  if (!slice) return tl::unexpected(slice.error());
  if (access == Access::kWrite) mem.mark_dirty(*addr, n);
  offset += n;
  if (offset == d.len) {
    ++index;
    offset = 0;
  }
  return *slice;
}

}  // namespace

Reader::Reader(const GuestMemory& mem, const DescriptorChain& chain)
    : mem_(mem), descs_(filter(chain, false)), remaining_(sum(descs_)) {}

std::uint64_t Reader::remaining() const {
  return remaining_;
}

Expected<void> Reader::read(std::span<std::byte> out) {
  if (out.size() > remaining_) {
    return make_error(Errc::kOutOfRange, "virtqueue: read of " + std::to_string(out.size()) +
                                             " bytes past the readable buffers");
  }
  std::size_t done = 0;
  while (done < out.size()) {
    auto s = take(mem_, descs_, index_, offset_, out.size() - done, Access::kRead);
    if (!s) return tl::unexpected(s.error());
    std::memcpy(out.data() + done, s->data(), s->size());
    done += s->size();
    remaining_ -= s->size();
  }
  return {};
}

Expected<std::vector<std::span<std::byte>>> Reader::slices(std::uint64_t len) {
  if (len > remaining_) {
    return make_error(Errc::kOutOfRange, "virtqueue: " + std::to_string(len) +
                                             " bytes requested past the readable buffers");
  }
  std::vector<std::span<std::byte>> out;
  std::uint64_t done = 0;
  while (done < len) {
    auto s = take(mem_, descs_, index_, offset_, len - done, Access::kRead);
    if (!s) return tl::unexpected(s.error());
    out.push_back(*s);
    done += s->size();
    remaining_ -= s->size();
  }
  return out;
}

Writer::Writer(const GuestMemory& mem, const DescriptorChain& chain)
    : mem_(mem), descs_(filter(chain, true)), remaining_(sum(descs_)) {}

std::uint64_t Writer::remaining() const {
  return remaining_;
}

Expected<void> Writer::write(std::span<const std::byte> in) {
  if (in.size() > remaining_) {
    return make_error(Errc::kOutOfRange, "virtqueue: write of " + std::to_string(in.size()) +
                                             " bytes past the writable buffers");
  }
  std::size_t done = 0;
  while (done < in.size()) {
    auto s = take(mem_, descs_, index_, offset_, in.size() - done, Access::kWrite);
    if (!s) return tl::unexpected(s.error());
    std::memcpy(s->data(), in.data() + done, s->size());
    done += s->size();
    remaining_ -= s->size();
    written_ += s->size();
  }
  return {};
}

Expected<std::vector<std::span<std::byte>>> Writer::slices(std::uint64_t len) {
  if (len > remaining_) {
    return make_error(Errc::kOutOfRange, "virtqueue: " + std::to_string(len) +
                                             " bytes requested past the writable buffers");
  }
  std::vector<std::span<std::byte>> out;
  std::uint64_t done = 0;
  while (done < len) {
    auto s = take(mem_, descs_, index_, offset_, len - done, Access::kWrite);
    if (!s) return tl::unexpected(s.error());
    out.push_back(*s);
    done += s->size();
    remaining_ -= s->size();
    written_ += s->size();
  }
  return out;
}

}  // namespace hvz::virtio
