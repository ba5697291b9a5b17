// load_kernel: loader choice by image magic (see kernel_loader.hpp).
#include "vmm/x86_64/boot/kernel_loader.hpp"

#include "vmm/x86_64/boot/bzimage.hpp"
#include "vmm/x86_64/boot/elf.hpp"

namespace hvz::x86_64 {

Expected<LoadedKernel> load_kernel(const GuestMemory& mem, std::span<const std::byte> image) {
  if (looks_like_elf(image)) {
    auto elf = load_elf(mem, image);
    if (!elf) return tl::unexpected(elf.error());
    return LoadedKernel{elf->entry,
                        elf->has_pvh_entry ? BootProtocol::kPvh : BootProtocol::kLinux64, elf->end,
                        std::nullopt};
  }
  if (looks_like_bzimage(image)) {
    auto bz = load_bzimage(mem, image);
    if (!bz) return tl::unexpected(bz.error());
    return LoadedKernel{bz->entry, BootProtocol::kLinux64, bz->end, bz->header};
  }
  return make_error(Errc::kInvalidArgument, "not a bzImage or ELF kernel");
}

}  // namespace hvz::x86_64
