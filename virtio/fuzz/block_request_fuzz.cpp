// Fuzz harness for virtio-blk request handling (virtio/block/request.hpp):
// chains popped from a ring in guest memory go through parse_request,
// prepare_request and execute_request (or process_request) against a
// DiskImage on a memfd, as the Sync engine runs them. The input may rewrite
// guest memory between parsing and execution, as a racing driver would.
//
// Input: u8 config (bit 0 read-only disk, bit 1 discard, bit 2
// write-zeroes, bit 3 small segment limits from the input, bits 4-5 memory
// layout), u16 disk size in sectors (at most 2048), optional limits, a
// u16-sized memory image, then operations (see the switch below). The ring
// (16 entries) sits at kDesc/kAvail/kUsed.
#include <sys/stat.h>

#include <cstdint>
#include <optional>

#include "virtio/block/disk_image.hpp"
#include "virtio/block/request.hpp"
#include "virtio/fuzz/fuzz_support.hpp"
#include "virtio/queue.hpp"

namespace {

using namespace hvz;
using namespace hvz::virtio;
using namespace hvz::virtio::block;
using namespace hvz::virtio::fuzz;

constexpr RingLayout kRing{0x7000, 0x7100, 0x7200, 16};
constexpr unsigned kMaxOps = 64;
constexpr std::uint64_t kMaxSectors = 2048;  // 1 MiB disks

enum Op : std::uint8_t { kPostChain, kMutate, kProcess, kProcessRacing, kParseOnly, kOpCount };

MemDisk& disk_file() {
  static MemDisk disk;
  return disk;
}

bool inside_guest_memory(const GuestMemory& mem, std::span<const std::byte> s) {
  for (const auto& r : mem.regions()) {
    const auto bytes = r.mapping.bytes();
    if (s.data() >= bytes.data() && s.data() + s.size() <= bytes.data() + bytes.size()) return true;
  }
  return false;
}

void check_prepared(const GuestMemory& mem, const DescriptorChain& chain, const PreparedRequest& p,
                    const RequestLimits& limits) {
  const Request& r = p.request;
  const std::uint64_t cap = limits.capacity_sectors;
  if (r.type == kTypeIn || r.type == kTypeOut) {
    std::uint64_t n = 0;
    for (const auto& s : p.data) {
      check(inside_guest_memory(mem, s), "a data buffer lies outside guest RAM");
      n += s.size();
    }
    check(n == r.data_len, "data buffers do not add up to data_len");
    check(r.data_len % kSectorSize == 0, "data_len not a multiple of 512");
    check(r.sector <= cap && (r.data_len >> kSectorShift) <= cap - r.sector,
          "request accepted past the end of the disk");
    if (r.type == kTypeIn) {
      check(r.data_len + 1 <= chain.writable_bytes(), "IN data larger than the writable bytes");
    } else {
      check(!limits.read_only, "OUT accepted on a read-only disk");
      check(r.data_len + sizeof(RequestHeader) <= chain.readable_bytes(),
            "OUT data larger than the readable bytes");
    }
  }
  if (r.type == kTypeDiscard || r.type == kTypeWriteZeroes) {
    const bool discard = r.type == kTypeDiscard;
    check(!limits.read_only, "discard/write-zeroes accepted on a read-only disk");
    check(r.segments.size() <= (discard ? limits.max_discard_seg : limits.max_write_zeroes_seg),
          "more segments than the limit");
    for (const auto& seg : r.segments) {
      check(seg.num_sectors <=
                (discard ? limits.max_discard_sectors : limits.max_write_zeroes_sectors),
            "segment larger than the limit");
      check(seg.sector <= cap && seg.num_sectors <= cap - seg.sector,
            "segment accepted past the end of the disk");
    }
  }
  if (r.type == kTypeGetId) check(chain.writable_bytes() >= kDriveIdLen + 1, "GET_ID too small");
}

struct Harness {
  Harness(const GuestMemory& m, DiskImage& d, RequestLimits l, std::uint64_t size)
      : mem(m), disk(d), limits(l), disk_size(size) {
    queue.set_size(kRing.size);
    queue.set_desc_table(GuestAddress(kRing.desc));
    queue.set_avail_ring(GuestAddress(kRing.avail));
    queue.set_used_ring(GuestAddress(kRing.used));
    queue.set_features(kFeatureVersion1 | kFeatureIndirectDesc);
    queue.set_ready(true);
  }

  const GuestMemory& mem;
  DiskImage& disk;
  RequestLimits limits;
  std::uint64_t disk_size;
  Queue queue{kRing.size};
  const std::array<std::byte, kDriveIdLen> drive_id = format_drive_id("fuzz-drive-id-0123456789");

