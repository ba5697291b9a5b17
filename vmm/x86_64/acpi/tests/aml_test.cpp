// AML encodings checked against byte sequences from the ACPI spec and iasl.
#include "vmm/x86_64/acpi/aml.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <numeric>
#include <string>

namespace hvz::x86_64::acpi::aml {
namespace {

Bytes ok(const Term& t) {
  EXPECT_TRUE(t) << t.error().message();
  return t ? *t : Bytes{};
}

Bytes ascii(std::string_view s) {
  return Bytes(s.begin(), s.end());
}

Bytes cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

// Decodes a PkgLength as ACPICA does: the lead byte's top two bits count
// the follow bytes.
std::size_t decode_pkg_length(const Bytes& b) {
  const std::size_t follow = b[0] >> 6;
  if (follow == 0) return b[0] & 0x3f;
  std::size_t v = b[0] & 0x0f;
  for (std::size_t i = 1; i <= follow; ++i)
    v |= static_cast<std::size_t>(b[i]) << (4 + 8 * (i - 1));
  return v;
}

TEST(AmlPkgLength, EncodesBoundariesWithMinimalBytes) {
  // Body length → expected encoding (the value counts its own bytes).
  EXPECT_EQ(ok(pkg_length(0)), (Bytes{0x01}));
  EXPECT_EQ(ok(pkg_length(62)), (Bytes{0x3f}));                // 63: largest one-byte
  EXPECT_EQ(ok(pkg_length(63)), (Bytes{0x41, 0x04}));          // 64 won't fit: 65 in two bytes
  EXPECT_EQ(ok(pkg_length(4093)), (Bytes{0x4f, 0xff}));        // 4095: largest two-byte
  EXPECT_EQ(ok(pkg_length(4094)), (Bytes{0x81, 0x00, 0x01}));  // 4096 won't fit: 4097
  EXPECT_EQ(ok(pkg_length(0xfffff - 3)), (Bytes{0x8f, 0xff, 0xff}));  // largest three-byte
  EXPECT_EQ(ok(pkg_length(0xfffff - 2)), (Bytes{0xc1, 0x00, 0x00, 0x01}));
  EXPECT_EQ(ok(pkg_length(kMaxPkgLength - 4)), (Bytes{0xcf, 0xff, 0xff, 0xff}));
}

TEST(AmlPkgLength, RefusesLengthsPast28Bits) {
  EXPECT_FALSE(pkg_length(kMaxPkgLength - 3));
  EXPECT_FALSE(pkg_length(std::numeric_limits<std::size_t>::max()));
  EXPECT_EQ(pkg_length(kMaxPkgLength).error().code(), Errc::kOutOfRange);
}

TEST(AmlPkgLength, RoundTripsAroundEveryBoundary) {
  for (std::size_t edge : {std::size_t{63}, std::size_t{4095}, std::size_t{0xfffff}}) {
    for (std::size_t body = edge - 6; body <= edge + 6; ++body) {
      const Bytes enc = ok(pkg_length(body));
      EXPECT_EQ(decode_pkg_length(enc), body + enc.size()) << body;
      // Minimal: one byte fewer could not hold the value.
      const std::size_t limit = enc.size() == 1   ? 0
                                : enc.size() == 2 ? 0x3f
                                : enc.size() == 3 ? 0xfff
                                                  : 0xfffff;
      EXPECT_GT(body + enc.size() - 1, limit) << body;
    }
  }
}

TEST(AmlInteger, UsesShortestPrefix) {
  EXPECT_EQ(integer(0), (Bytes{0x00}));
  EXPECT_EQ(integer(1), (Bytes{0x01}));
  EXPECT_EQ(integer(2), (Bytes{0x0a, 0x02}));
  EXPECT_EQ(integer(0xff), (Bytes{0x0a, 0xff}));
  EXPECT_EQ(integer(0x100), (Bytes{0x0b, 0x00, 0x01}));
  EXPECT_EQ(integer(0xffff), (Bytes{0x0b, 0xff, 0xff}));
  EXPECT_EQ(integer(0x10000), (Bytes{0x0c, 0x00, 0x00, 0x01, 0x00}));
  EXPECT_EQ(integer(0xffffffff), (Bytes{0x0c, 0xff, 0xff, 0xff, 0xff}));
  EXPECT_EQ(integer(std::uint64_t{1} << 32),
            (Bytes{0x0e, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00}));
  EXPECT_EQ(integer(0x0123456789abcdef),
            (Bytes{0x0e, 0xef, 0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0x01}));
  EXPECT_EQ(dword(5), (Bytes{0x0c, 0x05, 0x00, 0x00, 0x00}));
}

TEST(AmlString, IsPrefixedAndNulTerminated) {
  EXPECT_EQ(ok(string("LNRO0005")), cat({{0x0d}, ascii("LNRO0005"), {0x00}}));
  EXPECT_EQ(ok(string("")), (Bytes{0x0d, 0x00}));
  EXPECT_FALSE(string(std::string("A\0B", 3)));
  EXPECT_FALSE(string("caf\xc3\xa9"));
}

TEST(AmlName, EncodesSegmentsAndPaths) {
  EXPECT_EQ(ok(name_seg("COM1")), ascii("COM1"));
  EXPECT_EQ(ok(name_seg("_SB")), ascii("_SB_"));  // padded with '_'
  EXPECT_EQ(ok(name_string("_SB_")), ascii("_SB_"));
  EXPECT_EQ(ok(name_string("\\_SB_")), cat({{0x5c}, ascii("_SB_")}));
  EXPECT_EQ(ok(name_string("\\_SB_.COM1")), cat({{0x5c, 0x2e}, ascii("_SB_COM1")}));
  EXPECT_EQ(ok(name_string("_SB_.PCI0.S08_")), cat({{0x2f, 0x03}, ascii("_SB_PCI0S08_")}));
  EXPECT_EQ(ok(name_string("^^FOO")), cat({{0x5e, 0x5e}, ascii("FOO_")}));
  EXPECT_EQ(ok(name_string("\\")), (Bytes{0x5c, 0x00}));
  EXPECT_EQ(ok(name_string("^")), (Bytes{0x5e, 0x00}));  // the parent scope itself
}

TEST(AmlName, RejectsMalformedNames) {
  for (const char* bad : {"", "ABCDE", "1ABC", "com1", "A-B", "\\_SB_.", "\\_SB_..COM1", ".X",
                          "\\^X", "_SB_.COM1.TOOLONG"}) {
    auto n = name_string(bad);
    ASSERT_FALSE(n) << bad;
    EXPECT_EQ(n.error().code(), Errc::kInvalidArgument) << bad;
  }
}

TEST(AmlEisaId, CompressesVendorAndProduct) {
  EXPECT_EQ(*eisa_id_value("PNP0501"), 0x0105d041u);
  EXPECT_EQ(*eisa_id_value("PNP0A03"), 0x030ad041u);
  EXPECT_EQ(*eisa_id_value("PNP0C0C"), 0x0c0cd041u);
  // EISAID always encodes as a DWord, as iasl emits it.
  EXPECT_EQ(ok(eisa_id("PNP0501")), (Bytes{0x0c, 0x41, 0xd0, 0x05, 0x01}));
  for (const char* bad : {"pnp0501", "PNP050", "PNP05011", "PNP050G", "P1P0501", "PNP05a1"}) {
    EXPECT_FALSE(eisa_id_value(bad)) << bad;
    EXPECT_FALSE(eisa_id(bad)) << bad;
  }
}

TEST(AmlObjects, EncodeNamePackageScopeDeviceMethod) {
  EXPECT_EQ(ok(name("_UID", integer(0))), cat({{0x08}, ascii("_UID"), {0x00}}));
  EXPECT_EQ(ok(package({integer(5), integer(0), integer(0), integer(0)})),
            (Bytes{0x12, 0x07, 0x04, 0x0a, 0x05, 0x00, 0x00, 0x00}));
  EXPECT_EQ(ok(package({})), (Bytes{0x12, 0x02, 0x00}));
  EXPECT_EQ(ok(scope("\\_SB_", {})), cat({{0x10, 0x06, 0x5c}, ascii("_SB_")}));
  // Method(_STA, 0, NotSerialized) { Return (0x0F) }
  EXPECT_EQ(ok(method("_STA", 0, false, {return_value(integer(0xf))})),
            cat({{0x14, 0x09}, ascii("_STA"), {0x00, 0xa4, 0x0a, 0x0f}}));
  EXPECT_EQ(ok(method("_FOO", 2, true, {})), cat({{0x14, 0x06}, ascii("_FOO"), {0x0a}}));
  EXPECT_EQ(ok(device("COM1", {name("_UID", integer(1))})),
            cat({{0x5b, 0x82, 0x0b}, ascii("COM1"), {0x08}, ascii("_UID"), {0x01}}));
}

TEST(AmlObjects, PropagatesErrorsFromNestedTerms) {
  auto d = device("\\_SB_", {device("COM1", {name("bad!", integer(0))})});
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().code(), Errc::kInvalidArgument);
  EXPECT_NE(d.error().operation().find("bad!"), std::string::npos) << d.error().operation();
  EXPECT_FALSE(name("_HID", eisa_id("nope")));
  EXPECT_FALSE(return_value(string("\x80")));
  EXPECT_FALSE(method("_STA", 8, false, {}));
  EXPECT_FALSE(package(std::vector<Term>(256, integer(0))));
  EXPECT_TRUE(package(std::vector<Term>(255, integer(0))));
  EXPECT_FALSE(resource_template({io_port(1, 1, 1, 1), make_error(Errc::kBusy, "x")}));
}

TEST(AmlObjects, LargeBodiesGetLongerPkgLengths) {
  Bytes data(5000, 0xaa);
  const Bytes b = ok(buffer(data));
  // BufferOp, 3-byte PkgLength, WordPrefix size, data.
  ASSERT_EQ(b.size(), 1u + 3 + 3 + 5000);
  EXPECT_EQ(b[0], 0x11);
  EXPECT_EQ(decode_pkg_length(Bytes(b.begin() + 1, b.begin() + 4)), b.size() - 1);
  EXPECT_EQ((Bytes{b[4], b[5], b[6]}), (Bytes{0x0b, 0x88, 0x13}));
}

TEST(AmlResources, EncodeDescriptors) {
  // IO(Decode16, 0x3F8, 0x3F8, 0x01, 0x08)
  EXPECT_EQ(io_port(0x3f8, 0x3f8, 1, 8), (Bytes{0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08}));
  // Memory32Fixed(ReadWrite, 0xD0000000, 0x1000)
  EXPECT_EQ(memory32_fixed(true, 0xd0000000, 0x1000),
            (Bytes{0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xd0, 0x00, 0x10, 0x00, 0x00}));
  EXPECT_EQ(memory32_fixed(false, 1, 2)[3], 0x00);
  // Interrupt(ResourceConsumer, Edge, ActiveHigh, Exclusive) {5}
  EXPECT_EQ(extended_interrupt(Trigger::kEdge, Polarity::kActiveHigh, false, 5),
            (Bytes{0x89, 0x06, 0x00, 0x03, 0x01, 0x05, 0x00, 0x00, 0x00}));
  // Interrupt(ResourceConsumer, Level, ActiveLow, Shared) {0x12345678}
  EXPECT_EQ(extended_interrupt(Trigger::kLevel, Polarity::kActiveLow, true, 0x12345678),
            (Bytes{0x89, 0x06, 0x00, 0x0d, 0x01, 0x78, 0x56, 0x34, 0x12}));
}

TEST(AmlResources, TemplateEndsWithTagAndZeroSumChecksum) {
  const Bytes io = io_port(0x3f8, 0x3f8, 1, 8);
  const Bytes irq = extended_interrupt(Trigger::kEdge, Polarity::kActiveHigh, false, 4);
  const Bytes t = ok(resource_template({io, irq}));
  const std::size_t data_len = io.size() + irq.size() + 2;  // + EndTag + checksum
  // BufferOp PkgLength(1 byte) BytePrefix size data.
  ASSERT_EQ(t.size(), 4 + data_len);
  EXPECT_EQ(t[0], 0x11);
  EXPECT_EQ(t[1], t.size() - 1);
  EXPECT_EQ(t[2], 0x0a);
  EXPECT_EQ(t[3], data_len);
  EXPECT_EQ(Bytes(t.begin() + 4, t.begin() + 4 + 8), io);
  EXPECT_EQ(t[t.size() - 2], 0x79);
  const unsigned sum = std::accumulate(t.begin() + 4, t.end(), 0u);
  EXPECT_EQ(sum % 256, 0u);
  // An empty template is just the EndTag and a zero checksum... of 0x79.
  EXPECT_EQ(ok(resource_template({})), (Bytes{0x11, 0x05, 0x0a, 0x02, 0x79, 0x87}));
}

}  // namespace
}  // namespace hvz::x86_64::acpi::aml
