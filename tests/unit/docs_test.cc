// The docs show things that must not drift from the code.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>

#include "sluice/config/config.h"

namespace sluice {
namespace {

std::string read_doc(const std::string& name) {
  std::ifstream in(std::string(SLUICE_DOCS_DIR) + "/" + name);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// docs/configuration.md, "The default config", shows config/default.yaml whole: the copy
// compiled into sluiced must be the copy the reader sees.
TEST(DocsTest, ConfigurationShowsTheDefaultConfig) {
  const std::string doc = read_doc("configuration.md");
  ASSERT_FALSE(doc.empty()) << "cannot read " << SLUICE_DOCS_DIR << "/configuration.md";
  const auto section = doc.find("\n## The default config\n");
  ASSERT_NE(section, std::string::npos) << "configuration.md has no '## The default config'";
  const std::string open = "\n```yaml\n";
  const auto start = doc.find(open, section);
  ASSERT_NE(start, std::string::npos) << "no ```yaml block under '## The default config'";
  const auto end = doc.find("\n```", start + open.size() - 1);
  ASSERT_NE(end, std::string::npos) << "the ```yaml block is not closed";
  const std::string shown = doc.substr(start + open.size(), end + 1 - (start + open.size()));
  const std::string embedded(kDefaultConfigYaml, kDefaultConfigYamlSize);
  if (shown == embedded) return;
  // Name the first line that differs.
  std::istringstream a(shown), b(embedded);
  std::string la, lb;
  for (int line = 1;; ++line) {
    const bool more_a = static_cast<bool>(std::getline(a, la));
    const bool more_b = static_cast<bool>(std::getline(b, lb));
    if (!more_a && !more_b) break;
    if (!more_a || !more_b || la != lb) {
      FAIL() << "configuration.md's copy of config/default.yaml differs at line " << line
             << ":\n  doc:  " << (more_a ? la : "<end>") << "\n  file: " << (more_b ? lb : "<end>")
             << "\nCopy config/default.yaml into the ```yaml block under '## The default config'.";
    }
  }
  FAIL() << "configuration.md's copy of config/default.yaml differs (line endings?)";
}

// The example of docs/configuration.md, `congestion`, is a valid section. It names bbr and
// cubic, so it is checked on hosts that have them.
TEST(DocsTest, ConfigurationsCongestionExampleIsValid) {
  const auto algorithms = available_congestion_algorithms();
  for (const char* name : {"bbr", "cubic"}) {
    if (!algorithms || std::find(algorithms->begin(), algorithms->end(), name) == algorithms->end())
      GTEST_SKIP() << "this host has no " << name << " (" << kAvailableCcPath << ")";
  }
  const std::string doc = read_doc("configuration.md");
  const auto section = doc.find("\n### `congestion`\n");
  ASSERT_NE(section, std::string::npos) << "configuration.md has no '### `congestion`'";
  const std::string open = "\n```yaml\n";
  const auto start = doc.find(open, section);
  ASSERT_NE(start, std::string::npos) << "no ```yaml block under '### `congestion`'";
  const auto end = doc.find("\n```", start + open.size() - 1);
  ASSERT_NE(end, std::string::npos) << "the ```yaml block is not closed";
  const std::string example = doc.substr(start + open.size(), end + 1 - (start + open.size()));
  const ConfigResult r = parse_config(
      "interfaces: [eth0]\nvips:\n  - {address: 198.19.0.1, port: 80, protocol: tcp, "
      "backends: [{address: 10.0.0.1}]}\n" +
          example,
      "configuration.md");
  std::string errors;
  for (const ConfigError& e : r.errors) errors += e.to_string() + "\n";
  ASSERT_TRUE(r.config) << errors;
  EXPECT_EQ(r.config->congestion.rules.size(), 2u);
}

}  // namespace
}  // namespace sluice
