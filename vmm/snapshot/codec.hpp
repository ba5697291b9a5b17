// Writer and Reader: the little-endian binary encoding every section of a
// snapshot state file is made of (integers via vmm/core/le.hpp, booleans as
// one byte 0/1, strings and byte blobs with a u32 length, kernel structs as
// their raw bytes behind a u32 size).
//
// The Reader decodes untrusted bytes. It never reads past its span and never
// allocates more than the bytes left could describe: a length or count is
// checked against its limit and against what remains before anything is
// allocated. The first failure sticks (later reads return zeros and read
// nothing), so a decoder reads its fields in a row and checks ok() once;
// the message names the path of sections and the field, e.g.
// "snapshot: vCPU 1: vCPU state: xsave: count 4294967295 is more than 262144".
#pragma once

#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "vmm/core/error.hpp"

namespace hvz::snapshot {

class Writer {
 public:
  void u8(std::uint8_t v) { le(v, 1); }
  void u16(std::uint16_t v) { le(v, 2); }
  void u32(std::uint32_t v) { le(v, 4); }
  void u64(std::uint64_t v) { le(v, 8); }
  void i64(std::int64_t v) { u64(static_cast<std::uint64_t>(v)); }
  void boolean(bool v) { u8(v ? 1 : 0); }
  // The bytes as they are, no length.
  void bytes(std::span<const std::byte> data) { out_.insert(out_.end(), data.begin(), data.end()); }
  void bytes(std::span<const std::uint8_t> data) { bytes(std::as_bytes(data)); }
  // A u32 length, then the bytes.
  void blob(std::span<const std::byte> data);
  void blob(std::span<const std::uint8_t> data) { blob(std::as_bytes(data)); }
  void string(std::string_view text) { blob(std::as_bytes(std::span(text.data(), text.size()))); }
  // A kernel struct (or other trivially copyable value): u32 sizeof(T),
  // then its bytes in host order (snapshots restore on the architecture
  // that wrote them).
  template <typename T>
  void raw(const T& value) {
    static_assert(std::is_trivially_copyable_v<T>);
    u32(sizeof(T));
    bytes(std::as_bytes(std::span(&value, 1)));
  }
  // A vector of them: u32 sizeof(T), u32 count, the elements' bytes.
  template <typename T>
  void raw_array(const std::vector<T>& values) {
    static_assert(std::is_trivially_copyable_v<T>);
    u32(sizeof(T));
    count(values.size());
    bytes(std::as_bytes(std::span(values)));
  }
  // A u32 element count (asserts it fits).
  void count(std::size_t n);
  // The low `size` bytes of `value`.
  void u64_sized(std::uint64_t value, std::size_t size) { le(value, size); }

  std::size_t size() const { return out_.size(); }
  std::vector<std::byte>& buffer() { return out_; }
  std::vector<std::byte> take() && { return std::move(out_); }

 private:
  void le(std::uint64_t value, std::size_t size);
  std::vector<std::byte> out_;
};

class Reader {
 public:
  // `context` starts every error message ("snapshot").
  Reader(std::span<const std::byte> in, std::string context);

  std::uint8_t u8(const char* field) { return static_cast<std::uint8_t>(le(field, 1)); }
  std::uint16_t u16(const char* field) { return static_cast<std::uint16_t>(le(field, 2)); }
  std::uint32_t u32(const char* field) { return static_cast<std::uint32_t>(le(field, 4)); }
  std::uint64_t u64(const char* field) { return le(field, 8); }
  std::int64_t i64(const char* field) { return static_cast<std::int64_t>(u64(field)); }
  // `size` (1 to 8) bytes.
  std::uint64_t u64_sized(const char* field, std::size_t size) { return le(field, size); }
  // One byte, 0 or 1 (anything else fails: one value, one encoding).
  bool boolean(const char* field);
  // A u32 length of at most `max`, then that many bytes.
  std::vector<std::uint8_t> blob(const char* field, std::size_t max);
  std::string string(const char* field, std::size_t max);
  // A blob whose length must be exactly out.size(), copied into `out`.
  void fixed(const char* field, std::span<std::uint8_t> out);
  // A u32 count of at most `max` elements, each encoded in at least
  // `min_element_bytes` bytes, so that count cannot promise more than what
  // is left. 0 on failure.
  std::size_t count(const char* field, std::size_t max, std::size_t min_element_bytes);
  // A u8 presence flag (0/1), as boolean().
  bool present(const char* field) { return boolean(field); }

  template <typename T>
  void raw(const char* field, T& out) {
    static_assert(std::is_trivially_copyable_v<T>);
    if (!raw_size(field, sizeof(T))) return;
    if (auto in = take(field, sizeof(T))) std::memcpy(&out, in->data(), sizeof(T));
  }
  template <typename T>
  std::vector<T> raw_array(const char* field, std::size_t max) {
    static_assert(std::is_trivially_copyable_v<T>);
    std::vector<T> out;
    if (!raw_size(field, sizeof(T))) return out;
    const std::size_t n = count(field, max, sizeof(T));
    if (!ok() || n == 0) return out;
    auto in = take(field, n * sizeof(T));  // count() made sure the bytes are there
    if (!in) return out;
    out.resize(n);
    std::memcpy(out.data(), in->data(), n * sizeof(T));
    return out;
  }

  // The u32 version every state section starts with; anything but
  // `supported` fails with "version N is not supported (this hvz reads M)".
  std::uint32_t version(std::uint32_t supported);

  // Records `what` (prefixed with the context and the open sections) as
  // the error, unless one is recorded already.
  void fail(const std::string& what);
  // Fails when bytes are left ("N unexpected bytes after the last field").
  void finish();

