// Names of the ABI's codes and the address formats every output shares (CLI, metrics labels,
// logs, config errors). One table per enum, indexed by the code itself and checked at compile
// time against the ABI's _MAX: a value added to abi.h without a name fails the build instead
// of printing "unknown" in a metric label that dashboards then have to rename.
#include "sluice/core/net.h"

#include <arpa/inet.h>
#include <linux/bpf.h>
#include <netinet/in.h>

#include <array>
#include <cstring>

namespace sluice {
namespace {

struct Name {
  uint32_t code;
  const char* name;
};

// A table is valid when entry i names code i and it covers every code below the ABI's _MAX.
// A new enum value in abi.h bumps _MAX, which fails the static_assert until it is named here.
template <std::size_t N>
constexpr bool dense(const std::array<Name, N>& table, uint32_t max) {
  if (N != max) return false;
  for (std::size_t i = 0; i < N; ++i) {
    if (table[i].code != i || table[i].name == nullptr || table[i].name[0] == '\0') return false;
  }
  return true;
}

constexpr std::array<Name, SL_DROP_MAX> kDropReasons{{
    {SL_DROP_TRUNC_L3, "trunc_l3"},
    {SL_DROP_BAD_IHL, "bad_ihl"},
    {SL_DROP_BAD_IP_LEN, "bad_ip_len"},
    {SL_DROP_TRUNC_L4, "trunc_l4"},
    {SL_DROP_BAD_DOFF, "bad_doff"},
    {SL_DROP_BAD_UDP_LEN, "bad_udp_len"},
    {SL_DROP_IPV6_EXT_CHAIN, "ipv6_ext_chain"},
    {SL_DROP_FRAG_NO_FIRST, "frag_no_first"},
    {SL_DROP_NO_BACKEND, "no_backend"},
    {SL_DROP_FIB, "fib"},
    {SL_DROP_ICMP_TRUNC, "icmp_trunc"},
    {SL_DROP_CT_FULL, "ct_full"},
    {SL_DROP_CT_WINDOW, "ct_window"},
    {SL_DROP_DSR_GATEWAY, "dsr_gateway"},
    {SL_DROP_FRAG_BUDGET, "frag_budget"},
}};
static_assert(dense(kDropReasons, SL_DROP_MAX), "name every enum sl_drop_reason value, in order");

constexpr std::array<Name, SL_PASS_MAX> kPassReasons{{
    {SL_PASS_NOT_IP, "not_ip"},
    {SL_PASS_NOT_VIP, "not_vip"},
    {SL_PASS_VIP_NO_SERVICE, "vip_no_service"},
    {SL_PASS_UNPARSEABLE, "unparseable"},
    {SL_PASS_FIB, "fib"},
    {SL_PASS_ICMP_NOT_VIP_FLOW, "icmp_not_vip_flow"},
    {SL_PASS_VLAN_NOT_OURS, "vlan_not_ours"},
    {SL_PASS_IPV6_RH0, "ipv6_rh0"},
    {SL_PASS_NOT_OUR_REPLY, "not_our_reply"},
}};
static_assert(dense(kPassReasons, SL_PASS_MAX), "name every enum sl_pass_reason value, in order");

constexpr std::array<Name, SL_VERDICT_MAX> kVerdicts{{
    {XDP_ABORTED, "aborted"},
    {XDP_DROP, "drop"},
    {XDP_PASS, "pass"},
    {XDP_TX, "tx"},
    {XDP_REDIRECT, "redirect"},
}};
static_assert(dense(kVerdicts, SL_VERDICT_MAX), "name every XDP action below SL_VERDICT_MAX");

constexpr std::array<Name, SL_TCP_STATE_MAX> kTcpStates{{
    {SL_TCP_NONE, "none"},
    {SL_TCP_SYN_SENT, "syn_sent"},
    {SL_TCP_SYN_RECV, "syn_recv"},
    {SL_TCP_ESTABLISHED, "established"},
    {SL_TCP_FIN_WAIT, "fin_wait"},
    {SL_TCP_CLOSE_WAIT, "close_wait"},
    {SL_TCP_LAST_ACK, "last_ack"},
    {SL_TCP_TIME_WAIT, "time_wait"},
    {SL_TCP_CLOSED, "closed"},
}};
static_assert(dense(kTcpStates, SL_TCP_STATE_MAX), "name every enum sl_tcp_state value, in order");

constexpr std::array<Name, SL_CT_STAT_MAX> kCtStats{{
    {SL_CT_STAT_EVENTS_LOST, "events_lost"},
    {SL_CT_STAT_REUSED, "reused"},
    {SL_CT_STAT_HS_RETRANS, "hs_retrans"},
    {SL_CT_STAT_REPLY_NO_ENTRY, "reply_no_entry"},
    {SL_CT_STAT_CONNS_UNDERFLOW, "conns_underflow"},
    {SL_CT_STAT_INSERT_RACE, "insert_race"},
    {SL_CT_STAT_REPLY_OTHER_BACKEND, "reply_other_backend"},
    {SL_CT_STAT_FULL_UNTRACKED, "full_untracked"},
    {SL_CT_STAT_RESET_SENT, "reset_sent"},
    {SL_CT_STAT_EXPIRED_ON_LOOKUP, "expired_on_lookup"},
    {SL_CT_STAT_CONFIRM_FULL, "confirm_full"},
    {SL_CT_STAT_RST_CHALLENGE, "rst_challenge"},
    {SL_CT_STAT_OOW_RST, "oow_rst"},
    {SL_CT_STAT_OOW_FIN, "oow_fin"},
    {SL_CT_STAT_OOW_DATA, "oow_data"},
    {SL_CT_STAT_SYN_LIVE, "syn_live"},
    {SL_CT_STAT_REUSE_REFUSED, "reuse_refused"},
    {SL_CT_STAT_CONFIRMED, "confirmed"},
    {SL_CT_STAT_ONE_SIDED_BUDGET, "one_sided_budget"},
}};
static_assert(dense(kCtStats, SL_CT_STAT_MAX), "name every enum sl_ct_stat value, in order");

// Modes and schedulers have no _MAX in the ABI; these tables are checked for order only.
constexpr std::array<Name, 2> kModes{{{SL_MODE_NAT, "nat"}, {SL_MODE_DSR, "dsr"}}};
static_assert(dense(kModes, kModes.size()), "kModes out of order");

constexpr std::array<Name, 3> kScheds{{
    {SL_SCHED_SOURCE_HASH, "source-hash"},
    {SL_SCHED_ROUND_ROBIN, "round-robin"},
    {SL_SCHED_LEAST_CONN, "least-conn"},
}};
static_assert(dense(kScheds, kScheds.size()), "kScheds out of order");

// Sparse (IANA numbers), so looked up by value rather than index.
constexpr std::array<Name, 4> kProtos{{
    {IPPROTO_TCP, "tcp"},
    {IPPROTO_UDP, "udp"},
    {IPPROTO_ICMP, "icmp"},
    {IPPROTO_ICMPV6, "icmpv6"},
}};
// Only these may key a VIP; the others are names for display.
constexpr std::size_t kVipProtos = 2;

constexpr const char* kUnknown = "unknown";

template <std::size_t N>
const char* lookup_dense(const std::array<Name, N>& table, uint32_t code) {
  return code < N ? table[code].name : kUnknown;
}

template <std::size_t N>
std::optional<uint8_t> lookup_name(const std::array<Name, N>& table, std::string_view name,
                                   std::size_t limit = N) {
  for (std::size_t i = 0; i < limit; ++i) {
    if (name == table[i].name) return static_cast<uint8_t>(table[i].code);
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::pair<sl_addr, uint8_t>> parse_ip(std::string_view text) {
  // inet_pton needs a NUL-terminated string; an embedded NUL would silently truncate it.
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN || text.find('\0') != text.npos) {
    return std::nullopt;
  }
  char buf[INET6_ADDRSTRLEN];
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';

  sl_addr addr{};
  if (inet_pton(AF_INET, buf, &addr.w[0]) == 1) return std::pair{addr, uint8_t{SL_AF_INET}};
  static_assert(sizeof(addr.w) == sizeof(in6_addr));
  if (inet_pton(AF_INET6, buf, addr.w) == 1) return std::pair{addr, uint8_t{SL_AF_INET6}};
  return std::nullopt;
}

std::string format_ip(const sl_addr& addr, uint8_t family) {
  char buf[INET6_ADDRSTRLEN];
  const int af = family == SL_AF_INET ? AF_INET : family == SL_AF_INET6 ? AF_INET6 : AF_UNSPEC;
  if (af == AF_UNSPEC || inet_ntop(af, addr.w, buf, sizeof(buf)) == nullptr) {
    return "<family " + std::to_string(family) + ">";
  }
  return buf;
}

std::string format_host_port(const sl_addr& addr, uint8_t family, uint16_t port) {
  std::string out;
  if (family == SL_AF_INET6) {
    out = "[" + format_ip(addr, family) + "]";
  } else {
    out = format_ip(addr, family);
  }
  out += ':';
  out += port == 0 ? std::string("*") : std::to_string(port);
  return out;
}

// An unknown protocol prints as its number: an endpoint read from maps written by a newer
// agent still shows something an operator can look up.
std::string format_endpoint(const sl_endpoint& ep) {
  std::string out = format_host_port(ep.addr, ep.family, ntohs(ep.port));
  out += '/';
  const char* proto = proto_name(ep.proto);
  out += proto != kUnknown ? std::string(proto) : std::to_string(ep.proto);
  return out;
}

std::optional<uint8_t> parse_proto(std::string_view name) {
  return lookup_name(kProtos, name, kVipProtos);
}
std::optional<uint8_t> parse_mode(std::string_view name) { return lookup_name(kModes, name); }
std::optional<uint8_t> parse_sched(std::string_view name) { return lookup_name(kScheds, name); }

const char* proto_name(uint8_t proto) {
  for (const Name& p : kProtos) {
    if (p.code == proto) return p.name;
  }
  return kUnknown;
}
const char* mode_name(uint8_t mode) { return lookup_dense(kModes, mode); }
const char* sched_name(uint8_t sched) { return lookup_dense(kScheds, sched); }
const char* drop_reason_name(uint32_t reason) { return lookup_dense(kDropReasons, reason); }
const char* pass_reason_name(uint32_t reason) { return lookup_dense(kPassReasons, reason); }
const char* verdict_name(uint32_t verdict) { return lookup_dense(kVerdicts, verdict); }
const char* tcp_state_name(uint8_t state) { return lookup_dense(kTcpStates, state); }
const char* ct_stat_name(uint32_t stat) { return lookup_dense(kCtStats, stat); }

const char* ct_event_name(uint8_t type) {
  switch (type) {
    case SL_CT_EV_NEW:
      return "new";
    case SL_CT_EV_ESTABLISHED:
      return "established";
    case SL_CT_EV_CLOSED_FIN:
      return "closed_fin";
    case SL_CT_EV_CLOSED_RST:
      return "closed_rst";
    case SL_CT_EV_BACKEND_RESET:
      return "backend_reset";
    default:
      return "unknown";
  }
}

std::vector<std::string> ct_flag_names(uint8_t flags) {
  static constexpr std::pair<uint8_t, const char*> kFlags[] = {
      {SL_CT_F_ONE_SIDED, "one_sided"},   {SL_CT_F_MIDSTREAM, "midstream"},
      {SL_CT_F_HS_RETRANS, "hs_retrans"}, {SL_CT_F_SIMOPEN, "simopen"},
      {SL_CT_F_SIMCLOSE, "simclose"},     {SL_CT_F_CLOSER_BACKEND, "closer_backend"},
      {SL_CT_F_REUSED, "reused"},         {SL_CT_F_INBOUND, "inbound"}};
  std::vector<std::string> out;
  uint8_t known = 0;
  for (const auto& [bit, name] : kFlags) {
    known |= bit;
    if (flags & bit) out.emplace_back(name);
  }
  for (int b = 0; b < 8; ++b) {
    if ((flags & ~known) & (1u << b)) out.push_back("bit" + std::to_string(b));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Listen addresses

namespace {

// By hand rather than strtoul/stoi: those accept blanks, signs and trailing junk (" +80x"),
// which a config error should name instead of reading as port 80.
std::optional<uint16_t> parse_port(std::string_view s) {
  if (s.empty() || s.size() > 5) return std::nullopt;
  uint32_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint32_t>(c - '0');
  }
  if (v > 65535) return std::nullopt;
  return static_cast<uint16_t>(v);
}

}  // namespace

Result<ListenAddress> parse_listen_address(std::string_view text) {
  const std::string quoted = "'" + std::string(text) + "'";
  if (text.empty())
    return Error{0, "the listen address is empty; write ADDRESS:PORT, e.g. 127.0.0.1:9435"};
  std::string_view host, port;
  if (text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos)
      return Error{0, quoted + " has no closing ']'; write an IPv6 address as [::1]:9435"};
    host = text.substr(1, close - 1);
    const std::string_view rest = text.substr(close + 1);
    if (rest.empty() || rest.front() != ':')
      return Error{0, quoted + " has no port; write [ADDRESS]:PORT, e.g. [::1]:9435"};
    port = rest.substr(1);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos)
      return Error{0, quoted + " has no port; write ADDRESS:PORT, e.g. 127.0.0.1:9435"};
    if (text.find(':') != colon)
      return Error{0, quoted + ": an IPv6 address needs brackets around it, e.g. [::1]:9435"};
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  const auto ip = parse_ip(host);
  if (!ip) {
    return Error{0, quoted + ": '" + std::string(host) +
                        "' is not an IP address; give an IPv4 address or an IPv6 address in "
                        "brackets (host names are not resolved)"};
  }
  if (text.front() == '[' && ip->second != SL_AF_INET6)
    return Error{0,
                 quoted + ": brackets are for IPv6 addresses; write an IPv4 address without them"};
  const auto p = parse_port(port);
  if (!p)
    return Error{0, quoted + ": port '" + std::string(port) + "' is not a number in 0..65535"};
  return ListenAddress{ip->first, ip->second, *p};
}

std::string format_listen_address(const ListenAddress& a) {
  const std::string ip = format_ip(a.addr, a.family);
  return (a.family == SL_AF_INET6 ? "[" + ip + "]" : ip) + ":" + std::to_string(a.port);
}

}  // namespace sluice
