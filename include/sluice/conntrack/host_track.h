// Host flow tracking: tc_flow (bpf/tc_flow.bpf.c) follows the host's own TCP connections on
// chosen interfaces into the `host_flows` table, with the state machine of the VIP flows.
//
// HostTracker owns the loaded programs, their tcx links and the `host_flows` pin. Destroying it
// detaches from every interface (closing a link is all it takes: nothing else is created, no
// qdisc, no classic filter) and removes the pin. Expiry is a ConntrackManager in host-flows mode
// (CtTable::kHostFlows), on the agent's event loop, by the same per-state timeouts as VIP flows.
#pragma once

#include <sluice/bpf/pin_dir.h>
#include <sluice/config/config.h>
#include <sluice/conntrack/conntrack.h>
#include <sluice/core/event_loop.h>
#include <sluice/core/fd.h>
#include <sluice/core/result.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

struct tc_flow_bpf;

namespace sluice {

class HostTracker {
 public:
  // Opens the tc_flow skeleton, sizes `host_flows` to `max_flows` entries and loads it
  // (verifier).
  static Result<std::unique_ptr<HostTracker>> load(uint32_t max_flows);
  ~HostTracker();
  HostTracker(const HostTracker&) = delete;
  HostTracker& operator=(const HostTracker&) = delete;

  // Attaches tc_flow_ingress and tc_flow_egress to each interface of the calling thread's
  // network namespace, as tcx bpf_links (Linux 6.6+) placed first in the hook's chain: every
  // packet is seen, whatever the programs behind decide, and since tc_flow returns TCX_NEXT
  // they all still run. All or nothing: on an error, what this call attached is detached
  // again. The error names the interface and carries the errno.
  Status attach(const std::vector<std::string>& ifaces);
  // Closes every link, so the kernel detaches the programs. Safe to call again.
  void detach();
  // Pins `host_flows` at <dir>/host_flows (kHostFlowsPin), creating `dir` (mode 0700) when it
  // does not exist.
  Status pin(const std::string& dir);
  // Removes the pin, and `dir` if pin() created it and nothing else is left in it.
  void unpin();

  // Expires `host_flows` entries on `loop` by `timeouts` (a ConntrackManager with
  // CtTable::kHostFlows; opts.table is overridden). `loop` must outlive the tracker.
  Status start_expiry(EventLoop& loop, const ConntrackTimeouts& timeouts,
                      ConntrackOptions opts = {});
  // nullptr until start_expiry().
  const ConntrackManager* expiry() const { return expiry_.get(); }
  ConntrackManager* expiry() { return expiry_.get(); }

  int host_flows_fd() const;
  int ingress_prog_fd() const;
  int egress_prog_fd() const;

  struct Attachment {
    std::string ifname;
    unsigned ifindex = 0;
    UniqueFd ingress;  // tcx link fds
    UniqueFd egress;
  };
  const std::vector<Attachment>& attachments() const { return links_; }

 private:
  HostTracker() = default;
  Status attach_one(const std::string& ifname);

  tc_flow_bpf* skel_ = nullptr;
  MapFds fds_;  // conntrack = host_flows, for the ConntrackManager
  std::vector<Attachment> links_;
  std::unique_ptr<ConntrackManager> expiry_;
  std::optional<PinDir> pins_;  // where host_flows is pinned, while it is
};

// sluiced's host flow tracking, from the config: loads tc_flow with cfg.track.max_flows
// entries, attaches it to cfg.track.interfaces, pins `host_flows` under `pin_dir`, and expires
// its entries by cfg.conntrack_timeouts every cfg.conntrack_sweep_interval_ms. nullptr (and no
// error) when the config has no `track` section.
Result<std::unique_ptr<HostTracker>> start_host_tracking(const Config& cfg,
                                                         const std::string& pin_dir,
                                                         EventLoop& loop);

}  // namespace sluice
