// hvz::Error and hvz::Expected: the error values every layer returns.
// No exception crosses core, devices or virtio; the failing operation and
// errno travel with the error so messages say what failed and why.
#pragma once

#include <cerrno>
#include <string>
#include <utility>

#include <tl/expected.hpp>

namespace hvz {

enum class Errc {
  kSystem,           // a system call failed; errno() says why
  kInvalidArgument,  // a caller passed something malformed
  kOutOfRange,       // an address or length outside what is mapped
  kUnsupported,      // the host (KVM, kernel) lacks a needed feature
  kBusy,             // the resource is taken (e.g. an overlapping bus range)
};

class [[nodiscard]] Error {
 public:
  Error(Errc code, std::string operation, int sys_errno = 0)
      : code_(code), sys_errno_(sys_errno), operation_(std::move(operation)) {}

  Errc code() const { return code_; }
  int sys_errno() const { return sys_errno_; }
  const std::string& operation() const { return operation_; }
  // "KVM_CREATE_VM: Permission denied" or just the operation's text.
  std::string message() const;

 private:
  Errc code_;
  int sys_errno_;
  std::string operation_;
};

template <typename T>
using Expected = tl::expected<T, Error>;

inline tl::unexpected<Error> make_error(Errc code, std::string operation, int sys_errno = 0) {
  return tl::unexpected<Error>(Error(code, std::move(operation), sys_errno));
}

// The error of a system call that just failed: captures errno now.
// `e` with `context` put before its operation ("drive 'x' (path): " +
// "open"), code and errno kept, so message() names the system error once.
inline tl::unexpected<Error> in_context(const std::string& context, const Error& e) {
  return make_error(e.code(), context + e.operation(), e.sys_errno());
}

inline tl::unexpected<Error> sys_error(std::string operation) {
  return make_error(Errc::kSystem, std::move(operation), errno);
}

}  // namespace hvz
