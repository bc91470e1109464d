// Where congestion control's objects are pinned: <pin dir>/cc/, apart from the data path's
// maps (whose directory must hold nothing but them before `info` is pinned). The one list of
// their names; CcPolicy, CcAlgorithm, sluicectl and the tests all use these.
#pragma once

namespace sluice {

inline constexpr const char* kCcPinSubdir = "cc";

// Maps of the sockops policy (bpf/cc_sockops.bpf.c; include/sluice/abi/cc.h).
inline constexpr const char* kCcConfigPin = "cc_config";
inline constexpr const char* kCcLpmPin = "cc_lpm";
inline constexpr const char* kCcRulesPin = "cc_rules";
inline constexpr const char* kCcRuleStatsPin = "cc_rule_stats";
inline constexpr const char* kCcRuleInfoPin = "cc_rule_info";
inline constexpr const char* kCcConnsPin = "cc_conns";
// The sockops program's cgroup link: it outlives sluiced, so a restart never leaves new
// connections without their policy.
inline constexpr const char* kCcSockopsLinkPin = "link_sockops";
// sluice_aimd's struct_ops link (bpf/cc_aimd.bpf.c), and the count of sockets using it.
inline constexpr const char* kCcAlgoLinkPin = "link_sluice_aimd";
inline constexpr const char* kCcAlgoUsersPin = "cc_algo_users";

}  // namespace sluice
