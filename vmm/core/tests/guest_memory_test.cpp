// GuestMemory: layout rules and bounds-checked access.
#include "vmm/core/guest_memory.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "vmm/core/unique_fd.hpp"

namespace hvz {
namespace {

GuestMemory two_regions() {
  // 64 KiB at 0 and 64 KiB at 1 MiB, a hole between.
  auto m = GuestMemory::create({{GuestAddress(0), 0x10000}, {GuestAddress(0x100000), 0x10000}});
  EXPECT_TRUE(m) << m.error().message();
  return std::move(*m);
}

TEST(GuestAddress, CheckedAddRefusesWrap) {
  EXPECT_EQ(GuestAddress(10).checked_add(5), GuestAddress(15));
  EXPECT_FALSE(GuestAddress(~std::uint64_t{0}).checked_add(1));
  EXPECT_EQ(GuestAddress(~std::uint64_t{0}).checked_add(0), GuestAddress(~std::uint64_t{0}));
}

TEST(GuestMemory, RejectsBadLayouts) {
  EXPECT_FALSE(GuestMemory::create({}));
  EXPECT_FALSE(GuestMemory::create({{GuestAddress(0), 0}}));
  EXPECT_FALSE(GuestMemory::create({{GuestAddress(~std::uint64_t{0} - 10), 0x1000}}));
  EXPECT_FALSE(GuestMemory::create({{GuestAddress(0), 0x2000}, {GuestAddress(0x1000), 0x1000}}));
  EXPECT_FALSE(GuestMemory::create({{GuestAddress(0x10000), 0x1000}, {GuestAddress(0), 0x1000}}));
}

TEST(GuestMemory, ReadsBackWhatWasWritten) {
  auto m = two_regions();
  EXPECT_EQ(m.total_size(), 0x20000u);
  ASSERT_TRUE(m.write_obj<std::uint32_t>(GuestAddress(0x100ffc), 0xdeadbeef));
  auto v = m.read_obj<std::uint32_t>(GuestAddress(0x100ffc));
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, 0xdeadbeefu);
}

TEST(GuestMemory, RefusesAccessOutsideRam) {
  auto m = two_regions();
  std::array<std::byte, 8> buf{};
  // In the hole, past the end, straddling the end of a region, wrapping.
  EXPECT_FALSE(m.read(GuestAddress(0x20000), buf));
  EXPECT_FALSE(m.read(GuestAddress(0x110000), buf));
  auto r = m.write(GuestAddress(0xfffc), buf);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::kOutOfRange);
  EXPECT_FALSE(m.get_slice(GuestAddress(0x10), ~std::uint64_t{0}));
  EXPECT_FALSE(m.get_slice(GuestAddress(~std::uint64_t{0} - 2), 8));
  EXPECT_FALSE(m.read_obj<std::uint64_t>(GuestAddress(0x10fffc)));
}

TEST(GuestMemory, SliceCoversExactlyTheRange) {
  auto m = two_regions();
  auto s = m.get_slice(GuestAddress(0x100010), 0x20);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->size(), 0x20u);
  (*s)[0] = std::byte{0x7f};
  EXPECT_EQ(*m.read_obj<std::uint8_t>(GuestAddress(0x100010)), 0x7f);
  EXPECT_TRUE(m.get_slice(GuestAddress(0xffff), 1));
  EXPECT_TRUE(m.get_slice(GuestAddress(0x10000), 0));  // empty at the end is fine
}

TEST(GuestMemory, HugePageBackingIsAligned) {
  auto m = GuestMemory::create({{GuestAddress(0), 4 * kHugePageSize}}, true);
  ASSERT_TRUE(m) << m.error().message();
  EXPECT_EQ(m->regions()[0].mapping.host_address() % kHugePageSize, 0u);
}