  bool ok() const { return !error_; }
  const std::optional<Error>& error() const { return error_; }
  std::size_t remaining() const { return in_.size() - pos_; }
  std::size_t position() const { return pos_; }

  // Names a part of the input in error messages while it is alive:
  //   auto s = r.section("vCPU 1");
  class [[nodiscard]] Section {
   public:
    explicit Section(Reader& r) : r_(r) {}
    ~Section() { r_.path_.pop_back(); }
    Section(const Section&) = delete;
    Section& operator=(const Section&) = delete;

   private:
    Reader& r_;
  };
  Section section(std::string name) {
    path_.push_back(std::move(name));
    return Section(*this);
  }

 private:
  // The next n bytes, or nullopt (and the error recorded) when fewer remain.
  std::optional<std::span<const std::uint8_t>> take(const char* field, std::size_t n);
  std::uint64_t le(const char* field, std::size_t size);
  bool raw_size(const char* field, std::size_t expected);
  void fail_field(const char* field, const std::string& what);

  std::span<const std::uint8_t> in_;
  std::size_t pos_ = 0;
  std::string context_;
  std::vector<std::string> path_;
  std::optional<Error> error_;
};

// Encoder and Decoder walk a struct's fields with the same calls, so that
// each struct's layout is written down once, as
//   template <typename Io, typename S> void fields(Io& io, S& s)
// (S is const T when encoding), and the two directions cannot disagree.
// Integers are little-endian of their own size, bool one byte.
class Encoder {
 public:
  static constexpr bool kDecoding = false;
  explicit Encoder(Writer& w) : w_(w) {}

  template <std::integral T>
  void field(const char*, T value) {
    if constexpr (std::is_same_v<T, bool>) {
      w_.boolean(value);
    } else {
      w_.u64_sized(static_cast<std::make_unsigned_t<T>>(value), sizeof(T));
    }
  }
  template <std::size_t N>
  void field(const char*, const std::array<std::uint8_t, N>& bytes) {
    w_.blob(bytes);
  }
  template <typename T>
  void field(const char* name, const std::optional<T>& value) {
    w_.boolean(value.has_value());
    if (value) field(name, *value);
  }
  void blob(const char*, const std::vector<std::uint8_t>& bytes, std::size_t) { w_.blob(bytes); }
  void text(const char*, const std::string& value, std::size_t) { w_.string(value); }
  template <typename T>
  void raw(const char*, const T& value) {
    w_.raw(value);
  }
  template <typename T>
  void raw_array(const char*, const std::vector<T>& values, std::size_t) {
    w_.raw_array(values);
  }
  // The section's version: kVersion, or the struct's version member.
  void version(std::uint32_t value) { w_.u32(value); }
  void version(std::uint32_t value, std::uint32_t) { w_.u32(value); }
  // A u32 count, then `each(io, element)` for every element.
  template <typename E, typename Each>
  void elements(const char*, const std::vector<E>& v, std::size_t, std::size_t, const char*,
                Each each) {
    w_.count(v.size());
    for (const E& e : v) each(*this, e);
  }

  // Sections and checks only matter to the Decoder.
  struct NoSection {
    ~NoSection() {}  // non-trivial: an unused `auto section` is not a warning
  };
  NoSection section(const char*) { return {}; }

 private:
  Writer& w_;
};

class Decoder {
 public:
  static constexpr bool kDecoding = true;
  explicit Decoder(Reader& r) : r_(r) {}

  template <std::integral T>
  void field(const char* name, T& value) {
    if constexpr (std::is_same_v<T, bool>) {
      value = r_.boolean(name);
    } else {
      value = static_cast<T>(r_.u64_sized(name, sizeof(T)));
    }
  }
  template <std::size_t N>
  void field(const char* name, std::array<std::uint8_t, N>& bytes) {
    r_.fixed(name, bytes);
  }
  template <typename T>
  void field(const char* name, std::optional<T>& value) {
    value.reset();
    if (r_.present(name)) field(name, value.emplace());
  }
  void blob(const char* name, std::vector<std::uint8_t>& bytes, std::size_t max) {
    bytes = r_.blob(name, max);
  }
  void text(const char* name, std::string& value, std::size_t max) { value = r_.string(name, max); }
  template <typename T>
  void raw(const char* name, T& value) {
    r_.raw(name, value);
  }
  template <typename T>
  void raw_array(const char* name, std::vector<T>& values, std::size_t max) {
    values = r_.raw_array<T>(name, max);
  }
  void version(std::uint32_t supported) { r_.version(supported); }
  void version(std::uint32_t& member, std::uint32_t supported) { member = r_.version(supported); }
  // A count of at most `max` elements of at least `min_bytes` each, then
  // each element in a section "<label> <index>".
  template <typename E, typename Each>
  void elements(const char* name, std::vector<E>& v, std::size_t max, std::size_t min_bytes,
                const char* label, Each each) {
    v.clear();
    const std::size_t n = r_.count(name, max, min_bytes);
    for (std::size_t i = 0; i < n && r_.ok(); ++i) {
      auto section = r_.section(std::string(label) + " " + std::to_string(i));
      each(*this, v.emplace_back());
    }
  }

  // Names a part of the input in error messages while alive.
  Reader::Section section(std::string name) { return r_.section(std::move(name)); }
  bool ok() const { return r_.ok(); }
  void fail(const std::string& what) { r_.fail(what); }
  // Refuses the input when `valid` (a validate() of the decoded state) is
  // an error, with its message.
  void check(const Expected<void>& valid) {
    if (r_.ok() && !valid) r_.fail(valid.error().message());
  }

 private:
  Reader& r_;
};

}  // namespace hvz::snapshot
