// The cross-field rules of a Config (docs/configuration.md, "Rules across fields"). They run in
// the order the parser used to meet them in a file, so errors at one position keep their order.
#include "sluice/config/validate.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <map>
#include <string>
#include <tuple>

#include "sluice/core/net.h"
#include "validate_internal.h"

namespace sluice {
namespace detail {
namespace {

// Keys for the cross-VIP checks: (family, address words, port, protocol).
using EndpointKey = std::tuple<uint8_t, std::array<uint32_t, 4>, uint16_t, uint8_t>;

EndpointKey endpoint_key(const sl_addr& addr, uint8_t family, uint16_t port, uint8_t proto) {
  return {family, {addr.w[0], addr.w[1], addr.w[2], addr.w[3]}, port, proto};
}

std::string endpoint_text(const sl_addr& addr, uint8_t family, uint16_t port, uint8_t proto) {
  sl_endpoint ep{};
  ep.addr = addr;
  ep.family = family;
  ep.port = htons(port);
  ep.proto = proto;
  return format_endpoint(ep);
}

std::string vip_path(std::size_t v) { return "vips[" + std::to_string(v) + "]"; }

std::string backend_path(std::size_t v, std::size_t b) {
  return vip_path(v) + ".backends[" + std::to_string(b) + "]";
}

// " (first defined at line 7)", or nothing for a Config without lines.
std::string line_note(const std::string& what, int line) {
  return line > 0 ? " (" + what + std::to_string(line) + ")" : "";
}

// Why `addr` cannot be a VIP's or backend's address, if it cannot: traffic to it would not
// reach one host.
std::optional<std::string> non_unicast(const sl_addr& addr, uint8_t family, const char* what) {
  const uint8_t* b = reinterpret_cast<const uint8_t*>(addr.w);
  const bool unspecified = std::all_of(b, b + sizeof(addr.w), [](uint8_t x) { return x == 0; });
  const bool multicast = family == SL_AF_INET ? (b[0] & 0xf0) == 0xe0 : b[0] == 0xff;
  const bool broadcast = family == SL_AF_INET && addr.w[0] == 0xffffffffu;
  if (!unspecified && !multicast && !broadcast) return std::nullopt;
  return format_ip(addr, family) + " is " +
         (unspecified ? "the unspecified address"
          : multicast ? "a multicast address"
                      : "the broadcast address") +
         " and cannot be " + what + "; give a unicast address";
}

// What a VIP's rules left comparable: a field that broke a rule is not compared again (its
// error says what is wrong), just as a field with an error of its own.
struct Usable {
  bool addr = false, port = false, proto = false, mode = false;
  uint8_t sched = SL_SCHED_SOURCE_HASH;  // the scheduler, if it fits the protocol
  std::vector<bool> backend_addr, backend_port;
};

class Validator {
 public:
  Validator(const Config& cfg, const ParseNotes& notes) : cfg_(cfg), notes_(notes) {}
  std::vector<ConfigError> run();

 private:
  void error(int line, std::string field, std::string message) {
    errors_.push_back({"", line, 0, std::move(field), std::move(message)});
  }
  const VipNotes& notes_of(std::size_t v) const {
    // A Config built in code (the API's changes, tests) has no notes: every field counts as read.
    static const VipNotes kRead;
    return v < notes_.vips.size() ? notes_.vips[v] : kRead;
  }
  const BackendNotes& notes_of(std::size_t v, std::size_t b) const {
    static const BackendNotes kRead;
    const auto& read = notes_of(v).backends_read;
    return b < read.size() ? read[b] : kRead;
  }

  void check_vlans();
  void check_conntrack();
  void check_vip(std::size_t v);
  void check_health_check(std::size_t v);
  void check_backend_address(std::size_t v, std::size_t b);
  void check_backend_port(std::size_t v, std::size_t b);
  void check_backend_list(std::size_t v);
  void check_limits(std::size_t v);
  void check_duplicates();
  void check_nat_backends();

