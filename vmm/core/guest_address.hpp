// GuestAddress: a guest physical address as a strong type. Arithmetic that
// could wrap is only available checked.
#pragma once

#include <compare>
#include <cstdint>
#include <optional>

namespace hvz {

class GuestAddress {
 public:
  constexpr GuestAddress() = default;
  constexpr explicit GuestAddress(std::uint64_t value) : value_(value) {}
  constexpr std::uint64_t value() const { return value_; }
  // nullopt when value + len wraps past 2^64.
  constexpr std::optional<GuestAddress> checked_add(std::uint64_t len) const {
    if (value_ + len < value_) return std::nullopt;
    return GuestAddress(value_ + len);
  }
  constexpr auto operator<=>(const GuestAddress&) const = default;

 private:
  std::uint64_t value_ = 0;
};

}  // namespace hvz
