// ELF64 vmlinux loading: PT_LOAD segments copied to their physical addresses,
// and the PVH entry point found in the Xen ELF notes. The image is untrusted:
// headers, segments and notes are bounds-checked against the file and guest
// RAM.
#pragma once

#include <cstddef>
#include <span>

#include "vmm/core/guest_memory.hpp"

namespace hvz::x86_64 {

inline constexpr std::uint32_t kXenElfNotePhys32Entry = 18;  // XEN_ELFNOTE_PHYS32_ENTRY

struct LoadedElf {
  GuestAddress entry;  // the PVH entry when has_pvh_entry, else e_entry
  bool has_pvh_entry;
  GuestAddress end;  // first byte past the highest loaded segment (p_paddr + p_memsz)
};

// True when the image starts with the ELF magic.
bool looks_like_elf(std::span<const std::byte> image);

// Loads every PT_LOAD segment (at p_paddr, not below kHighMemStart) and looks
// for the PVH entry note.
Expected<LoadedElf> load_elf(const GuestMemory& mem, std::span<const std::byte> image);

}  // namespace hvz::x86_64
