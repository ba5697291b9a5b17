// Helpers shared by the boot tests: guest memory, the real kernel image from
// $HVZ_GUEST_KERNEL, and byte-level image editing.
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include "vmm/core/guest_memory.hpp"

namespace hvz::x86_64::test {

inline GuestMemory make_memory(std::vector<MemoryRange> ranges) {
  auto m = GuestMemory::create(ranges);
  EXPECT_TRUE(m) << m.error().message();
  return std::move(*m);
}

// One RAM region [0, size).
inline GuestMemory make_memory(std::uint64_t size) {
  return make_memory(std::vector<MemoryRange>{{GuestAddress(0), size}});
}

template <typename T>
void put(std::vector<std::byte>& image, std::size_t offset, const T& value) {
  ASSERT_LE(offset + sizeof(T), image.size());
  std::memcpy(image.data() + offset, &value, sizeof(T));
}

template <typename T>
T get(const std::vector<std::byte>& image, std::size_t offset) {
  T value{};
  EXPECT_LE(offset + sizeof(T), image.size());
  if (offset + sizeof(T) <= image.size()) std::memcpy(&value, image.data() + offset, sizeof(T));
  return value;
}

template <typename T>
T read_guest(const GuestMemory& mem, std::uint64_t addr) {
  auto v = mem.read_obj<T>(GuestAddress(addr));
  EXPECT_TRUE(v) << v.error().message();
  return v ? *v : T{};
}

// The real kernel: nullopt (and the test skips) when HVZ_GUEST_KERNEL is
// unset. When it is set but missing, the calling test fails: the build
// expects the images to have been made.
inline std::optional<std::vector<std::byte>> guest_kernel() {
  const char* path = std::getenv("HVZ_GUEST_KERNEL");
  if (path == nullptr || *path == '\0') return std::nullopt;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    ADD_FAILURE() << "HVZ_GUEST_KERNEL=" << path
                  << " cannot be read; run scripts/guest-images <builddir>/guest-images";
    return std::vector<std::byte>{};
  }
  std::vector<char> raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> bytes(raw.size());
  std::memcpy(bytes.data(), raw.data(), raw.size());
  return bytes;
}

// Loads the real kernel into `out`, or skips/fails the current test.
#define HVZ_REQUIRE_GUEST_KERNEL(out)                                       \
  do {                                                                      \
    auto k_ = ::hvz::x86_64::test::guest_kernel();                          \
    if (!k_) GTEST_SKIP() << "HVZ_GUEST_KERNEL is not set";                 \
    if (k_->empty()) FAIL() << "no guest kernel; run scripts/guest-images"; \
    (out) = std::move(*k_);                                                 \
  } while (0)

}  // namespace hvz::x86_64::test