  void check_disk_size() {
    struct stat st {};
    check(::fstat(disk.fd(), &st) == 0 && static_cast<std::uint64_t>(st.st_size) == disk_size,
          "the disk image changed size");
  }

  // One chain from the ring, or nullopt (none, or the ring is malformed:
  // then it is reset, as a device would after NEEDS_RESET).
  std::optional<DescriptorChain> pop() {
    auto r = queue.pop(mem);
    if (!r) {
      queue.reset();
      queue.set_size(kRing.size);
      queue.set_desc_table(GuestAddress(kRing.desc));
      queue.set_avail_ring(GuestAddress(kRing.avail));
      queue.set_used_ring(GuestAddress(kRing.used));
      queue.set_features(kFeatureVersion1 | kFeatureIndirectDesc);
      queue.set_ready(true);
      return std::nullopt;
    }
    return std::move(*r);
  }

  void process(FuzzInput& in, bool racing) {
    auto chain = pop();
    if (!chain) return;
    if (!racing && in.flag()) {
      const Completion c = process_request(mem, *chain, disk, limits, drive_id);
      if (c.completed) {
        check(c.used_len >= 1 && c.used_len <= chain->writable_bytes(),
              "process_request reported more bytes than the chain can hold");
      }
      (void)queue.add_used(mem, chain->head, c.used_len);
      check_disk_size();
      return;
    }
    auto prepared = prepare_request(mem, *chain, limits);
    if (!prepared) {
      (void)queue.add_used(mem, chain->head, 0);
      return;
    }
    check_prepared(mem, *chain, *prepared, limits);
    // The driver rewrites header, segments or data after the checks.
    if (racing) {
      for (unsigned i = 0, n = in.u8() % 4; i < n; ++i) mutate_memory(mem, in, kSmallMemoryEnd);
    }
    auto done = execute_request(mem, *chain, *prepared, disk, drive_id);
    std::uint32_t used = 0;
    if (done) {
      used = *done;
      check(used == used_len_for(prepared->request.type, prepared->request.data_len),
            "execute_request's used length disagrees with used_len_for");
      check(used >= 1 && used <= chain->writable_bytes(),
            "execute_request reported more bytes than the chain can hold");
    }
    (void)mem.write_obj<std::uint8_t>(prepared->request.status_addr,
                                      done ? kStatusOk : status_for(done.error()));
    (void)queue.add_used(mem, chain->head, used);
    check_disk_size();
  }

  void run(FuzzInput& in) {
    for (unsigned op = 0; op < kMaxOps && !in.empty(); ++op) {
      switch (in.u8() % kOpCount) {
        case kPostChain:
          post_chain(mem, kRing, in);
          break;
        case kMutate:
          mutate_memory(mem, in, kSmallMemoryEnd);
          break;
        case kProcess:
          process(in, false);
          break;
        case kProcessRacing:
          process(in, true);
          break;
        case kParseOnly:
          if (auto chain = pop()) {
            (void)parse_request(mem, *chain, limits);
            (void)queue.add_used(mem, chain->head, 0);
          }
          break;
      }
    }
  }
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  hvz::fuzz::quiet_logs();
  (void)disk_file();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzInput in(data, size);
  const std::uint8_t cfg = in.u8();
  const std::uint64_t sectors = in.u16() % (kMaxSectors + 1);
  const bool read_only = cfg & 1;
  auto disk = disk_file().open(sectors * kSectorSize, read_only);
  check(disk.has_value(), "cannot open the memfd disk");

  // The limits BlockDevice derives from the disk, or small ones.
  RequestLimits limits;
  limits.capacity_sectors = disk->sectors();
  limits.read_only = read_only;
  limits.discard = !read_only && (cfg & 2) && disk->discard_supported();
  limits.write_zeroes = !read_only && (cfg & 4);
  limits.max_discard_sectors = 1u << 22;
  limits.max_discard_seg = 16;
  limits.max_write_zeroes_sectors = 1u << 22;
  limits.max_write_zeroes_seg = 16;
  if (cfg & 8) {
    limits.max_discard_sectors = in.u16();
    limits.max_discard_seg = in.u8();
    limits.max_write_zeroes_sectors = in.u16();
    limits.max_write_zeroes_seg = in.u8();
  }

  const GuestMemory& mem = small_memory((cfg >> 4) & 3);
  fill_memory(mem, in.sized_bytes(kSmallMemoryEnd));
  Harness h(mem, *disk, limits, sectors * kSectorSize);
  h.run(in);
  return 0;
}
