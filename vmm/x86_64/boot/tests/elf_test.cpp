// ELF64 vmlinux loading: small ELF images built here, valid and malformed.
#include "vmm/x86_64/boot/elf.hpp"

#include <elf.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "vmm/x86_64/boot/kernel_loader.hpp"
#include "vmm/x86_64/boot/tests/test_support.hpp"
#include "vmm/x86_64/layout.hpp"

namespace hvz::x86_64 {
namespace {

using test::make_memory;
using test::put;

constexpr std::uint64_t kMiB = 1 << 20;

std::vector<std::byte> bytes_of(std::size_t n, std::uint8_t seed) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>((i * 13 + seed) & 0xff);
  return v;
}

// One ELF note: header, name and descriptor, each padded to 4 bytes.
std::vector<std::byte> note(const std::string& name, std::uint32_t type,
                            const std::vector<std::byte>& desc) {
  const std::uint32_t namesz = static_cast<std::uint32_t>(name.size() + 1);
  Elf64_Nhdr nhdr{namesz, static_cast<std::uint32_t>(desc.size()), type};
  std::vector<std::byte> out(sizeof nhdr);
  std::memcpy(out.data(), &nhdr, sizeof nhdr);
  for (char c : name) out.push_back(static_cast<std::byte>(c));
  out.push_back(std::byte{0});
  while (out.size() % 4) out.push_back(std::byte{0});
  out.insert(out.end(), desc.begin(), desc.end());
  while (out.size() % 4) out.push_back(std::byte{0});
  return out;
}

template <typename T>
std::vector<std::byte> le(T value) {
  std::vector<std::byte> v(sizeof(T));
  std::memcpy(v.data(), &value, sizeof(T));
  return v;
}

// Lays out: ELF header, program headers, then each segment's file bytes.
struct ElfBuilder {
  struct Segment {
    Elf64_Phdr phdr;
    std::vector<std::byte> data;
  };
  std::uint64_t entry = kHighMemStart;
  std::vector<Segment> segments;