  const Config& cfg_;
  const ParseNotes& notes_;
  std::vector<Usable> usable_;
  std::size_t backends_counted_ = 0;
  bool backends_reported_ = false;
  std::vector<ConfigError> errors_;
};

void Validator::check_vlans() {
  std::size_t pairs = 0;
  for (const InterfaceConfig& i : cfg_.interface_configs) pairs += i.vlans.size();
  // `vlan_members` has a fixed size (abi.h), not a limit: refused here rather than failing a
  // map update half-way through a start or reload.
  if (pairs > SL_VLAN_MEMBER_ENTRIES) {
    error(0, "interfaces",
          std::to_string(pairs) + " VLANs listed over all interfaces; at most " +
              std::to_string(SL_VLAN_MEMBER_ENTRIES) + " are supported");
  }
}

// One-sided (dsr) flows may hold at most conntrack.one_sided_max entries of `conntrack`
// (docs/design.md, "Trust no packet"): a budget of 0 would keep every dsr flow unconfirmed, one
// above max_entries would be no budget at all.
void Validator::check_conntrack() {
  if (!cfg_.conntrack_one_sided_max || !notes_.ct_max_entries) return;
  const uint32_t n = *cfg_.conntrack_one_sided_max, most = cfg_.conntrack_max_entries;
  if (n == 0 || n > most) {
    error(0, "conntrack.one_sided_max",
          std::to_string(n) + " is out of range; valid values are 1.." + std::to_string(most) +
              " (conntrack.max_entries: it is a share of that table), or leave it out for half "
              "of it");
  }
}

void Validator::check_vip(std::size_t v) {
  const VipConfig& vip = cfg_.vips[v];
  const VipNotes& n = notes_of(v);
  Usable& u = usable_[v];
  u.addr = n.addr;
  u.port = n.port;
  u.proto = n.proto;
  u.mode = n.mode;
  if (n.addr) {
    if (auto problem = non_unicast(vip.addr, vip.family, "a VIP")) {
      error(vip.line, vip_path(v) + ".address", std::move(*problem));
      u.addr = false;
    }
  }
  u.sched = vip.sched;
  if (vip.sched != SL_SCHED_SOURCE_HASH && n.proto && vip.proto == IPPROTO_UDP) {
    // UDP has no connections to schedule: every datagram is placed on its own.
    error(vip.line, vip_path(v) + ".scheduler",
          "scheduler '" + std::string(sched_name(vip.sched)) +
              "' needs TCP: UDP is forwarded statelessly, datagram by datagram, so a UDP "
              "VIP takes source-hash (with hash_source_port: true to spread one client's "
              "flows)");
    u.sched = SL_SCHED_SOURCE_HASH;
  }
  if (vip.hash_source_port && u.sched != SL_SCHED_SOURCE_HASH) {
    error(vip.line, vip_path(v) + ".hash_source_port",
          "hash_source_port applies to scheduler source-hash only; " +
              std::string(sched_name(u.sched)) +
              " places every connection by itself: remove hash_source_port");
  }
  check_health_check(v);
}

void Validator::check_health_check(std::size_t v) {
  const VipConfig& vip = cfg_.vips[v];
  const VipNotes& n = notes_of(v);
  if (!vip.health_check) return;
  const HealthCheckConfig& hc = *vip.health_check;
  const std::string path = vip_path(v) + ".health_check";
  if (hc.port == 0 && n.check_port && n.port && vip.port == 0) {
    error(vip.line, path + ".port",
          "the VIP's port is 0 (every port), so its backends have no port of their own to "
          "check; give the health check a 'port'");
  }
  if (!n.check_timing || hc.timeout_ms < hc.interval_ms) return;
  // Checks of one backend never overlap: each ends (at the latest by its timeout) before the
  // next one starts.
  const std::string why = "; a check must end before the next one starts";
  if (n.timeout_written) {
    error(vip.line, path + ".timeout_ms",
          "timeout_ms (" + std::to_string(hc.timeout_ms) + ") must be less than interval_ms (" +
              std::to_string(hc.interval_ms) + (n.interval_written ? "" : ", the default") + ")" +
              why);
  } else {
    error(vip.line, path + ".interval_ms",
          "interval_ms (" + std::to_string(hc.interval_ms) + ") must be more than timeout_ms (" +
              std::to_string(hc.timeout_ms) + ", the default)" + why + "; lower timeout_ms too");
  }
}

void Validator::check_backend_address(std::size_t v, std::size_t b) {
  const VipConfig& vip = cfg_.vips[v];
  const BackendConfig& be = vip.backends[b];
  const std::string path = backend_path(v, b) + ".address";
  Usable& u = usable_[v];
  u.backend_addr[b] = notes_of(v, b).addr;
  if (!u.backend_addr[b]) return;
  if (auto problem = non_unicast(be.addr, be.family, "a backend")) {
    error(be.line, path, std::move(*problem));
    u.backend_addr[b] = false;
  } else if (u.addr && be.family != vip.family) {
    error(be.line, path,
          "backend " + format_ip(be.addr, be.family) + " is IPv" + std::to_string(be.family) +
              " but the VIP " + format_ip(vip.addr, vip.family) + " is IPv" +
              std::to_string(vip.family) + "; a VIP's backends must use the VIP's address family");
    u.backend_addr[b] = false;
  } else if (u.addr && std::memcmp(&be.addr, &vip.addr, sizeof(sl_addr)) == 0) {
    error(be.line, path,
          "the backend address is the VIP's own address; give the backend host's address");
    u.backend_addr[b] = false;
  }
}

// A backend's port relates to its VIP's: under a port-0 VIP it keeps the client's destination
// port (0), elsewhere it is a real port, and dsr, which does not rewrite ports, needs the VIP's.
void Validator::check_backend_port(std::size_t v, std::size_t b) {
  const VipConfig& vip = cfg_.vips[v];
  const uint16_t port = vip.backends[b].port;
  const std::string path = backend_path(v, b) + ".port";
  const int line = vip.backends[b].line;
  Usable& u = usable_[v];
  // Without a valid VIP port, the VIP's own error is reported; the relation cannot be checked.
  u.backend_port[b] = notes_of(v, b).port && u.port;
  if (!u.backend_port[b]) return;
  if (vip.port == 0 && port != 0) {
    error(line, path,
          "the VIP's port is 0 (every port), so backends keep the client's destination "
          "port; omit 'port' here");
  } else if (vip.port != 0 && port == 0) {
    error(line, path,
          "port 0 is only valid under a port-0 VIP; use 1..65535, or omit it to use the "
          "VIP's port " +
              std::to_string(vip.port));
  } else if (u.mode && vip.mode == SL_MODE_DSR && port != vip.port) {
    error(line, path,
          "dsr mode does not rewrite ports, so the backend port must equal the VIP port " +
              std::to_string(vip.port) + "; omit 'port' or set it to " + std::to_string(vip.port));
  } else {
    return;
  }
  u.backend_port[b] = false;
}

void Validator::check_backend_list(std::size_t v) {
  const VipConfig& vip = cfg_.vips[v];
  const VipNotes& n = notes_of(v);
  const std::string path = vip_path(v) + ".backends";
  for (std::size_t b = 0; b < vip.backends.size(); ++b) {
    check_backend_address(v, b);
    check_backend_port(v, b);
  }
  if (!n.backends) return;
  if (vip.backends.empty()) {
    error(vip.line, path, "VIP has no backends; add at least one under 'backends'");
    return;
  }
  bool weights_known = true, any_weight = false;
  for (std::size_t b = 0; b < vip.backends.size(); ++b) {
    weights_known &= notes_of(v, b).weight;
    any_weight |= vip.backends[b].weight > 0;
  }
  if (weights_known && !any_weight) {
    error(vip.line, path,
          "every backend has weight 0: the VIP would have no backend with a weight above 0, so "
          "it could serve no traffic; give at least one backend a weight above 0");
  }
  // The least-conn ring holds at most SL_LC_MAX_BACKENDS ids, scanned on every SYN (abi.h).
  if (usable_[v].sched == SL_SCHED_LEAST_CONN && vip.backends.size() > SL_LC_MAX_BACKENDS) {
    error(vip.line, path,
          "a least-conn VIP takes at most " + std::to_string(SL_LC_MAX_BACKENDS) +
              " backends (every new connection compares them all), this one has " +
              std::to_string(vip.backends.size()) +
              "; split it into several VIPs, or use round-robin or source-hash");
  }
}

// The limits count every VIP and backend written, read or not.
void Validator::check_limits(std::size_t v) {
  const VipConfig& vip = cfg_.vips[v];
  if (v == cfg_.max_vips) {
    error(vip.line, vip_path(v),
          "VIP number " + std::to_string(v + 1) + " exceeds limits.max_vips (" +
              std::to_string(cfg_.max_vips) + "); raise limits.max_vips (at most " +
              std::to_string(kMaxVipsLimit) + ") or remove VIPs");
  }
  for (std::size_t b = 0; b < vip.backends.size(); ++b) {
    // Reported once, at the first backend past the limit: each further one would say the same.
    if (++backends_counted_ > cfg_.max_backends && !backends_reported_) {
      backends_reported_ = true;
      error(vip.backends[b].line, backend_path(v, b),
            "backend number " + std::to_string(backends_counted_) +
                " (counting all VIPs) exceeds limits.max_backends (" +
                std::to_string(cfg_.max_backends) + "); raise limits.max_backends (at most " +
                std::to_string(kMaxBackendsLimit) + ") or remove backends");
    }
  }
}

void Validator::check_duplicates() {
  std::map<EndpointKey, int> seen_vips;  // -> line
  std::map<std::string, int> seen_names;
  for (std::size_t v = 0; v < cfg_.vips.size(); ++v) {
    const VipConfig& vip = cfg_.vips[v];
    const Usable& u = usable_[v];
    // The API names a VIP by its name (backend_change.cc), so a name must pick one VIP.
    if (!vip.name.empty()) {
      if (auto [first, inserted] = seen_names.emplace(vip.name, vip.line); !inserted) {
        error(vip.line, vip_path(v) + ".name",
              "duplicate VIP name '" + vip.name + "'" +
                  line_note("first used at line ", first->second));
      }
    }
    // (address, port, protocol) is the key of the `vips` hash and of a reload's VIP matching.
    if (u.addr && u.port && u.proto) {
      const EndpointKey key = endpoint_key(vip.addr, vip.family, vip.port, vip.proto);
      if (auto [first, inserted] = seen_vips.emplace(key, vip.line); !inserted) {
        error(vip.line, vip_path(v),
              "duplicate VIP " + endpoint_text(vip.addr, vip.family, vip.port, vip.proto) +
                  line_note("first defined at line ", first->second));
      }
    }
    std::map<EndpointKey, int> seen_backends;
    for (std::size_t b = 0; b < vip.backends.size(); ++b) {
      const BackendConfig& be = vip.backends[b];
      if (!u.backend_addr[b] || !u.backend_port[b]) continue;
      // Within one VIP: a backend is matched by (address, port) on reload, and keeps its id.
      const EndpointKey key = endpoint_key(be.addr, be.family, be.port, 0);
      if (auto [first, inserted] = seen_backends.emplace(key, be.line); !inserted) {
        error(be.line, backend_path(v, b),
              "duplicate backend " + format_host_port(be.addr, be.family, be.port) +
                  line_note("first defined at line ", first->second));
      }
    }
  }
}

// The reverse-NAT map is keyed by the backend's endpoint: a reply from it must name exactly
// one VIP to restore as the source. A port-0 backend (under a port-0 VIP) answers from every
// port of its address, so it clashes with any port of that address in another nat VIP.
void Validator::check_nat_backends() {
  using Owners = std::map<EndpointKey, std::size_t>;  // -> index of the first nat VIP
  Owners exact;     // (addr, port, proto): a backend with that endpoint
  Owners any_port;  // (addr, 0, proto): a backend on that address
  Owners wildcard;  // (addr, 0, proto): a port-0 backend on that address
  for (std::size_t v = 0; v < cfg_.vips.size(); ++v) {
    const VipConfig& vip = cfg_.vips[v];
    const Usable& u = usable_[v];
    if (!u.mode || vip.mode != SL_MODE_NAT || !u.addr || !u.port || !u.proto) continue;
    auto owner_other_than_v = [v](const Owners& m, const EndpointKey& k) -> const std::size_t* {
      auto it = m.find(k);
      return it != m.end() && it->second != v ? &it->second : nullptr;
    };
    for (std::size_t b = 0; b < vip.backends.size(); ++b) {
      const BackendConfig& be = vip.backends[b];
      if (!u.backend_addr[b] || !u.backend_port[b]) continue;
      const EndpointKey key = endpoint_key(be.addr, be.family, be.port, vip.proto);
      const EndpointKey addr_key = endpoint_key(be.addr, be.family, 0, vip.proto);
      const std::size_t* other =
          be.port != 0 ? owner_other_than_v(exact, key) : owner_other_than_v(any_port, addr_key);
      if (!other && be.port != 0) other = owner_other_than_v(wildcard, addr_key);
      if (other) {
        const VipConfig& o = cfg_.vips[*other];
        error(be.line, backend_path(v, b),
              "backend " + endpoint_text(be.addr, be.family, be.port, vip.proto) + " of nat VIP " +
                  endpoint_text(vip.addr, vip.family, vip.port, vip.proto) +
                  line_note("line ", vip.line) + " is also a backend of nat VIP " +
                  endpoint_text(o.addr, o.family, o.port, o.proto) + line_note("line ", o.line) +
                  "; its replies could not be mapped back to one VIP. Use a different "
                  "backend port in one of them, or dsr mode");
      }
      exact.emplace(key, v);
      any_port.emplace(addr_key, v);
      if (be.port == 0) wildcard.emplace(addr_key, v);
    }
  }
}

std::vector<ConfigError> Validator::run() {
  check_vlans();
  check_conntrack();
  usable_.resize(cfg_.vips.size());
  for (std::size_t v = 0; v < cfg_.vips.size(); ++v) {
    usable_[v].backend_addr.assign(cfg_.vips[v].backends.size(), false);
    usable_[v].backend_port.assign(cfg_.vips[v].backends.size(), false);
    check_vip(v);
    check_backend_list(v);
    check_limits(v);
  }
  check_duplicates();
  check_nat_backends();
  for (ConfigError& e : validate_congestion(cfg_, notes_)) errors_.push_back(std::move(e));
  return std::move(errors_);
}

}  // namespace

std::vector<ConfigError> validate(const Config& cfg, const ParseNotes& notes) {
  return Validator(cfg, notes).run();
}

}  // namespace detail

std::vector<ConfigError> validate(const Config& cfg) { return detail::validate(cfg, {}); }

}  // namespace sluice
