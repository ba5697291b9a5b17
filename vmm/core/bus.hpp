// Bus and BusDevice: dispatch of port-I/O or MMIO accesses to devices by
// address range. One Bus for PIO, one for MMIO. Ranges never overlap; an
// access to an unmapped range, or one straddling a range's end, reaches no
// device (reads see 0xff).
#pragma once

#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <span>
#include <vector>

#include "vmm/core/error.hpp"

namespace hvz {

class BusDevice {
 public:
  virtual ~BusDevice() = default;
  // `offset` is relative to the base the device was inserted at.
  virtual void read(std::uint64_t offset, std::span<std::uint8_t> data) = 0;
  virtual void write(std::uint64_t offset, std::span<const std::uint8_t> data) = 0;
};

class Bus {
 public:
  // Maps [base, base + len) to `device`. Fails on len 0, on a range that
  // wraps past 2^64 or overlaps one already mapped.
  Expected<void> insert(std::shared_ptr<BusDevice> device, std::uint64_t base, std::uint64_t len);
  Expected<void> remove(std::uint64_t base);

  // Both return false when no device covers the whole access; read() then
  // fills `data` with 0xff.
  bool read(std::uint64_t addr, std::span<std::uint8_t> data) const;
  bool write(std::uint64_t addr, std::span<const std::uint8_t> data) const;

 private:
  struct Range {
    std::uint64_t base;
    std::uint64_t len;
    std::shared_ptr<BusDevice> device;
  };
  // The device covering all of [addr, addr + size), with the offset in it.
  std::shared_ptr<BusDevice> resolve(std::uint64_t addr, std::uint64_t size,
                                     std::uint64_t* offset) const;

  mutable std::shared_mutex mutex_;
  std::vector<Range> ranges_;  // sorted by base, disjoint
};

}  // namespace hvz
