// What the `congestion` section's model needs beyond its fields: prefixes compared and printed,
// and the host's list of congestion control algorithms.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "sluice/config/config.h"
#include "sluice/core/net.h"

namespace sluice {

std::string format_cidr(const Cidr& c) {
  return format_ip(c.addr, c.family) + "/" + std::to_string(c.len);
}

bool cidr_contains(const Cidr& outer, const Cidr& inner) {
  if (outer.family != inner.family || outer.len > inner.len) return false;
  const auto* a = reinterpret_cast<const uint8_t*>(outer.addr.w);
  const auto* b = reinterpret_cast<const uint8_t*>(inner.addr.w);
  const unsigned bytes = outer.len / 8, bits = outer.len % 8;
  if (std::memcmp(a, b, bytes) != 0) return false;
  if (bits == 0) return true;
  const uint8_t mask = static_cast<uint8_t>(0xff << (8 - bits));
  return (a[bytes] & mask) == (b[bytes] & mask);
}

std::optional<std::vector<std::string>> available_congestion_algorithms(const char* path) {
  std::FILE* fp = std::fopen(path, "r");
  if (fp == nullptr) return std::nullopt;
  std::string text;
  char buf[512];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), fp)) > 0) text.append(buf, n);
  const bool failed = std::ferror(fp) != 0;
  std::fclose(fp);
  if (failed) return std::nullopt;
  std::vector<std::string> names;
  std::istringstream words(text);
  for (std::string w; words >> w;) names.push_back(w);
  // sluice_aimd is listed only while registered; a config read before the agent starts (or
  // by `sluiced --check`) may name it all the same.
  if (std::find(names.begin(), names.end(), SL_CC_OURS) == names.end()) names.push_back(SL_CC_OURS);
  return names;
}

}  // namespace sluice
