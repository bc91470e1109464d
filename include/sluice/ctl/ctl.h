// sluicectl as a library: the views of the pinned maps (they work while sluiced is down) and
// ctl_main, which runs the command table (agent/ctl/commands.h).
#pragma once

#include <sluice/bpf/maps.h>
#include <sluice/cc/cc_maps.h>
#include <sluice/config/config.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace sluice {

// The conntrack timeouts the running agent published in `info`; states it left at 0 keep
// `fallback`'s.
ConntrackTimeouts timeouts_from_info(const sl_info& info, ConntrackTimeouts fallback = {});

// JSON views of the live maps (the shapes `sluicectl -o json` prints).
Result<nlohmann::json> vips_json(const PinnedMaps& pm);
Result<nlohmann::json> stats_json(const PinnedMaps& pm);

// Text renderings of the same JSON.
std::string vips_text(const nlohmann::json& vips);
std::string stats_text(const nlohmann::json& stats);

// `sluicectl conntrack` filters. Unset members match every flow.
struct ConntrackFilter {
  struct HostPort {
    sl_addr addr{};      // network byte order
    uint8_t family = 0;  // SL_AF_INET / SL_AF_INET6
    uint16_t port = 0;   // host byte order; 0 = any port
  };
  std::optional<uint8_t> state;  // enum sl_tcp_state
  std::optional<HostPort> vip;   // the address (and port) the client connected to
  std::optional<HostPort> backend;
  std::optional<uint64_t> older_than_s;  // flow age (since its first packet) above this
};

// The state names --state takes, comma-separated (its help and its error message).
std::string valid_conntrack_states();

// Parses the filter options as typed; an empty string means "not given". The error (code 0)
// names the option, the bad value and what would be valid.
Result<ConntrackFilter> parse_conntrack_filter(const std::string& state, const std::string& vip,
                                               const std::string& backend,
                                               const std::string& older_than);

// The pinned conntrack entries that match `filter`, as of `now_ns` (CLOCK_MONOTONIC, the
// clock of the entries' timestamps), sorted by VIP, backend and client. `expires_in_s` uses
// `timeouts`: the agent's own are in its config file.
Result<nlohmann::json> conntrack_json(const PinnedMaps& pm, const ConntrackFilter& filter,
                                      const ConntrackTimeouts& timeouts, uint64_t now_ns);
// {"total": N, "states": {"<state>": N, ...}} over conntrack_json() or host_flows_json()
// output.
nlohmann::json conntrack_summary_json(const nlohmann::json& flows);

// tc_flow's `host_flows` (the host's own TCP flows) that match `filter` (state and age only:
// a VIP or backend filter is an error), as of `now_ns`, sorted by local then peer endpoint.
Result<nlohmann::json> host_flows_json(int host_flows_fd, const ConntrackFilter& filter,
                                       const ConntrackTimeouts& timeouts, uint64_t now_ns);

std::string conntrack_text(const nlohmann::json& flows);
std::string host_flows_text(const nlohmann::json& flows);
std::string conntrack_summary_text(const nlohmann::json& summary);

// `sluicectl cc` filters. Unset members match every connection.
struct CcFilter {
  struct Prefix {
    sl_addr addr{};      // network byte order, host bits cleared
    uint8_t family = 0;  // SL_AF_INET / SL_AF_INET6
    uint8_t len = 0;     // 0..32 or 0..128
  };
  std::optional<std::string> rule;  // the rule's name, as cc_rule_info holds it
  std::optional<Prefix> dst;        // the remote address is in this prefix
  std::optional<std::string> cc;    // the algorithm in use
};

// Parses the filter options as typed; an empty string means "not given". The error (code 0)
// names the option, the bad value and what would be valid. The rule name is checked against
// the maps later (check_cc_rule).
Result<CcFilter> parse_cc_filter(const std::string& rule, const std::string& dst,
                                 const std::string& cc);
// Parses `--watch`'s SECONDS (a number above 0, at most a day; decimals allowed).
Result<double> parse_watch_interval(const std::string& text);

// What `sluicectl cc` shows, read from the maps in one go.
struct CcView {
  sl_cc_config config{};
  std::vector<CcConnView> conns;
  std::vector<CcRuleName> rules;        // every named id
  std::vector<sl_cc_rule_stats> stats;  // by rule id; empty unless read with stats
  std::optional<uint64_t> algo_users;   // sluice_aimd's users, when registered
};
Result<CcView> read_cc_view(const CcMapFds& fds, bool with_stats);

// An error naming the known rules when `filter.rule` is none of them.
Status check_cc_rule(const CcFilter& filter, const std::vector<CcRuleName>& rules);

// The connections that match `filter`, as of `now_ns` (CLOCK_MONOTONIC, the clock of their
// timestamps), sorted by rule name, then remote and local endpoint.
nlohmann::json cc_json(const CcView& view, const CcFilter& filter, uint64_t now_ns);
// Per rule (its counters; only the filter's rule with --rule) and the listed connections by
// algorithm. `conns` is cc_json()'s output.
nlohmann::json cc_summary_json(const CcView& view, const CcFilter& filter,
                               const nlohmann::json& conns);
// The listing, with a footer that counts the connections by algorithm.
std::string cc_text(const nlohmann::json& conns);
std::string cc_summary_text(const nlohmann::json& summary);

// sluicectl's main: 0 done, 1 failed (the maps or the API), 2 bad arguments (the message says
// what is wrong and what would be right).
int ctl_main(int argc, char** argv);

}  // namespace sluice
