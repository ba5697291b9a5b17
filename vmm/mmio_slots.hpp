// MmioSlots: where each virtio-mmio device goes — the next window of the
// MMIO range and the next GSI, in the order devices are added — and the
// limit the IOAPIC's pins set. The device manager's allocation, kept apart
// from KVM so it is tested on its own; the ACPI tables and the kernel
// command line describe the same slots.
#pragma once

#include <cstdint>
#include <string>

#include "vmm/core/error.hpp"

namespace hvz::vmm {

struct MmioSlot {
  std::uint64_t base;
  std::uint64_t size;
  std::uint32_t gsi;
};

class MmioSlots {
 public:
  // Windows of `window_size` from `base`; GSIs from `first_gsi` up to
  // (excluding) `pins`.
  MmioSlots(std::uint64_t base, std::uint64_t window_size, std::uint32_t first_gsi,
            std::uint32_t pins)
      : base_(base), window_size_(window_size), first_gsi_(first_gsi), pins_(pins) {}

  // The next slot, or an error once every pin is taken (nothing is taken
  // then).
  Expected<MmioSlot> take() {
    const std::uint64_t gsi = std::uint64_t{first_gsi_} + used_;
    if (gsi >= pins_) {
      return make_error(Errc::kInvalidArgument, "too many virtio devices for the IOAPIC's pins");
    }
    const MmioSlot slot{base_ + used_ * window_size_, window_size_,
                        static_cast<std::uint32_t>(gsi)};
    ++used_;
    return slot;
  }
  std::uint32_t used() const { return used_; }

 private:
  std::uint64_t base_;
  std::uint64_t window_size_;
  std::uint32_t first_gsi_;
  std::uint32_t pins_;
  std::uint32_t used_ = 0;
};

}  // namespace hvz::vmm
