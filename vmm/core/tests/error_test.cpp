// Error: messages name the operation and the system error.
#include "vmm/core/error.hpp"

#include <gtest/gtest.h>

#include <cerrno>

#include <fcntl.h>

#include "vmm/core/unique_fd.hpp"

namespace hvz {
namespace {

TEST(Error, MessageNamesOperationAndErrno) {
  Error e(Errc::kSystem, "KVM_CREATE_VM", EACCES);
  EXPECT_EQ(e.message(), "KVM_CREATE_VM: Permission denied");
  EXPECT_EQ(e.sys_errno(), EACCES);
}

TEST(Error, MessageWithoutErrnoIsTheOperation) {
  Error e(Errc::kOutOfRange, "address past the end of guest RAM");
  EXPECT_EQ(e.message(), "address past the end of guest RAM");
  EXPECT_EQ(e.code(), Errc::kOutOfRange);
}

TEST(Error, SysErrorCapturesErrno) {
  errno = ENOENT;
  Expected<int> r = sys_error("open /nonexistent");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().sys_errno(), ENOENT);
  EXPECT_EQ(r.error().code(), Errc::kSystem);
}

TEST(UniqueFd, ClosesOnDestructionAndMove) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  {
    UniqueFd r(fds[0]);
    UniqueFd w(fds[1]);
    UniqueFd moved(std::move(w));
    EXPECT_FALSE(w.valid());
    EXPECT_EQ(moved.get(), fds[1]);
  }
  EXPECT_EQ(::fcntl(fds[0], F_GETFD), -1);
  EXPECT_EQ(::fcntl(fds[1], F_GETFD), -1);
}

TEST(Error, InContextPrefixesTheOperationAndNamesTheSystemErrorOnce) {
  const Error inner(Errc::kSystem, "open /x", ENOENT);
  auto e = in_context("drive 'a' (/x): ", inner);
  EXPECT_EQ(e.value().message(), "drive 'a' (/x): open /x: No such file or directory");
  EXPECT_EQ(e.value().code(), Errc::kSystem);
  EXPECT_EQ(e.value().sys_errno(), ENOENT);
  auto plain = in_context("console: ", Error(Errc::kInvalidArgument, "path too long"));
  EXPECT_EQ(plain.value().message(), "console: path too long");
  EXPECT_EQ(plain.value().sys_errno(), 0);
}

}  // namespace
}  // namespace hvz
