// Test doubles for IrqLine: one that counts edges, one that always fails.
#pragma once

#include <atomic>
#include <cstdint>

#include "vmm/core/error.hpp"
#include "vmm/core/irq.hpp"

namespace hvz::devices::testing {

class CountingIrqLine : public IrqLine {
 public:
  Expected<void> trigger() override {
    ++count_;
    return {};
  }
  // Edges since the last take().
  std::uint64_t take() { return count_.exchange(0); }
  std::uint64_t count() const { return count_.load(); }

 private:
  std::atomic<std::uint64_t> count_{0};
};

class FailingIrqLine : public IrqLine {
 public:
  Expected<void> trigger() override {
    ++attempts;
    return make_error(Errc::kSystem, "test irq", 5);
  }
  std::atomic<int> attempts{0};
};

}  // namespace hvz::devices::testing
