// bzImage parsing and loading (see bzimage.hpp).
#include "vmm/x86_64/boot/bzimage.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>

#include "vmm/core/format.hpp"
#include "vmm/x86_64/layout.hpp"

namespace hvz::x86_64 {
namespace {

constexpr std::uint64_t kBootFlagOffset = 0x1fe;
constexpr std::uint64_t kJumpOffset = 0x200;  // the 2-byte jump over the header
constexpr std::uint64_t kHeaderMagicOffset = 0x202;
constexpr std::uint64_t kSectorSize = 512;
constexpr std::uint8_t kDefaultSetupSects = 4;  // setup_sects == 0 means 4

}  // namespace

bool looks_like_bzimage(std::span<const std::byte> image) {
  if (image.size() < kBootFlagOffset + sizeof(std::uint16_t)) return false;
  std::uint16_t flag;
  std::memcpy(&flag, image.data() + kBootFlagOffset, sizeof flag);
  return flag == kBootFlag;
}

Expected<BzImage> parse_bzimage(std::span<const std::byte> image) {
  // The whole setup_header struct must be in the file before any field is
  // read; a kernel this new (>= 2.12) always has that much setup code.
  constexpr std::uint64_t kHeaderEnd = kSetupHeaderOffset + sizeof(setup_header);
  if (image.size() < kHeaderEnd) {
    if (!looks_like_bzimage(image)) {
      return make_error(Errc::kInvalidArgument, "not a bzImage or ELF kernel");
    }
    return make_error(Errc::kInvalidArgument, "bzImage truncated: " + std::to_string(image.size()) +
                                                  " bytes, shorter than its setup header");
  }
  setup_header hdr;
  std::memcpy(&hdr, image.data() + kSetupHeaderOffset, sizeof hdr);
  if (hdr.boot_flag != kBootFlag) {
    return make_error(Errc::kInvalidArgument, "not a bzImage or ELF kernel (no 0xAA55 boot flag)");
  }
  if (hdr.header != kHdrSMagic) {
    return make_error(Errc::kInvalidArgument,
                      "bzImage has no \"HdrS\" setup header (boot protocol before 2.00)");
  }
  if (hdr.version < kMinBootProtocol) {
    char buf[80];
    std::snprintf(buf, sizeof buf, "boot protocol %u.%02u too old (need 2.12)",
                  static_cast<unsigned>(hdr.version >> 8),
                  static_cast<unsigned>(hdr.version & 0xff));
    return make_error(Errc::kUnsupported, buf);
  }
  // The header ends at 0x202 + the jump's displacement byte; what lies past
  // it is setup code, not header fields, so it must not reach the zero page.
  const std::uint64_t header_len = kHeaderMagicOffset +
                                   std::to_integer<std::uint8_t>(image[kJumpOffset + 1]) -
                                   kSetupHeaderOffset;
  constexpr std::uint64_t kNeeded = offsetof(setup_header, init_size) + sizeof(hdr.init_size);
  if (header_len < kNeeded) {
    return make_error(Errc::kInvalidArgument, "bzImage setup header too short (" +
                                                  std::to_string(header_len) +
                                                  " bytes) for boot protocol 2.12");
  }
  if (header_len < sizeof hdr) {
    std::memset(reinterpret_cast<std::byte*>(&hdr) + header_len, 0, sizeof hdr - header_len);
  }
  if ((hdr.xloadflags & XLF_KERNEL_64) == 0) {
    return make_error(Errc::kUnsupported, "bzImage has no 64-bit entry point (XLF_KERNEL_64)");
  }
  if ((hdr.loadflags & LOADED_HIGH) == 0) {
    return make_error(Errc::kUnsupported, "bzImage is not loaded high (zImage, LOADED_HIGH clear)");
  }
  const std::uint64_t setup_sects = hdr.setup_sects == 0 ? kDefaultSetupSects : hdr.setup_sects;
  const std::uint64_t setup_size = (setup_sects + 1) * kSectorSize;  // at most 256 * 512
  if (setup_size >= image.size()) {
    return make_error(Errc::kInvalidArgument, "bzImage truncated: setup (" + hex(setup_size) +
                                                  " bytes) leaves no protected-mode kernel in " +
                                                  hex(image.size()) + " bytes");
  }
  auto pm = image.subspan(setup_size);
  // The 64-bit entry (startup_64) is kEntry64Offset bytes into the
  // protected-mode kernel: a shorter kernel would be entered in memory
  // nothing was loaded into.
  if (pm.size() <= kEntry64Offset) {
    return make_error(Errc::kInvalidArgument,
                      "bzImage truncated: protected-mode kernel is " + hex(pm.size()) +
                          " bytes, ending before its 64-bit entry at " + hex(kEntry64Offset));
  }
  // syssize counts the protected-mode code in 16-byte paragraphs; a file
  // shorter than that was cut off.
  const std::uint64_t sys_bytes = std::uint64_t{hdr.syssize} * 16;
  if (pm.size() < sys_bytes) {
    return make_error(Errc::kInvalidArgument, "bzImage truncated: protected-mode kernel is " +
                                                  hex(pm.size()) + " bytes, header says " +
                                                  hex(sys_bytes));
  }
  if (std::uint64_t{hdr.payload_offset} + hdr.payload_length > pm.size()) {
    return make_error(Errc::kInvalidArgument,
                      "bzImage payload lies outside the protected-mode kernel");
  }
  return BzImage{hdr, pm};
}

Expected<LoadedBzImage> load_bzimage(const GuestMemory& mem, std::span<const std::byte> image) {
  auto bz = parse_bzimage(image);
  if (!bz) return tl::unexpected(bz.error());
  const GuestAddress load(kHighMemStart);
  // init_size is the linear memory the kernel needs from where it starts to
  // decompress; the copied image itself may be larger (signatures appended).
  const std::uint64_t span_needed =
      std::max<std::uint64_t>(bz->protected_mode.size(), bz->header.init_size);
  if (!mem.contains(load, span_needed)) {
    return make_error(Errc::kOutOfRange, "kernel needs " + hex(span_needed) +
                                             " bytes of RAM from " + hex(load.value()) +
                                             ", more than the guest has there");
  }
  auto w = mem.write(load, bz->protected_mode);
  if (!w) return tl::unexpected(w.error());
  // contains() succeeded, so neither addition wraps.
  return LoadedBzImage{GuestAddress(load.value() + kEntry64Offset),
                       GuestAddress(load.value() + span_needed), bz->header};
}

}  // namespace hvz::x86_64
