// The filter options of `sluicectl conntrack`, parsed from the words as typed. They are taken
// as text rather than typed CLI11 options so that every mistake gets a message naming the
// option, the bad value and what would be valid (exit 2), which CLI11's generic ones do not.
#include <sluice/core/net.h>
#include <sluice/ctl/ctl.h>

#include <algorithm>
#include <cctype>
#include <charconv>

namespace sluice {

std::string valid_conntrack_states() {
  std::string out;
  for (uint8_t s = 0; s < SL_TCP_STATE_MAX; ++s)
    out += (s ? ", " : "") + std::string(tcp_state_name(s));
  return out;
}

namespace {

// Digits only: from_chars takes no sign, blank or unit, so "-5", " 5" and "5s" are errors
// rather than a number read up to where it stops.
std::optional<uint64_t> parse_u64(std::string_view text) {
  uint64_t v = 0;
  if (text.empty()) return std::nullopt;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return v;
}

// ADDR, ADDR:PORT (IPv4), [ADDR] or [ADDR]:PORT (IPv6; a bare IPv6 address has no port).
Result<ConntrackFilter::HostPort> parse_filter_endpoint(const std::string& option,
                                                        const std::string& text) {
  auto bad = [&](const std::string& why) {
    return Error{0, option + " '" + text + "': " + why +
                        "; expected ADDR or ADDR:PORT (IPv6 with a port: [ADDR]:PORT), "
                        "PORT in 1..65535"};
  };
  std::string addr = text, port;
  if (!text.empty() && text[0] == '[') {
    const std::size_t close = text.find(']');
    if (close == std::string::npos) return bad("no closing ']'");
    addr = text.substr(1, close - 1);
    const std::string rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest[0] != ':') return bad("unexpected '" + rest + "' after ']'");
      port = rest.substr(1);
      if (port.empty()) return bad("empty port");
    }
  } else if (std::count(text.begin(), text.end(), ':') == 1) {
    addr = text.substr(0, text.find(':'));
    port = text.substr(text.find(':') + 1);
    if (port.empty()) return bad("empty port");
  }
  const auto ip = parse_ip(addr);
  if (!ip) return bad("'" + addr + "' is not an IPv4 or IPv6 address");
  ConntrackFilter::HostPort hp;
  hp.addr = ip->first;
  hp.family = ip->second;
  if (!port.empty()) {
    const auto n = parse_u64(port);
    if (!n || *n < 1 || *n > 65535) return bad("'" + port + "' is not a port");
    hp.port = static_cast<uint16_t>(*n);
  }
  return hp;
}

}  // namespace

Result<ConntrackFilter> parse_conntrack_filter(const std::string& state, const std::string& vip,
                                               const std::string& backend,
                                               const std::string& older_than) {
  ConntrackFilter f;
  if (!state.empty()) {
    std::string word = state;
    for (char& c : word) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    for (uint8_t s = 0; s < SL_TCP_STATE_MAX; ++s) {
      if (word == tcp_state_name(s)) f.state = s;
    }
    if (!f.state) {
      return Error{
          0, "--state '" + state + "': unknown state; valid states: " + valid_conntrack_states()};
    }
  }
  if (!vip.empty()) {
    auto hp = parse_filter_endpoint("--vip", vip);
    if (!hp) return hp.error();
    f.vip = *hp;
  }
  if (!backend.empty()) {
    auto hp = parse_filter_endpoint("--backend", backend);
    if (!hp) return hp.error();
    f.backend = *hp;
  }
  if (!older_than.empty()) {
    const auto n = parse_u64(older_than);
    if (!n) {
      return Error{0, "--older-than '" + older_than +
                          "': expected a whole number of seconds (0 or more), e.g. 300"};
    }
    f.older_than_s = *n;
  }
  return f;
}

}  // namespace sluice
