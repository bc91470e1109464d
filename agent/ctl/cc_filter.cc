// The options of `sluicectl cc`, parsed from the words as typed, as for conntrack's filters
// (conntrack_filter.cc): every mistake gets a message naming the option, the bad value and
// what would be valid (exit 2).
#include <sluice/core/net.h>
#include <sluice/ctl/ctl.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstring>

namespace sluice {

namespace {

// Digits only, as conntrack's filters read numbers: "-5", " 5" and "5s" are errors.
std::optional<uint32_t> parse_u32(std::string_view text) {
  uint32_t v = 0;
  if (text.empty()) return std::nullopt;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return v;
}

// The prefix with its host bits cleared.
sl_addr network_of(sl_addr a, uint8_t len) {
  auto* b = reinterpret_cast<uint8_t*>(&a);
  for (int i = 0; i < 16; ++i) {
    const int keep = std::clamp(static_cast<int>(len) - 8 * i, 0, 8);
    b[i] &= static_cast<uint8_t>(0xff00 >> keep);
  }
  return a;
}

// ADDR or ADDR/LEN, IPv4 or IPv6 (brackets allowed around an IPv6 address).
Result<CcFilter::Prefix> parse_dst(const std::string& text) {
  auto bad = [&](const std::string& why) {
    return Error{0, "--dst '" + text + "': " + why +
                        "; expected ADDR or ADDR/LEN (CIDR), e.g. 198.18.0.0/16 or fd00::/8"};
  };
  const std::size_t slash = text.find('/');
  std::string addr = text.substr(0, slash);
  if (addr.size() >= 2 && addr.front() == '[' && addr.back() == ']')
    addr = addr.substr(1, addr.size() - 2);
  const auto ip = parse_ip(addr);
  if (!ip) return bad("'" + addr + "' is not an IPv4 or IPv6 address");
  CcFilter::Prefix p{ip->first, ip->second, 0};
  const uint32_t max = p.family == SL_AF_INET ? 32 : 128;
  p.len = static_cast<uint8_t>(max);
  if (slash != std::string::npos) {
    const std::string len_text = text.substr(slash + 1);
    const auto len = parse_u32(len_text);
    if (!len || *len > max)
      return bad("'" + len_text + "' is not a prefix length (0.." + std::to_string(max) + ")");
    p.len = static_cast<uint8_t>(*len);
  }
  const sl_addr net = network_of(p.addr, p.len);
  if (std::memcmp(&net, &p.addr, sizeof(net)) != 0) {
    return bad("host bits set after /" + std::to_string(p.len) + " (did you mean " +
               format_ip(net, p.family) + "/" + std::to_string(p.len) + "?)");
  }
  return p;
}

// The kernel's algorithm names: TCP_CA_NAME_MAX, letters, digits, '_' and '-'.
bool valid_cc_name(const std::string& s) {
  if (s.empty() || s.size() >= SL_CC_NAME_MAX) return false;
  for (char c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-') return false;
  return true;
}

}  // namespace

Result<CcFilter> parse_cc_filter(const std::string& rule, const std::string& dst,
                                 const std::string& cc) {
  CcFilter f;
  if (!rule.empty()) {
    if (rule.size() >= SL_CC_RULE_NAME_MAX) {
      return Error{0, "--rule '" + rule + "': rule names are at most " +
                          std::to_string(SL_CC_RULE_NAME_MAX - 1) + " characters"};
    }
    f.rule = rule;
  }
  if (!dst.empty()) {
    auto p = parse_dst(dst);
    if (!p) return p.error();
    f.dst = *p;
  }
  if (!cc.empty()) {
    if (!valid_cc_name(cc)) {
      return Error{0, "--cc '" + cc + "': expected an algorithm name of 1 to " +
                          std::to_string(SL_CC_NAME_MAX - 1) +
                          " letters, digits, '_' or '-', e.g. cubic, bbr, reno or " SL_CC_OURS};
    }
    f.cc = cc;
  }
  return f;
}

Result<double> parse_watch_interval(const std::string& text) {
  double v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || !std::isfinite(v) ||
      v < 0.1 || v > 86400) {
    return Error{0, "--watch '" + text +
                        "': expected SECONDS between the redraws, from 0.1 to 86400, e.g. 2 "
                        "or 0.5"};
  }
  return v;
}

Status check_cc_rule(const CcFilter& filter, const std::vector<CcRuleName>& rules) {
  if (!filter.rule) return {};
  std::string names;
  for (const CcRuleName& r : rules) {
    if (r.name == *filter.rule) return {};
    names += (names.empty() ? "" : ", ") + r.name;
  }
  return Error{0, "--rule '" + *filter.rule + "': no rule of that name; rules: " +
                      (names.empty() ? "none (the policy has no rules yet)" : names)};
}

}  // namespace sluice
