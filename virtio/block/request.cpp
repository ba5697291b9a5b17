// virtio-blk request parsing and execution (see request.hpp).
#include "virtio/block/request.hpp"

#include <algorithm>
#include <cstring>

namespace hvz::virtio::block {
namespace {

using Parsed = tl::expected<Request, RequestError>;

bool sector_range_ok(std::uint64_t sector, std::uint64_t num_sectors, std::uint64_t capacity) {
  return sector <= capacity && num_sectors <= capacity - sector;
}

// Reads and checks the 16-byte segments of a DISCARD or WRITE_ZEROES.
tl::expected<std::vector<DiscardSegment>, RequestError> parse_segments(Reader& reader, bool discard,
                                                                       std::uint32_t max_sectors,
                                                                       std::uint32_t max_seg,
                                                                       std::uint64_t capacity) {
  const std::uint64_t bytes = reader.remaining();
  if (bytes == 0 || bytes % sizeof(DiscardSegment) != 0) {
    return tl::unexpected(RequestError::kBadSegments);
  }
  // Count before allocating: the driver chooses `bytes`.
  const std::uint64_t count = bytes / sizeof(DiscardSegment);
  if (count > max_seg) return tl::unexpected(RequestError::kTooManySegments);
  std::vector<DiscardSegment> segments;
  segments.reserve(static_cast<std::size_t>(count));
  for (std::uint64_t i = 0; i < count; ++i) {
    auto seg = reader.read_obj<DiscardSegment>();
    if (!seg) return tl::unexpected(RequestError::kGuestMemory);
    if ((seg->flags & ~kSegmentFlagUnmap) != 0) {
      return tl::unexpected(RequestError::kUnsupportedFlags);
    }
    // Spec §5.2.6.2: the unmap flag is only meaningful for write-zeroes.
    if (discard && (seg->flags & kSegmentFlagUnmap) != 0) {
      return tl::unexpected(RequestError::kUnsupportedFlags);
    }
    if (seg->num_sectors > max_sectors) return tl::unexpected(RequestError::kSegmentTooLarge);
    if (!sector_range_ok(seg->sector, seg->num_sectors, capacity)) {
      return tl::unexpected(RequestError::kSectorOutOfRange);
    }
    segments.push_back(*seg);
  }
  return segments;
}

// Parses with a caller-owned Reader so that execution continues reading the
// data of an OUT request where the header ended.
Parsed parse(const DescriptorChain& chain, const RequestLimits& limits, Reader& reader) {
  auto status = find_status_byte(chain);
  if (!status) return tl::unexpected(RequestError::kNoStatusByte);
  Request req;
  req.status_addr = *status;

  if (reader.remaining() < sizeof(RequestHeader)) {
    return tl::unexpected(RequestError::kBadHeader);
  }
  auto header = reader.read_obj<RequestHeader>();
  if (!header) return tl::unexpected(RequestError::kGuestMemory);
  req.type = header->type;
  req.sector = header->sector;
  // The status byte is the last writable byte; what precedes it is data.
  const std::uint64_t writable_data = chain.writable_bytes() - 1;
  const std::uint64_t cap = limits.capacity_sectors;

  switch (req.type) {
    case kTypeIn:
    case kTypeOut: {
      const bool out = req.type == kTypeOut;
      if (out && limits.read_only) return tl::unexpected(RequestError::kReadOnly);
      req.data_len = out ? reader.remaining() : writable_data;
      if (req.data_len % kSectorSize != 0) return tl::unexpected(RequestError::kBadDataLength);
      if (!sector_range_ok(req.sector, req.data_len >> kSectorShift, cap)) {
        return tl::unexpected(RequestError::kSectorOutOfRange);
      }
      return req;
    }
    case kTypeFlush:
      return req;
    case kTypeGetId:
      if (writable_data < kDriveIdLen) return tl::unexpected(RequestError::kGetIdBufferTooSmall);
      req.data_len = kDriveIdLen;
      return req;
    case kTypeDiscard:
    case kTypeWriteZeroes: {
      const bool discard = req.type == kTypeDiscard;
      if (limits.read_only) return tl::unexpected(RequestError::kReadOnly);
      if (discard ? !limits.discard : !limits.write_zeroes) {
        return tl::unexpected(RequestError::kUnsupportedType);
      }
      auto segs = parse_segments(
          reader, discard, discard ? limits.max_discard_sectors : limits.max_write_zeroes_sectors,
          discard ? limits.max_discard_seg : limits.max_write_zeroes_seg, cap);
      if (!segs) return tl::unexpected(segs.error());
      req.segments = std::move(*segs);
      return req;
    }
    default:
      return tl::unexpected(RequestError::kUnsupportedType);
  }
}

}  // namespace

const char* to_string(RequestError e) {
  switch (e) {
    case RequestError::kNoStatusByte:
      return "no device-writable status byte";
    case RequestError::kBadHeader:
      return "request header shorter than 16 bytes";
    case RequestError::kUnsupportedType:
      return "unsupported request type";
    case RequestError::kUnsupportedFlags:
      return "unsupported segment flags";
    case RequestError::kSectorOutOfRange:
      return "sector range past the end of the disk";
    case RequestError::kBadDataLength:
      return "data length not a multiple of 512";
    case RequestError::kReadOnly:
      return "write to a read-only drive";
    case RequestError::kGetIdBufferTooSmall:
      return "GET_ID buffer shorter than 20 bytes";
    case RequestError::kBadSegments:
      return "segment data empty or not a multiple of 16";
    case RequestError::kTooManySegments:
      return "too many segments";
    case RequestError::kSegmentTooLarge:
      return "segment larger than the announced maximum";
    case RequestError::kGuestMemory:
      return "guest buffer not accessible";
    case RequestError::kIo:
      return "host I/O error";
  }
  return "unknown error";
}

std::uint8_t status_for(RequestError e) {
  switch (e) {
    case RequestError::kUnsupportedType:
    case RequestError::kUnsupportedFlags:
      return kStatusUnsupp;
    default:
      return kStatusIoErr;
  }
}

std::optional<GuestAddress> find_status_byte(const DescriptorChain& chain) {
  // Writable descriptors come last; skip empty ones at the end.
  for (auto it = chain.descriptors.rbegin(); it != chain.descriptors.rend(); ++it) {
    if (!it->device_writable) return std::nullopt;
    if (it->len == 0) continue;
    return it->addr.checked_add(it->len - 1);
  }
  return std::nullopt;
}

tl::expected<Request, RequestError> parse_request(const GuestMemory& mem,
                                                  const DescriptorChain& chain,
                                                  const RequestLimits& limits) {
  Reader reader(mem, chain);
  return parse(chain, limits, reader);
}

std::array<std::byte, kDriveIdLen> format_drive_id(const std::string& id) {
  std::array<std::byte, kDriveIdLen> out{};
  std::memcpy(out.data(), id.data(), std::min(id.size(), out.size()));
  return out;
}

tl::expected<PreparedRequest, RequestError> prepare_request(const GuestMemory& mem,
                                                            const DescriptorChain& chain,
                                                            const RequestLimits& limits) {
  Reader reader(mem, chain);
  auto req = parse(chain, limits, reader);
  if (!req) return tl::unexpected(req.error());
  PreparedRequest p{std::move(*req), {}};
  if (p.request.type == kTypeIn) {
    Writer writer(mem, chain);
    auto bufs = writer.slices(p.request.data_len);
    if (!bufs) return tl::unexpected(RequestError::kGuestMemory);
    p.data = std::move(*bufs);
  } else if (p.request.type == kTypeOut) {
    // The reader continues where the header ended.
    auto bufs = reader.slices(p.request.data_len);
    if (!bufs) return tl::unexpected(RequestError::kGuestMemory);
    p.data = std::move(*bufs);
  }
  return p;
}

std::uint32_t used_len_for(std::uint32_t type, std::uint64_t data_len) {
  // data_len + 1 fits: the queue caps a chain's total length at u32.
  return (type == kTypeIn || type == kTypeGetId) ? static_cast<std::uint32_t>(data_len + 1) : 1u;
}

tl::expected<std::uint32_t, RequestError> execute_request(
    const GuestMemory& mem, const DescriptorChain& chain, const PreparedRequest& prepared,
    DiskImage& disk, const std::array<std::byte, kDriveIdLen>& drive_id) {
  const Request& req = prepared.request;
  switch (req.type) {
    case kTypeIn:
      if (!disk.read_at(req.sector << kSectorShift, prepared.data)) {
        return tl::unexpected(RequestError::kIo);
      }
      break;
    case kTypeOut:
      if (!disk.write_at(req.sector << kSectorShift, prepared.data)) {
        return tl::unexpected(RequestError::kIo);
      }
      break;
    case kTypeFlush:
      if (!disk.flush()) return tl::unexpected(RequestError::kIo);
      break;
    case kTypeGetId: {
      Writer writer(mem, chain);
      if (!writer.write(drive_id)) return tl::unexpected(RequestError::kGuestMemory);
      break;
    }
    case kTypeDiscard:
    case kTypeWriteZeroes:
      for (const auto& seg : req.segments) {
        const std::uint64_t off = seg.sector << kSectorShift;
        const std::uint64_t len = std::uint64_t{seg.num_sectors} << kSectorShift;
        auto r = req.type == kTypeDiscard
                     ? disk.discard(off, len)
                     : disk.write_zeroes(off, len, (seg.flags & kSegmentFlagUnmap) != 0);
        if (!r) return tl::unexpected(RequestError::kIo);
      }
      break;
    default:
      return tl::unexpected(RequestError::kUnsupportedType);
  }
  return used_len_for(req.type, req.data_len);
}

Completion process_request(const GuestMemory& mem, const DescriptorChain& chain, DiskImage& disk,
                           const RequestLimits& limits,
                           const std::array<std::byte, kDriveIdLen>& drive_id) {
  Completion c;
  auto prepared = prepare_request(mem, chain, limits);
  if (!prepared && prepared.error() == RequestError::kNoStatusByte) {
    c.error = prepared.error();
    return c;
  }
  std::uint32_t used_len = 1;
  if (prepared) {
    auto done = execute_request(mem, chain, *prepared, disk, drive_id);
    if (done) {
      c.status = kStatusOk;
      used_len = *done;
    } else {
      c.error = done.error();
      c.status = status_for(done.error());
    }
  } else {
    c.error = prepared.error();
    c.status = status_for(prepared.error());
  }
  auto status_addr = find_status_byte(chain);
  if (!status_addr || !mem.write_obj<std::uint8_t>(*status_addr, c.status)) {
    c.error = RequestError::kGuestMemory;
    return c;
  }
  c.completed = true;
  c.used_len = used_len;
  return c;
}

}  // namespace hvz::virtio::block
