// ACPI tables written to guest memory and read back as a guest would.
#include "vmm/x86_64/acpi/tables.hpp"

#include <gtest/gtest.h>

#include <algorithm>

#include "vmm/x86_64/acpi/aml.hpp"
#include "vmm/x86_64/acpi/tests/table_reader.hpp"
#include "vmm/x86_64/layout.hpp"

namespace hvz::x86_64::acpi {
namespace {

using testing::acpi_memory;
using testing::byte_sum;
using testing::Bytes;
using testing::follow_pointers;
using testing::GuestTables;
using testing::le;
using testing::str;

AcpiConfig config(std::uint32_t vcpus, std::size_t devices) {
  AcpiConfig c{vcpus, {}};
  for (std::size_t i = 0; i < devices; ++i) {
    c.virtio_devices.push_back({kVirtioMmioStart + i * kVirtioMmioSize, kVirtioMmioSize,
                                static_cast<std::uint32_t>(5 + i)});
  }
  return c;
}

GuestTables written(const GuestMemory& mem, const AcpiConfig& c) {
  auto r = write_acpi_tables(mem, c);
  EXPECT_TRUE(r) << r.error().message();
  return follow_pointers(mem);
}

bool contains(const Bytes& hay, const Bytes& needle) {
  return std::search(hay.begin(), hay.end(), needle.begin(), needle.end()) != hay.end();
}

void expect_header(const Bytes& t, const char* sig, std::uint8_t revision) {
  ASSERT_GE(t.size(), 36u);
  EXPECT_EQ(str(t, 0, 4), sig);
  EXPECT_EQ(le(t, 4, 4), t.size()) << sig;
  EXPECT_EQ(t[8], revision) << sig;
  EXPECT_EQ(byte_sum(t), 0u) << sig << " checksum";
  EXPECT_EQ(str(t, 10, 6), "HVZ   ") << sig;
  EXPECT_EQ(str(t, 16, 8), "HVZ-MVM ") << sig;
  EXPECT_EQ(str(t, 28, 4), "HVZ ") << sig;
}

TEST(AcpiTables, RsdpPointsToXsdtWithBothChecksums) {
  auto mem = acpi_memory();
  const GuestTables t = written(mem, config(2, 2));
  const Bytes& r = t.rsdp;
  EXPECT_EQ(str(r, 0, 8), "RSD PTR ");
  EXPECT_EQ(byte_sum(Bytes(r.begin(), r.begin() + 20)), 0u);  // ACPI 1.0 checksum
  EXPECT_EQ(byte_sum(r), 0u);                                 // extended checksum
  EXPECT_EQ(str(r, 9, 6), "HVZ   ");
  EXPECT_EQ(r[15], 2);
  EXPECT_EQ(le(r, 16, 4), 0u);  // no RSDT
  EXPECT_EQ(le(r, 20, 4), 36u);
  EXPECT_EQ(t.xsdt_addr, kAcpiTablesStart);
}

TEST(AcpiTables, XsdtListsFadtAndMadtAndFadtPointsToDsdt) {
  auto mem = acpi_memory();
  const GuestTables t = written(mem, config(2, 2));
  expect_header(t.xsdt, "XSDT", 1);
  EXPECT_EQ(t.xsdt.size(), 36u + 16);
  expect_header(t.fadt, "FACP", 6);
  expect_header(t.madt, "APIC", 6);
  expect_header(t.dsdt, "DSDT", 2);
  EXPECT_EQ(le(t.fadt, 40, 4), 0u);  // 32-bit DSDT unused: X_DSDT only
  // All inside the reserved window, none overlapping.
  struct Span {
    std::uint64_t start, len;
  };
  std::vector<Span> spans{{t.xsdt_addr, t.xsdt.size()},
                          {t.fadt_addr, t.fadt.size()},
                          {t.madt_addr, t.madt.size()},
                          {t.dsdt_addr, t.dsdt.size()}};
  for (std::size_t i = 0; i < spans.size(); ++i) {
    EXPECT_GE(spans[i].start, kAcpiTablesStart);
    EXPECT_LE(spans[i].start + spans[i].len, kAcpiTablesEnd);
    for (std::size_t j = i + 1; j < spans.size(); ++j) {
      const bool apart = spans[i].start + spans[i].len <= spans[j].start ||
                         spans[j].start + spans[j].len <= spans[i].start;
      EXPECT_TRUE(apart) << i << " overlaps " << j;
    }
  }
}

TEST(AcpiTables, FadtIsHardwareReducedWithSleepAndResetRegisters) {
  auto mem = acpi_memory();
  const Bytes f = written(mem, config(1, 0)).fadt;
  ASSERT_EQ(f.size(), 276u);
  EXPECT_EQ(f[131], 5);  // minor version
  const std::uint64_t flags = le(f, 112, 4);
  EXPECT_TRUE(flags & (1u << 20)) << "HW_REDUCED_ACPI";
  EXPECT_TRUE(flags & (1u << 10)) << "RESET_REG_SUP";
  const std::uint64_t iapc = le(f, 109, 2);
  EXPECT_TRUE(iapc & (1u << 2)) << "VGA not present";
  EXPECT_TRUE(iapc & (1u << 3)) << "MSI not supported";
  EXPECT_FALSE(iapc & (1u << 5)) << "the CMOS RTC is present";
  auto expect_io_gas = [&](std::size_t off, std::uint16_t port, const char* what) {
    EXPECT_EQ(f[off], 1) << what << ": SystemIO";
    EXPECT_EQ(f[off + 1], 8) << what << ": bit width";
    EXPECT_EQ(f[off + 2], 0) << what << ": bit offset";
    EXPECT_EQ(f[off + 3], 1) << what << ": byte access";
    EXPECT_EQ(le(f, off + 4, 8), port) << what;
  };
  expect_io_gas(116, kAcpiResetPort, "RESET_REG");
  EXPECT_EQ(f[128], kAcpiResetValue);
  expect_io_gas(244, kAcpiSleepControlPort, "SLEEP_CONTROL_REG");
  expect_io_gas(256, kAcpiSleepStatusPort, "SLEEP_STATUS_REG");
  EXPECT_EQ(str(f, 268, 3), "HVZ");
  // Legacy PM blocks stay empty on a hardware-reduced platform.
  for (std::size_t off = 56; off < 88; ++off) EXPECT_EQ(f[off], 0) << off;
}

TEST(AcpiTables, MadtHasOneEnabledLocalApicPerVcpuAndTheIoapic) {
  for (std::uint32_t n : {1u, 2u, 4u, 32u, kMaxVcpus}) {
    SCOPED_TRACE(n);
    auto mem = acpi_memory();
    const Bytes m = written(mem, config(n, 1)).madt;
    ASSERT_GE(m.size(), 44u);
    EXPECT_EQ(le(m, 36, 4), kLapicAddress);
    EXPECT_EQ(le(m, 40, 4), 0u);
    std::vector<std::uint32_t> ids;
    int ioapics = 0;
    std::size_t off = 44;
    while (off < m.size()) {
      ASSERT_LE(off + 2, m.size());
      const std::uint8_t type = m[off];
      const std::uint8_t len = m[off + 1];
      ASSERT_GE(len, 2);
      ASSERT_LE(off + len, m.size());
      if (type == 0) {
        ASSERT_EQ(len, 8);
        EXPECT_EQ(m[off + 2], m[off + 3]) << "UID = APIC id";
        EXPECT_EQ(le(m, off + 4, 4), 1u) << "enabled";
        ids.push_back(m[off + 3]);
      } else if (type == 1) {
        ASSERT_EQ(len, 12);
        ++ioapics;
        EXPECT_EQ(m[off + 2], 0) << "IOAPIC id";
        EXPECT_EQ(le(m, off + 4, 4), kIoapicAddress);
        EXPECT_EQ(le(m, off + 8, 4), 0u) << "GSI base";
      } else {
        ADD_FAILURE() << "unexpected MADT entry type " << int{type};
      }
      off += len;
    }
    EXPECT_EQ(off, m.size());
    EXPECT_EQ(ioapics, 1);
    ASSERT_EQ(ids.size(), n);
    for (std::uint32_t i = 0; i < n; ++i) EXPECT_EQ(ids[i], i);
  }
}

TEST(AcpiTables, DsdtDescribesCom1VirtioDevicesAndS5) {
  auto mem = acpi_memory();
  AcpiConfig c = config(2, 2);
  c.virtio_devices[1] = {0xd0001000, 0x1000, 9};
  const Bytes d = written(mem, c).dsdt;
  const auto b = [](std::initializer_list<int> v) {
    Bytes out;
    for (int x : v) out.push_back(static_cast<std::uint8_t>(x));
    return out;
  };
  // Device(COM1) with _HID EISAID("PNP0501") and its IO + IRQ 4 resources.
  EXPECT_TRUE(contains(d, b({0x5b, 0x82})));
  EXPECT_TRUE(contains(d, b({'C', 'O', 'M', '1'})));
  EXPECT_TRUE(contains(d, b({0x08, '_', 'H', 'I', 'D', 0x0c, 0x41, 0xd0, 0x05, 0x01})));
  EXPECT_TRUE(contains(d, aml::io_port(kCom1Port, kCom1Port, 1, 8)));
  EXPECT_TRUE(contains(
      d, aml::extended_interrupt(aml::Trigger::kEdge, aml::Polarity::kActiveHigh, false, 4)));
  // _STA returns 0x0F.
  EXPECT_TRUE(contains(d, b({'_', 'S', 'T', 'A', 0x00, 0xa4, 0x0a, 0x0f})));
  // Both virtio windows with their GSIs, each with _HID "LNRO0005".
  EXPECT_TRUE(contains(d, aml::memory32_fixed(true, 0xd0000000, 0x1000)));
  EXPECT_TRUE(contains(d, aml::memory32_fixed(true, 0xd0001000, 0x1000)));
  EXPECT_TRUE(contains(
      d, aml::extended_interrupt(aml::Trigger::kEdge, aml::Polarity::kActiveHigh, false, 5)));
  EXPECT_TRUE(contains(
      d, aml::extended_interrupt(aml::Trigger::kEdge, aml::Polarity::kActiveHigh, false, 9)));
  EXPECT_TRUE(contains(d, b({'V', '0', '0', '0'})));
  EXPECT_TRUE(contains(d, b({'V', '0', '0', '1'})));
  EXPECT_TRUE(contains(d, *aml::name("_HID", aml::string("LNRO0005"))));
  EXPECT_TRUE(contains(d, *aml::name("_CCA", aml::integer(1))));
  // Name(\_S5_, Package(){5, 0, 0, 0})
  EXPECT_TRUE(contains(
      d, b({0x08, 0x5c, '_', 'S', '5', '_', 0x12, 0x07, 0x04, 0x0a, kAcpiS5SleepType, 0, 0, 0})));
}

TEST(AcpiTables, ManyDevicesFitUntilTheWindowIsFull) {
  auto mem = acpi_memory();
  AcpiConfig c{kMaxVcpus, {}};
  for (std::size_t i = 0; i < 1000; ++i)
    c.virtio_devices.push_back({0xd0000000 + i * 0x1000, 0x1000, 5});
  EXPECT_TRUE(write_acpi_tables(mem, c));
  const GuestTables t = follow_pointers(mem);
  EXPECT_EQ(byte_sum(t.dsdt), 0u);
  EXPECT_GT(t.dsdt.size(), 4096u);  // PkgLengths past the two-byte form

  for (std::size_t i = 1000; i < 2000; ++i)
    c.virtio_devices.push_back({0xd0000000 + i * 0x1000, 0x1000, 5});
  auto r = write_acpi_tables(mem, c);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::kOutOfRange);
  EXPECT_NE(r.error().operation().find("do not fit"), std::string::npos) << r.error().operation();
}

TEST(AcpiTables, RejectsBadVcpuCountsAndDeviceCounts) {
  auto mem = acpi_memory();
  for (std::uint32_t n : {0u, kMaxVcpus + 1, 1024u, 0xffffffffu}) {
    auto r = write_acpi_tables(mem, config(n, 0));
    ASSERT_FALSE(r) << n;
    EXPECT_EQ(r.error().code(), Errc::kInvalidArgument);
    EXPECT_NE(r.error().operation().find("vCPUs"), std::string::npos);
  }
  AcpiConfig c{1, std::vector<VirtioMmioInfo>(kMaxVirtioDevices + 1, {0xd0000000, 0x1000, 5})};
  auto r = write_acpi_tables(mem, c);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::kInvalidArgument);
  // Nothing was written on failure.
  Bytes sig = testing::read_bytes(mem, kRsdpStart, 8);
  EXPECT_EQ(sig, Bytes(8, 0));
}

