// JsonDocument (see json_document.hpp): a token scan for serde's depth
// limit and positions, then nlohmann's SAX parser building the DOM.
#include "api/json_document.hpp"

#include <nlohmann/json.hpp>

#include <map>
#include <unordered_map>
#include <utility>
#include <vector>

namespace hvz::api {

using nlohmann::json;

std::string position_suffix(const std::optional<TextPosition>& p) {
  if (!p) return "";
  return " at line " + std::to_string(p->line) + " column " + std::to_string(p->column);
}

namespace {

// serde_json's recursion limit.
constexpr std::size_t kMaxDepth = 128;

// The tokens of a JSON text that carry a SAX event, in order, with where
// each ends. Run before parsing (for the depth limit) it must cope with any
// bytes; its positions are used only once nlohmann accepted the text, and
// then the events and these tokens correspond one to one.
struct Token {
  enum Kind { kOpenObject, kCloseObject, kOpenArray, kCloseArray, kKey, kScalar } kind;
  TextPosition end;
};

struct Scan {
  std::vector<Token> tokens;
  std::optional<std::string> error;  // the depth limit
};

Scan scan(std::string_view text) {
  Scan out;
  std::size_t line = 1, column = 0, i = 0, depth = 0;
  // Moves past text[i] (which exists), keeping line and column current.
  auto step = [&] {
    if (text[i] == '\n') {
      ++line;
      column = 0;
    } else {
      ++column;
    }
    ++i;
  };
  auto here = [&] { return TextPosition{line, column}; };
  auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (i < text.size()) {
    const char c = text[i];
    if (is_space(c) || c == ',' || c == ':') {
      step();
    } else if (c == '{' || c == '[') {
      step();
      if (++depth >= kMaxDepth) {
        out.error = "recursion limit exceeded" + position_suffix(here());
        return out;
      }
      out.tokens.push_back({c == '{' ? Token::kOpenObject : Token::kOpenArray, here()});
    } else if (c == '}' || c == ']') {
      step();
      if (depth > 0) --depth;
      out.tokens.push_back({c == '}' ? Token::kCloseObject : Token::kCloseArray, here()});
    } else if (c == '"') {
      step();
      while (i < text.size() && text[i] != '"') {
        if (text[i] == '\\' && i + 1 < text.size()) step();
        step();
      }
      if (i < text.size()) step();
      const TextPosition end = here();
      std::size_t j = i;
      while (j < text.size() && is_space(text[j])) ++j;
      const bool key = j < text.size() && text[j] == ':';
      out.tokens.push_back({key ? Token::kKey : Token::kScalar, end});
    } else {
      while (i < text.size() && !is_space(text[i]) &&
             std::string_view(",:[]{}\"").find(text[i]) == std::string_view::npos) {
        step();
      }
      out.tokens.push_back({Token::kScalar, here()});
    }
  }
  return out;
}

const void* heap_of(const json& v) {
  if (v.is_object()) return v.get_ptr<const json::object_t*>();
  if (v.is_array()) return v.get_ptr<const json::array_t*>();
  return nullptr;
}

}  // namespace

struct JsonDocument::Impl {
  struct Member {
    std::optional<TextPosition> key;
    std::optional<TextPosition> value;
  };
  std::unique_ptr<json> root = std::make_unique<json>();
  std::optional<TextPosition> root_end;
  // Objects and arrays by their heap storage (which stays put while the
  // json values holding it move), object members by address (std::map
  // nodes stay put), scalars in arrays by (array storage, index).
  std::unordered_map<const void*, TextPosition> containers;
  std::unordered_map<const json*, Member> members;
  std::map<std::pair<const void*, std::size_t>, TextPosition> elements;
};

namespace {

// Builds the DOM as nlohmann's own SAX DOM parser does, refusing duplicate
// keys and recording positions from the scanned tokens.
class DocumentBuilder {
 public:
  DocumentBuilder(JsonDocument::Impl& doc, const std::vector<Token>& tokens)
      : doc_(doc), tokens_(tokens) {}

  bool null() { return scalar(json(nullptr)); }
  bool boolean(bool v) { return scalar(json(v)); }
  bool number_integer(json::number_integer_t v) { return scalar(json(v)); }
  bool number_unsigned(json::number_unsigned_t v) { return scalar(json(v)); }
  bool number_float(json::number_float_t v, const json::string_t&) { return scalar(json(v)); }
  bool string(json::string_t& v) { return scalar(json(std::move(v))); }
  bool binary(json::binary_t&) { return false; }  // not in JSON text
  bool start_object(std::size_t) { return open(json::value_t::object, Token::kOpenObject); }
  bool start_array(std::size_t) { return open(json::value_t::array, Token::kOpenArray); }
  bool end_object() { return close(Token::kCloseObject); }
  bool end_array() { return close(Token::kCloseArray); }

