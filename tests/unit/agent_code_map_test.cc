// The shape of agent/ that docs/design.md ("Code map") promises, checked on every run so it
// cannot drift: each component includes only the components below it (no cycles, no arrow
// upwards), links only those in its CMakeLists.txt, and no file or function grows past what
// a reader takes in at once (600 lines a file, 80 a function).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace sluice {
namespace {

namespace fs = std::filesystem;

// The dependency graph of docs/design.md, "Code map": each component and the components it
// may use directly. A component may also use whatever those use (the closure).
const std::map<std::string, std::set<std::string>>& allowed_deps() {
  static const std::map<std::string, std::set<std::string>> kDeps = {
      {"abi", {}},
      {"core", {"abi"}},
      {"config", {"core"}},
      {"apply", {"config"}},
      {"bpf", {"apply"}},
      {"conntrack", {"bpf"}},
      {"health", {"config"}},
      {"http", {"core"}},
      {"metrics", {"http", "bpf"}},
      {"cc", {"metrics", "bpf"}},
      {"api", {"config"}},
      {"daemon", {"api", "metrics", "health", "conntrack", "cc"}},
      {"ctl", {"api", "bpf", "cc"}},
  };
  return kDeps;
}

std::set<std::string> closure(const std::string& component) {
  std::set<std::string> out;
  std::vector<std::string> todo{component};
  while (!todo.empty()) {
    const std::string c = todo.back();
    todo.pop_back();
    for (const std::string& d : allowed_deps().at(c))
      if (out.insert(d).second) todo.push_back(d);
  }
  return out;
}

fs::path source_dir() { return fs::path(SLUICE_DOCS_DIR).parent_path(); }

std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Every C++ file of a component: agent/<c>/ and include/sluice/<c>/.
std::vector<fs::path> component_files(const std::string& c) {
  std::vector<fs::path> out;
  for (const fs::path& dir : {source_dir() / "agent" / c, source_dir() / "include/sluice" / c}) {
    if (!fs::is_directory(dir)) continue;
    for (const auto& e : fs::directory_iterator(dir)) {
      const std::string ext = e.path().extension();
      if (ext == ".cc" || ext == ".h") out.push_back(e.path());
    }
  }
  return out;
}

TEST(CodeShape, TheGraphHasNoCycle) {
  // A component must not reach itself through its dependencies.
  for (const auto& [c, deps] : allowed_deps()) {
    for (const std::string& d : deps) ASSERT_TRUE(allowed_deps().count(d)) << c << " -> " << d;
    EXPECT_FALSE(closure(c).count(c)) << c << " depends on itself";
  }
}

TEST(CodeShape, EveryAgentFolderIsAComponentOfTheGraph) {
  ASSERT_TRUE(fs::is_directory(source_dir() / "agent")) << source_dir();
  for (const auto& e : fs::directory_iterator(source_dir() / "agent")) {
    if (!e.is_directory()) continue;
    EXPECT_TRUE(allowed_deps().count(e.path().filename()))
        << e.path() << " is not in the code map (docs/design.md and this test)";
  }
}

TEST(CodeShape, ComponentsIncludeOnlyWhatIsBelowThem) {
  const std::regex include(R"(#include\s*[<"]sluice/([a-z_]+)/)");
  for (const auto& [c, deps] : allowed_deps()) {
    const std::set<std::string> ok = closure(c);
    for (const fs::path& f : component_files(c)) {
      const std::string text = read_file(f);
      for (std::sregex_iterator it(text.begin(), text.end(), include), end; it != end; ++it) {
        const std::string used = (*it)[1];
        EXPECT_TRUE(used == c || ok.count(used))
            << f << " (component " << c << ") includes sluice/" << used << "/";
      }
    }
  }
}

TEST(CodeShape, ComponentsLinkOnlyWhatIsBelowThem) {
  const std::regex lib(R"(sluice_([a-z_]+))");
  for (const auto& [c, deps] : allowed_deps()) {
    const fs::path cmake = source_dir() / "agent" / c / "CMakeLists.txt";
    if (!fs::exists(cmake)) continue;
    const std::set<std::string> ok = closure(c);
    std::string text = read_file(cmake);
    for (std::sregex_iterator it(text.begin(), text.end(), lib), end; it != end; ++it) {
      const std::string used = (*it)[1];
      if (!allowed_deps().count(used)) continue;  // sluice_skel_*, sluice_component()
      EXPECT_TRUE(used == c || ok.count(used)) << cmake << " links sluice_" << used;
    }
  }
}

