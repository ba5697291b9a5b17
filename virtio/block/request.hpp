// virtio-blk requests (virtio 1.2 §5.2.6): parsing a descriptor chain into a
// checked Request, executing it against a DiskImage, and writing the status
// byte. The chain comes from a malicious driver: every field is checked
// (type, sector range and overflow, data length, direction, segment count and
// flags) and a bad request completes with IOERR or UNSUPP, never a crash.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "virtio/block/disk_image.hpp"
#include "virtio/queue.hpp"
#include "vmm/core/error.hpp"
#include "vmm/core/guest_memory.hpp"

namespace hvz::virtio::block {

// Request types.
inline constexpr std::uint32_t kTypeIn = 0;
inline constexpr std::uint32_t kTypeOut = 1;
inline constexpr std::uint32_t kTypeFlush = 4;
inline constexpr std::uint32_t kTypeGetId = 8;
inline constexpr std::uint32_t kTypeDiscard = 11;
inline constexpr std::uint32_t kTypeWriteZeroes = 13;

// Status byte values.
inline constexpr std::uint8_t kStatusOk = 0;
inline constexpr std::uint8_t kStatusIoErr = 1;
inline constexpr std::uint8_t kStatusUnsupp = 2;

// GET_ID answers with this many bytes (the drive id, NUL padded).
inline constexpr std::size_t kDriveIdLen = 20;
// Discard / write-zeroes segment flag: the range may be deallocated.
inline constexpr std::uint32_t kSegmentFlagUnmap = 1;

// The request header the driver puts first (little-endian on the wire; hvz
// runs on little-endian x86_64 hosts only).
struct RequestHeader {
  std::uint32_t type;
  std::uint32_t reserved;
  std::uint64_t sector;
};
static_assert(sizeof(RequestHeader) == 16);

// One range of a DISCARD or WRITE_ZEROES request.
struct DiscardSegment {
  std::uint64_t sector;
  std::uint32_t num_sectors;
  std::uint32_t flags;
};
static_assert(sizeof(DiscardSegment) == 16);

// Why a request failed; each maps to a status byte (status_for), except
// kNoStatusByte, which leaves nothing to write the status into.
enum class RequestError {
  kNoStatusByte,         // no device-writable byte at the end of the chain
  kBadHeader,            // fewer than 16 readable bytes for the header
  kUnsupportedType,      // unknown type, or a feature the device lacks
  kUnsupportedFlags,     // unknown segment flags, or unmap on a discard
  kSectorOutOfRange,     // sector range past the end of the disk, or overflow
  kBadDataLength,        // data not a multiple of 512 bytes (IN/OUT)
  kReadOnly,             // a write, discard or write-zeroes on a read-only drive
  kGetIdBufferTooSmall,  // GET_ID buffer shorter than 20 bytes
  kBadSegments,          // segment data empty or not a multiple of 16
  kTooManySegments,      // more segments than max_*_seg
  kSegmentTooLarge,      // num_sectors above max_*_sectors
  kGuestMemory,          // a data buffer could not be accessed
  kIo,                   // the host I/O failed
};
const char* to_string(RequestError e);
std::uint8_t status_for(RequestError e);

// What the device offers, so requests are checked against the same limits
// the config space announces.
struct RequestLimits {
  std::uint64_t capacity_sectors = 0;
  bool read_only = false;
  bool discard = false;
  bool write_zeroes = false;
  std::uint32_t max_discard_sectors = 0;
  std::uint32_t max_discard_seg = 0;
  std::uint32_t max_write_zeroes_sectors = 0;
  std::uint32_t max_write_zeroes_seg = 0;
};

// A parsed, checked request. For IN/OUT/GET_ID `data_len` is the number of
// data bytes (writable for IN/GET_ID, readable for OUT); segments are filled
// for DISCARD/WRITE_ZEROES.
struct Request {
  std::uint32_t type = 0;
  std::uint64_t sector = 0;
  std::uint64_t data_len = 0;
  std::vector<DiscardSegment> segments;
  GuestAddress status_addr;
};

// Where the status byte goes: the last device-writable byte of the chain.
std::optional<GuestAddress> find_status_byte(const DescriptorChain& chain);

// Parses and checks the chain. On success the header and (for
// DISCARD/WRITE_ZEROES) the segments have been read from guest memory.
tl::expected<Request, RequestError> parse_request(const GuestMemory& mem,
                                                  const DescriptorChain& chain,
                                                  const RequestLimits& limits);

// The outcome of one chain: whether a status was written (false only when
// the chain has no status byte), the status, and the used length to report
// (bytes written into the guest, including the status byte).
struct Completion {
  bool completed = false;
  std::uint8_t status = kStatusIoErr;
  std::uint32_t used_len = 0;
  std::optional<RequestError> error;
};

// The drive id as GET_ID returns it: the first 20 bytes, NUL padded.
std::array<std::byte, kDriveIdLen> format_drive_id(const std::string& id);

// A checked request and, for IN/OUT, its data buffers in guest memory, in
// order (IN: the writable bytes before the status byte; OUT: the readable
// bytes after the header), `data_len` bytes in all. The slices point into
// guest RAM, so an I/O engine may hand them to the kernel.
struct PreparedRequest {
  Request request;
  std::vector<std::span<std::byte>> data;
};

// Parses and checks the chain and, for IN/OUT, resolves its data buffers.
tl::expected<PreparedRequest, RequestError> prepare_request(const GuestMemory& mem,
                                                            const DescriptorChain& chain,
                                                            const RequestLimits& limits);

// Executes a prepared request synchronously against `disk`; returns the used
// length to report (data bytes written into the guest plus the status byte).
// The status byte is not written.
tl::expected<std::uint32_t, RequestError> execute_request(
    const GuestMemory& mem, const DescriptorChain& chain, const PreparedRequest& prepared,
    DiskImage& disk, const std::array<std::byte, kDriveIdLen>& drive_id);

// The used length of a successful request of `type` with `data_len` bytes
// (IN and GET_ID report their data, the others only the status byte).
std::uint32_t used_len_for(std::uint32_t type, std::uint64_t data_len);

// Parses, executes and completes one chain (writes the status byte).
Completion process_request(const GuestMemory& mem, const DescriptorChain& chain, DiskImage& disk,
                           const RequestLimits& limits,
                           const std::array<std::byte, kDriveIdLen>& drive_id);

}  // namespace hvz::virtio::block
