// RealModeVm: the smallest real KVM machine — one vCPU in 16-bit real mode,
// 64 KiB of RAM at guest address 0, code loaded at 0x1000 — with its port
// I/O dispatched to a Bus. Used by the KVM smoke tests and the hello demo
// until the monitor boots Linux.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "vmm/core/bus.hpp"
#include "vmm/core/error.hpp"
#include "vmm/core/kvm.hpp"
#include "vmm/core/mmap_region.hpp"

namespace hvz::testing {

struct Exit {
  std::uint32_t reason;
  std::uint64_t address;  // port or guest physical address
  bool write;
};

struct RunResult {
  std::vector<Exit> exits;  // every exit, in order, the final HLT included
  std::uint64_t rip;        // after the last exit
};

class RealModeVm {
 public:
  static constexpr std::uint64_t kMemorySize = 0x10000;
  static constexpr std::uint64_t kLoadAddress = 0x1000;

  static Expected<RealModeVm> create(std::span<const std::uint8_t> code);

  // Runs until HLT, any exit other than PIO, or `max_exits` exits. PIO
  // exits go to `pio`; an MMIO exit stops the run (nothing is mapped there).
  Expected<RunResult> run(const Bus& pio, std::size_t max_exits);

 private:
  RealModeVm(Kvm kvm, VmFd vm, MmapRegion memory, VcpuFd vcpu)
      : kvm_(std::move(kvm)),
        vm_(std::move(vm)),
        memory_(std::move(memory)),
        vcpu_(std::move(vcpu)) {}
  Kvm kvm_;
  VmFd vm_;
  MmapRegion memory_;
  VcpuFd vcpu_;
};

}  // namespace hvz::testing