// Blanks out comments and string/char literals, keeping the newlines, so braces and
// keywords inside them are not counted.
std::string code_only(const std::string& s) {
  std::string out = s;
  enum { kCode, kLine, kBlock, kStr, kChr, kRaw } st = kCode;
  std::string raw_end;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i], n = i + 1 < s.size() ? s[i + 1] : '\0';
    auto blank = [&] {
      if (out[i] != '\n') out[i] = ' ';
    };
    switch (st) {
      case kCode:
        if (c == '/' && n == '/')
          st = kLine, blank();
        else if (c == '/' && n == '*')
          st = kBlock, blank();
        else if (c == 'R' && n == '"') {
          const size_t paren = s.find('(', i);
          raw_end = ")" + s.substr(i + 2, paren - i - 2) + "\"";
          st = kRaw;
        } else if (c == '"')
          st = kStr;
        else if (c == '\'' && !(i > 0 && std::isxdigit(static_cast<unsigned char>(s[i - 1]))))
          st = kChr;
        break;
      case kLine:
        if (c == '\n')
          st = kCode;
        else
          blank();
        break;
      case kBlock:
        blank();
        if (c == '*' && n == '/') out[i + 1] = ' ', ++i, st = kCode;
        break;
      case kStr:
      case kChr:
        if (c == '\\') {
          blank();
          if (out[i + 1] != '\n') out[i + 1] = ' ';
          ++i;
          break;
        }
        if ((st == kStr && c == '"') || (st == kChr && c == '\''))
          st = kCode;
        else
          blank();
        break;
      case kRaw:
        if (s.compare(i, raw_end.size(), raw_end) == 0)
          i += raw_end.size() - 1, st = kCode;
        else
          blank();
        break;
    }
  }
  return out;
}

struct LongFunction {
  int line = 0;
  int lines = 0;
};

// Function bodies longer than `limit` lines (signature to closing brace). A brace opens a
// function body when it is not inside one already and its statement is neither a namespace,
// a type, nor an initializer (`= {`).
std::vector<LongFunction> long_functions(const std::string& text, int limit) {
  const std::string code = code_only(text);
  std::vector<LongFunction> out;
  std::vector<bool> stack;  // true: a function body
  int depth_in_fn = 0, line = 1, stmt_line = 1, fn_line = 0;
  std::string stmt;
  for (char c : code) {
    if (c == '\n') ++line;
    if (c == '{') {
      const bool in_fn = depth_in_fn > 0;
      static const std::regex scope(
          R"(^\s*(template\s*<[^>]*>\s*)?(namespace|extern|class|struct|union|enum)\b)");
      const bool opens_fn = !in_fn && !std::regex_search(stmt, scope) &&
                            stmt.find('(') != std::string::npos &&
                            !std::regex_search(stmt, std::regex(R"(=\s*$)"));
      if (opens_fn) fn_line = stmt_line;
      stack.push_back(in_fn || opens_fn);
      if (stack.back()) ++depth_in_fn;
      stmt.clear();
      stmt_line = line;
    } else if (c == '}') {
      if (!stack.empty()) {
        if (stack.back() && --depth_in_fn == 0 && line - fn_line + 1 > limit)
          out.push_back({fn_line, line - fn_line + 1});
        stack.pop_back();
      }
      stmt.clear();
      stmt_line = line;
    } else if (c == ';') {
      stmt.clear();
      stmt_line = line;
    } else {
      if (stmt.find_first_not_of(" \t\n") == std::string::npos && !std::isspace(c))
        stmt_line = line;
      stmt += c;
    }
  }
  return out;
}

std::vector<fs::path> agent_sources() {
  std::vector<fs::path> out;
  for (const auto& e : fs::recursive_directory_iterator(source_dir() / "agent")) {
    const std::string ext = e.path().extension();
    if (ext == ".cc" || ext == ".h") out.push_back(e.path());
  }
  for (const auto& e : fs::recursive_directory_iterator(source_dir() / "include/sluice")) {
    if (e.path().extension() == ".h" && e.path().parent_path().filename() != "abi")
      out.push_back(e.path());
  }
  return out;
}

TEST(CodeShape, NoAgentFileOver600Lines) {
  for (const fs::path& f : agent_sources()) {
    const std::string text = read_file(f);
    const auto lines = std::count(text.begin(), text.end(), '\n');
    EXPECT_LE(lines, 600) << f;
  }
}

TEST(CodeShape, NoAgentFunctionOver80Lines) {
  for (const fs::path& f : agent_sources()) {
    for (const LongFunction& fn : long_functions(read_file(f), 80))
      ADD_FAILURE() << f.string() << ":" << fn.line << ": a function of " << fn.lines
                    << " lines (at most 80)";
  }
}

// The checker itself: it must see a long function, and not mistake a table or a class for one.
TEST(CodeShape, TheFunctionCounterCountsFunctions) {
  std::string body;
  for (int i = 0; i < 85; ++i) body += "  x += \"}\"; // {\n";
  const std::string text = "namespace a {\nstruct S {\n  int f() {\n" + body +
                           "  }\n};\nconst int t[] = {\n" + body + "};\n}  // namespace a\n";
  const auto found = long_functions(text, 80);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].line, 3);
  EXPECT_EQ(found[0].lines, 87);
}

}  // namespace
}  // namespace sluice
