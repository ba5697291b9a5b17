// Fuzz harness for the x86_64 kernel and initrd loaders
// (vmm/x86_64/boot/): a kernel image from the input goes through
// parse_bzimage and load_kernel (bzImage or ELF with the PVH note), the
// initrd through load_initrd with the limit the image's header gives, and
// the boot data through configure_linux_boot / configure_pvh_boot, into a
// small guest memory (1-8 MiB, sometimes two regions). Besides crashes it
// checks what the loaders promise: everything they place lies in guest RAM
// where the boot protocol says, and the initrd sits page-aligned between
// the kernel's end and its limit.
//
// Input: u8 config (bit 0 a second RAM region, bit 1 an initrd, bit 2 an
// explicit initrd limit), u16 first region size in 64 KiB units past 1 MiB,
// [u16 gap and u16 size in 64 KiB units of the second region], a u16-sized
// command line, [a u16-sized initrd], [u64 initrd limit], then the kernel
// image (the rest of the input).
#include <asm/bootparam.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string_view>
#include <vector>

#include "vmm/core/fuzz/fuzz_input.hpp"
#include "vmm/core/guest_memory.hpp"
#include "vmm/x86_64/boot/boot_params.hpp"
#include "vmm/x86_64/boot/bzimage.hpp"
#include "vmm/x86_64/boot/initrd.hpp"
#include "vmm/x86_64/boot/kernel_loader.hpp"
#include "vmm/x86_64/layout.hpp"

namespace {

using namespace hvz;
using namespace hvz::x86_64;
using hvz::fuzz::FuzzInput;

constexpr std::uint64_t kUnit = 64 * 1024;
constexpr std::uint64_t kMaxFirstUnits = 7 * 16;  // up to 8 MiB
constexpr std::uint64_t kMaxSecondUnits = 16;     // up to 1 MiB

void check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "hvz fuzz: invariant broken: %s\n", what);
  std::abort();
}

std::uint64_t ram_end(const GuestMemory& mem) {
  const auto& last = mem.regions().back();
  return last.start.value() + last.size();
}

void check_initrd(const GuestMemory& mem, std::span<const std::uint8_t> initrd, GuestAddress at,
                  GuestAddress kernel_end, std::uint64_t max_addr) {
  const std::uint64_t a = at.value();
  check(a % kInitrdAlign == 0, "initrd not page-aligned");
  check(a >= kernel_end.value() && a >= kHighMemStart, "initrd below the kernel's end or 1 MiB");
  check(initrd.size() - 1 <= max_addr && a <= max_addr - (initrd.size() - 1),
        "initrd ends past its limit");
  check(mem.contains(at, initrd.size()), "initrd outside guest RAM");
  std::vector<std::uint8_t> copy(initrd.size());
  check(mem.read(at, std::as_writable_bytes(std::span(copy))).has_value() &&
            std::memcmp(copy.data(), initrd.data(), copy.size()) == 0,
        "initrd bytes differ from the input");
}

void check_cmdline(const GuestMemory& mem, std::string_view cmdline) {
  std::vector<char> copy(cmdline.size() + 1);
  check(mem.read(GuestAddress(kCmdlineStart), std::as_writable_bytes(std::span(copy))).has_value(),
        "command line unreadable");
  check(
      std::memcmp(copy.data(), cmdline.data(), cmdline.size()) == 0 && copy[cmdline.size()] == '\0',
      "command line in guest memory differs from the input");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  hvz::fuzz::quiet_logs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzInput in(data, size);
  const std::uint8_t cfg = in.u8();
  std::vector<MemoryRange> ranges;
  const std::uint64_t first = kHighMemStart + (in.u16() % (kMaxFirstUnits + 1)) * kUnit;
  ranges.push_back({GuestAddress(0), first});
  if (cfg & 1) {
    const std::uint64_t gap = (in.u16() % 64) * kUnit;
    const std::uint64_t second = (1 + in.u16() % kMaxSecondUnits) * kUnit;
    ranges.push_back({GuestAddress(first + gap), second});
  }
  const std::string cmdline = in.sized_string(kCmdlineMax + 16);
  std::span<const std::uint8_t> initrd;
  if (cfg & 2) initrd = in.sized_bytes(kUnit);
  std::optional<std::uint64_t> limit;
  if (cfg & 4) limit = in.u64();
  const auto image = std::as_bytes(in.rest());

  auto mem_or = GuestMemory::create(ranges);
  check(mem_or.has_value(), "GuestMemory::create");
  const GuestMemory& mem = *mem_or;

  // The bzImage parser on any input (load_kernel only calls it for images
  // that carry the boot flag).
  if (auto bz = parse_bzimage(image)) {
    check(bz->protected_mode.data() >= image.data() &&
              bz->protected_mode.data() + bz->protected_mode.size() == image.data() + image.size(),
          "protected-mode kernel is not the tail of the image");
    check(!bz->protected_mode.empty(), "empty protected-mode kernel accepted");
  }

  auto kernel = load_kernel(mem, image);
  if (!kernel) return 0;
  check(mem.contains(kernel->entry, 1), "kernel entry outside guest RAM");
  check(kernel->entry < kernel->end && kernel->end.value() <= ram_end(mem),
        "kernel end before its entry or past guest RAM");
  if (kernel->protocol == BootProtocol::kPvh) {
    check(kernel->entry.value() <= 0xffffffffu, "PVH entry above 4 GiB");
  }

  std::optional<MemoryRange> initrd_range;
  if (!initrd.empty()) {
    const std::uint64_t max_addr = limit.value_or(
        kernel->header ? std::uint64_t{kernel->header->initrd_addr_max} : kPvhInitrdAddrMax);
    auto at = load_initrd(mem, std::as_bytes(initrd), kernel->end, max_addr);
    if (at) {
      check_initrd(mem, initrd, *at, kernel->end, max_addr);
      initrd_range = MemoryRange{*at, initrd.size()};
    }
  }

  if (kernel->protocol == BootProtocol::kLinux64) {
    if (!configure_linux_boot(mem, *kernel, cmdline, initrd_range)) return 0;
    auto params = mem.read_obj<boot_params>(GuestAddress(kZeroPage));
    check(params.has_value(), "zero page unreadable");
    check(params->hdr.cmd_line_ptr == kCmdlineStart && params->ext_cmd_line_ptr == 0,
          "zero page command line pointer");
    check(params->e820_entries <= E820_MAX_ENTRIES_ZEROPAGE, "too many e820 entries");
    if (initrd_range) {
      check(params->hdr.ramdisk_image == initrd_range->start.value() &&
                params->hdr.ramdisk_size == initrd_range->size,
            "zero page initrd fields");
    }
  } else {
    if (!configure_pvh_boot(mem, cmdline, initrd_range)) return 0;
  }
  check_cmdline(mem, cmdline);
  return 0;
}
