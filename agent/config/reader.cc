// Reading YAML values into the model: one function per value type, each reporting what it
// expected and what it got.
#include <algorithm>
#include <cctype>
#include <map>

#include "parser.h"
#include "sluice/core/net.h"

namespace sluice::detail {

Loc loc_of(const YAML::Node& node, Loc fallback) {
  // yaml-cpp marks an empty value (`port:`) at the next token, often on the next line, so
  // null values report the location of their key instead.
  if (!node.IsDefined() || node.IsNull()) return fallback;
  const YAML::Mark m = node.Mark();
  if (m.is_null()) return fallback;
  return {m.line + 1, m.column + 1};
}

std::string join(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

std::string indexed(const std::string& path, std::size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

std::string list_words(std::span<const std::string_view> words) {
  std::string out;
  for (std::string_view w : words) {
    if (!out.empty()) out += ", ";
    out += w;
  }
  return out;
}

std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return "'" + node.Scalar() + "'";
    default:
      return "nothing";
  }
}

std::optional<MapView> Parser::read_map(const YAML::Node& node, Loc loc, const std::string& path,
                                        std::span<const std::string_view> valid,
                                        std::string_view what) {
  MapView view{path, loc_of(node, loc), {}};
  // An empty map (`limits:` with every line commented out) means "all defaults".
  if (node.IsNull()) return view;
  if (!node.IsMap()) {
    error(view.loc, path,
          "expected " + std::string(what) + " (a map of 'field: value'), got " + describe(node));
    return std::nullopt;
  }
  std::map<std::string, int> seen;  // key -> line
  for (auto it = node.begin(); it != node.end(); ++it) {
    const Loc key_loc = loc_of(it->first, view.loc);
    if (!it->first.IsScalar()) {
      error(key_loc, path, "field names must be plain words, got " + describe(it->first));
      continue;
    }
    const std::string key = it->first.Scalar();
    const std::string field_path = join(path, key);
    // Unknown at every level, so that a misspelled field is never silently ignored (and its
    // default taken); docs/configuration.md, "YAML details".
    if (std::find(valid.begin(), valid.end(), key) == valid.end()) {
      error(key_loc, field_path, "unknown field '" + key + "'; valid fields: " + list_words(valid));
      continue;
    }
    if (auto [first, inserted] = seen.emplace(key, key_loc.line); !inserted) {
      error(key_loc, field_path,
            "field '" + key + "' is set twice (first at line " + std::to_string(first->second) +
                "); remove one");
      continue;
    }
    view.fields.push_back(
        {key, Field{it->second, field_path, key_loc, loc_of(it->second, key_loc)}});
  }
  return view;
}

void Parser::missing(const MapView& map, std::string_view name, std::string_view hint) {
  std::string message = "required field '" + std::string(name) + "' is missing";
  if (!hint.empty()) message += "; " + std::string(hint);
  error(map.loc, join(map.path, name), std::move(message));
}

std::optional<std::string> Parser::read_string(const Field& f, std::string_view expected) {
  if (!f.value.IsScalar()) {
    error(f.loc, f.path, "expected " + std::string(expected) + ", got " + describe(f.value));
    return std::nullopt;
  }
  return f.value.Scalar();
}

std::optional<uint64_t> Parser::read_uint(const Field& f, uint64_t lo, uint64_t hi,
                                          std::string_view plural) {
  const std::string range = std::to_string(lo) + ".." + std::to_string(hi);
  if (!f.value.IsScalar()) {
    error(f.loc, f.path, "expected an integer in " + range + ", got " + describe(f.value));
    return std::nullopt;
  }
  const std::string& text = f.value.Scalar();
  // Tag "!" marks a quoted scalar: YAML says "80" is a string, and accepting it would hide
  // typos such as "8O".
  if (f.value.Tag() == "!") {
    error(f.loc, f.path,
          "expected an integer in " + range + ", got the quoted string \"" + text +
              "\"; remove the quotes");
    return std::nullopt;
  }
  const bool negative = !text.empty() && text[0] == '-';
  const std::string_view digits = std::string_view(text).substr(negative ? 1 : 0);
  bool numeric = !digits.empty();
  uint64_t value = 0;
  bool overflow = false;
  for (char c : digits) {
    if (!std::isdigit(static_cast<unsigned char>(c))) {
      numeric = false;
      break;
    }
    if (value > (UINT64_MAX - 9) / 10) overflow = true;
    value = overflow ? value : value * 10 + static_cast<uint64_t>(c - '0');
  }
  if (!numeric) {
    error(f.loc, f.path, "'" + text + "' is not a number; expected an integer in " + range);
    return std::nullopt;
  }
  // "-0" is 0; any other negative number is out of range.
  if ((negative && value != 0) || overflow || value < lo || value > hi) {
    error(f.loc, f.path, text + " is out of range; valid " + std::string(plural) + " are " + range);
    return std::nullopt;
  }
  return value;
}

std::optional<bool> Parser::read_bool(const Field& f) {
  // YAML 1.2 core schema booleans only: yes/no/on/off are YAML 1.1 and read as strings by
  // most other tools, so accepting them here would make the file mean different things.
  if (f.value.IsScalar() && f.value.Tag() != "!") {
    const std::string& v = f.value.Scalar();
    if (v == "true" || v == "True" || v == "TRUE") return true;
    if (v == "false" || v == "False" || v == "FALSE") return false;
  }
  error(f.loc, f.path, "expected true or false, got " + describe(f.value));
  return std::nullopt;
}

// An address of either family; whether it may be a VIP's or a backend's is validate()'s rule.
std::optional<std::pair<sl_addr, uint8_t>> Parser::read_ip(const Field& f) {
  const std::optional<std::string> text = read_string(f, "an IPv4 or IPv6 address");
  if (!text) return std::nullopt;
  auto parsed = parse_ip(*text);
  if (!parsed) {
    std::string message = "'" + *text + "' is not an IPv4 or IPv6 address";
    if (text->find('/') != std::string::npos) message += "; give one address, without a prefix";
    error(f.loc, f.path, std::move(message));
  }
  return parsed;
}

}  // namespace sluice::detail
