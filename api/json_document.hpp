// JsonDocument: JSON text parsed the way Firecracker's serde_json parses
// request bodies and config files, with where each value ends in the text,
// for serde-style messages ("... at line 1 column 21").
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

#include "vmm/core/error.hpp"

namespace hvz::api {

// Where a token ends in a JSON text, counted as serde_json does: the line
// (from 1) and the column (from 1, in bytes) of the token's last byte.
struct TextPosition {
  std::size_t line = 0;
  std::size_t column = 0;
};

// A JSON text parsed as Firecracker's serde_json parses request bodies and
// config files: a key twice in one object is an error ("duplicate field
// `x`"), nesting stops at 128 levels ("recursion limit exceeded"), and the
// values remember where they end in the text, for messages that point
// there. Other syntax errors carry nlohmann's description.
class JsonDocument {
 public:
  static Expected<JsonDocument> parse(std::string_view text);
  JsonDocument(JsonDocument&&) noexcept;
  JsonDocument& operator=(JsonDocument&&) noexcept;
  ~JsonDocument();

  const nlohmann::json& root() const;
  // Where a value of this document ends: the root, any object or array, or
  // a member of an object (a reference into root(), not a copy).
  std::optional<TextPosition> end_of(const nlohmann::json& value) const;
  // Where the key of `member` (a member of an object) ends.
  std::optional<TextPosition> key_end(const nlohmann::json& member) const;
  // Where element `index` of `array` ends.
  std::optional<TextPosition> element_end(const nlohmann::json& array, std::size_t index) const;

  struct Impl;  // the DOM and the positions; public only for the parser

 private:
  explicit JsonDocument(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// " at line L column C" (serde's wording), or "" without a position.
std::string position_suffix(const std::optional<TextPosition>& position);

}  // namespace hvz::api