TEST(AcpiTables, RejectsVirtioWindowsOutside32BitSpace) {
  auto mem = acpi_memory();
  const std::vector<VirtioMmioInfo> bad{
      {0xd0000000, 0, 5},               // empty
      {0x100000000, 0x1000, 5},         // above 4 GiB
      {0xfffff000, 0x2000, 5},          // crosses 4 GiB
      {0, 0x100000000, 5},              // length not a u32
      {0xffffffffffffffff, 0x1000, 5},  // would wrap
      {0x1000, 0xffffffffffffffff, 5},
  };
  for (const auto& dev : bad) {
    auto r = write_acpi_tables(mem, AcpiConfig{1, {dev}});
    ASSERT_FALSE(r) << dev.base << "+" << dev.size;
    EXPECT_EQ(r.error().code(), Errc::kInvalidArgument);
  }
  EXPECT_TRUE(write_acpi_tables(mem, AcpiConfig{1, {{0xfffff000, 0x1000, 5}}}));  // ends at 4 GiB
}

TEST(AcpiTables, FailsCleanlyWhenGuestMemoryLacksTheAcpiArea) {
  auto mem = GuestMemory::create({{GuestAddress(0), 0x10000}});
  ASSERT_TRUE(mem);
  auto r = write_acpi_tables(*mem, config(1, 0));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::kOutOfRange);
}

TEST(AcpiTables, BuildIsDeterministicAndMatchesWhatIsWritten) {
  auto a = build_acpi_tables(config(4, 3));
  auto b = build_acpi_tables(config(4, 3));
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->dsdt.bytes, b->dsdt.bytes);
  auto mem = acpi_memory();
  const GuestTables t = written(mem, config(4, 3));
  EXPECT_EQ(t.rsdp, a->rsdp.bytes);
  EXPECT_EQ(t.xsdt, a->xsdt.bytes);
  EXPECT_EQ(t.fadt, a->fadt.bytes);
  EXPECT_EQ(t.madt, a->madt.bytes);
  EXPECT_EQ(t.dsdt, a->dsdt.bytes);
}

}  // namespace
}  // namespace hvz::x86_64::acpi