  bool key(json::string_t& k) {
    const auto pos = next(Token::kKey);
    json& object = *stack_.back().node;
    if (object.contains(k)) {
      error_ = "duplicate field `" + k + "`" + position_suffix(pos);
      return false;
    }
    member_ = &object[k];
    doc_.members[member_].key = pos;
    return true;
  }

  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) {
    // "[json.exception.parse_error.101] parse error at line 1, column 2: …"
    std::string what = e.what();
    const auto bracket = what.find("] ");
    if (what.rfind("[json.exception.", 0) == 0 && bracket != std::string::npos) {
      what.erase(0, bracket + 2);
    }
    error_ = what;
    return false;
  }

  const std::string& error() const { return error_; }

 private:
  struct Frame {
    json* node;
    json* member;  // the object member it is, or null
  };

  std::optional<TextPosition> next(Token::Kind kind) {
    if (!positions_ok_ || index_ >= tokens_.size() || tokens_[index_].kind != kind) {
      positions_ok_ = false;  // cannot happen; positions are then left out
      return std::nullopt;
    }
    return tokens_[index_++].end;
  }

  // Puts `v` where the parser is: the root, the end of an array or the
  // member whose key came last.
  json* place(json&& v) {
    if (stack_.empty()) {
      *doc_.root = std::move(v);
      return doc_.root.get();
    }
    json& parent = *stack_.back().node;
    if (parent.is_array()) {
      parent.push_back(std::move(v));
      return &parent.back();
    }
    *member_ = std::move(v);
    return member_;
  }

  void record_scalar(const std::optional<TextPosition>& pos) {
    if (!pos) return;
    if (stack_.empty()) {
      doc_.root_end = pos;
    } else if (stack_.back().node->is_array()) {
      const json& array = *stack_.back().node;
      doc_.elements[{heap_of(array), array.size() - 1}] = *pos;
    } else {
      doc_.members[member_].value = pos;
    }
  }

  bool scalar(json&& v) {
    const auto pos = next(Token::kScalar);
    place(std::move(v));
    // After place(): an array element's index is known only then.
    record_scalar(pos);
    return true;
  }

  bool open(json::value_t type, Token::Kind kind) {
    next(kind);
    const bool in_object = !stack_.empty() && stack_.back().node->is_object();
    json* node = place(json(type));
    stack_.push_back({node, in_object ? node : nullptr});
    return true;
  }

  bool close(Token::Kind kind) {
    const auto pos = next(kind);
    const Frame f = stack_.back();
    stack_.pop_back();
    if (!pos) return true;
    doc_.containers[heap_of(*f.node)] = *pos;
    if (f.member) doc_.members[f.member].value = pos;
    if (stack_.empty()) doc_.root_end = pos;
    return true;
  }

  JsonDocument::Impl& doc_;
  const std::vector<Token>& tokens_;
  std::size_t index_ = 0;
  bool positions_ok_ = true;
  std::vector<Frame> stack_;
  json* member_ = nullptr;
  std::string error_;
};

}  // namespace

JsonDocument::JsonDocument(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
JsonDocument::JsonDocument(JsonDocument&&) noexcept = default;
JsonDocument& JsonDocument::operator=(JsonDocument&&) noexcept = default;
JsonDocument::~JsonDocument() = default;

Expected<JsonDocument> JsonDocument::parse(std::string_view text) {
  const Scan s = scan(text);
  if (s.error) return make_error(Errc::kInvalidArgument, *s.error);
  auto impl = std::make_unique<Impl>();
  DocumentBuilder builder(*impl, s.tokens);
  bool ok = false;
  try {
    ok = json::sax_parse(text.data(), text.data() + text.size(), &builder);
  } catch (const json::exception& e) {
    return make_error(Errc::kInvalidArgument, e.what());
  }
  if (!ok) {
    return make_error(Errc::kInvalidArgument,
                      builder.error().empty() ? "malformed JSON" : builder.error());
  }
  return JsonDocument(std::move(impl));
}

const json& JsonDocument::root() const {
  return *impl_->root;
}

std::optional<TextPosition> JsonDocument::end_of(const json& value) const {
  if (const void* heap = heap_of(value)) {
    const auto it = impl_->containers.find(heap);
    if (it != impl_->containers.end()) return it->second;
  }
  const auto it = impl_->members.find(&value);
  if (it != impl_->members.end()) return it->second.value;
  if (&value == impl_->root.get()) return impl_->root_end;
  return std::nullopt;
}

std::optional<TextPosition> JsonDocument::key_end(const json& member) const {
  const auto it = impl_->members.find(&member);
  return it == impl_->members.end() ? std::nullopt : it->second.key;
}

std::optional<TextPosition> JsonDocument::element_end(const json& array, std::size_t index) const {
  if (!array.is_array() || index >= array.size()) return std::nullopt;
  if (heap_of(array[index])) return end_of(array[index]);
  const auto it = impl_->elements.find({heap_of(array), index});
  if (it == impl_->elements.end()) return std::nullopt;
  return it->second;
}

}  // namespace hvz::api
