// The sluiced configuration: one YAML file, validated whole. See docs/configuration.md.
//
// Parsing never throws and never stops at the first problem: every error found is returned,
// each naming the file, line, column and field path (`vips[1].backends[0].address`) and saying
// what would be valid. A config with any error yields no Config, so a bad file is rejected
// whole and the running config stays in force.
#pragma once

#include <arpa/inet.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/abi/abi.h"
#include "sluice/abi/cc.h"

namespace sluice {

// config/default.yaml, compiled in by agent/embed.cmake (NUL-terminated; size excludes it).
extern const char kDefaultConfigYaml[];
extern const std::size_t kDefaultConfigYamlSize;

struct BackendConfig {
  sl_addr addr{};      // network byte order
  uint8_t family = 0;  // SL_AF_INET / SL_AF_INET6, always the VIP's family
  // Host byte order. Already resolved: an omitted port is the VIP's port. 0 only for a
  // port-0 VIP, where it means "keep the client's destination port".
  uint16_t port = 0;
  uint16_t weight = 1;  // 0 = configured but receives no new flows
  int line = 0;         // where the backend is defined, for later messages
};

// A VIP's health check; see docs/configuration.md, "Health checks". Defaults are the
// documented ones. Compared whole (operator==) to decide whether a reload changed a check.
enum class HealthCheckType : uint8_t { kTcp, kHttp, kUdp };

// An inclusive range of HTTP status codes; one code is {c, c}.
struct StatusRange {
  uint16_t lo = 200;
  uint16_t hi = 200;
  bool operator==(const StatusRange&) const = default;
};

struct HealthCheckConfig {
  HealthCheckType type = HealthCheckType::kTcp;
  uint16_t port = 0;  // host byte order; 0 = each backend's own port
  uint32_t interval_ms = 1000;
  uint32_t timeout_ms = 500;      // always < interval_ms, so checks of one backend never overlap
  uint32_t rise = 2;              // consecutive successes that bring a down backend up
  uint32_t fall = 3;              // consecutive failures that take an up backend down
  std::string path = "/healthz";  // http only
  // http only; any range matches. Default: one range, 200-200 (sized, not braced: GCC 12
  // warns falsely about a braced default member of a vector of aggregates).
  std::vector<StatusRange> expect_status = std::vector<StatusRange>(1);
  std::string send = "ping";  // udp only; any bytes
  std::string expect;         // udp only; empty = any reply
  bool operator==(const HealthCheckConfig&) const = default;
};

// What happens to a VIP's established flows when their backend goes down.
enum class BackendDownAction : uint8_t {
  kKeep,   // they stay on the backend (it may still serve them); only new flows avoid it
  kReset,  // they are broken off at once, so clients reconnect to a live backend
};

struct VipConfig {
  std::string name;  // optional, unique when set
  sl_addr addr{};    // network byte order
  uint8_t family = 0;
  uint16_t port = 0;  // host byte order; 0 = every port
  uint8_t proto = 0;  // IPPROTO_TCP / IPPROTO_UDP
  uint8_t sched = SL_SCHED_SOURCE_HASH;
  uint8_t mode = SL_MODE_NAT;
  bool hash_source_port = false;
  std::vector<BackendConfig> backends;            // at least one, at least one with weight > 0
  std::optional<HealthCheckConfig> health_check;  // none: the backends are always up
  BackendDownAction on_backend_down = BackendDownAction::kKeep;
  int line = 0;
};

// The VIP's key as the data path holds it (network byte order). format_endpoint() of it is the
// VIP's name in logs, the CLI, metrics and the API: "198.19.0.1:80/tcp".
inline sl_endpoint vip_endpoint(const VipConfig& v) {
  sl_endpoint ep{};
  ep.addr = v.addr;
  ep.family = v.family;
  ep.port = htons(v.port);
  ep.proto = v.proto;
  return ep;
}

// How long a TCP flow may stay idle in each state before the agent's sweep deletes its
// conntrack entry. Seconds; the defaults and the names are nf_conntrack's
// (net.netfilter.nf_conntrack_tcp_timeout_<name>), so `close` is the timeout of state closed.
struct ConntrackTimeouts {
  uint32_t syn_sent = 120;
  uint32_t syn_recv = 60;
  uint32_t established = 432000;  // 5 days
  uint32_t fin_wait = 120;
  uint32_t close_wait = 60;
  uint32_t last_ack = 30;
  uint32_t time_wait = 120;
  uint32_t close = 10;
  // Not a state: the idle timeout of an open flow that is not confirmed (in ct_pending: no
  // handshake a blind sender could not fake, no reply to a mid-stream pickup). It caps the
  // state's timeout there. At most nf_conntrack's `unacknowledged` (300 s).
  uint32_t unconfirmed = SL_DEFAULT_CT_UNCONFIRMED_S;

