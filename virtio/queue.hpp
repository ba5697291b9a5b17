// The split virtqueue (virtio 1.2 §2.7) as seen by a device: its layout
// registers (set by the transport), validation at activation, and the
// device-side operations: pop an available descriptor chain, return it
// through the used ring, decide whether to notify the driver (EVENT_IDX).
//
// Everything in guest memory is written by a driver assumed malicious:
// every ring field is copied out once and checked; a chain is walked with a
// hop budget, indirect tables are checked, and any descriptor not wholly
// inside guest RAM is an error. Errors are values (QueueError), never
// crashes, hangs or out-of-bounds accesses.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "vmm/core/error.hpp"
#include "vmm/core/guest_address.hpp"
#include "vmm/core/guest_memory.hpp"

namespace hvz::virtio {

inline constexpr std::uint16_t kDescFlagNext = 1;
inline constexpr std::uint16_t kDescFlagWrite = 2;
inline constexpr std::uint16_t kDescFlagIndirect = 4;
inline constexpr std::uint64_t kFeatureIndirectDesc = 1ull << 28;
inline constexpr std::uint64_t kFeatureEventIdx = 1ull << 29;
inline constexpr std::uint64_t kFeatureVersion1 = 1ull << 32;

// One descriptor after validation: a guest range and its direction.
struct Descriptor {
  GuestAddress addr;
  std::uint32_t len;
  bool device_writable;
};

// A validated chain: its head index (to return through the used ring) and
// its descriptors in order, indirect tables flattened. The driver-readable
// descriptors all come before the device-writable ones (spec §2.7.4.2).
struct DescriptorChain {
  std::uint16_t head;
  std::vector<Descriptor> descriptors;
  std::uint64_t readable_bytes() const;
  std::uint64_t writable_bytes() const;
};

// A queue's whole state as data (snapshots): the layout registers the
// driver wrote, the ring features negotiated, and the device's positions in
// the rings (EVENT_IDX bookkeeping included). Plain values: a restore
// treats them as untrusted.
struct QueueState {
  std::uint16_t max_size = 0;
  std::uint16_t size = 0;
  bool ready = false;
  std::uint64_t desc_table = 0;
  std::uint64_t avail_ring = 0;
  std::uint64_t used_ring = 0;
  std::uint64_t features = 0;  // EVENT_IDX, INDIRECT_DESC as negotiated
  std::uint16_t next_avail = 0;
  std::uint16_t next_used = 0;
  std::uint16_t signalled_used = 0;  // EVENT_IDX: used idx at the last interrupt check
  bool signalled_used_valid = false;
  bool broken = false;  // a malformed ring was seen: unusable until reset
  bool operator==(const QueueState&) const = default;
};

class Queue {
 public:
  explicit Queue(std::uint16_t max_size) : max_size_(max_size), size_(max_size) {}

  // Transport-facing layout registers.
  std::uint16_t max_size() const { return max_size_; }
  std::uint16_t size() const { return size_; }
  void set_size(std::uint16_t size) { size_ = size; }
  bool ready() const { return ready_; }
  void set_ready(bool ready) { ready_ = ready; }
  GuestAddress desc_table() const { return desc_table_; }
  GuestAddress avail_ring() const { return avail_ring_; }
  GuestAddress used_ring() const { return used_ring_; }
  void set_desc_table(GuestAddress a) { desc_table_ = a; }
  void set_avail_ring(GuestAddress a) { avail_ring_ = a; }
  void set_used_ring(GuestAddress a) { used_ring_ = a; }
  // Negotiated features that change ring behaviour (EVENT_IDX, INDIRECT_DESC).
  void set_features(std::uint64_t features) { features_ = features; }
  // Back to the power-on state (not ready, size = max, addresses 0, indices 0).
  void reset();

  // Checks, at activation, that the size is a power of two in [1, max] and
  // that the descriptor table (16*n, 16-aligned), the available ring
  // (6+2*n, 2-aligned) and the used ring (6+8*n, 4-aligned) lie inside RAM.
  Expected<void> validate(const GuestMemory& mem) const;

