// Fuzzes decode_snapshot, the parser of untrusted snapshot state files.
// Each input is decoded twice: as it is (magic, version, length and
// checksum checks) and with its header and checksum made right around the
// bytes between them, so mutations reach the section decoders past the
// CRC-64. Whatever decodes must encode back to the same bytes (the encoding
// is canonical) and decode again to an equal snapshot.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <vector>

#include "vmm/snapshot/snapshot.hpp"

namespace {

using hvz::snapshot::decode_snapshot;
using hvz::snapshot::encode_snapshot;

void check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "hvz fuzz: invariant broken: %s\n", what);
  std::abort();
}

void decode_and_reencode(std::span<const std::byte> file) {
  auto snapshot = decode_snapshot(file);
  if (!snapshot) {
    check(!snapshot.error().operation().empty(), "an error without a message");
    return;
  }
  const std::vector<std::byte> again = encode_snapshot(*snapshot);
  check(std::equal(again.begin(), again.end(), file.begin(), file.end()),
        "re-encoding a decoded snapshot gives other bytes");
  auto twice = decode_snapshot(again);
  check(twice.has_value(), "a re-encoded snapshot does not decode");
  check(*twice == *snapshot, "a re-encoded snapshot decodes to another snapshot");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto input = std::as_bytes(std::span(data, size));
  decode_and_reencode(input);
  using hvz::snapshot::kHeaderSize;
  using hvz::snapshot::kTrailerSize;
  if (size >= kHeaderSize + kTrailerSize) {
    const auto payload = input.subspan(kHeaderSize, size - kHeaderSize - kTrailerSize);
    decode_and_reencode(hvz::snapshot::encode_container(payload));
  }
  return 0;
}