  // The timeout of an enum sl_tcp_state value. `none` (no state recorded yet) counts as
  // syn_sent. A state this build does not know (a newer data path) gets the longest timeout:
  // an unknown flow is never cut short.
  uint32_t for_state(uint8_t state) const {
    if (state < SL_TCP_STATE_MAX) return this->*kByState[state];
    uint32_t longest = 0;
    for (auto m : kByState) longest = this->*m > longest ? this->*m : longest;
    return longest;
  }
  // Sets the timeout of a known state other than `none` (which shares syn_sent's); false for
  // any other code.
  bool set_for_state(uint8_t state, uint32_t seconds) {
    if (state == SL_TCP_NONE || state >= SL_TCP_STATE_MAX) return false;
    this->*kByState[state] = seconds;
    return true;
  }
  // The timeouts as the data path reads them (sl_info.ct_timeout_s): each state's, and the
  // unconfirmed one in slot SL_CT_TIMEOUT_UNCONFIRMED.
  std::array<uint32_t, SL_CT_STATE_SLOTS> table() const {
    std::array<uint32_t, SL_CT_STATE_SLOTS> t{};
    for (uint8_t st = 0; st < SL_TCP_STATE_MAX; ++st) t[st] = for_state(st);
    t[SL_CT_TIMEOUT_UNCONFIRMED] = unconfirmed;
    return t;
  }
  // The timeout of an entry in `state`, in ct_pending if `pending`: the data path's own rule
  // (sl_ct_timeout_s). A state this build does not know keeps for_state()'s longest.
  uint32_t for_entry(uint8_t state, bool pending) const {
    return sl_ct_timeout_s(for_state(state), unconfirmed, state, pending);
  }
  bool operator==(const ConntrackTimeouts&) const = default;