  ElfBuilder& load(std::uint64_t paddr, std::vector<std::byte> data, std::uint64_t memsz) {
    Elf64_Phdr ph{};
    ph.p_type = PT_LOAD;
    ph.p_flags = PF_R | PF_X;
    ph.p_paddr = paddr;
    ph.p_vaddr = 0xffffffff80000000ull + paddr;
    ph.p_filesz = data.size();
    ph.p_memsz = memsz;
    ph.p_align = 0x1000;
    segments.push_back({ph, std::move(data)});
    return *this;
  }
  ElfBuilder& notes(std::vector<std::byte> data) {
    Elf64_Phdr ph{};
    ph.p_type = PT_NOTE;
    ph.p_filesz = data.size();
    ph.p_align = 4;
    segments.push_back({ph, std::move(data)});
    return *this;
  }
  std::vector<std::byte> build() const {
    Elf64_Ehdr eh{};
    std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
    eh.e_ident[EI_CLASS] = ELFCLASS64;
    eh.e_ident[EI_DATA] = ELFDATA2LSB;
    eh.e_ident[EI_VERSION] = EV_CURRENT;
    eh.e_type = ET_EXEC;
    eh.e_machine = EM_X86_64;
    eh.e_version = EV_CURRENT;
    eh.e_entry = entry;
    eh.e_phoff = sizeof(Elf64_Ehdr);
    eh.e_ehsize = sizeof(Elf64_Ehdr);
    eh.e_phentsize = sizeof(Elf64_Phdr);
    eh.e_phnum = static_cast<std::uint16_t>(segments.size());
    std::vector<std::byte> out(sizeof eh + segments.size() * sizeof(Elf64_Phdr));
    std::memcpy(out.data(), &eh, sizeof eh);
    for (std::size_t i = 0; i < segments.size(); ++i) {
      Elf64_Phdr ph = segments[i].phdr;
      ph.p_offset = out.size();
      out.insert(out.end(), segments[i].data.begin(), segments[i].data.end());
      std::memcpy(out.data() + sizeof eh + i * sizeof ph, &ph, sizeof ph);
    }
    return out;
  }
};

constexpr std::size_t phdr_off(std::size_t i) {
  return sizeof(Elf64_Ehdr) + i * sizeof(Elf64_Phdr);
}
#define PH_FIELD(i, field) (phdr_off(i) + offsetof(Elf64_Phdr, field))
#define EH_FIELD(field) offsetof(Elf64_Ehdr, field)

ElfBuilder two_segments() {
  ElfBuilder b;
  b.entry = kHighMemStart + 0x10;
  b.load(kHighMemStart, bytes_of(0x180, 1), 0x1000);
  b.load(2 * kMiB, bytes_of(0x40, 2), 0x40);
  return b;
}

std::string load_error(const GuestMemory& mem, std::span<const std::byte> image) {
  auto k = load_kernel(mem, image);
  return k ? "" : k.error().message();
}

TEST(Elf, LoadsSegmentsAndZeroesBss) {
  auto mem = make_memory(4 * kMiB);
  // Stale bytes where the bss goes must be cleared.
  std::vector<std::byte> junk(0x2000, std::byte{0xaa});
  ASSERT_TRUE(mem.write(GuestAddress(kHighMemStart), junk));
  const auto b = two_segments();
  auto k = load_kernel(mem, b.build());
  ASSERT_TRUE(k) << k.error().message();
  EXPECT_EQ(k->protocol, BootProtocol::kLinux64);
  EXPECT_EQ(k->entry, GuestAddress(kHighMemStart + 0x10));
  EXPECT_EQ(k->end, GuestAddress(2 * kMiB + 0x40));
  EXPECT_FALSE(k->header);

  std::vector<std::byte> seg(0x1000);
  ASSERT_TRUE(mem.read(GuestAddress(kHighMemStart), seg));
  const auto& data = b.segments[0].data;
  EXPECT_TRUE(std::equal(data.begin(), data.end(), seg.begin()));
  for (std::size_t i = data.size(); i < seg.size(); ++i) {
    ASSERT_EQ(seg[i], std::byte{0}) << "bss byte " << i;
  }
  EXPECT_EQ(test::read_guest<std::uint8_t>(mem, kHighMemStart + 0x1000), 0xaa);  // past memsz
  std::vector<std::byte> seg2(0x40);
  ASSERT_TRUE(mem.read(GuestAddress(2 * kMiB), seg2));
  EXPECT_EQ(seg2, b.segments[1].data);
}

TEST(Elf, PrefersPvhEntryNote) {
  auto mem = make_memory(4 * kMiB);
  for (bool quad : {true, false}) {
    auto b = two_segments();
    std::vector<std::byte> notes = note("GNU", 3, bytes_of(20, 9));  // a build-id
    auto other = note("Xen", 17, le<std::uint64_t>(0x12345678));     // a different Xen note
    notes.insert(notes.end(), other.begin(), other.end());
    auto pvh = quad ? note("Xen", kXenElfNotePhys32Entry, le<std::uint64_t>(kHighMemStart + 0x40))
                    : note("Xen", kXenElfNotePhys32Entry, le<std::uint32_t>(kHighMemStart + 0x40));
    notes.insert(notes.end(), pvh.begin(), pvh.end());
    b.notes(notes);
    auto k = load_kernel(mem, b.build());
    ASSERT_TRUE(k) << k.error().message();
    EXPECT_EQ(k->protocol, BootProtocol::kPvh);
    EXPECT_EQ(k->entry, GuestAddress(kHighMemStart + 0x40));
  }
}

TEST(Elf, IgnoresPvhTypeUnderAnotherName) {
  auto mem = make_memory(4 * kMiB);
  auto b = two_segments();
  b.notes(note("Xem", kXenElfNotePhys32Entry, le<std::uint64_t>(kHighMemStart + 0x40)));
  auto k = load_kernel(mem, b.build());
  ASSERT_TRUE(k) << k.error().message();
  EXPECT_EQ(k->protocol, BootProtocol::kLinux64);
  EXPECT_EQ(k->entry, GuestAddress(kHighMemStart + 0x10));
}

TEST(Elf, RejectsWrongIdentOrMachine) {
  auto mem = make_memory(4 * kMiB);
  const auto good = two_segments().build();
  auto bad = good;
  put<std::uint8_t>(bad, EI_CLASS, ELFCLASS32);
  EXPECT_NE(load_error(mem, bad).find("64-bit"), std::string::npos);
  bad = good;
  put<std::uint8_t>(bad, EI_DATA, ELFDATA2MSB);
  EXPECT_NE(load_error(mem, bad).find("little-endian"), std::string::npos);
  bad = good;
  put<std::uint16_t>(bad, EH_FIELD(e_machine), EM_386);
  EXPECT_NE(load_error(mem, bad).find("x86_64"), std::string::npos);
  bad = good;
  put<std::uint8_t>(bad, 1, 'F');  // "\x7fFLF"
  EXPECT_EQ(load_error(mem, bad), "not a bzImage or ELF kernel");
}

TEST(Elf, RejectsProgramHeaderTableOutsideFile) {
  auto mem = make_memory(4 * kMiB);
  const auto good = two_segments().build();
  auto bad = good;
  put<std::uint64_t>(bad, EH_FIELD(e_phoff), good.size());
  EXPECT_NE(load_error(mem, bad), "");
  put<std::uint64_t>(bad, EH_FIELD(e_phoff), ~std::uint64_t{0} - 8);  // offset + len wraps
  EXPECT_NE(load_error(mem, bad), "");
  bad = good;
  put<std::uint16_t>(bad, EH_FIELD(e_phnum), 0xfffe);  // a huge table in a small file
  EXPECT_NE(load_error(mem, bad).find("program header table"), std::string::npos);
  put<std::uint16_t>(bad, EH_FIELD(e_phnum), PN_XNUM);
  EXPECT_NE(load_error(mem, bad), "");
  put<std::uint16_t>(bad, EH_FIELD(e_phnum), 0);
  EXPECT_NE(load_error(mem, bad), "");
  bad = good;
  put<std::uint16_t>(bad, EH_FIELD(e_phentsize), sizeof(Elf64_Phdr) - 1);
  EXPECT_NE(load_error(mem, bad), "");
  bad = good;
  put<std::uint16_t>(bad, EH_FIELD(e_phentsize), 0xffff);
  EXPECT_NE(load_error(mem, bad), "");
}

TEST(Elf, RejectsSegmentOutsideFile) {
  auto mem = make_memory(4 * kMiB);
  const auto good = two_segments().build();
  auto bad = good;
  put<std::uint64_t>(bad, PH_FIELD(1, p_offset), good.size() - 0x3f);
  EXPECT_NE(load_error(mem, bad).find("outside the file"), std::string::npos);
  put<std::uint64_t>(bad, PH_FIELD(1, p_offset), ~std::uint64_t{0} - 0x10);
  EXPECT_NE(load_error(mem, bad).find("outside the file"), std::string::npos);
}

TEST(Elf, RejectsFileszLargerThanMemsz) {
  auto mem = make_memory(4 * kMiB);
  auto bad = two_segments().build();
  put<std::uint64_t>(bad, PH_FIELD(1, p_memsz), 0x3f);
  EXPECT_NE(load_error(mem, bad).find("p_filesz"), std::string::npos);
}

TEST(Elf, RejectsSegmentsOutsideRam) {
  auto mem = make_memory({{GuestAddress(0), 4 * kMiB}, {GuestAddress(8 * kMiB), 4 * kMiB}});
  const auto good = two_segments().build();
  for (std::uint64_t paddr : {std::uint64_t{0x8000}, kHighMemStart - 0x20, 4 * kMiB - 0x20,
                              6 * kMiB, 12 * kMiB, ~std::uint64_t{0} - 0x10}) {
    auto bad = good;
    put<std::uint64_t>(bad, PH_FIELD(1, p_paddr), paddr);
    EXPECT_NE(load_error(mem, bad).find("not inside guest RAM"), std::string::npos) << paddr;
  }
  auto ok = good;
  put<std::uint64_t>(ok, PH_FIELD(1, p_paddr), 8 * kMiB);  // in the second region
  EXPECT_EQ(load_error(mem, ok), "");
  put<std::uint64_t>(ok, PH_FIELD(1, p_memsz), ~std::uint64_t{0});
  EXPECT_NE(load_error(mem, ok), "");
}

TEST(Elf, FailureLeavesGuestMemoryUntouched) {
  auto mem = make_memory(4 * kMiB);
  auto bad = two_segments().build();
  put<std::uint64_t>(bad, PH_FIELD(1, p_paddr), 64 * kMiB);
  ASSERT_NE(load_error(mem, bad), "");
  EXPECT_EQ(test::read_guest<std::uint64_t>(mem, kHighMemStart), 0u);
}

TEST(Elf, RejectsEntryOutsideLoadedSegments) {
  auto mem = make_memory(4 * kMiB);
  auto b = two_segments();
  b.entry = 0xffffffff81000000ull;  // a virtual address
  EXPECT_NE(load_error(mem, b.build()).find("entry"), std::string::npos);
  b = two_segments();
  b.notes(note("Xen", kXenElfNotePhys32Entry, le<std::uint32_t>(0x9000)));
  EXPECT_NE(load_error(mem, b.build()).find("PVH entry"), std::string::npos);
}

TEST(Elf, RejectsNoLoadableSegment) {
  auto mem = make_memory(4 * kMiB);
  ElfBuilder b;
  b.notes(note("GNU", 3, bytes_of(20, 9)));
  EXPECT_NE(load_error(mem, b.build()).find("PT_LOAD"), std::string::npos);
}

TEST(Elf, RejectsMalformedNotes) {
  auto mem = make_memory(4 * kMiB);
  auto with_notes = [](std::vector<std::byte> n) {
    auto b = two_segments();
    b.notes(std::move(n));
    return b.build();
  };
  const auto pvh = note("Xen", kXenElfNotePhys32Entry, le<std::uint64_t>(kHighMemStart));
  // Every cut through the note that leaves a whole header is truncated.
  for (std::size_t len = sizeof(Elf64_Nhdr); len < pvh.size(); ++len) {
    std::vector<std::byte> cut(pvh.begin(), pvh.begin() + static_cast<std::ptrdiff_t>(len));
    EXPECT_NE(load_error(mem, with_notes(cut)).find("truncated"), std::string::npos) << len;
  }
  auto huge = pvh;
  put<std::uint32_t>(huge, offsetof(Elf64_Nhdr, n_namesz), 0xffffffff);
  EXPECT_NE(load_error(mem, with_notes(huge)).find("truncated"), std::string::npos);
  huge = pvh;
  put<std::uint32_t>(huge, offsetof(Elf64_Nhdr, n_descsz), 0xfffffffd);
  EXPECT_NE(load_error(mem, with_notes(huge)).find("truncated"), std::string::npos);
  EXPECT_NE(load_error(mem, with_notes(note("Xen", kXenElfNotePhys32Entry, bytes_of(2, 0)))), "");
  EXPECT_NE(load_error(mem, with_notes(note("Xen", kXenElfNotePhys32Entry,
                                            le<std::uint64_t>(0x100000000ull + kHighMemStart)))),
            "");
  // A note segment outside the file.
  auto bad = with_notes(pvh);
  put<std::uint64_t>(bad, PH_FIELD(2, p_offset), bad.size() - 4);
  EXPECT_NE(load_error(mem, bad).find("outside the file"), std::string::npos);
}

TEST(Elf, EveryTruncationFailsCleanly) {
  auto mem = make_memory(4 * kMiB);
  auto b = two_segments();
  b.notes(note("Xen", kXenElfNotePhys32Entry, le<std::uint64_t>(kHighMemStart)));
  const auto image = b.build();
  for (std::size_t size = 0; size < image.size(); ++size) {
    std::span<const std::byte> cut(image.data(), size);
    EXPECT_FALSE(load_kernel(mem, cut)) << size;
  }
  EXPECT_TRUE(load_kernel(mem, image));
}

}  // namespace
}  // namespace hvz::x86_64
