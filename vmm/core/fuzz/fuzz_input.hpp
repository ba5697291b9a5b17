// FuzzInput: the byte reader every libFuzzer harness decodes its input with,
// and quiet_logs(), which keeps the harnesses' log lines off the terminal.
// Values are read front to back, little-endian, and read as zero once the
// input is exhausted, so a harness never fails to decode: a short input is
// just a short run. The formats stay simple enough that the seed generators
// (<layer>/fuzz/make_corpus.py) can write them.
#pragma once

#include <fcntl.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <type_traits>

#include "vmm/core/log.hpp"
#include "vmm/core/unique_fd.hpp"

namespace hvz::fuzz {

class FuzzInput {
 public:
  FuzzInput(const std::uint8_t* data, std::size_t size) : data_(data, size) {}

  bool empty() const { return pos_ >= data_.size(); }
  std::size_t remaining() const { return data_.size() - pos_; }

  template <typename T>
  T take() {
    static_assert(std::is_integral_v<T>);
    std::make_unsigned_t<T> v = 0;
    for (std::size_t i = 0; i < sizeof(T) && pos_ < data_.size(); ++i) {
      v = static_cast<std::make_unsigned_t<T>>(
          v | (static_cast<std::make_unsigned_t<T>>(data_[pos_++]) << (8 * i)));
    }
    return static_cast<T>(v);
  }
  std::uint8_t u8() { return take<std::uint8_t>(); }
  std::uint16_t u16() { return take<std::uint16_t>(); }
  std::uint32_t u32() { return take<std::uint32_t>(); }
  std::uint64_t u64() { return take<std::uint64_t>(); }
  bool flag() { return (u8() & 1) != 0; }

  // Up to `n` bytes (fewer when the input ends first), not copied.
  std::span<const std::uint8_t> bytes(std::size_t n) {
    n = std::min(n, remaining());
    auto out = data_.subspan(pos_, n);
    pos_ += n;
    return out;
  }
  // A byte string preceded by its u16 length, at most `max` bytes long.
  std::span<const std::uint8_t> sized_bytes(std::size_t max) {
    return bytes(std::min<std::size_t>(u16(), max));
  }
  std::string sized_string(std::size_t max) {
    auto b = sized_bytes(max);
    return std::string(b.begin(), b.end());
  }
  std::span<const std::uint8_t> rest() { return bytes(remaining()); }

 private:
  std::span<const std::uint8_t> data_;
  std::size_t pos_ = 0;
};

// Sends log lines to /dev/null (they are still formatted, so their code
// runs) unless HVZ_FUZZ_LOG is set: millions of runs would otherwise flood
// the terminal and slow the fuzzer down.
inline void quiet_logs() {
  if (std::getenv("HVZ_FUZZ_LOG") != nullptr) return;
  UniqueFd null(::open("/dev/null", O_WRONLY | O_CLOEXEC));
  if (null) log::set_output(std::move(null));
}

}  // namespace hvz::fuzz
