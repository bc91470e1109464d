// Text helpers shared by sluicectl's listings (conntrack, cc): the aligned table and the
// two-unit durations, so that every listing lines up and reads times the same way.
#pragma once

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace sluice::ctl {

// "42s", "5m03s", "2h05m", "4d23h": the two leading units, like `ps` and `kubectl`.
inline std::string format_duration(double s) {
  const uint64_t t = static_cast<uint64_t>(s < 0 ? 0 : s);
  if (t < 60) return fmt::format("{}s", t);
  if (t < 3600) return fmt::format("{}m{:02}s", t / 60, t % 60);
  if (t < 86400) return fmt::format("{}h{:02}m", t / 3600, t % 3600 / 60);
  return fmt::format("{}d{:02}h", t / 86400, t % 86400 / 3600);
}

// A table with a header line, columns two spaces apart and as wide as their widest cell
// (title included), no trailing blanks.
struct Col {
  const char* title;
  bool right;
};
template <std::size_t N>
std::string render_table(const Col (&cols)[N],
                         const std::vector<std::array<std::string, N>>& rows) {
  std::array<std::size_t, N> width{};
  for (std::size_t c = 0; c < N; ++c) {
    width[c] = std::strlen(cols[c].title);
    for (const auto& r : rows) width[c] = std::max(width[c], r[c].size());
  }
  auto line = [&](const std::array<std::string, N>& cells) {
    std::string s;
    for (std::size_t c = 0; c < N; ++c) {
      if (c) s += "  ";
      s += cols[c].right ? fmt::format("{:>{}}", cells[c], width[c])
                         : fmt::format("{:<{}}", cells[c], width[c]);
    }
    while (!s.empty() && s.back() == ' ') s.pop_back();
    return s + "\n";
  };
  std::array<std::string, N> titles;
  for (std::size_t c = 0; c < N; ++c) titles[c] = cols[c].title;
  std::string out = line(titles);
  for (const auto& r : rows) out += line(r);
  return out;
}

}  // namespace sluice::ctl
