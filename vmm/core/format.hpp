// Small text helpers for error and log messages, so that every layer
// spells addresses and sizes the same way.
#pragma once

#include <cstdint>
#include <string>

namespace hvz {

// "0x" and lowercase hex digits without padding: 0x0, 0x1000,
// 0xffffffffffffffff.
std::string hex(std::uint64_t value);

}  // namespace hvz
