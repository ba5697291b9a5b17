// Little-endian byte encoding for the formats the guest reads (virtio
// config spaces, ACPI tables, AML): one helper instead of a copy per file.
// Values are encoded byte by byte, so the result does not depend on the
// host's byte order.
#pragma once

#include <cassert>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace hvz {

// Writes the low `size` bytes of `value` at out[offset..offset + size).
inline void put_le(std::span<std::uint8_t> out, std::size_t offset, std::uint64_t value,
                   std::size_t size) {
  assert(size <= sizeof value && offset <= out.size() && size <= out.size() - offset);
  for (std::size_t i = 0; i < size; ++i) {
    out[offset + i] = static_cast<std::uint8_t>(value >> (8 * i));
  }
}

// The same, with the size taken from the value's type.
template <std::unsigned_integral T>
void put_le(std::span<std::uint8_t> out, std::size_t offset, T value) {
  put_le(out, offset, value, sizeof(T));
}

// Appends the low `size` bytes of `value` to `out`.
inline void append_le(std::vector<std::uint8_t>& out, std::uint64_t value, std::size_t size) {
  assert(size <= sizeof value);
  for (std::size_t i = 0; i < size; ++i) out.push_back(static_cast<std::uint8_t>(value >> (8 * i)));
}

// Reads `size` little-endian bytes at in[offset..offset + size).
inline std::uint64_t get_le(std::span<const std::uint8_t> in, std::size_t offset,
                            std::size_t size) {
  assert(size <= sizeof(std::uint64_t) && offset <= in.size() && size <= in.size() - offset);
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < size; ++i) v |= static_cast<std::uint64_t>(in[offset + i]) << (8 * i);
  return v;
}

}  // namespace hvz
