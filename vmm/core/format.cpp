// hex() (see format.hpp).
#include "vmm/core/format.hpp"

namespace hvz {

std::string hex(std::uint64_t value) {
  constexpr char kDigits[] = "0123456789abcdef";
  char buf[2 + 16];
  char* end = buf + sizeof buf;
  char* p = end;
  do {
    *--p = kDigits[value & 0xf];
    value >>= 4;
  } while (value != 0);
  *--p = 'x';
  *--p = '0';
  return std::string(p, end);
}

}  // namespace hvz