// A temporary file, removed at the end of the test.
class TempFile {
 public:
  TempFile() {
    const char* dir = std::getenv("TMPDIR");
    path_ = std::string(dir != nullptr ? dir : "/tmp") + "/hvz-guest-memory-XXXXXX";
    fd_ = UniqueFd(::mkstemp(path_.data()));
  }
  ~TempFile() { ::unlink(path_.c_str()); }
  int fd() const { return fd_.get(); }
  std::uint64_t size() const {
    struct stat st {};
    ::fstat(fd_.get(), &st);
    return static_cast<std::uint64_t>(st.st_size);
  }
  // Bytes of the file that are allocated on disk (holes are not).
  std::uint64_t allocated() const {
    struct stat st {};
    ::fstat(fd_.get(), &st);
    return static_cast<std::uint64_t>(st.st_blocks) * 512;
  }

 private:
  UniqueFd fd_;
  std::string path_;
};

TEST(GuestMemoryFile, WritesRegionsBackToBackAndRestoresThem) {
  auto m = two_regions();
  ASSERT_TRUE(m.write_obj<std::uint64_t>(GuestAddress(0x8), 0x1122334455667788));
  ASSERT_TRUE(m.write_obj<std::uint32_t>(GuestAddress(0xfffc), 0xdeadbeef));
  ASSERT_TRUE(m.write_obj<std::uint16_t>(GuestAddress(0x100000), 0xabcd));
  ASSERT_TRUE(m.write_obj<std::uint8_t>(GuestAddress(0x10ffff), 0x5a));
  TempFile f;
  ASSERT_TRUE(f.fd() >= 0);
  auto w = m.write_to(f.fd());
  ASSERT_TRUE(w) << w.error().message();
  EXPECT_EQ(f.size(), 0x20000u);
  // The second region follows the first in the file.
  std::uint16_t second = 0;
  ASSERT_EQ(::pread(f.fd(), &second, 2, 0x10000), 2);
  EXPECT_EQ(second, 0xabcd);

  auto r = GuestMemory::from_file({{GuestAddress(0), 0x10000}, {GuestAddress(0x100000), 0x10000}},
                                  f.fd());
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(*r->read_obj<std::uint64_t>(GuestAddress(0x8)), 0x1122334455667788u);
  EXPECT_EQ(*r->read_obj<std::uint32_t>(GuestAddress(0xfffc)), 0xdeadbeefu);
  EXPECT_EQ(*r->read_obj<std::uint16_t>(GuestAddress(0x100000)), 0xabcd);
  EXPECT_EQ(*r->read_obj<std::uint8_t>(GuestAddress(0x10ffff)), 0x5a);
  EXPECT_EQ(*r->read_obj<std::uint64_t>(GuestAddress(0x2000)), 0u);
}

TEST(GuestMemoryFile, RestoredWritesNeverReachTheFile) {
  auto m = two_regions();
  ASSERT_TRUE(m.write_obj<std::uint32_t>(GuestAddress(0x100), 7));
  TempFile f;
  ASSERT_TRUE(m.write_to(f.fd()));
  const std::vector<MemoryRange> layout{{GuestAddress(0), 0x10000},
                                        {GuestAddress(0x100000), 0x10000}};
  auto a = GuestMemory::from_file(layout, f.fd());
  auto b = GuestMemory::from_file(layout, f.fd());
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->write_obj<std::uint32_t>(GuestAddress(0x100), 8));
  ASSERT_TRUE(a->write_obj<std::uint32_t>(GuestAddress(0x3000), 9));  // a hole in the file
  EXPECT_EQ(*b->read_obj<std::uint32_t>(GuestAddress(0x100)), 7u);    // a clone is unaffected
  EXPECT_EQ(*b->read_obj<std::uint32_t>(GuestAddress(0x3000)), 0u);
  std::uint32_t in_file = 0;
  ASSERT_EQ(::pread(f.fd(), &in_file, 4, 0x100), 4);
  EXPECT_EQ(in_file, 7u);
}

