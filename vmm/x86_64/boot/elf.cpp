// ELF64 vmlinux loading (see elf.hpp).
#include "vmm/x86_64/boot/elf.hpp"

#include <elf.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "vmm/core/format.hpp"
#include "vmm/x86_64/layout.hpp"

namespace hvz::x86_64 {
namespace {

// [offset, offset + len) lies inside a file of `size` bytes (no overflow).
bool in_file(std::uint64_t size, std::uint64_t offset, std::uint64_t len) {
  return offset <= size && len <= size - offset;
}

template <typename T>
T read_at(std::span<const std::byte> image, std::uint64_t offset) {
  // Callers have checked in_file(image.size(), offset, sizeof(T)).
  T value;
  std::memcpy(&value, image.data() + offset, sizeof value);
  return value;
}

std::uint64_t align4(std::uint64_t v) {
  return (v + 3) & ~std::uint64_t{3};
}

// Walks the notes in [offset, offset + len) of the file (already known to be
// inside it) and returns the PVH entry, if any.
Expected<std::optional<std::uint64_t>> find_pvh_entry(std::span<const std::byte> image,
                                                      std::uint64_t offset, std::uint64_t len) {
  static constexpr char kXenName[4] = {'X', 'e', 'n', '\0'};
  std::optional<std::uint64_t> entry;
  const auto notes = image.subspan(offset, len);
  std::uint64_t pos = 0;
  // Every step advances by at least sizeof(Elf64_Nhdr), so the walk ends.
  while (notes.size() - pos >= sizeof(Elf64_Nhdr)) {
    const auto nhdr = read_at<Elf64_Nhdr>(notes, pos);
    const std::uint64_t name_at = pos + sizeof(Elf64_Nhdr);
    // namesz and descsz are 32-bit, so these sums cannot overflow 64 bits.
    const std::uint64_t desc_at = name_at + align4(nhdr.n_namesz);
    const std::uint64_t next = desc_at + align4(nhdr.n_descsz);
    if (next > notes.size()) {
      return make_error(Errc::kInvalidArgument,
                        "ELF note at file offset " + hex(offset + pos) + " is truncated");
    }
    if (nhdr.n_type == kXenElfNotePhys32Entry && nhdr.n_namesz == sizeof kXenName &&
        std::memcmp(notes.data() + name_at, kXenName, sizeof kXenName) == 0) {
      // Linux stores the 32-bit physical entry as a .quad on x86_64; others
      // use 4 bytes. Either way it must fit 32 bits (it is entered in
      // 32-bit protected mode).
      std::uint64_t value;
      if (nhdr.n_descsz == sizeof(std::uint32_t)) {
        value = read_at<std::uint32_t>(notes, desc_at);
      } else if (nhdr.n_descsz == sizeof(std::uint64_t)) {
        value = read_at<std::uint64_t>(notes, desc_at);
      } else {
        return make_error(Errc::kInvalidArgument, "ELF PVH entry note has a " +
                                                      std::to_string(nhdr.n_descsz) +
                                                      "-byte descriptor (want 4 or 8)");
      }
      if (value > 0xffffffffu) {
        return make_error(Errc::kInvalidArgument,
                          "ELF PVH entry " + hex(value) + " is above 4 GiB");
      }
      entry = value;
    }
    pos = next;
  }
  return entry;
}

}  // namespace

bool looks_like_elf(std::span<const std::byte> image) {
  return image.size() >= SELFMAG && std::memcmp(image.data(), ELFMAG, SELFMAG) == 0;
}

Expected<LoadedElf> load_elf(const GuestMemory& mem, std::span<const std::byte> image) {
  const std::uint64_t file_size = image.size();
  if (!looks_like_elf(image)) return make_error(Errc::kInvalidArgument, "not an ELF file");
  if (!in_file(file_size, 0, sizeof(Elf64_Ehdr))) {
    return make_error(Errc::kInvalidArgument, "ELF kernel truncated: no complete ELF header");
  }
  const auto ehdr = read_at<Elf64_Ehdr>(image, 0);
  if (ehdr.e_ident[EI_CLASS] != ELFCLASS64) {
    return make_error(Errc::kUnsupported, "ELF kernel is not 64-bit (ELFCLASS64)");
  }
  if (ehdr.e_ident[EI_DATA] != ELFDATA2LSB) {
    return make_error(Errc::kUnsupported, "ELF kernel is not little-endian");
  }
  if (ehdr.e_machine != EM_X86_64) {
    return make_error(Errc::kUnsupported, "ELF kernel is for machine " +
                                              std::to_string(ehdr.e_machine) + ", not x86_64");
  }
  if (ehdr.e_phnum == 0 || ehdr.e_phnum == PN_XNUM) {
    return make_error(Errc::kInvalidArgument,
                      "ELF kernel has no (or an extended) program header count");
  }
  if (ehdr.e_phentsize < sizeof(Elf64_Phdr)) {
    return make_error(
        Errc::kInvalidArgument,
        "ELF program header entry size " + std::to_string(ehdr.e_phentsize) + " is too small");
  }
  // e_phentsize and e_phnum are 16-bit: the product fits easily in 64 bits.
  const std::uint64_t table_len = std::uint64_t{ehdr.e_phentsize} * ehdr.e_phnum;
  if (!in_file(file_size, ehdr.e_phoff, table_len)) {
    return make_error(Errc::kInvalidArgument, "ELF program header table [" + hex(ehdr.e_phoff) +
                                                  ", +" + hex(table_len) + ") lies outside the " +
                                                  hex(file_size) + "-byte file");
  }

  // Validate every header before writing anything, so a bad image leaves
  // guest memory untouched.
  std::vector<Elf64_Phdr> loads;
  std::optional<std::uint64_t> pvh_entry;
  for (std::uint64_t i = 0; i < ehdr.e_phnum; ++i) {
    const auto ph = read_at<Elf64_Phdr>(image, ehdr.e_phoff + i * ehdr.e_phentsize);
    const std::string what = "ELF segment " + std::to_string(i);
    if (ph.p_type == PT_NOTE) {
      if (!in_file(file_size, ph.p_offset, ph.p_filesz)) {
        return make_error(Errc::kInvalidArgument, what + " (notes) lies outside the file");
      }
      auto e = find_pvh_entry(image, ph.p_offset, ph.p_filesz);
      if (!e) return tl::unexpected(e.error());
      if (*e) pvh_entry = *e;
      continue;
    }
    if (ph.p_type != PT_LOAD) continue;
    if (!in_file(file_size, ph.p_offset, ph.p_filesz)) {
      return make_error(Errc::kInvalidArgument, what + " [" + hex(ph.p_offset) + ", +" +
                                                    hex(ph.p_filesz) + ") lies outside the file");
    }
    if (ph.p_filesz > ph.p_memsz) {
      return make_error(Errc::kInvalidArgument, what + " has p_filesz " + hex(ph.p_filesz) +
                                                    " > p_memsz " + hex(ph.p_memsz));
    }
    if (ph.p_memsz == 0) continue;
    if (ph.p_paddr < kHighMemStart || !mem.contains(GuestAddress(ph.p_paddr), ph.p_memsz)) {
      return make_error(Errc::kOutOfRange, what + " [" + hex(ph.p_paddr) + ", +" + hex(ph.p_memsz) +
                                               ") is not inside guest RAM above 1 MiB");
    }
    loads.push_back(ph);
  }
  if (loads.empty()) return make_error(Errc::kInvalidArgument, "ELF kernel has no PT_LOAD segment");

  std::uint64_t lowest = ~std::uint64_t{0};
  std::uint64_t end = 0;
  for (const auto& ph : loads) {
    lowest = std::min(lowest, ph.p_paddr);
    end = std::max(end, ph.p_paddr + ph.p_memsz);  // contains() ruled out wrap
  }
  const std::uint64_t entry = pvh_entry.value_or(ehdr.e_entry);
  if (entry < lowest || entry >= end || !mem.contains(GuestAddress(entry), 1)) {
    return make_error(Errc::kInvalidArgument,
                      std::string(pvh_entry ? "ELF PVH entry " : "ELF entry ") + hex(entry) +
                          " lies outside the loaded segments");
  }

  for (const auto& ph : loads) {
    auto dst = mem.get_slice(GuestAddress(ph.p_paddr), ph.p_memsz);
    if (!dst) return tl::unexpected(dst.error());
    const auto src = image.subspan(ph.p_offset, ph.p_filesz);
    std::copy(src.begin(), src.end(), dst->begin());
    std::fill(dst->begin() + static_cast<std::ptrdiff_t>(ph.p_filesz), dst->end(), std::byte{0});
  }
  return LoadedElf{GuestAddress(entry), pvh_entry.has_value(), GuestAddress(end)};
}

}  // namespace hvz::x86_64
