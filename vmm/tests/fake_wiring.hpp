// FakeWiring: a DeviceWiring that records what KVM would have been asked
// (interrupt lines by GSI, ioeventfds) and fails on demand, for tests of
// the device manager and of what builds on it.
#pragma once

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "devices/tests/test_irq_line.hpp"
#include "vmm/device_manager.hpp"

namespace hvz::vmm::testing {

using devices::testing::CountingIrqLine;

struct Ioeventfd {
  int fd;
  std::uint64_t addr;
  std::uint32_t len;
  std::uint64_t datamatch;
};

class FakeWiring : public DeviceWiring {
 public:
  Expected<std::shared_ptr<IrqLine>> irq_line(std::uint32_t gsi) override {
    if (fail_irq_line) return make_error(Errc::kSystem, "fake irqfd", EBUSY);
    auto line = std::make_shared<CountingIrqLine>();
    lines.emplace_back(gsi, line);
    return line;
  }
  Expected<void> register_ioeventfd(int fd, std::uint64_t addr, std::uint32_t len,
                                    std::uint64_t datamatch) override {
    if (ioeventfd_budget && ioeventfds.size() >= *ioeventfd_budget) {
      return make_error(Errc::kSystem, "fake ioeventfd", EEXIST);
    }
    ioeventfds.push_back({fd, addr, len, datamatch});
    return {};
  }
  std::vector<std::uint32_t> gsis() const {
    std::vector<std::uint32_t> out;
    for (const auto& [gsi, line] : lines) out.push_back(gsi);
    return out;
  }

  bool fail_irq_line = false;
  // Registrations that succeed before the next one fails (nullopt: all).
  std::optional<std::size_t> ioeventfd_budget;
  std::vector<std::pair<std::uint32_t, std::shared_ptr<CountingIrqLine>>> lines;
  std::vector<Ioeventfd> ioeventfds;
};

}  // namespace hvz::vmm::testing
