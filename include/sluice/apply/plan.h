// An apply as a plan: from the agent's view of what is applied (AppliedState) and the new
// Config, the ordered map writes that make the maps hold the config, with every VIP and
// backend id assigned before anything is written. Nothing here touches a map; execute()
// (execute.h) runs a plan through a MapWriter.
//
// What the order guarantees (Datapath::apply in bpf/datapath.h says it for users):
//  1. the pre-filter passes the old and the new set while both are live;
//  2. per VIP in config order: backends (and reverse NAT) first, then its ring, written into
//     the staging ring and switched in by one vip_table update; a kept VIP is live all along
//     and switches here, a new or rebuilt one is not reachable yet;
//  3. new and rebuilt VIPs become reachable: vip_addrs, then the `vips` hash (a rebuilt VIP
//     flips from its old id to the new one in this one update), then the index;
//  4. VIPs that went (or were rebuilt) leave `vips`, their backends are retired and their
//     vip_table entries cleared, only after the index no longer names them;
//  5. what is left: the rev_nat wildcard count, addresses that carry no VIP any more, the
//     pre-filter of the new set alone, reverse NAT of reused ids, and `info`.
// A capacity error (not enough free VIP or backend ids) comes out of plan_apply(), before any
// write.
#pragma once

#include <sluice/apply/maglev.h>
#include <sluice/apply/state.h>
#include <sluice/config/config.h>
#include <sluice/core/result.h>

#include <cstdint>
#include <functional>
#include <variant>
#include <vector>

namespace sluice {

namespace op {
struct WriteFilter {
  std::vector<uint64_t> words;
};
struct ResetVipStats {
  uint32_t vip_id;
};
struct ResetBackendStats {
  uint32_t id;
};
struct WriteBackend {
  uint32_t id;
  sl_backend value;
};
// Writes the backend with SL_BACKEND_F_RETIRED: it stays ACTIVE so that its established flows
// finish on it. A failure is logged, not fatal: the id is retired in the agent's view anyway.
struct RetireBackend {
  uint32_t id;
  sl_backend value;
};
struct WriteRevNat {
  sl_endpoint backend;
  sl_rev_nat value;
};
// Builds the ring from `usable` into ring entry.vip.ring_id (the staging ring), then writes
// `entry` to vip_table: the switch.
struct SwitchRing {
  sl_vip_entry entry;
  std::vector<MaglevBackend> usable;
};
// A new or rebuilt VIP becomes reachable by address: vip_addrs, then the `vips` hash.
struct AddVip {
  sl_vip_entry entry;
  size_t nbackends;  // for the log line
};
struct WriteIndex {
  std::vector<uint32_t> slots;
};
struct RemoveVip {
  sl_endpoint vip;
};
struct ClearVipEntry {
  uint32_t vip_id;
};
struct SetRevNatWildcards {
  uint32_t count;
};
struct DeleteVipAddr {
  sl_addr_key addr;
};
struct DeleteRevNat {
  sl_endpoint backend;
};
struct WriteInfo {
  uint64_t generation;
};
}  // namespace op

using PlanOp =
    std::variant<op::WriteFilter, op::ResetVipStats, op::ResetBackendStats, op::WriteBackend,
                 op::RetireBackend, op::WriteRevNat, op::SwitchRing, op::AddVip, op::WriteIndex,
                 op::RemoveVip, op::ClearVipEntry, op::SetRevNatWildcards, op::DeleteVipAddr,
                 op::DeleteRevNat, op::WriteInfo>;

struct Plan {
  std::vector<PlanOp> ops;
  AppliedState next;  // the agent's view once every op is written
  ApplySummary summary;
};

// Whether a retired backend id may go to a new backend (the data path's flows decide: see
// Datapath). Asked only when no fresh id is left, at most once per retired id.
using IdReusable = std::function<bool(uint32_t id)>;

// The plan that takes `cur` to `cfg`. Ids: a kept VIP keeps its id, a kept backend (same
// address and port within its VIP) keeps its id; new ones take the lowest free id, and once
// none is left the oldest retired backend id that `reusable` allows. Errors (E2BIG) when the
// ids do not suffice.
Result<Plan> plan_apply(const AppliedState& cur, const Config& cfg, const IdReusable& reusable);

}  // namespace sluice
