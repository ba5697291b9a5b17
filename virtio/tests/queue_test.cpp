// Split virtqueue: ring validation, the checked chain walk (direct and
// indirect), the used ring, EVENT_IDX notification decisions and the
// Reader/Writer, all against hand-built rings in plain guest memory.
#include "virtio/queue.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

namespace hvz::virtio {
namespace {

// Guest layout: 64 MiB of RAM at 0, a hole, then 64 KiB at 128 MiB.
constexpr std::uint64_t kRamSize = 64ull << 20;
constexpr std::uint64_t kHighStart = 128ull << 20;
constexpr std::uint64_t kHighSize = 0x10000;
constexpr std::uint64_t kDesc = 0x1000;
constexpr std::uint64_t kAvail = 0x2000;
constexpr std::uint64_t kUsed = 0x3000;
constexpr std::uint64_t kIndirect = 0x8000;
constexpr std::uint64_t kBuf = 0x10000;
constexpr std::uint16_t kNext = kDescFlagNext;
constexpr std::uint16_t kWrite = kDescFlagWrite;
constexpr std::uint16_t kIndirectFlag = kDescFlagIndirect;

GuestMemory make_memory() {
  auto m =
      GuestMemory::create({{GuestAddress(0), kRamSize}, {GuestAddress(kHighStart), kHighSize}});
  EXPECT_TRUE(m) << m.error().message();
  return std::move(*m);
}

// A driver's view of one split virtqueue in `mem`.
struct Ring {
  explicit Ring(std::uint16_t size = 8, std::uint64_t features = 0, std::uint16_t max = 16)
      : mem(make_memory()), q(max) {
    q.set_size(size);
    q.set_desc_table(GuestAddress(kDesc));
    q.set_avail_ring(GuestAddress(kAvail));
    q.set_used_ring(GuestAddress(kUsed));
    q.set_features(features);
    q.set_ready(true);
  }

  void desc(std::uint16_t i, std::uint64_t addr, std::uint32_t len, std::uint16_t flags = 0,
            std::uint16_t next = 0) {
    put_desc(kDesc + 16ull * i, addr, len, flags, next);
  }
  void indirect_entry(std::uint16_t i, std::uint64_t addr, std::uint32_t len,
                      std::uint16_t flags = 0, std::uint16_t next = 0) {
    put_desc(kIndirect + 16ull * i, addr, len, flags, next);
  }
  void put_desc(std::uint64_t at, std::uint64_t addr, std::uint32_t len, std::uint16_t flags,
                std::uint16_t next) {
    ASSERT_TRUE(mem.write_obj<std::uint64_t>(GuestAddress(at), addr));
    ASSERT_TRUE(mem.write_obj<std::uint32_t>(GuestAddress(at + 8), len));
    ASSERT_TRUE(mem.write_obj<std::uint16_t>(GuestAddress(at + 12), flags));
    ASSERT_TRUE(mem.write_obj<std::uint16_t>(GuestAddress(at + 14), next));
  }
  // Publishes `head` in the available ring and bumps avail idx.
  void publish(std::uint16_t head) {
    ASSERT_TRUE(mem.write_obj<std::uint16_t>(
        GuestAddress(kAvail + 4 + 2ull * (avail_idx % q.size())), head));
    ++avail_idx;
    set_avail_idx(avail_idx);
  }
  void set_avail_idx(std::uint16_t idx) {
    ASSERT_TRUE(mem.write_obj<std::uint16_t>(GuestAddress(kAvail + 2), idx));
  }
  void set_avail_flags(std::uint16_t flags) {
    ASSERT_TRUE(mem.write_obj<std::uint16_t>(GuestAddress(kAvail), flags));
  }
  void set_used_event(std::uint16_t v) {
    ASSERT_TRUE(mem.write_obj<std::uint16_t>(GuestAddress(kAvail + 4 + 2ull * q.size()), v));
  }
  std::uint16_t u16(std::uint64_t at) { return *mem.read_obj<std::uint16_t>(GuestAddress(at)); }
  std::uint32_t u32(std::uint64_t at) { return *mem.read_obj<std::uint32_t>(GuestAddress(at)); }
  std::uint16_t used_idx() { return u16(kUsed + 2); }
  std::uint16_t avail_event() { return u16(kUsed + 4 + 8ull * q.size()); }

  // pop() that must yield a chain.
  DescriptorChain pop_chain() {
    auto r = q.pop(mem);
    EXPECT_TRUE(r) << r.error().message();
    if (!r || !*r) {
      ADD_FAILURE() << "no chain";
      return {};
    }
    return std::move(**r);
  }
  bool pop_fails() {
    auto r = q.pop(mem);
    return !r;
  }

