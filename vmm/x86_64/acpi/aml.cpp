// AML encoders: opcodes, PkgLength, names and resource descriptors.
#include "vmm/x86_64/acpi/aml.hpp"

#include <string>

#include "vmm/core/le.hpp"

namespace hvz::x86_64::acpi::aml {
namespace {

// Opcodes (ACPI 6.5 §20.3).
constexpr std::uint8_t kZeroOp = 0x00;
constexpr std::uint8_t kOneOp = 0x01;
constexpr std::uint8_t kNameOp = 0x08;
constexpr std::uint8_t kBytePrefix = 0x0a;
constexpr std::uint8_t kWordPrefix = 0x0b;
constexpr std::uint8_t kDWordPrefix = 0x0c;
constexpr std::uint8_t kStringPrefix = 0x0d;
constexpr std::uint8_t kQWordPrefix = 0x0e;
constexpr std::uint8_t kScopeOp = 0x10;
constexpr std::uint8_t kBufferOp = 0x11;
constexpr std::uint8_t kPackageOp = 0x12;
constexpr std::uint8_t kMethodOp = 0x14;
constexpr std::uint8_t kDualNamePrefix = 0x2e;
constexpr std::uint8_t kMultiNamePrefix = 0x2f;
constexpr std::uint8_t kExtOpPrefix = 0x5b;
constexpr std::uint8_t kDeviceOp = 0x82;          // after kExtOpPrefix
constexpr std::uint8_t kRootChar = 0x5c;          // '\'
constexpr std::uint8_t kParentPrefixChar = 0x5e;  // '^'
constexpr std::uint8_t kNullName = 0x00;
constexpr std::uint8_t kReturnOp = 0xa4;

// Resource descriptor tags (ACPI 6.5 §6.4).
constexpr std::uint8_t kIoPortTag = 0x47;  // small item 0x08, length 7
constexpr std::uint8_t kEndTag = 0x79;     // small item 0x0f, length 1
constexpr std::uint8_t kMemory32FixedTag = 0x86;
constexpr std::uint8_t kExtendedInterruptTag = 0x89;

void append(Bytes& out, const Bytes& more) {
  out.insert(out.end(), more.begin(), more.end());
}

// Concatenates the terms, or returns the first error among them.
Term concat(const std::vector<Term>& terms) {
  Bytes out;
  for (const auto& t : terms) {
    if (!t) return tl::unexpected(t.error());
    append(out, *t);
  }
  return out;
}

// `op` PkgLength `body`: the shape of every package-like object.
Term with_pkg_length(const Bytes& op, const Bytes& body) {
  auto len = pkg_length(body.size());
  if (!len) return tl::unexpected(len.error());
  Bytes out = op;
  append(out, *len);
  append(out, body);
  return out;
}

// `op` PkgLength NameString `body`: Scope, Device, Method.
Term named_package(const Bytes& op, std::string_view path, const Bytes& prefix,
                   const std::vector<Term>& terms) {
  auto n = name_string(path);
  if (!n) return n;
  auto children = concat(terms);
  if (!children) return children;
  Bytes body = std::move(*n);
  append(body, prefix);
  append(body, *children);
  return with_pkg_length(op, body);
}

bool is_lead_char(char c) {
  return (c >= 'A' && c <= 'Z') || c == '_';
}
bool is_name_char(char c) {
  return is_lead_char(c) || (c >= '0' && c <= '9');
}

}  // namespace

Expected<Bytes> pkg_length(std::size_t body_len) {
  // One byte holds 6 bits; each further byte adds 8 bits above the low 4.
  if (body_len > kMaxPkgLength - 4) {
    return make_error(Errc::kOutOfRange, "AML PkgLength: a body of " + std::to_string(body_len) +
                                             " bytes exceeds the 28-bit limit");
  }
  std::size_t count = 4;
  if (body_len + 1 <= 0x3f) {
    count = 1;
  } else if (body_len + 2 <= 0xfff) {
    count = 2;
  } else if (body_len + 3 <= 0xfffff) {
    count = 3;
  }
  const std::size_t total = body_len + count;
  Bytes out;
  if (count == 1) {
    out.push_back(static_cast<std::uint8_t>(total));
    return out;
  }
  out.push_back(static_cast<std::uint8_t>(((count - 1) << 6) | (total & 0x0f)));
  for (std::size_t i = 1; i < count; ++i) {
    out.push_back(static_cast<std::uint8_t>(total >> (4 + 8 * (i - 1))));
  }
  return out;
}

Bytes integer(std::uint64_t value) {
  Bytes out;
  if (value == 0) {
    out.push_back(kZeroOp);
  } else if (value == 1) {
    out.push_back(kOneOp);
  } else if (value <= 0xff) {
    out.push_back(kBytePrefix);
    append_le(out, value, 1);
  } else if (value <= 0xffff) {
    out.push_back(kWordPrefix);
    append_le(out, value, 2);
  } else if (value <= 0xffffffff) {
    out.push_back(kDWordPrefix);
    append_le(out, value, 4);
  } else {
    out.push_back(kQWordPrefix);
    append_le(out, value, 8);
  }
  return out;
}

Bytes dword(std::uint32_t value) {
  Bytes out{kDWordPrefix};
  append_le(out, value, 4);
  return out;
}

Term string(std::string_view text) {
  Bytes out{kStringPrefix};
  for (char c : text) {
    const auto b = static_cast<std::uint8_t>(c);
    if (b == 0 || b > 0x7f) {
      return make_error(Errc::kInvalidArgument, "AML string: only ASCII 0x01..0x7f is allowed");
    }
    out.push_back(b);
  }
  out.push_back(0);
  return out;
}

Term name_seg(std::string_view seg) {
  if (seg.empty() || seg.size() > 4 || !is_lead_char(seg[0])) {
    return make_error(Errc::kInvalidArgument,
                      "AML NameSeg \"" + std::string(seg) + "\": need 1-4 chars, [A-Z_] first");
  }
  Bytes out;
  for (char c : seg) {
    if (!is_name_char(c)) {
      return make_error(Errc::kInvalidArgument,
                        "AML NameSeg \"" + std::string(seg) + "\": only [A-Z0-9_] allowed");
    }
    out.push_back(static_cast<std::uint8_t>(c));
  }
  out.resize(4, '_');
  return out;
}

Term name_string(std::string_view path) {
  Bytes out;
  std::size_t pos = 0;
  if (!path.empty() && path[0] == '\\') {
    out.push_back(kRootChar);
    pos = 1;
  } else {
    while (pos < path.size() && path[pos] == '^') {
      out.push_back(kParentPrefixChar);
      ++pos;
    }
  }
  const std::string_view rest = path.substr(pos);
  if (rest.empty()) {
    if (pos == 0) return make_error(Errc::kInvalidArgument, "AML NameString: empty name");
    out.push_back(kNullName);
    return out;
  }
  Bytes segs;
  std::size_t count = 0;
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = rest.find('.', start);
    auto seg = name_seg(rest.substr(start, dot == std::string_view::npos ? dot : dot - start));
    if (!seg) {
      return make_error(Errc::kInvalidArgument,
                        "AML NameString \"" + std::string(path) + "\": " + seg.error().operation());
    }
    append(segs, *seg);
    ++count;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  if (count > 0xff) {
    return make_error(Errc::kInvalidArgument, "AML NameString: more than 255 segments");
  }
  if (count == 2) {
    out.push_back(kDualNamePrefix);
  } else if (count > 2) {
    out.push_back(kMultiNamePrefix);
    out.push_back(static_cast<std::uint8_t>(count));
  }
  append(out, segs);
  return out;
}

Expected<std::uint32_t> eisa_id_value(std::string_view id) {
  const auto bad = [&] {
    return make_error(Errc::kInvalidArgument,
                      "EISAID \"" + std::string(id) + "\": need 3 letters A-Z and 4 hex digits");
  };
  if (id.size() != 7) return bad();
  std::uint32_t letters = 0;
  for (std::size_t i = 0; i < 3; ++i) {
    if (id[i] < 'A' || id[i] > 'Z') return bad();
    letters = (letters << 5) | static_cast<std::uint32_t>(id[i] - 0x40);
  }
  std::uint32_t product = 0;
  for (std::size_t i = 3; i < 7; ++i) {
    const char c = id[i];
    std::uint32_t digit = 0;
    if (c >= '0' && c <= '9') {
      digit = static_cast<std::uint32_t>(c - '0');
    } else if (c >= 'A' && c <= 'F') {
      digit = static_cast<std::uint32_t>(c - 'A' + 10);
    } else {
      return bad();
    }
    product = (product << 4) | digit;
  }
  // The id is stored big-endian: compressed letters then product, so the
  // little-endian DWord is the byte swap of (letters << 16 | product).
  const std::uint32_t be = (letters << 16) | product;
  return ((be & 0xff) << 24) | ((be & 0xff00) << 8) | ((be >> 8) & 0xff00) | (be >> 24);
}

Term eisa_id(std::string_view id) {
  auto v = eisa_id_value(id);
  if (!v) return tl::unexpected(v.error());
  return dword(*v);
}

Term name(std::string_view path, const Term& object) {
  auto n = name_string(path);
  if (!n) return n;
  if (!object) return object;
  Bytes out{kNameOp};
  append(out, *n);
  append(out, *object);
  return out;
}

Term package(const std::vector<Term>& elements) {
  if (elements.size() > 0xff) {
    return make_error(Errc::kInvalidArgument, "AML Package: more than 255 elements");
  }
  auto children = concat(elements);
  if (!children) return children;
  Bytes body{static_cast<std::uint8_t>(elements.size())};
  append(body, *children);
  return with_pkg_length({kPackageOp}, body);
}

Term scope(std::string_view path, const std::vector<Term>& terms) {
  return named_package({kScopeOp}, path, {}, terms);
}

Term device(std::string_view path, const std::vector<Term>& terms) {
  return named_package({kExtOpPrefix, kDeviceOp}, path, {}, terms);
}

Term method(std::string_view path, std::uint8_t arg_count, bool serialized,
            const std::vector<Term>& terms) {
  if (arg_count > 7) {
    return make_error(Errc::kInvalidArgument, "AML Method: at most 7 arguments");
  }
  const auto flags = static_cast<std::uint8_t>(arg_count | (serialized ? 0x08 : 0x00));
  return named_package({kMethodOp}, path, {flags}, terms);
}

Term return_value(const Term& value) {
  if (!value) return value;
  Bytes out{kReturnOp};
  append(out, *value);
  return out;
}

Term buffer(std::span<const std::uint8_t> data) {
  Bytes body = integer(data.size());
  body.insert(body.end(), data.begin(), data.end());
  return with_pkg_length({kBufferOp}, body);
}

Term resource_template(const std::vector<Term>& descriptors) {
  auto data = concat(descriptors);
  if (!data) return data;
  data->push_back(kEndTag);
  std::uint8_t sum = 0;
  for (auto b : *data) sum = static_cast<std::uint8_t>(sum + b);
  data->push_back(static_cast<std::uint8_t>(0x100 - sum));
  return buffer(*data);
}

Bytes io_port(std::uint16_t min, std::uint16_t max, std::uint8_t alignment, std::uint8_t length) {
  Bytes out{kIoPortTag, 0x01};  // Decode16: the device decodes all 16 address bits
  append_le(out, min, 2);
  append_le(out, max, 2);
  out.push_back(alignment);
  out.push_back(length);
  return out;
}

Bytes memory32_fixed(bool read_write, std::uint32_t base, std::uint32_t length) {
  Bytes out{kMemory32FixedTag};
  append_le(out, 9, 2);  // information byte + base + length
  out.push_back(read_write ? 0x01 : 0x00);
  append_le(out, base, 4);
  append_le(out, length, 4);
  return out;
}

Bytes extended_interrupt(Trigger trigger, Polarity polarity, bool shared, std::uint32_t gsi) {
  Bytes out{kExtendedInterruptTag};
  append_le(out, 6, 2);  // flags + table length + one 32-bit interrupt number
  // Bit 0 consumer, bit 1 edge, bit 2 active low, bit 3 shared.
  out.push_back(static_cast<std::uint8_t>(0x01 | (static_cast<std::uint8_t>(trigger) << 1) |
                                          (static_cast<std::uint8_t>(polarity) << 2) |
                                          (shared ? 0x08 : 0x00)));
  out.push_back(1);
  append_le(out, gsi, 4);
  return out;
}

}  // namespace hvz::x86_64::acpi::aml