  // The next available chain, nullopt when the driver has published none.
  // Errors: avail idx more than `size` ahead, head or next index >= size,
  // a loop or chain longer than the budget, a readable descriptor after a
  // writable one, a nested or malformed indirect table (len not a multiple
  // of 16, zero, or more than size entries... see queue.cpp), total length
  // overflowing u32, any descriptor outside guest RAM. After an error the
  // queue is unusable until reset (the device should set NEEDS_RESET).
  Expected<std::optional<DescriptorChain>> pop(const GuestMemory& mem);
  // Puts `head` back so the next pop() returns it again (e.g. RX with no
  // frame yet).
  void undo_pop();
  // Publishes (head, len) in the used ring and advances used idx.
  Expected<void> add_used(const GuestMemory& mem, std::uint16_t head, std::uint32_t len);
  // Whether the driver wants an interrupt for what was used since the last
  // call (always true without EVENT_IDX unless VIRTQ_AVAIL_F_NO_INTERRUPT).
  Expected<bool> needs_notification(const GuestMemory& mem);
  // With EVENT_IDX: asks the driver to notify when more is available
  // (writes avail_event). Returns whether more is already available.
  Expected<bool> enable_notification(const GuestMemory& mem);

  std::uint16_t next_avail() const { return next_avail_; }
  std::uint16_t next_used() const { return next_used_; }

  QueueState save() const;
  // Rebuilds the queue from `state` (untrusted): max_size must be this
  // queue's; with `active` (the device was running on it) the queue must be
  // ready and pass validate(mem). Nothing changes on error.
  Expected<void> restore(const QueueState& state, const GuestMemory& mem, bool active);

 private:
  std::uint16_t max_size_;
  std::uint16_t size_;
  bool ready_ = false;
  GuestAddress desc_table_;
  GuestAddress avail_ring_;
  GuestAddress used_ring_;
  std::uint64_t features_ = 0;
  std::uint16_t next_avail_ = 0;
  std::uint16_t next_used_ = 0;
  std::uint16_t signalled_used_ = 0;
  bool signalled_used_valid_ = false;
  bool broken_ = false;

  bool size_is_valid() const;
  Expected<DescriptorChain> walk_chain(const GuestMemory& mem, std::uint16_t head) const;
};

// Reads the driver-readable bytes of a chain in order.
class Reader {
 public:
  Reader(const GuestMemory& mem, const DescriptorChain& chain);
  std::uint64_t remaining() const;
  // Copies exactly out.size() bytes or fails (kOutOfRange) copying nothing
  // further.
  Expected<void> read(std::span<std::byte> out);
  template <typename T>
  Expected<T> read_obj() {
    T v;
    auto r = read(std::as_writable_bytes(std::span<T, 1>(&v, 1)));
    if (!r) return tl::unexpected(r.error());
    return v;
  }
  // Passes the next `len` readable bytes to `fn` as guest slices (no copy),
  // e.g. for writev to a file.
  Expected<std::vector<std::span<std::byte>>> slices(std::uint64_t len);

 private:
  const GuestMemory& mem_;
  std::vector<Descriptor> descs_;
  std::size_t index_ = 0;
  std::uint64_t offset_ = 0;
  std::uint64_t remaining_ = 0;
};

// Writes into the device-writable bytes of a chain in order.
class Writer {
 public:
  Writer(const GuestMemory& mem, const DescriptorChain& chain);
  std::uint64_t remaining() const;
  std::uint64_t written() const { return written_; }
  Expected<void> write(std::span<const std::byte> in);
  template <typename T>
  Expected<void> write_obj(const T& v) {
    return write(std::as_bytes(std::span<const T, 1>(&v, 1)));
  }
  // The next `len` writable bytes as guest slices (e.g. for readv); counts
  // them as written.
  Expected<std::vector<std::span<std::byte>>> slices(std::uint64_t len);

 private:
  const GuestMemory& mem_;
  std::vector<Descriptor> descs_;
  std::size_t index_ = 0;
  std::uint64_t offset_ = 0;
  std::uint64_t written_ = 0;
  std::uint64_t remaining_ = 0;
};

}  // namespace hvz::virtio
