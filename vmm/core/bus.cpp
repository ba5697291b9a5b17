// Bus range bookkeeping and dispatch (see bus.hpp).
#include "vmm/core/bus.hpp"

#include <algorithm>
#include <mutex>

namespace hvz {

Expected<void> Bus::insert(std::shared_ptr<BusDevice> device, std::uint64_t base,
                           std::uint64_t len) {
  if (!device) return make_error(Errc::kInvalidArgument, "bus insert: no device");
  if (len == 0) return make_error(Errc::kInvalidArgument, "bus insert: zero-length range");
  if (base + len - 1 < base) {
    return make_error(Errc::kInvalidArgument, "bus insert: range wraps around the address space");
  }
  const std::uint64_t last = base + len - 1;
  std::unique_lock lock(mutex_);
  auto it = std::lower_bound(ranges_.begin(), ranges_.end(), base,
                             [](const Range& r, std::uint64_t b) { return r.base < b; });
  // The new range must end before the next one and start after the previous.
  if (it != ranges_.end() && it->base <= last) {
    return make_error(Errc::kBusy, "bus insert: range overlaps an existing device");
  }
  if (it != ranges_.begin()) {
    const Range& prev = *std::prev(it);
    if (prev.base + prev.len - 1 >= base) {
      return make_error(Errc::kBusy, "bus insert: range overlaps an existing device");
    }
  }
  ranges_.insert(it, Range{base, len, std::move(device)});
  return {};
}

Expected<void> Bus::remove(std::uint64_t base) {
  std::unique_lock lock(mutex_);
  auto it = std::find_if(ranges_.begin(), ranges_.end(),
                         [base](const Range& r) { return r.base == base; });
  if (it == ranges_.end()) return make_error(Errc::kInvalidArgument, "bus remove: no such range");
  ranges_.erase(it);
  return {};
}

std::shared_ptr<BusDevice> Bus::resolve(std::uint64_t addr, std::uint64_t size,
                                        std::uint64_t* offset) const {
  if (size == 0) return nullptr;
  std::shared_lock lock(mutex_);
  auto it = std::upper_bound(ranges_.begin(), ranges_.end(), addr,
                             [](std::uint64_t a, const Range& r) { return a < r.base; });
  if (it == ranges_.begin()) return nullptr;
  const Range& r = *std::prev(it);
  const std::uint64_t off = addr - r.base;
  if (off >= r.len || size > r.len - off) return nullptr;  // unmapped or straddling
  *offset = off;
  return r.device;
}

bool Bus::read(std::uint64_t addr, std::span<std::uint8_t> data) const {
  std::uint64_t offset = 0;
  auto device = resolve(addr, data.size(), &offset);
  if (!device) {
    std::fill(data.begin(), data.end(), std::uint8_t{0xff});
    return false;
  }
  device->read(offset, data);
  return true;
}

bool Bus::write(std::uint64_t addr, std::span<const std::uint8_t> data) const {
  std::uint64_t offset = 0;
  auto device = resolve(addr, data.size(), &offset);
  if (!device) return false;
  device->write(offset, data);
  return true;
}

}  // namespace hvz
