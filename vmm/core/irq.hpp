// IrqLine: how a device raises its interrupt. Devices never call KVM; the
// VMM wires each line to an irqfd (or, in tests, to a counter).
#pragma once

#include "vmm/core/error.hpp"

namespace hvz {

class IrqLine {
 public:
  virtual ~IrqLine() = default;
  // Signals an edge on the line.
  virtual Expected<void> trigger() = 0;
};

}  // namespace hvz
