// The ACPI tables of an hvz microVM: RSDP → XSDT → {FADT → DSDT, MADT},
// hardware-reduced like Firecracker and Cloud Hypervisor. The FADT points
// the guest at the sleep control/status and reset ports, the MADT lists one
// local APIC per vCPU and the IOAPIC, and the DSDT describes COM1, each
// virtio-mmio window and \_S5_ so Linux can power off.
#pragma once

#include <cstdint>
#include <vector>

#include "vmm/core/error.hpp"
#include "vmm/core/guest_memory.hpp"

namespace hvz::x86_64::acpi {

struct VirtioMmioInfo {
  std::uint64_t base;
  std::uint64_t size;
  std::uint32_t gsi;
};

struct AcpiConfig {
  std::uint32_t num_vcpus;
  std::vector<VirtioMmioInfo> virtio_devices;
};

// MADT type-0 entries carry 8-bit APIC ids and 0xff is the xAPIC broadcast
// id, so vCPUs are 0..254.
inline constexpr std::uint32_t kMaxVcpus = 255;
// Virtio devices are named V000..VFFF in the DSDT.
inline constexpr std::size_t kMaxVirtioDevices = 0x1000;

// One table and the guest physical address it goes to.
struct AcpiTable {
  std::uint64_t address;
  std::vector<std::uint8_t> bytes;
};

struct AcpiTables {
  AcpiTable rsdp;
  AcpiTable xsdt;
  AcpiTable fadt;
  AcpiTable madt;
  AcpiTable dsdt;
};

// Builds every table with its final address and checksum. Fails on a vCPU
// count outside 1..kMaxVcpus, a virtio window not inside 32-bit space, or
// tables that do not fit in [kAcpiTablesStart, kAcpiTablesEnd).
Expected<AcpiTables> build_acpi_tables(const AcpiConfig& config);

// Builds the tables and writes them to guest memory: the RSDP at
// kRsdpStart, the rest from kAcpiTablesStart.
Expected<void> write_acpi_tables(const GuestMemory& mem, const AcpiConfig& config);

}  // namespace hvz::x86_64::acpi
