// The snapshot's binary encoding primitives (see codec.hpp).
#include "vmm/snapshot/codec.hpp"

#include <cassert>
#include <limits>

#include "vmm/core/le.hpp"

namespace hvz::snapshot {

void Writer::le(std::uint64_t value, std::size_t size) {
  std::uint8_t buf[sizeof value];
  put_le(buf, 0, value, size);
  bytes(std::span<const std::uint8_t>(buf, size));
}

void Writer::count(std::size_t n) {
  assert(n <= std::numeric_limits<std::uint32_t>::max());
  u32(static_cast<std::uint32_t>(n));
}

void Writer::blob(std::span<const std::byte> data) {
  count(data.size());
  bytes(data);
}

Reader::Reader(std::span<const std::byte> in, std::string context)
    : in_(reinterpret_cast<const std::uint8_t*>(in.data()), in.size()),
      context_(std::move(context)) {}

void Reader::fail(const std::string& what) {
  if (error_) return;
  std::string message = context_;
  for (const std::string& part : path_) message += ": " + part;
  error_.emplace(Errc::kInvalidArgument, message + ": " + what);
}

void Reader::fail_field(const char* field, const std::string& what) {
  fail(std::string(field) + ": " + what);
}

std::optional<std::span<const std::uint8_t>> Reader::take(const char* field, std::size_t n) {
  if (error_) return std::nullopt;
  if (n > remaining()) {
    fail_field(field, "truncated: " + std::to_string(n) + " bytes needed, " +
                          std::to_string(remaining()) + " left");
    return std::nullopt;
  }
  auto out = in_.subspan(pos_, n);
  pos_ += n;
  return out;
}

std::uint64_t Reader::le(const char* field, std::size_t size) {
  auto in = take(field, size);
  return in ? get_le(*in, 0, size) : 0;
}

bool Reader::boolean(const char* field) {
  const std::uint8_t v = u8(field);
  if (v > 1) fail_field(field, "boolean byte " + std::to_string(v) + " is neither 0 nor 1");
  return v == 1;
}

std::size_t Reader::count(const char* field, std::size_t max, std::size_t min_element_bytes) {
  const std::uint32_t n = u32(field);
  if (!ok()) return 0;
  if (n > max) {
    fail_field(field, "count " + std::to_string(n) + " is more than " + std::to_string(max));
    return 0;
  }
  // n <= max keeps the product far from overflowing for every caller's max.
  if (std::uint64_t{n} * min_element_bytes > remaining()) {
    fail_field(field, "truncated: count " + std::to_string(n) + " needs at least " +
                          std::to_string(std::uint64_t{n} * min_element_bytes) + " bytes, " +
                          std::to_string(remaining()) + " left");
    return 0;
  }
  return n;
}

std::vector<std::uint8_t> Reader::blob(const char* field, std::size_t max) {
  const std::size_t n = count(field, max, 1);
  auto in = take(field, n);
  if (!in) return {};
  return std::vector<std::uint8_t>(in->begin(), in->end());
}

std::string Reader::string(const char* field, std::size_t max) {
  const std::size_t n = count(field, max, 1);
  auto in = take(field, n);
  if (!in) return {};
  return std::string(in->begin(), in->end());
}

void Reader::fixed(const char* field, std::span<std::uint8_t> out) {
  const std::uint32_t n = u32(field);
  if (!ok()) return;
  if (n != out.size()) {
    fail_field(field, "length " + std::to_string(n) + ", expected " + std::to_string(out.size()));
    return;
  }
  if (auto in = take(field, n)) std::copy(in->begin(), in->end(), out.begin());
}

bool Reader::raw_size(const char* field, std::size_t expected) {
  const std::uint32_t size = u32(field);
  if (!ok()) return false;
  if (size != expected) {
    fail_field(field, "size " + std::to_string(size) + ", this hvz's is " +
                          std::to_string(expected) +
                          " (a snapshot from another architecture or kernel ABI)");
    return false;
  }
  return true;
}

std::uint32_t Reader::version(std::uint32_t supported) {
  const std::uint32_t v = u32("version");
  if (ok() && v != supported) {
    fail("version " + std::to_string(v) + " is not supported (this hvz reads " +
         std::to_string(supported) + ")");
  }
  return v;
}

void Reader::finish() {
  if (ok() && remaining() != 0) {
    fail(std::to_string(remaining()) + " unexpected bytes after the last field");
  }
}

}  // namespace hvz::snapshot
