// Formatting of hvz::Error messages.
#include "vmm/core/error.hpp"

#include <cstring>

namespace hvz {

std::string Error::message() const {
  if (sys_errno_ == 0) return operation_;
  return operation_ + ": " + std::strerror(sys_errno_);
}

}  // namespace hvz