 private:
  // The field of each enum sl_tcp_state, in its order.
  static constexpr uint32_t ConntrackTimeouts::*kByState[] = {
      &ConntrackTimeouts::syn_sent, &ConntrackTimeouts::syn_sent,
      &ConntrackTimeouts::syn_recv, &ConntrackTimeouts::established,
      &ConntrackTimeouts::fin_wait, &ConntrackTimeouts::close_wait,
      &ConntrackTimeouts::last_ack, &ConntrackTimeouts::time_wait,
      &ConntrackTimeouts::close};
  static_assert(sizeof(kByState) / sizeof(kByState[0]) == SL_TCP_STATE_MAX,
                "give every enum sl_tcp_state a timeout");
};

// The Prometheus endpoint (docs/metrics.md).
struct MetricsConfig {
  // "ADDRESS:PORT" or "[IPV6]:PORT", validated and normalized. Empty: no metrics endpoint
  // (`enabled: false` or `listen: ""`).
  std::string listen = "127.0.0.1:9435";
};

// The control API (docs/cli.md, "Control API"): a Unix stream socket, mode 0600, root only.
struct ApiConfig {
  std::string socket = "/run/sluice/sluiced.sock";  // empty: no API (`enabled: false`)
};

// Host flow tracking (docs/configuration.md, `track`): tc_flow follows the host's own TCP
// connections on these interfaces, in the `host_flows` table.
struct TrackConfig {
  std::vector<std::string> interfaces;         // empty: no `track` section, nothing is attached
  uint32_t max_flows = SL_DEFAULT_HOST_FLOWS;  // entries of `host_flows`
};

// One entry of `interfaces`: a name, or `{name: eth0, vlans: [100, 200]}`. An interface
// carries untagged (and priority-tagged, VID 0) frames always, and frames whose outer tag
// (802.1Q, or the 802.1ad S-tag of a QinQ pair) is one of `vlans`. A frame tagged with any
// other VLAN id is not sluice's: the data path passes it to the kernel untouched
// (passes[vlan_not_ours]). Written to the `vlan_members` map; a reload rewrites it.
struct InterfaceConfig {
  std::string name;
  std::vector<uint16_t> vlans;  // sorted, distinct, 1..4094; empty: untagged frames only
  int line = 0;
  bool operator==(const InterfaceConfig&) const = default;
};

// A destination prefix: `addr` with the host bits cleared.
struct Cidr {
  sl_addr addr{};      // network byte order
  uint8_t family = 0;  // SL_AF_INET / SL_AF_INET6
  uint8_t len = 0;     // prefix length, 0..32 or 0..128
  bool operator==(const Cidr&) const = default;
};

// One rule of `congestion.rules` (or the default): what a connection must match, and what is
// set on it. docs/configuration.md, `congestion`.
struct CcRuleConfig {
  std::string name;  // unique; default "rule-N" (N = its place in the file, 1-based)
  // Empty: any remote address of either family. Otherwise the rule matches a remote address
  // in any of these (all of one family or mixed).
  std::vector<Cidr> destinations;
  uint16_t port_lo = 0;               // the remote port of an active connection, the local one of a
  uint16_t port_hi = 65535;           // passive one (the service's port either way); inclusive
  uint8_t direction = SL_CC_DIR_ANY;  // enum sl_cc_direction
  std::string cgroup;                 // a cgroup v2 path; empty: any cgroup
  std::string algorithm;              // empty: leave the socket's
  uint32_t initial_cwnd = 0;          // segments; 0: leave
  uint32_t sndbuf = 0;                // bytes; 0: leave
  uint32_t rcvbuf = 0;
  uint32_t cwnd_clamp = 0;  // segments; 0: leave
  // Order of matching, lowest first; default: its place in the file. Rules of equal priority
  // must not overlap (validate()).
  uint32_t priority = 0;
  bool priority_set = false;
  int line = 0;
  bool operator==(const CcRuleConfig&) const = default;
};

// Congestion control per connection (`congestion`): sluice_aimd registered, the sockops
// policy attached to `cgroup`, rules in match order.
struct CongestionConfig {
  bool enabled = false;                            // the section is present
  std::string cgroup = "/sys/fs/cgroup/unified";   // cgroup v2 directory sockops attaches to
  uint32_t max_connections = SL_CC_DEFAULT_CONNS;  // entries of cc_conns
  std::vector<CcRuleConfig> rules;                 // sorted by priority, then file order
  std::optional<CcRuleConfig> default_rule;        // matches what no rule did; name "default"
  bool operator==(const CongestionConfig&) const = default;
};

struct Config {
  std::vector<std::string> interfaces;  // the names of `interface_configs`, in order
  std::vector<InterfaceConfig> interface_configs;
  std::vector<VipConfig> vips;
  uint32_t max_vips = SL_DEFAULT_MAX_VIPS;
  uint32_t max_backends = SL_DEFAULT_MAX_BACKENDS;
  uint32_t conntrack_max_entries = SL_DEFAULT_CT_ENTRIES;
  uint32_t conntrack_pending_entries = 0;  // ct_pending; 0: as conntrack_max_entries
  // Most entries of `conntrack` one-sided (dsr) flows may hold (sl_info.ct_one_sided_max);
  // unset: half of conntrack_max_entries. validate(): 1..conntrack_max_entries.
  std::optional<uint32_t> conntrack_one_sided_max;
  uint32_t one_sided_max() const {
    return conntrack_one_sided_max.value_or(conntrack_max_entries / 2);
  }
  ConntrackTimeouts conntrack_timeouts;
  // How often the agent's conntrack expiry sweep starts a pass over the table.
  uint32_t conntrack_sweep_interval_ms = 1000;
  std::string log_level = "info";  // a spdlog level name
  MetricsConfig metrics;
  ApiConfig api;
  TrackConfig track;
  CongestionConfig congestion;
};

struct ConfigError {
  std::string file;
  int line = 0;       // 1-based; 0 when the error is about the whole file (unreadable)
  int column = 0;     // 1-based; 0 when unknown
  std::string field;  // e.g. "vips[1].backends[0].address"; empty for YAML syntax errors
  std::string message;
  // "FILE:LINE:COL: FIELD: MESSAGE"; parts that are unknown (line 0, empty field) are left out.
  std::string to_string() const;
};

struct ConfigResult {
  std::optional<Config> config;     // set if and only if errors is empty
  std::vector<ConfigError> errors;  // sorted by line, then column
};

ConfigResult parse_config(std::string_view yaml_text, std::string_view file_name);
// An unreadable file gives one error naming the file and the errno text.
ConfigResult load_config_file(const std::string& path);
// Parses kDefaultConfigYaml as the file "<embedded default>".
ConfigResult default_config();

}  // namespace sluice
