// AML byte-code builder: just enough of the ACPI Machine Language (ACPI 6.5
// chapter 20) to describe a microVM's devices in a DSDT — names, integers,
// strings, packages, scopes, devices, simple methods and resource templates.
//
// Every composer takes its children as Term (an Expected<Bytes>), so an
// invalid name or an oversized package deep inside a tree surfaces as one
// error at the top instead of forcing a check at every level.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "vmm/core/error.hpp"

namespace hvz::x86_64::acpi::aml {

using Bytes = std::vector<std::uint8_t>;
using Term = Expected<Bytes>;

// PkgLength counts itself and holds at most 28 bits.
inline constexpr std::size_t kMaxPkgLength = (std::size_t{1} << 28) - 1;

// The PkgLength encoding (1–4 bytes) for an object whose body after the
// PkgLength is `body_len` bytes; the encoded value includes its own bytes.
Expected<Bytes> pkg_length(std::size_t body_len);

// The shortest integer encoding: ZeroOp, OneOp, or Byte/Word/DWord/QWord
// prefix with the value little-endian.
Bytes integer(std::uint64_t value);
// Always DWordPrefix (what ASL's EISAID() and DWordConst produce).
Bytes dword(std::uint32_t value);
// A String object: StringPrefix, ASCII 0x01..0x7f, NUL.
Term string(std::string_view text);

// One NameSeg: 1–4 characters [A-Z_][A-Z0-9_]*, padded with '_' to 4.
Term name_seg(std::string_view seg);
// A NameString: optional '\' or '^' prefixes, then dot-separated NameSegs
// ("_SB_", "\\_SB_.COM1", "^PCI0.S00_"); "\\" alone is the root.
Term name_string(std::string_view path);

// The 32-bit compressed EISA id of "PNP0501" (three letters A-Z, four
// upper-case hex digits), as ASL's EISAID() computes it.
Expected<std::uint32_t> eisa_id_value(std::string_view id);
// EISAID("PNP0501") as an AML DWord object.
Term eisa_id(std::string_view id);

// Name(path, object).
Term name(std::string_view path, const Term& object);
// Package(){elements...}: at most 255 elements.
Term package(const std::vector<Term>& elements);
// Scope(path){terms...}.
Term scope(std::string_view path, const std::vector<Term>& terms);
// Device(path){terms...}.
Term device(std::string_view path, const std::vector<Term>& terms);
// Method(path, arg_count, Serialized|NotSerialized){terms...}; sync level 0.
Term method(std::string_view path, std::uint8_t arg_count, bool serialized,
            const std::vector<Term>& terms);
// Return(value).
Term return_value(const Term& value);
// Buffer(){bytes...} with its size as an integer.
Term buffer(std::span<const std::uint8_t> data);

// ResourceTemplate(){descriptors...}: a Buffer of the descriptors closed by
// an EndTag whose checksum byte makes the template's byte sum 0 mod 256.
Term resource_template(const std::vector<Term>& descriptors);

// Resource descriptors (ACPI 6.5 §6.4), to put in a resource_template().
// IO(Decode16, min, max, alignment, length): small descriptor 0x47.
Bytes io_port(std::uint16_t min, std::uint16_t max, std::uint8_t alignment, std::uint8_t length);
// Memory32Fixed(ReadWrite|ReadOnly, base, length): large descriptor 0x86.
Bytes memory32_fixed(bool read_write, std::uint32_t base, std::uint32_t length);

enum class Trigger : std::uint8_t { kLevel = 0, kEdge = 1 };
enum class Polarity : std::uint8_t { kActiveHigh = 0, kActiveLow = 1 };
// Interrupt(ResourceConsumer, trigger, polarity, Exclusive|Shared){gsi}:
// an Extended Interrupt descriptor 0x89 with one interrupt number.
Bytes extended_interrupt(Trigger trigger, Polarity polarity, bool shared, std::uint32_t gsi);

}  // namespace hvz::x86_64::acpi::aml
