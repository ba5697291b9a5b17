// Builds the RSDP, XSDT, FADT, MADT and DSDT and writes them to guest memory.
#include "vmm/x86_64/acpi/tables.hpp"

#include <array>
#include <span>
#include <string>
#include <string_view>

#include "vmm/core/format.hpp"
#include "vmm/core/le.hpp"
#include "vmm/x86_64/acpi/aml.hpp"
#include "vmm/x86_64/layout.hpp"

namespace hvz::x86_64::acpi {
namespace {

using Bytes = std::vector<std::uint8_t>;

constexpr std::string_view kOemId = "HVZ   ";         // 6 bytes
constexpr std::string_view kOemTableId = "HVZ-MVM ";  // 8 bytes
constexpr std::uint32_t kOemRevision = 1;
constexpr std::string_view kCreatorId = "HVZ ";  // 4 bytes
constexpr std::uint32_t kCreatorRevision = 1;
// The FADT's Hypervisor Vendor Identity: "HVZ" and zero padding.
constexpr std::array<std::uint8_t, 8> kHypervisorVendorId = {'H', 'V', 'Z', 0, 0, 0, 0, 0};

constexpr std::size_t kHeaderSize = 36;
constexpr std::size_t kRsdpSize = 36;
constexpr std::size_t kFadtSize = 276;  // revision 6 (ACPI 6.5)
constexpr std::size_t kTableAlign = 16;
constexpr std::uint16_t kCom1PortCount = 8;  // the 16550A's eight registers

static_assert(kRsdpStart + kRsdpSize <= kAcpiTablesStart, "RSDP overlaps the ACPI tables");
static_assert(kAcpiTablesEnd <= 0x100000000, "ACPI tables must sit in 32-bit space");
static_assert(kLapicAddress <= 0xffffffff && kIoapicAddress <= 0xffffffff);

// FADT Flags (ACPI 6.5 §5.2.9, Table 5.10).
constexpr std::uint32_t kFadtPwrButton = 1u << 4;     // no fixed-feature power button
constexpr std::uint32_t kFadtSlpButton = 1u << 5;     // no fixed-feature sleep button
constexpr std::uint32_t kFadtResetRegSup = 1u << 10;  // RESET_REG is implemented
constexpr std::uint32_t kFadtHwReducedAcpi = 1u << 20;

// IA-PC Boot Architecture Flags (ACPI 6.5 §5.2.9.3), as Firecracker sets
// them: no VGA to probe, no MSI (there is no PCI: virtio is on MMIO with
// IOAPIC pins), and OSPM must not touch PCIe ASPM. The 8042 bit stays clear
// as in Firecracker, so Linux skips probing the PS/2 controller (ours only
// exists for the keyboard-controller reset) and boots faster. CMOS RTC
// Not Present (bit 5) stays clear: we emulate the RTC at kCmosPort.
constexpr std::uint16_t kIapcVgaNotPresent = 1u << 2;
constexpr std::uint16_t kIapcMsiNotSupported = 1u << 3;
constexpr std::uint16_t kIapcPcieAspmControls = 1u << 4;

// Generic Address Structure address space ids and access sizes.
constexpr std::uint8_t kGasSystemIo = 1;
constexpr std::uint8_t kGasAccessByte = 1;

// MADT structure types and flags.
constexpr std::uint8_t kMadtLocalApic = 0;
constexpr std::uint8_t kMadtIoApic = 1;
constexpr std::uint32_t kMadtLapicEnabled = 1;
// Firecracker's choice: KVM's in-kernel IOAPIC resets its ID register to 0,
// and Linux only keeps IOAPIC ids unique among IOAPICs, so 0 is right.
constexpr std::uint8_t kIoapicId = 0;

void put_str(Bytes& b, std::size_t offset, std::string_view s) {
  for (std::size_t i = 0; i < s.size(); ++i) b[offset + i] = static_cast<std::uint8_t>(s[i]);
}

// The byte that makes the sum of `data` (with that byte in place of 0) zero.
std::uint8_t checksum(std::span<const std::uint8_t> data) {
  std::uint8_t sum = 0;
  for (auto v : data) sum = static_cast<std::uint8_t>(sum + v);
  return static_cast<std::uint8_t>(0x100 - sum);
}

// A zeroed table of `size` bytes with its System Description Table header;
// finish() fills the checksum once the body is written.
Bytes new_table(std::string_view signature, std::uint8_t revision, std::size_t size) {
  Bytes t(size, 0);
  put_str(t, 0, signature);
  put_le(t, 4, size, 4);
  t[8] = revision;
  put_str(t, 10, kOemId);
  put_str(t, 16, kOemTableId);
  put_le(t, 24, kOemRevision, 4);
  put_str(t, 28, kCreatorId);
  put_le(t, 32, kCreatorRevision, 4);
  return t;
}

void finish(Bytes& t) {
  t[9] = 0;
  t[9] = checksum(t);
}

// A Generic Address Structure for a 1-byte SystemIO register.
void put_io_gas(Bytes& b, std::size_t offset, std::uint16_t port) {
  b[offset] = kGasSystemIo;
  b[offset + 1] = 8;  // register bit width
  b[offset + 2] = 0;  // bit offset
  b[offset + 3] = kGasAccessByte;
  put_le(b, offset + 4, port, 8);
}

Bytes build_rsdp(std::uint64_t xsdt_address) {
  Bytes r(kRsdpSize, 0);
  put_str(r, 0, "RSD PTR ");
  put_str(r, 9, kOemId);
  r[15] = 2;            // revision 2: ACPI 2.0+, XSDT
  put_le(r, 16, 0, 4);  // RsdtAddress: no RSDT, the XSDT is enough
  put_le(r, 20, kRsdpSize, 4);
  put_le(r, 24, xsdt_address, 8);
  r[8] = checksum(std::span(r).first(20));  // ACPI 1.0 part
  r[32] = checksum(r);                      // whole structure
  return r;
}

Bytes build_xsdt(const std::vector<std::uint64_t>& entries) {
  Bytes t = new_table("XSDT", 1, kHeaderSize + 8 * entries.size());
  for (std::size_t i = 0; i < entries.size(); ++i) put_le(t, kHeaderSize + 8 * i, entries[i], 8);
  finish(t);
  return t;
}

Bytes build_fadt(std::uint64_t dsdt_address) {
  Bytes t = new_table("FACP", 6, kFadtSize);
  // Everything from SCI_INT to CENTURY is ignored on hardware-reduced
  // platforms, and FIRMWARE_CTRL may be 0 there (no FACS), so those stay 0.
  put_le(t, 109, kIapcVgaNotPresent | kIapcMsiNotSupported | kIapcPcieAspmControls, 2);
  // No power/sleep button devices, as in Firecracker; RESET_REG_SUP so
  // Linux reboots through the reset register (its default BOOT_ACPI).
  put_le(t, 112, kFadtHwReducedAcpi | kFadtResetRegSup | kFadtPwrButton | kFadtSlpButton, 4);
  put_io_gas(t, 116, kAcpiResetPort);
  t[128] = kAcpiResetValue;
  t[131] = 5;                       // FADT minor version: ACPI 6.5
  put_le(t, 140, dsdt_address, 8);  // X_DSDT (the 32-bit DSDT stays 0)
  put_io_gas(t, 244, kAcpiSleepControlPort);
  put_io_gas(t, 256, kAcpiSleepStatusPort);
  for (std::size_t i = 0; i < kHypervisorVendorId.size(); ++i) t[268 + i] = kHypervisorVendorId[i];
  finish(t);
  return t;
}

Bytes build_madt(std::uint32_t num_vcpus) {
  constexpr std::size_t kLapicSize = 8;
  constexpr std::size_t kIoapicSize = 12;
  Bytes t = new_table("APIC", 6, 44 + kLapicSize * num_vcpus + kIoapicSize);
  put_le(t, 36, kLapicAddress, 4);
  // Flags 0 (no PCAT_COMPAT), as in Firecracker and Cloud Hypervisor: a
  // hardware-reduced Linux uses no 8259 anyway (null_legacy_pic), and every
  // device interrupt is described with its trigger and polarity in the DSDT.
  // For the same reason no Interrupt Source Overrides are needed: Linux sets
  // up no ISA identity mapping without a legacy PIC, and COM1's IRQ 4 comes
  // from its _CRS (edge, active high) like the virtio GSIs.
  put_le(t, 40, 0, 4);
  std::size_t off = 44;
  for (std::uint32_t i = 0; i < num_vcpus; ++i, off += kLapicSize) {
    t[off] = kMadtLocalApic;
    t[off + 1] = kLapicSize;
    t[off + 2] = static_cast<std::uint8_t>(i);  // ACPI processor UID
    t[off + 3] = static_cast<std::uint8_t>(i);  // APIC id (KVM's default: the vCPU index)
    put_le(t, off + 4, kMadtLapicEnabled, 4);
  }
  t[off] = kMadtIoApic;
  t[off + 1] = kIoapicSize;
  t[off + 2] = kIoapicId;
  put_le(t, off + 4, kIoapicAddress, 4);
  put_le(t, off + 8, 0, 4);  // global system interrupt base
  finish(t);
  return t;
}

std::string virtio_device_name(std::size_t index) {
  constexpr std::string_view kHex = "0123456789ABCDEF";
  return {'V', kHex[(index >> 8) & 0xf], kHex[(index >> 4) & 0xf], kHex[index & 0xf]};
}

aml::Term com1_device() {
  return aml::device(
      "COM1", {
                  aml::name("_HID", aml::eisa_id("PNP0501")),
                  aml::name("_UID", aml::integer(0)),
                  aml::method("_STA", 0, false, {aml::return_value(aml::integer(0xf))}),
                  aml::name("_CRS", aml::resource_template({
                                        aml::io_port(kCom1Port, kCom1Port, 1, kCom1PortCount),
                                        aml::extended_interrupt(aml::Trigger::kEdge,
                                                                aml::Polarity::kActiveHigh, false,
                                                                kCom1Irq),
                                    })),
              });
}

// The CMOS RTC (PNP0B00) with its ports only. Without this device Linux
// registers a legacy "rtc_cmos" platform device that asks for IRQ 8, which
// a hardware-reduced machine (no legacy PIC) cannot give, and the probe
// fails; described here, the driver runs without an interrupt.
aml::Term rtc_device() {
  return aml::device("RTC_", {
                                 aml::name("_HID", aml::eisa_id("PNP0B00")),
                                 aml::name("_CRS", aml::resource_template({
                                                       aml::io_port(kCmosPort, kCmosPort, 1, 2),
                                                   })),
                             });
}

// The i8042 keyboard controller (PNP0303). On a hardware-reduced machine
// Linux probes the i8042 only when ACPI describes it; without the keyboard
// port, Ctrl-Alt-Del (SendCtrlAltDel) would never reach the guest.
aml::Term ps2_device() {
  return aml::device(
      "PS2_", {
                  aml::name("_HID", aml::eisa_id("PNP0303")),
                  aml::method("_STA", 0, false, {aml::return_value(aml::integer(0xf))}),
                  aml::name("_CRS", aml::resource_template({
                                        aml::io_port(kI8042Port, kI8042Port, 1, 1),
                                        aml::io_port(kI8042CommandPort, kI8042CommandPort, 1, 1),
                                        aml::extended_interrupt(aml::Trigger::kEdge,
                                                                aml::Polarity::kActiveHigh, false,
                                                                kKeyboardIrq),
                                    })),
              });
}

aml::Term virtio_device(std::size_t index, const VirtioMmioInfo& dev) {
  return aml::device(
      virtio_device_name(index),
      {
          // Linux's virtio_mmio driver matches this ACPI id.
          aml::name("_HID", aml::string("LNRO0005")),
          aml::name("_UID", aml::integer(index)),
          // DMA is cache-coherent: the "device" is the host CPU.
          aml::name("_CCA", aml::integer(1)),
          aml::name("_CRS", aml::resource_template({
                                aml::memory32_fixed(true, static_cast<std::uint32_t>(dev.base),
                                                    static_cast<std::uint32_t>(dev.size)),
                                aml::extended_interrupt(aml::Trigger::kEdge,
                                                        aml::Polarity::kActiveHigh, false, dev.gsi),
                            })),
      });
}

Expected<Bytes> build_dsdt(const AcpiConfig& config) {
  std::vector<aml::Term> sb{com1_device(), rtc_device(), ps2_device()};
  for (std::size_t i = 0; i < config.virtio_devices.size(); ++i) {
    sb.push_back(virtio_device(i, config.virtio_devices[i]));
  }
  // \_S5_: SLP_TYPa first, then SLP_TYPb and two reserved values. Linux
  // writes SLP_TYPa << 2 | SLP_EN to the FADT's sleep control register.
  std::vector<aml::Term> root{
      aml::scope("\\_SB_", sb),
      aml::name("\\_S5_", aml::package({aml::integer(kAcpiS5SleepType), aml::integer(0),
                                        aml::integer(0), aml::integer(0)})),
  };
  Bytes body;
  for (auto& term : root) {
    if (!term) {
      return make_error(term.error().code(), "ACPI DSDT: " + term.error().operation());
    }
    body.insert(body.end(), term->begin(), term->end());
  }
  // Revision 2: 64-bit AML integers.
  Bytes t = new_table("DSDT", 2, kHeaderSize + body.size());
  std::copy(body.begin(), body.end(), t.begin() + kHeaderSize);
  finish(t);
  return t;
}

Expected<void> check_config(const AcpiConfig& config) {
  if (config.num_vcpus == 0 || config.num_vcpus > kMaxVcpus) {
    return make_error(Errc::kInvalidArgument, "ACPI MADT: " + std::to_string(config.num_vcpus) +
                                                  " vCPUs, the MADT describes 1 to " +
                                                  std::to_string(kMaxVcpus));
  }
  if (config.virtio_devices.size() > kMaxVirtioDevices) {
    return make_error(Errc::kInvalidArgument,
                      "ACPI DSDT: " + std::to_string(config.virtio_devices.size()) +
                          " virtio devices, at most " + std::to_string(kMaxVirtioDevices));
  }
  for (std::size_t i = 0; i < config.virtio_devices.size(); ++i) {
    const auto& d = config.virtio_devices[i];
    // Memory32Fixed: the window must be non-empty and end below 4 GiB.
    if (d.size == 0 || d.base > 0xffffffff || d.size > 0x100000000 - d.base ||
        d.size > 0xffffffff) {
      return make_error(Errc::kInvalidArgument,
                        "ACPI DSDT: virtio device " + std::to_string(i) +
                            " window is empty or not inside 32-bit MMIO space");
    }
  }
  return {};
}

constexpr std::uint64_t align_up(std::uint64_t v) {
  return (v + kTableAlign - 1) & ~(kTableAlign - 1);
}

}  // namespace

Expected<AcpiTables> build_acpi_tables(const AcpiConfig& config) {
  if (auto ok = check_config(config); !ok) return tl::unexpected(ok.error());
  auto dsdt = build_dsdt(config);
  if (!dsdt) return tl::unexpected(dsdt.error());
  Bytes madt = build_madt(config.num_vcpus);

  // Layout: XSDT (two entries), FADT, MADT, DSDT, each 16-byte aligned.
  const std::uint64_t xsdt_addr = kAcpiTablesStart;
  const std::uint64_t fadt_addr = align_up(xsdt_addr + kHeaderSize + 2 * 8);
  const std::uint64_t madt_addr = align_up(fadt_addr + kFadtSize);
  const std::uint64_t dsdt_addr = align_up(madt_addr + madt.size());
  const std::uint64_t end = dsdt_addr + dsdt->size();
  if (end > kAcpiTablesEnd) {
    return make_error(Errc::kOutOfRange, "ACPI tables: " + std::to_string(end - kAcpiTablesStart) +
                                             " bytes do not fit in [" + hex(kAcpiTablesStart) +
                                             ", " + hex(kAcpiTablesEnd) +
                                             ") (too many vCPUs or devices)");
  }

  AcpiTables tables{
      .rsdp = {kRsdpStart, build_rsdp(xsdt_addr)},
      .xsdt = {xsdt_addr, build_xsdt({fadt_addr, madt_addr})},
      .fadt = {fadt_addr, build_fadt(dsdt_addr)},
      .madt = {madt_addr, std::move(madt)},
      .dsdt = {dsdt_addr, std::move(*dsdt)},
  };
  return tables;
}

Expected<void> write_acpi_tables(const GuestMemory& mem, const AcpiConfig& config) {
  auto tables = build_acpi_tables(config);
  if (!tables) return tl::unexpected(tables.error());
  for (const AcpiTable* t :
       {&tables->rsdp, &tables->xsdt, &tables->fadt, &tables->madt, &tables->dsdt}) {
    auto r = mem.write(GuestAddress(t->address), std::as_bytes(std::span(t->bytes)));
    if (!r) {
      return make_error(r.error().code(), "writing ACPI table at guest address " + hex(t->address) +
                                              ": " + r.error().message());
    }
  }
  return {};
}

}  // namespace hvz::x86_64::acpi
