// Address, endpoint and enum-name helpers shared by the agent, the CLI and the tests.
// Every name returned here is part of the user interface (CLI output, metrics labels, config
// words): names are stable and never change once released.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sluice/abi/abi.h"
#include "sluice/core/result.h"

namespace sluice {

// Parses a textual IPv4 or IPv6 address (inet_pton syntax: dotted quad, RFC 4291 text; no
// prefix length, no zone id). The address is in network byte order; IPv4 goes in w[0] and the
// other words are zero. The second member is SL_AF_INET or SL_AF_INET6.
std::optional<std::pair<sl_addr, uint8_t>> parse_ip(std::string_view text);

// Inverse of parse_ip. An unknown family prints as "<family N>".
std::string format_ip(const sl_addr& addr, uint8_t family);

// "198.19.0.1:80", "[fd00:19::1]:80"; port is in host byte order, 0 prints as "*".
std::string format_host_port(const sl_addr& addr, uint8_t family, uint16_t port);

// "198.19.0.1:80/tcp", "[fd00:19::1]:80/tcp"; port 0 (a wildcard VIP) prints as "*".
std::string format_endpoint(const sl_endpoint& ep);

// Config and CLI words <-> ABI codes. The parse functions accept exactly the names that the
// *_name functions return (lower case).
std::optional<uint8_t> parse_proto(std::string_view name);  // "tcp"/"udp" -> IPPROTO_*
std::optional<uint8_t> parse_mode(std::string_view name);   // "nat"/"dsr" -> SL_MODE_*
std::optional<uint8_t> parse_sched(std::string_view name);  // "source-hash"... -> SL_SCHED_*

// Names of ABI codes. Unknown values give "unknown" (never nullptr), so a newer BPF object
// read by an older CLI still prints.
const char* proto_name(uint8_t proto);          // "tcp", "udp", "icmp", "icmpv6"
const char* mode_name(uint8_t mode);            // "nat", "dsr"
const char* sched_name(uint8_t sched);          // "source-hash", "round-robin", "least-conn"
const char* drop_reason_name(uint32_t reason);  // enum sl_drop_reason, e.g. "bad_ihl"
const char* pass_reason_name(uint32_t reason);  // enum sl_pass_reason, e.g. "not_vip"
const char* verdict_name(uint32_t verdict);     // XDP action: "aborted" ... "redirect"
const char* tcp_state_name(uint8_t state);      // enum sl_tcp_state, e.g. "syn_sent"
const char* ct_stat_name(uint32_t stat);        // enum sl_ct_stat, e.g. "full_untracked"

// Names (CLI, logs, metrics labels; stable): enum sl_ct_event_type ("new", "established",
// "closed_fin", "closed_rst", "backend_reset"; "unknown" otherwise) and the set bits of enum
// sl_ct_flags ("one_sided", "midstream", "hs_retrans", "simopen", "simclose", "closer_backend",
// "reused", "inbound"; an unknown bit as "bit<N>").
const char* ct_event_name(uint8_t type);
std::vector<std::string> ct_flag_names(uint8_t flags);

// A listen address: "127.0.0.1:9435" or "[::1]:9435". An IP address, never a host name (no
// resolver on the event loop).
struct ListenAddress {
  sl_addr addr{};      // network byte order
  uint8_t family = 0;  // SL_AF_INET / SL_AF_INET6
  uint16_t port = 0;   // host byte order; 0 = an ephemeral port chosen by the kernel
};

// Parses "ADDR:PORT" or "[ADDR6]:PORT" (port 0..65535). The error message says what is wrong
// in words fit for a config error ("an IPv6 address needs brackets: [::1]:9435").
Result<ListenAddress> parse_listen_address(std::string_view text);

// "127.0.0.1:9435", "[::1]:9435".
std::string format_listen_address(const ListenAddress& a);

}  // namespace sluice