  GuestMemory mem;
  Queue q;
  std::uint16_t avail_idx = 0;
};

// ---- validate() ----

TEST(QueueValidate, AcceptsWellFormedRings) {
  Ring r;
  EXPECT_TRUE(r.q.validate(r.mem));
  r.q.set_size(16);
  EXPECT_TRUE(r.q.validate(r.mem));
  r.q.set_size(1);
  EXPECT_TRUE(r.q.validate(r.mem));
}

TEST(QueueValidate, RejectsSizesThatAreZeroNotPowerOfTwoOrAboveMax) {
  Ring r;
  for (std::uint16_t size : {0, 3, 6, 12, 32, 0x8000}) {
    r.q.set_size(size);
    EXPECT_FALSE(r.q.validate(r.mem)) << size;
  }
}

TEST(QueueValidate, RejectsMisalignedRings) {
  Ring r;
  r.q.set_desc_table(GuestAddress(kDesc + 8));
  EXPECT_FALSE(r.q.validate(r.mem));
  r.q.set_desc_table(GuestAddress(kDesc));
  r.q.set_avail_ring(GuestAddress(kAvail + 1));
  EXPECT_FALSE(r.q.validate(r.mem));
  r.q.set_avail_ring(GuestAddress(kAvail));
  r.q.set_used_ring(GuestAddress(kUsed + 2));
  EXPECT_FALSE(r.q.validate(r.mem));
  r.q.set_used_ring(GuestAddress(kUsed));
  EXPECT_TRUE(r.q.validate(r.mem));
}

TEST(QueueValidate, RejectsRingsOutsideOrStraddlingRam) {
  Ring r;                                      // size 8: desc 128 bytes, avail 22, used 70
  r.q.set_desc_table(GuestAddress(kRamSize));  // in the hole
  EXPECT_FALSE(r.q.validate(r.mem));
  r.q.set_desc_table(GuestAddress(kRamSize - 64));  // straddles the end of RAM
  EXPECT_FALSE(r.q.validate(r.mem));
  r.q.set_desc_table(GuestAddress(kRamSize - 128));  // exactly fits
  EXPECT_TRUE(r.q.validate(r.mem));
  r.q.set_avail_ring(GuestAddress(kHighStart + kHighSize - 20));
  EXPECT_FALSE(r.q.validate(r.mem));
  r.q.set_avail_ring(GuestAddress(kAvail));
  r.q.set_used_ring(GuestAddress(~std::uint64_t{0} - 3));  // 4-aligned, wraps
  EXPECT_FALSE(r.q.validate(r.mem));
}

TEST(QueueValidate, RingSizesIncludeEventFieldsWithOrWithoutEventIdx) {
  const std::uint64_t end = kHighStart + kHighSize;
  for (std::uint64_t features : {std::uint64_t{0}, kFeatureEventIdx}) {
    Ring r(8, features);
    // Used ring: 6 + 8 * 8 = 70 bytes; avail ring: 6 + 2 * 8 = 22 bytes.
    r.q.set_used_ring(GuestAddress(end - 72));
    EXPECT_TRUE(r.q.validate(r.mem));
    r.q.set_used_ring(GuestAddress(end - 68));
    EXPECT_FALSE(r.q.validate(r.mem));
    r.q.set_used_ring(GuestAddress(kUsed));
    r.q.set_avail_ring(GuestAddress(end - 22));
    EXPECT_TRUE(r.q.validate(r.mem));
    r.q.set_avail_ring(GuestAddress(end - 20));
    EXPECT_FALSE(r.q.validate(r.mem));
    // Descriptor table: 16 * 8 = 128 bytes.
    r.q.set_avail_ring(GuestAddress(kAvail));
    r.q.set_desc_table(GuestAddress(end - 128));
    EXPECT_TRUE(r.q.validate(r.mem));
    r.q.set_desc_table(GuestAddress(end - 112));
    EXPECT_FALSE(r.q.validate(r.mem));
  }
}

// ---- pop(): direct chains ----

TEST(Queue, PopReturnsNothingWhenDriverPublishedNothing) {
  Ring r;
  auto c = r.q.pop(r.mem);
  ASSERT_TRUE(c);
  EXPECT_FALSE(*c);
  EXPECT_EQ(r.q.next_avail(), 0);
}

TEST(Queue, PopsOneTwoAndThreeDescriptorChains) {
  Ring r;
  r.desc(0, kBuf, 16);
  r.desc(1, kBuf + 0x100, 8, kNext, 5);
  r.desc(5, kBuf + 0x200, 32, kWrite);
  r.desc(2, kBuf + 0x300, 4, kNext, 3);
  r.desc(3, kBuf + 0x400, 512, kNext | kWrite, 4);
  r.desc(4, kBuf + 0x800, 1, kWrite);
  r.publish(0);
  r.publish(1);
  r.publish(2);

  auto c1 = r.pop_chain();
  EXPECT_EQ(c1.head, 0);
  ASSERT_EQ(c1.descriptors.size(), 1u);
  EXPECT_EQ(c1.descriptors[0].addr, GuestAddress(kBuf));
  EXPECT_EQ(c1.descriptors[0].len, 16u);
  EXPECT_FALSE(c1.descriptors[0].device_writable);

  auto c2 = r.pop_chain();
  EXPECT_EQ(c2.head, 1);
  ASSERT_EQ(c2.descriptors.size(), 2u);
  EXPECT_EQ(c2.descriptors[1].addr, GuestAddress(kBuf + 0x200));
  EXPECT_TRUE(c2.descriptors[1].device_writable);
  EXPECT_EQ(c2.readable_bytes(), 8u);
  EXPECT_EQ(c2.writable_bytes(), 32u);

  auto c3 = r.pop_chain();
  EXPECT_EQ(c3.head, 2);
  ASSERT_EQ(c3.descriptors.size(), 3u);
  EXPECT_EQ(c3.readable_bytes(), 4u);
  EXPECT_EQ(c3.writable_bytes(), 513u);
  EXPECT_EQ(r.q.next_avail(), 3);

  auto none = r.q.pop(r.mem);
  ASSERT_TRUE(none);
  EXPECT_FALSE(*none);
}

TEST(Queue, AcceptsChainOfExactlyQueueSize) {
  Ring r(4);
  for (std::uint16_t i = 0; i < 3; ++i) r.desc(i, kBuf + i * 0x100, 8, kNext, i + 1);
  r.desc(3, kBuf + 0x300, 8, kWrite);
  r.publish(0);
  EXPECT_EQ(r.pop_chain().descriptors.size(), 4u);
}

TEST(Queue, AcceptsZeroLengthDescriptor) {
  Ring r;
  r.desc(0, kBuf, 0, kNext, 1);
  r.desc(1, kBuf + 0x100, 8, kWrite);
  r.publish(0);
  auto c = r.pop_chain();
  ASSERT_EQ(c.descriptors.size(), 2u);
  EXPECT_EQ(c.readable_bytes(), 0u);
  Reader reader(r.mem, c);
  EXPECT_EQ(reader.remaining(), 0u);
  std::array<std::byte, 1> b{};
  EXPECT_FALSE(reader.read(b));
}

TEST(Queue, UndoPopReturnsTheSameChainAgain) {
  Ring r;
  r.desc(0, kBuf, 16);
  r.publish(0);
  EXPECT_EQ(r.pop_chain().head, 0);
  r.q.undo_pop();
  EXPECT_EQ(r.q.next_avail(), 0);
  EXPECT_EQ(r.pop_chain().head, 0);
}

TEST(Queue, FollowsAvailIdxAcrossWrapAround) {
  Ring r(4);
  r.desc(0, kBuf, 16);
  r.desc(1, kBuf + 0x100, 16, kWrite);
  // Walk both indices all the way round 2^16 and a bit further.
  for (std::uint32_t i = 0; i < 0x10000 + 10; ++i) {
    const std::uint16_t head = i % 2;
    r.publish(head);
    auto c = r.q.pop(r.mem);
    ASSERT_TRUE(c) << i << ": " << c.error().message();
    ASSERT_TRUE(*c) << i;
    ASSERT_EQ((*c)->head, head);
    ASSERT_TRUE(r.q.add_used(r.mem, head, 0));
  }
  EXPECT_EQ(r.q.next_avail(), 10);
  EXPECT_EQ(r.q.next_used(), 10);
  EXPECT_EQ(r.used_idx(), 10);
  // Several pending across the wrap: next_avail at 65534, avail idx at 2.
  Ring w(4);
  w.desc(0, kBuf, 16);
  for (std::uint32_t i = 0; i < 0xfffe; ++i) {
    w.publish(0);
    ASSERT_TRUE(w.q.pop(w.mem));
  }
  ASSERT_EQ(w.q.next_avail(), 0xfffe);
  for (int i = 0; i < 4; ++i) w.publish(0);
  EXPECT_EQ(w.avail_idx, 2);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(w.pop_chain().head, 0);
  auto none = w.q.pop(w.mem);
  ASSERT_TRUE(none);
  EXPECT_FALSE(*none);
}

TEST(Queue, RejectsAvailIdxTooFarAheadAndStaysBroken) {
  Ring r(8);
  r.desc(0, kBuf, 16);
  r.set_avail_idx(9);
  EXPECT_TRUE(r.pop_fails());
  // Even once the driver "fixes" it the queue stays unusable until reset.
  r.set_avail_idx(1);
  EXPECT_TRUE(r.pop_fails());
  r.q.reset();
  EXPECT_FALSE(r.q.ready());
  EXPECT_EQ(r.q.size(), 16);
  EXPECT_EQ(r.q.desc_table(), GuestAddress(0));
  EXPECT_EQ(r.q.next_avail(), 0);
}

TEST(Queue, AcceptsAvailIdxExactlyQueueSizeAhead) {
  Ring r(4);
  r.desc(0, kBuf, 16);
  for (int i = 0; i < 4; ++i) r.publish(0);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(r.pop_chain().head, 0);
}

TEST(Queue, RejectsHeadOutOfRange) {
  Ring r(8);
  r.publish(8);
  EXPECT_TRUE(r.pop_fails());
  Ring r2(8);
  r2.publish(0xffff);
  EXPECT_TRUE(r2.pop_fails());
}

TEST(Queue, RejectsNextOutOfRange) {
  Ring r(8);
  r.desc(0, kBuf, 16, kNext, 8);
  r.publish(0);
  EXPECT_TRUE(r.pop_fails());
}

TEST(Queue, RejectsDescriptorLoop) {
  Ring r(16);
  r.desc(0, kBuf, 16, kNext, 1);
  r.desc(1, kBuf, 16, kNext, 0);
  r.publish(0);
  EXPECT_TRUE(r.pop_fails());
  Ring self(16);
  self.desc(3, kBuf, 16, kNext, 3);
  self.publish(3);
  EXPECT_TRUE(self.pop_fails());
}

TEST(Queue, RejectsLoopQuicklyWithLargestQueue) {
  Ring r(0x8000, 0, 0x8000);
  r.desc(0, kBuf, 16, kNext | kWrite, 1);
  r.desc(1, kBuf, 16, kNext | kWrite, 0);
  r.publish(0);
  EXPECT_TRUE(r.pop_fails());  // ends after 32768 hops, not never
}

TEST(Queue, RejectsChainLongerThanQueueSize) {
  // Descriptor table larger than the negotiated size: entries past the size
  // are unreachable (next >= size) and a chain can not exceed `size` hops.
  Ring r(4);
  for (std::uint16_t i = 0; i < 3; ++i) r.desc(i, kBuf, 8, kNext, i + 1);
  r.desc(3, kBuf, 8, kNext, 1);  // back into the chain: 5th hop
  r.publish(0);
  EXPECT_TRUE(r.pop_fails());
}

TEST(Queue, RejectsDescriptorOutsideRam) {
  Ring r;
  r.desc(0, kRamSize + 0x1000, 16);  // in the hole
  r.publish(0);
  EXPECT_TRUE(r.pop_fails());
}

TEST(Queue, RejectsDescriptorStraddlingRegionEnd) {
  Ring r;
  r.desc(0, kRamSize - 8, 16);
  r.publish(0);
  EXPECT_TRUE(r.pop_fails());
  Ring h;
  h.desc(0, kHighStart + kHighSize - 8, 9, kWrite);
  h.publish(0);
  EXPECT_TRUE(h.pop_fails());
  Ring ok;
  ok.desc(0, kHighStart + kHighSize - 8, 8, kWrite);
  ok.publish(0);
  EXPECT_EQ(ok.pop_chain().writable_bytes(), 8u);
}

TEST(Queue, RejectsDescriptorAcrossAdjacentRegions) {
  // Two regions back to back: a buffer spanning both has no single host
  // mapping and is refused.
  Ring r;
  auto m = GuestMemory::create({{GuestAddress(0), 0x20000}, {GuestAddress(0x20000), 0x10000}});
  ASSERT_TRUE(m);
  r.mem = std::move(*m);
  r.desc(0, 0x1fff0, 0x20);
  r.publish(0);
  EXPECT_TRUE(r.pop_fails());
}

TEST(Queue, RejectsDescriptorAddressOverflow) {
  Ring r;
  r.desc(0, ~std::uint64_t{0} - 0xf, 0x20);
  r.publish(0);
  EXPECT_TRUE(r.pop_fails());
}

TEST(Queue, RejectsReadableAfterWritable) {
  Ring r;
  r.desc(0, kBuf, 16, kNext | kWrite, 1);
  r.desc(1, kBuf + 0x100, 16);
  r.publish(0);
  EXPECT_TRUE(r.pop_fails());
}

TEST(Queue, RejectsTotalLengthOverflowingU32) {
  // 65 descriptors of 64 MiB (overlapping, which is legal) sum to > 4 GiB.
  Ring r(128, 0, 128);
  for (std::uint16_t i = 0; i < 64; ++i) r.desc(i, 0, kRamSize, kNext | kWrite, i + 1);
  r.desc(64, 0, kRamSize, kWrite);
  r.publish(0);
  EXPECT_TRUE(r.pop_fails());
  // 63 of them are fine (just under 4 GiB).
  Ring ok(128, 0, 128);
  for (std::uint16_t i = 0; i < 62; ++i) ok.desc(i, 0, kRamSize, kNext | kWrite, i + 1);
  ok.desc(62, 0, kRamSize, kWrite);
  ok.publish(0);
  EXPECT_EQ(ok.pop_chain().writable_bytes(), 63 * kRamSize);
}

TEST(Queue, RejectsRingsOutsideRamAtPop) {
  Ring r;
  r.q.set_avail_ring(GuestAddress(kRamSize + 0x1000));  // pop without validate()
  EXPECT_TRUE(r.pop_fails());
  Ring d;
  d.q.set_desc_table(GuestAddress(kRamSize - 16));  // entry 1 is in the hole
  d.publish(1);
  EXPECT_TRUE(d.pop_fails());
}

// ---- indirect descriptors ----

TEST(QueueIndirect, FlattensIndirectTable) {
  Ring r(8, kFeatureIndirectDesc);
  r.indirect_entry(0, kBuf, 16, kNext, 2);
  r.indirect_entry(2, kBuf + 0x100, 512, kNext | kWrite, 1);
  r.indirect_entry(1, kBuf + 0x400, 1, kWrite);
  r.desc(3, kIndirect, 3 * 16, kIndirectFlag);
  r.publish(3);
  auto c = r.pop_chain();
  EXPECT_EQ(c.head, 3);
  ASSERT_EQ(c.descriptors.size(), 3u);
  EXPECT_EQ(c.descriptors[0].addr, GuestAddress(kBuf));
  EXPECT_EQ(c.descriptors[1].addr, GuestAddress(kBuf + 0x100));
  EXPECT_EQ(c.descriptors[2].addr, GuestAddress(kBuf + 0x400));
  EXPECT_EQ(c.readable_bytes(), 16u);
  EXPECT_EQ(c.writable_bytes(), 513u);
}

TEST(QueueIndirect, FollowsDirectDescriptorsIntoIndirectTable) {
  Ring r(8, kFeatureIndirectDesc);
  r.desc(0, kBuf, 16, kNext, 1);
  r.desc(1, kIndirect, 16, kIndirectFlag);
  r.indirect_entry(0, kBuf + 0x100, 32, kWrite);
  r.publish(0);
  auto c = r.pop_chain();
  ASSERT_EQ(c.descriptors.size(), 2u);
  EXPECT_EQ(c.readable_bytes(), 16u);
  EXPECT_EQ(c.writable_bytes(), 32u);
}

TEST(QueueIndirect, RejectsIndirectWhenNotNegotiated) {
  Ring r(8);
  r.indirect_entry(0, kBuf, 16);
  r.desc(0, kIndirect, 16, kIndirectFlag);
  r.publish(0);
  EXPECT_TRUE(r.pop_fails());
}

TEST(QueueIndirect, RejectsIndirectWithNextFlag) {
  Ring r(8, kFeatureIndirectDesc);
  r.indirect_entry(0, kBuf, 16);
  r.desc(0, kIndirect, 16, kIndirectFlag | kNext, 1);
  r.desc(1, kBuf, 16, kWrite);
  r.publish(0);
  EXPECT_TRUE(r.pop_fails());
}

TEST(QueueIndirect, RejectsMalformedTableLength) {
  for (std::uint32_t len : {0u, 8u, 17u, 40u, 9u * 16u /* > size 8 entries */}) {
    Ring r(8, kFeatureIndirectDesc);
    for (std::uint16_t i = 0; i < 9; ++i) r.indirect_entry(i, kBuf, 16);
    r.desc(0, kIndirect, len, kIndirectFlag);
    r.publish(0);
    EXPECT_TRUE(r.pop_fails()) << len;
  }
  Ring ok(8, kFeatureIndirectDesc);  // exactly `size` entries is allowed
  for (std::uint16_t i = 0; i < 8; ++i) ok.indirect_entry(i, kBuf, 16, i < 7 ? kNext : 0, i + 1);
  ok.desc(0, kIndirect, 8 * 16, kIndirectFlag);
  ok.publish(0);
  EXPECT_EQ(ok.pop_chain().descriptors.size(), 8u);
}

TEST(QueueIndirect, RejectsNestedIndirect) {
  Ring r(8, kFeatureIndirectDesc);
  r.indirect_entry(0, kBuf, 16, kNext, 1);
  r.indirect_entry(1, kIndirect, 32, kIndirectFlag);
  r.desc(0, kIndirect, 32, kIndirectFlag);
  r.publish(0);
  EXPECT_TRUE(r.pop_fails());
}

TEST(QueueIndirect, RejectsLoopInsideTable) {
  Ring r(8, kFeatureIndirectDesc);
  r.indirect_entry(0, kBuf, 16, kNext, 1);
  r.indirect_entry(1, kBuf, 16, kNext, 0);
  r.desc(0, kIndirect, 32, kIndirectFlag);
  r.publish(0);
  EXPECT_TRUE(r.pop_fails());
}

TEST(QueueIndirect, RejectsNextBeyondTable) {
  Ring r(8, kFeatureIndirectDesc);
  r.indirect_entry(0, kBuf, 16, kNext, 2);  // table has 2 entries
  r.indirect_entry(2, kBuf, 16);
  r.desc(0, kIndirect, 32, kIndirectFlag);
  r.publish(0);
  EXPECT_TRUE(r.pop_fails());
}

TEST(QueueIndirect, RejectsTableOutsideRam) {
  Ring r(8, kFeatureIndirectDesc);
  r.desc(0, kRamSize - 16, 32, kIndirectFlag);  // straddles end of RAM
  r.publish(0);
  EXPECT_TRUE(r.pop_fails());
  Ring w(8, kFeatureIndirectDesc);
  w.desc(0, ~std::uint64_t{0} - 15, 32, kIndirectFlag);  // wraps
  w.publish(0);
  EXPECT_TRUE(w.pop_fails());
}

TEST(QueueIndirect, RejectsEntryOutsideRamOrOutOfOrder) {
  Ring r(8, kFeatureIndirectDesc);
  r.indirect_entry(0, kRamSize - 4, 8);
  r.desc(0, kIndirect, 16, kIndirectFlag);
  r.publish(0);
  EXPECT_TRUE(r.pop_fails());
  Ring o(8, kFeatureIndirectDesc);
  o.indirect_entry(0, kBuf, 8, kNext | kWrite, 1);
  o.indirect_entry(1, kBuf, 8);
  o.desc(0, kIndirect, 32, kIndirectFlag);
  o.publish(0);
  EXPECT_TRUE(o.pop_fails());
}

// ---- used ring and notifications ----

TEST(Queue, AddUsedWritesElementThenIndex) {
  Ring r(8);
  ASSERT_TRUE(r.q.add_used(r.mem, 5, 0x1234));
  EXPECT_EQ(r.u32(kUsed + 4), 5u);
  EXPECT_EQ(r.u32(kUsed + 8), 0x1234u);
  EXPECT_EQ(r.used_idx(), 1);
  ASSERT_TRUE(r.q.add_used(r.mem, 7, 99));
  EXPECT_EQ(r.u32(kUsed + 12), 7u);
  EXPECT_EQ(r.u32(kUsed + 16), 99u);
  EXPECT_EQ(r.used_idx(), 2);
  EXPECT_EQ(r.q.next_used(), 2);
  // The slot wraps modulo the queue size.
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(r.q.add_used(r.mem, 0, 0));
  ASSERT_TRUE(r.q.add_used(r.mem, 3, 42));
  EXPECT_EQ(r.u32(kUsed + 4), 3u);
  EXPECT_EQ(r.u32(kUsed + 8), 42u);
  EXPECT_EQ(r.used_idx(), 9);
}

TEST(Queue, AddUsedRejectsHeadOutOfRange) {
  Ring r(8);
  EXPECT_FALSE(r.q.add_used(r.mem, 8, 0));
  EXPECT_EQ(r.used_idx(), 0);
  EXPECT_EQ(r.q.next_used(), 0);
  r.q.set_used_ring(GuestAddress(kRamSize));
  EXPECT_FALSE(r.q.add_used(r.mem, 0, 0));
  EXPECT_EQ(r.q.next_used(), 0);
}

TEST(QueueNotification, HonoursNoInterruptFlagWithoutEventIdx) {
  Ring r(8);
  ASSERT_TRUE(r.q.add_used(r.mem, 0, 0));
  auto n = r.q.needs_notification(r.mem);
  ASSERT_TRUE(n);
  EXPECT_TRUE(*n);
  r.set_avail_flags(1);
  n = r.q.needs_notification(r.mem);
  ASSERT_TRUE(n);
  EXPECT_FALSE(*n);
  r.set_avail_flags(0);
  EXPECT_TRUE(*r.q.needs_notification(r.mem));
}

TEST(QueueNotification, FollowsUsedEventWithEventIdx) {
  Ring r(8, kFeatureEventIdx);
  r.set_avail_flags(1);  // ignored with EVENT_IDX
  r.set_used_event(0);
  ASSERT_TRUE(r.q.add_used(r.mem, 0, 0));       // used 1
  EXPECT_TRUE(*r.q.needs_notification(r.mem));  // first decision always notifies
  r.set_used_event(1);                          // "interrupt me when entry 1 is used"
  ASSERT_TRUE(r.q.add_used(r.mem, 0, 0));       // used 2
  EXPECT_TRUE(*r.q.needs_notification(r.mem));
  r.set_used_event(5);
  ASSERT_TRUE(r.q.add_used(r.mem, 0, 0));  // used 3
  EXPECT_FALSE(*r.q.needs_notification(r.mem));
  ASSERT_TRUE(r.q.add_used(r.mem, 0, 0));  // used 4
  EXPECT_FALSE(*r.q.needs_notification(r.mem));
  EXPECT_FALSE(*r.q.needs_notification(r.mem));  // nothing new used
  ASSERT_TRUE(r.q.add_used(r.mem, 0, 0));        // used 5, 6: crosses event 5
  ASSERT_TRUE(r.q.add_used(r.mem, 0, 0));
  EXPECT_TRUE(*r.q.needs_notification(r.mem));
  ASSERT_TRUE(r.q.add_used(r.mem, 0, 0));  // used 7, event 5 already passed
  EXPECT_FALSE(*r.q.needs_notification(r.mem));
}

TEST(QueueNotification, EventIdxDecisionSurvivesWrapAround) {
  Ring r(8, kFeatureEventIdx);
  for (std::uint32_t i = 0; i < 0xfffe; ++i) ASSERT_TRUE(r.q.add_used(r.mem, 0, 0));
  r.set_used_event(0);
  EXPECT_TRUE(*r.q.needs_notification(r.mem));  // signalled at 0xfffe
  r.set_used_event(0xffff);                     // wants an interrupt once 0xffff is used
  ASSERT_TRUE(r.q.add_used(r.mem, 0, 0));       // 0xffff
  EXPECT_FALSE(*r.q.needs_notification(r.mem));
  ASSERT_TRUE(r.q.add_used(r.mem, 0, 0));  // 0x0000: entry 0xffff now used
  ASSERT_TRUE(r.q.add_used(r.mem, 0, 0));  // 0x0001
  EXPECT_EQ(r.q.next_used(), 1);
  EXPECT_TRUE(*r.q.needs_notification(r.mem));
  r.set_used_event(0xfffe);  // stale: long passed
  ASSERT_TRUE(r.q.add_used(r.mem, 0, 0));
  EXPECT_FALSE(*r.q.needs_notification(r.mem));
  r.set_used_event(2);
  ASSERT_TRUE(r.q.add_used(r.mem, 0, 0));  // 3: entry 2 used
  EXPECT_TRUE(*r.q.needs_notification(r.mem));
}

TEST(QueueNotification, EnableNotificationWritesAvailEvent) {
  Ring r(8, kFeatureEventIdx);
  r.desc(0, kBuf, 16);
  r.publish(0);
  r.publish(0);
  auto more = r.q.enable_notification(r.mem);
  ASSERT_TRUE(more);
  EXPECT_TRUE(*more);  // two are pending
  EXPECT_EQ(r.avail_event(), 0);
  r.pop_chain();
  r.pop_chain();
  more = r.q.enable_notification(r.mem);
  ASSERT_TRUE(more);
  EXPECT_FALSE(*more);
  EXPECT_EQ(r.avail_event(), 2);
  r.publish(0);
  EXPECT_TRUE(*r.q.enable_notification(r.mem));
}

TEST(QueueNotification, EnableNotificationClearsNoNotifyWithoutEventIdx) {
  Ring r(8);
  ASSERT_TRUE(r.mem.write_obj<std::uint16_t>(GuestAddress(kUsed), 1));
  auto more = r.q.enable_notification(r.mem);
  ASSERT_TRUE(more);
  EXPECT_FALSE(*more);
  EXPECT_EQ(r.u16(kUsed), 0);
  EXPECT_EQ(r.avail_event(), 0);  // untouched
  r.desc(0, kBuf, 16);
  r.publish(0);
  EXPECT_TRUE(*r.q.enable_notification(r.mem));
}

// ---- Reader / Writer ----

DescriptorChain mixed_chain(Ring& r) {
  // Readable: 3 bytes + 5 bytes (+ an empty one); writable: 4 + 0 + 6 bytes.
  r.desc(0, kBuf, 3, kNext, 1);
  r.desc(1, kBuf + 0x100, 5, kNext, 2);
  r.desc(2, kBuf + 0x180, 0, kNext, 3);
  r.desc(3, kBuf + 0x200, 4, kNext | kWrite, 4);
  r.desc(4, kBuf + 0x280, 0, kNext | kWrite, 5);
  r.desc(5, kBuf + 0x300, 6, kWrite);
  const std::uint8_t bytes[] = {1, 2, 3, 4, 5, 6, 7, 8};
  EXPECT_TRUE(r.mem.write(GuestAddress(kBuf), std::as_bytes(std::span(bytes, 3))));
  EXPECT_TRUE(r.mem.write(GuestAddress(kBuf + 0x100), std::as_bytes(std::span(bytes + 3, 5))));
  r.publish(0);
  return r.pop_chain();
}

TEST(ChainReader, ReadsAcrossDescriptorBoundaries) {
  Ring r;
  auto c = mixed_chain(r);
  Reader reader(r.mem, c);
  EXPECT_EQ(reader.remaining(), 8u);
  auto a = reader.read_obj<std::uint16_t>();
  ASSERT_TRUE(a);
  EXPECT_EQ(*a, 0x0201);
  auto b = reader.read_obj<std::uint32_t>();  // 1 byte from the first, 3 from the second
  ASSERT_TRUE(b);
  EXPECT_EQ(*b, 0x06050403u);
  EXPECT_EQ(reader.remaining(), 2u);
  std::array<std::byte, 3> big{};
  EXPECT_FALSE(reader.read(big));
  EXPECT_EQ(reader.remaining(), 2u);  // a failed read consumes nothing
  std::array<std::byte, 2> rest{};
  ASSERT_TRUE(reader.read(rest));
  EXPECT_EQ(rest[0], std::byte{7});
  EXPECT_EQ(rest[1], std::byte{8});
  EXPECT_EQ(reader.remaining(), 0u);
  EXPECT_FALSE(reader.read_obj<std::uint8_t>());
}

TEST(ChainReader, SlicesCoverExactlyTheRequestedBytes) {
  Ring r;
  auto c = mixed_chain(r);
  Reader reader(r.mem, c);
  ASSERT_TRUE(reader.read_obj<std::uint8_t>());
  EXPECT_FALSE(reader.slices(8));
  auto s = reader.slices(4);
  ASSERT_TRUE(s);
  ASSERT_EQ(s->size(), 2u);
  EXPECT_EQ((*s)[0].data(), r.mem.get_slice(GuestAddress(kBuf + 1), 2)->data());
  EXPECT_EQ((*s)[0].size(), 2u);
  EXPECT_EQ((*s)[1].data(), r.mem.get_slice(GuestAddress(kBuf + 0x100), 2)->data());
  EXPECT_EQ((*s)[1].size(), 2u);
  EXPECT_EQ(reader.remaining(), 3u);
  auto empty = reader.slices(0);
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->empty());
  auto tail = reader.slices(3);
  ASSERT_TRUE(tail);
  ASSERT_EQ(tail->size(), 1u);
  EXPECT_EQ((*tail)[0][0], std::byte{6});
  EXPECT_EQ(reader.remaining(), 0u);
}

TEST(ChainWriter, WritesAcrossDescriptorBoundaries) {
  Ring r;
  auto c = mixed_chain(r);
  Writer writer(r.mem, c);
  EXPECT_EQ(writer.remaining(), 10u);
  ASSERT_TRUE(writer.write_obj<std::uint64_t>(0x1122334455667788ull));
  EXPECT_EQ(writer.written(), 8u);
  EXPECT_EQ(r.u32(kBuf + 0x200), 0x55667788u);
  EXPECT_EQ(r.u32(kBuf + 0x300), 0x11223344u);
  EXPECT_EQ(writer.remaining(), 2u);
  EXPECT_FALSE(writer.write_obj<std::uint32_t>(0));
  EXPECT_EQ(writer.written(), 8u);
  EXPECT_EQ(writer.remaining(), 2u);
  ASSERT_TRUE(writer.write_obj<std::uint16_t>(0xabcd));
  EXPECT_EQ(r.u16(kBuf + 0x304), 0xabcd);
  EXPECT_EQ(writer.written(), 10u);
  // The readable buffers were not touched.
  EXPECT_EQ(r.u16(kBuf), 0x0201);
}

TEST(ChainWriter, SlicesCountAsWritten) {
  Ring r;
  auto c = mixed_chain(r);
  Writer writer(r.mem, c);
  EXPECT_FALSE(writer.slices(11));
  EXPECT_EQ(writer.written(), 0u);
  auto s = writer.slices(7);
  ASSERT_TRUE(s);
  ASSERT_EQ(s->size(), 2u);
  EXPECT_EQ((*s)[0].data(), r.mem.get_slice(GuestAddress(kBuf + 0x200), 4)->data());
  EXPECT_EQ((*s)[0].size(), 4u);
  EXPECT_EQ((*s)[1].data(), r.mem.get_slice(GuestAddress(kBuf + 0x300), 3)->data());
  EXPECT_EQ((*s)[1].size(), 3u);
  EXPECT_EQ(writer.written(), 7u);
  EXPECT_EQ(writer.remaining(), 3u);
  const std::uint8_t tail[] = {9, 9, 9};
  ASSERT_TRUE(writer.write(std::as_bytes(std::span(tail))));
  EXPECT_EQ(writer.written(), 10u);
  EXPECT_EQ(r.mem.read_obj<std::uint8_t>(GuestAddress(kBuf + 0x305)).value(), 9);
}

TEST(ChainWriter, MarksThePagesItWritesDirtyAndReadsMarkNothing) {
  Ring r;
  // Readable at page 0x20, writable across pages 0x30-0x31 and at 0x40.
  r.desc(0, 0x20000, 16, kNext, 1);
  r.desc(1, 0x30ff8, 16, kWrite | kNext, 2);
  r.desc(2, 0x40000, 8, kWrite);
  r.publish(0);
  auto c = r.pop_chain();
  r.mem.enable_dirty_tracking();
  r.mem.take_dirty_pages();  // the ring's own set-up does not count
  Reader reader(r.mem, c);
  ASSERT_TRUE(reader.read_obj<std::uint64_t>());
  ASSERT_TRUE(reader.slices(8));
  Writer writer(r.mem, c);
  ASSERT_TRUE(writer.write_obj<std::uint64_t>(1));  // page 0x30 only
  auto first = r.mem.take_dirty_pages()[0];
  EXPECT_EQ(first[0x30 / 64], std::uint64_t{1} << (0x30 % 64));
  EXPECT_EQ(first[0x20 / 64] & (std::uint64_t{1} << (0x20 % 64)), 0u);
  ASSERT_TRUE(writer.slices(12));  // the rest of page 0x31, then page 0x40
  auto second = r.mem.take_dirty_pages()[0];
  EXPECT_EQ(second[0x31 / 64], std::uint64_t{1} << (0x31 % 64));
  EXPECT_EQ(second[0x40 / 64], std::uint64_t{1} << (0x40 % 64));
  EXPECT_EQ(second[0x30 / 64] & (std::uint64_t{1} << (0x30 % 64)), 0u);
}

TEST(ChainWriter, ChainWithoutWritableBuffersHasNoRoom) {
  Ring r;
  r.desc(0, kBuf, 16);
  r.publish(0);
  auto c = r.pop_chain();
  Writer writer(r.mem, c);
  EXPECT_EQ(writer.remaining(), 0u);
  EXPECT_FALSE(writer.write_obj<std::uint8_t>(0));
  auto none = writer.slices(0);
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->empty());
}

TEST(ChainReader, HandBuiltChainOutsideRamFailsInsteadOfCrashing) {
  Ring r;
  DescriptorChain c{
      0, {{GuestAddress(~std::uint64_t{0} - 3), 8, false}, {GuestAddress(kRamSize), 8, true}}};
  Reader reader(r.mem, c);
  EXPECT_FALSE(reader.read_obj<std::uint64_t>());
  Writer writer(r.mem, c);
  EXPECT_FALSE(writer.slices(4));
}

}  // namespace
}  // namespace hvz::virtio