TEST(GuestMemoryFile, ZeroPagesAreHolesAndOldContentIsGone) {
  TempFile f;
  // An older, longer file full of data is overwritten completely.
  std::vector<std::byte> junk(0x40000, std::byte{0xee});
  ASSERT_EQ(::pwrite(f.fd(), junk.data(), junk.size(), 0), static_cast<ssize_t>(junk.size()));
  auto m = GuestMemory::create({{GuestAddress(0), 0x20000}});
  ASSERT_TRUE(m);
  ASSERT_TRUE(m->write_obj<std::uint8_t>(GuestAddress(0x5000), 1));  // one page with data
  ASSERT_TRUE(m->write_to(f.fd()));
  EXPECT_EQ(f.size(), 0x20000u);
  // One page of data (file systems may round up a little); the other 31
  // pages are holes.
  EXPECT_LE(f.allocated(), 0x4000u);
  auto r = GuestMemory::from_file({{GuestAddress(0), 0x20000}}, f.fd());
  ASSERT_TRUE(r);
  for (std::uint64_t a = 0; a < 0x20000; a += 0x800) {
    EXPECT_EQ(*r->read_obj<std::uint8_t>(GuestAddress(a)), a == 0x5000 ? 1 : 0) << a;
  }
}

TEST(GuestMemoryFile, RefusesAFileOfTheWrongSize) {
  auto m = GuestMemory::create({{GuestAddress(0), 0x10000}});
  ASSERT_TRUE(m);
  TempFile f;
  ASSERT_TRUE(m->write_to(f.fd()));
  auto bigger = GuestMemory::from_file({{GuestAddress(0), 0x20000}}, f.fd());
  ASSERT_FALSE(bigger);
  EXPECT_EQ(bigger.error().message(),
            "memory file holds 65536 bytes, the guest's memory is 131072");
  EXPECT_FALSE(GuestMemory::from_file({{GuestAddress(0), 0x8000}}, f.fd()));
  EXPECT_FALSE(GuestMemory::from_file({}, f.fd()));
  EXPECT_FALSE(GuestMemory::from_file({{GuestAddress(0), 0x10000}}, -1));
  UniqueFd dir(::open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  auto not_file = GuestMemory::from_file({{GuestAddress(0), 0x10000}}, dir.get());
  ASSERT_FALSE(not_file);
  EXPECT_EQ(not_file.error().message(), "memory file is not a regular file");
}

// The indices of the set bits of one region's dirty words.
std::vector<std::uint64_t> pages_of(const std::vector<std::uint64_t>& words) {
  std::vector<std::uint64_t> pages;
  for (std::size_t w = 0; w < words.size(); ++w) {
    for (unsigned b = 0; b < 64; ++b) {
      if (words[w] >> b & 1) pages.push_back(w * 64 + b);
    }
  }
  return pages;
}

TEST(GuestMemoryDirty, NothingIsTrackedUntilEnabled) {
  auto m = two_regions();
  ASSERT_TRUE(m.write_obj<std::uint32_t>(GuestAddress(0x3000), 1));
  m.mark_dirty(GuestAddress(0x4000), 1);
  EXPECT_FALSE(m.dirty_tracking());
  EXPECT_TRUE(m.take_dirty_pages().empty());
}

TEST(GuestMemoryDirty, WritesAndMarksSetTheirPagesOnceAndTakeClears) {
  auto m = two_regions();
  m.enable_dirty_tracking();
  ASSERT_TRUE(m.write_obj<std::uint32_t>(GuestAddress(0x3ffe), 1));  // straddles pages 3 and 4
  m.mark_dirty(GuestAddress(0x100000 + 0xf000), 0x1000);             // second region, last page
  m.mark_dirty(GuestAddress(0x20000), 0x1000);                       // in the hole: nothing
  m.mark_dirty(GuestAddress(0xf800), 0xf0000);  // runs from region 0's last page into the hole
  m.mark_dirty(GuestAddress(0x100000), 0);      // empty: nothing
  auto d = m.take_dirty_pages();
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(pages_of(d[0]), (std::vector<std::uint64_t>{3, 4, 15}));
  EXPECT_EQ(pages_of(d[1]), (std::vector<std::uint64_t>{15}));
  auto again = m.take_dirty_pages();
  EXPECT_TRUE(pages_of(again[0]).empty());
  EXPECT_TRUE(pages_of(again[1]).empty());
  // A length that runs past the end of the address space is clamped.
  m.mark_dirty(GuestAddress(0x10fff0), ~std::uint64_t{0});
  EXPECT_EQ(pages_of(m.take_dirty_pages()[1]), (std::vector<std::uint64_t>{15}));
}

}  // namespace
}  // namespace hvz
