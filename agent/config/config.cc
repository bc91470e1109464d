// The config file as a whole: one YAML document, parsed section by section (parse_*.cc), then
// the rules across fields (validate.cc); every error found is returned, in file order.
#include "sluice/config/config.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <tuple>

#include "parser.h"

namespace sluice::detail {
namespace {

constexpr std::string_view kTopFields[] = {"interfaces", "log_level", "limits", "conntrack", "vips",
                                           "metrics",    "api",       "track",  "congestion"};

// What a line scan can tell about the text that yaml-cpp's single-document Load does not.
// Lines are 1-based; 0 = none.
struct TextScan {
  int first_content_line = 0;    // first line that is not blank, a comment or a directive
  int second_document_line = 0;  // where a second document starts
};

// YAML forbids a line starting with "---" or "..." (followed by a blank or the line end)
// inside any scalar or collection, so such a line is always a document marker and a plain line
// scan finds them exactly.
TextScan scan_text(std::string_view text) {
  TextScan scan;
  bool ended = false;  // a "..." closed the first document
  int line_no = 0;
  for (std::size_t pos = 0; pos <= text.size();) {
    std::size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const std::string_view head = line.substr(0, 3);
    const bool marker =
        (head == "---" || head == "...") && (line.size() == 3 || line[3] == ' ' || line[3] == '\t');
    if (marker) {
      const bool start = line[0] == '-';
      if (scan.first_content_line > 0 && scan.second_document_line == 0 && (start || !ended)) {
        if (start) {
          scan.second_document_line = line_no;
        } else {
          ended = true;
        }
      }
      line.remove_prefix(3);  // "--- a: 1" carries content on the marker line
    }
    const std::size_t first = line.find_first_not_of(" \t");
    const bool content = first != std::string_view::npos && line[first] != '#' &&
                         !(line[first] == '%' && scan.first_content_line == 0);
    if (!content) continue;
    if (scan.first_content_line == 0) {
      scan.first_content_line = line_no;
    } else if (ended && scan.second_document_line == 0) {
      scan.second_document_line = line_no;
    }
  }
  return scan;
}

}  // namespace

// validate()'s errors, placed where the parser found the fields they name.
void Parser::add_validate_errors() {
  for (ConfigError& e : validate(cfg_, notes_)) {
    e.file = file_;
    if (auto it = where_.find(e.field); it != where_.end()) {
      e.line = it->second.line;
      e.column = it->second.column;
    }
    errors_.push_back(std::move(e));
  }
}

ConfigResult Parser::run(std::string_view text) {
  // YAML::Load, not LoadAll: yaml-cpp 0.7's LoadAll loops forever, allocating, on a document
  // that starts with a stray ',' (the parser returns an empty document without consuming the
  // token). Load reads only the first document; the text scan finds any others.
  const TextScan scan = scan_text(text);
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    const Loc loc = e.mark.is_null() ? Loc{} : Loc{e.mark.line + 1, e.mark.column + 1};
    error(loc, "", "invalid YAML: " + e.msg);
    return {std::nullopt, std::move(errors_)};
  }
  if (scan.second_document_line > 0) {
    error({scan.second_document_line, 1}, "",
          "a second YAML document starts here; sluice reads exactly one document per file "
          "(remove the '---' or '...' separator and what follows)");
  }
  if (root.IsNull()) {
    if (scan.first_content_line == 0) {
      error({1, 1}, "", "the config is empty; it needs at least 'interfaces' and 'vips'");
    } else {
      error({scan.first_content_line, 1}, "",
            "invalid YAML: expected the top level of the config (a map of 'field: value') to "
            "start here");
    }
    return {std::nullopt, std::move(errors_)};
  }

  // Every section is parsed whatever the others found: the operator gets every error at once.
  if (auto top = read_map(root, {1, 1}, "", kTopFields, "the top level of the config")) {
    parse_limits(*top);
    parse_conntrack(*top);
    parse_log_level(*top);
    parse_metrics(*top);
    parse_api(*top);
    parse_interfaces(*top);
    parse_track(*top);
    parse_vips(*top);
    parse_congestion(*top);
    add_validate_errors();
  }

  // Cross-field checks run after the per-field ones; report in file order.
  std::stable_sort(errors_.begin(), errors_.end(), [](const ConfigError& a, const ConfigError& b) {
    return std::tie(a.line, a.column) < std::tie(b.line, b.column);
  });
  // Any error and no Config at all: a bad file is rejected whole and the running config
  // stays in force.
  if (!errors_.empty()) return {std::nullopt, std::move(errors_)};
  return {std::move(cfg_), {}};
}

}  // namespace sluice::detail

namespace sluice {

std::string ConfigError::to_string() const {
  std::string out = file;
  if (line > 0) {
    out += ":" + std::to_string(line);
    if (column > 0) out += ":" + std::to_string(column);
  }
  if (!field.empty()) out += ": " + field;
  out += ": " + message;
  return out;
}

ConfigResult parse_config(std::string_view yaml_text, std::string_view file_name) {
  // yaml-cpp reports through exceptions, and allocation can fail anywhere: nothing may escape.
  try {
    return detail::Parser(file_name).run(yaml_text);
  } catch (const std::exception& e) {
    return {std::nullopt,
            {{std::string(file_name), 0, 0, "", std::string("internal error: ") + e.what()}}};
  }
}

ConfigResult load_config_file(const std::string& path) {
  auto fail = [&path](int err) {
    return ConfigResult{
        std::nullopt,
        {{path, 0, 0, "", std::string("cannot read the config file: ") + std::strerror(err)}}};
  };
  std::FILE* fp = std::fopen(path.c_str(), "rb");
  if (fp == nullptr) return fail(errno);
  std::string text;
  char buf[65536];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), fp)) > 0) text.append(buf, n);
  // Reading a directory fails here (EISDIR), not at fopen.
  const int err = std::ferror(fp) ? errno : 0;
  std::fclose(fp);
  if (err != 0) return fail(err);
  return parse_config(text, path);
}

ConfigResult default_config() {
  return parse_config(std::string_view(kDefaultConfigYaml, kDefaultConfigYamlSize),
                      "<embedded default>");
}

}  // namespace sluice
