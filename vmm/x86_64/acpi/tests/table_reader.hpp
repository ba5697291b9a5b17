// Test helpers: guest memory holding the ACPI area and a reader that follows
// the table pointers the way a guest OS does.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "vmm/core/guest_memory.hpp"
#include "vmm/x86_64/layout.hpp"

namespace hvz::x86_64::acpi::testing {

using Bytes = std::vector<std::uint8_t>;

// [kRsdpStart, kAcpiTablesEnd) and nothing else.
inline GuestMemory acpi_memory() {
  auto m = GuestMemory::create({{GuestAddress(kRsdpStart), kAcpiTablesEnd - kRsdpStart}});
  EXPECT_TRUE(m) << m.error().message();
  return std::move(*m);
}

inline std::uint64_t le(const Bytes& b, std::size_t off, std::size_t size) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < size; ++i) v |= static_cast<std::uint64_t>(b.at(off + i)) << (8 * i);
  return v;
}

inline std::string str(const Bytes& b, std::size_t off, std::size_t size) {
  return std::string(b.begin() + static_cast<std::ptrdiff_t>(off),
                     b.begin() + static_cast<std::ptrdiff_t>(off + size));
}

inline unsigned byte_sum(const Bytes& b) {
  unsigned s = 0;
  for (auto v : b) s += v;
  return s % 256;
}

inline Bytes read_bytes(const GuestMemory& mem, std::uint64_t addr, std::size_t len) {
  Bytes out(len);
  auto r = mem.read(GuestAddress(addr), std::as_writable_bytes(std::span(out)));
  EXPECT_TRUE(r) << r.error().message();
  return out;
}

// A System Description Table at `addr`, sized by its header's length.
inline Bytes read_table(const GuestMemory& mem, std::uint64_t addr) {
  const Bytes header = read_bytes(mem, addr, 36);
  const std::uint64_t len = le(header, 4, 4);
  EXPECT_GE(len, 36u);
  EXPECT_LE(addr + len, kAcpiTablesEnd);
  if (len < 36 || addr + len > kAcpiTablesEnd) return header;
  return read_bytes(mem, addr, len);
}

struct GuestTables {
  Bytes rsdp, xsdt, fadt, madt, dsdt;
  std::uint64_t xsdt_addr = 0, fadt_addr = 0, madt_addr = 0, dsdt_addr = 0;
};

// RSDP → XSDT → (FACP → DSDT, APIC), by signature as Linux looks them up.
inline GuestTables follow_pointers(const GuestMemory& mem) {
  GuestTables t;
  t.rsdp = read_bytes(mem, kRsdpStart, 36);
  t.xsdt_addr = le(t.rsdp, 24, 8);
  t.xsdt = read_table(mem, t.xsdt_addr);
  for (std::size_t off = 36; off + 8 <= t.xsdt.size(); off += 8) {
    const std::uint64_t addr = le(t.xsdt, off, 8);
    Bytes table = read_table(mem, addr);
    const std::string sig = str(table, 0, 4);
    if (sig == "FACP") {
      t.fadt = std::move(table);
      t.fadt_addr = addr;
    } else if (sig == "APIC") {
      t.madt = std::move(table);
      t.madt_addr = addr;
    } else {
      ADD_FAILURE() << "unexpected table " << sig << " in the XSDT";
    }
  }
  if (t.fadt.size() >= 148) {
    t.dsdt_addr = le(t.fadt, 140, 8);
    t.dsdt = read_table(mem, t.dsdt_addr);
  }
  return t;
}

}  // namespace hvz::x86_64::acpi::testing
