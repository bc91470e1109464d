// HostTracker: loads tc_flow, attaches it to the `track` interfaces with tcx links and pins
// `host_flows` for `sluicectl conntrack --host` (docs/design.md, "Host flows"). The links are
// not pinned: they go with the agent, and a new one creates its own.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <net/if.h>
#include <spdlog/spdlog.h>

#include <sluice/bpf/maps.h>
#include <sluice/bpf/pin_dir.h>
#include <sluice/bpf/tcx.h>
#include <sluice/conntrack/host_track.h>
#include "tc_flow.skel.h"

namespace sluice {

namespace {

// Why the kernel may refuse a tcx link, for the error message.
std::string attach_hint(int err) {
  switch (err) {
    case EINVAL:
      return " (does the kernel have tcx? host flow tracking needs Linux 6.6 or later)";
    case EPERM:
      return " (needs CAP_BPF and CAP_NET_ADMIN)";
    case ENODEV:
      return " (the interface went away)";
    default:
      return "";
  }
}

}  // namespace

Result<std::unique_ptr<HostTracker>> HostTracker::load(uint32_t max_flows) {
  std::unique_ptr<HostTracker> t(new HostTracker());
  t->skel_ = tc_flow_bpf__open();
  if (!t->skel_) return sys_error("open BPF skeleton tc_flow");
  if (int err = bpf_map__set_max_entries(t->skel_->maps.host_flows, max_flows))
    return sys_error("size map 'host_flows' to " + std::to_string(max_flows) + " entries", err);
  if (int err = tc_flow_bpf__load(t->skel_))
    return sys_error("load BPF program tc_flow (verifier log above)", err);
  t->fds_.conntrack = bpf_map__fd(t->skel_->maps.host_flows);
  return t;
}

HostTracker::~HostTracker() {
  expiry_.reset();  // it reads host_flows through the skeleton's fd
  detach();
  unpin();
  if (skel_) tc_flow_bpf__destroy(skel_);
}

int HostTracker::host_flows_fd() const { return fds_.conntrack; }
int HostTracker::ingress_prog_fd() const { return bpf_program__fd(skel_->progs.tc_flow_ingress); }
int HostTracker::egress_prog_fd() const { return bpf_program__fd(skel_->progs.tc_flow_egress); }

Status HostTracker::attach(const std::vector<std::string>& ifaces) {
  const size_t before = links_.size();
  for (const std::string& name : ifaces) {
    if (auto s = attach_one(name); !s) {
      // All or nothing: take back what this call attached.
      while (links_.size() > before) {
        spdlog::info("host flows: detached from {} (rolling back)", links_.back().ifname);
        links_.pop_back();
      }
      return s;
    }
  }
  return {};
}

Status HostTracker::attach_one(const std::string& name) {
  const unsigned ifindex = if_nametoindex(name.c_str());
  if (ifindex == 0) {
    return sys_error("track: interface '" + name + "' not found in this network namespace");
  }
  Attachment a{name, ifindex, {}, {}};
  struct {
    bpf_program* prog;
    bpf_attach_type type;
    const char* hook;
    UniqueFd* link;
  } hooks[] = {{skel_->progs.tc_flow_ingress, kTcxIngress, "ingress", &a.ingress},
               {skel_->progs.tc_flow_egress, kTcxEgress, "egress", &a.egress}};
  for (auto& h : hooks) {
    // Head of the chain: tc_flow sees every packet before another program can drop or
    // redirect it, and its TCX_NEXT lets the programs behind it run as before.
    LIBBPF_OPTS(bpf_link_create_opts, opts, .flags = kTcxFirst);
    const int fd =
        bpf_link_create(bpf_program__fd(h.prog), static_cast<int>(ifindex), h.type, &opts);
    if (fd < 0) {
      const int err = errno;
      return sys_error("track: attach " + std::string(bpf_program__name(h.prog)) + " to '" + name +
                           "' (tcx " + h.hook + ", ifindex " + std::to_string(ifindex) + ")" +
                           attach_hint(err),
                       err);
    }
    h.link->reset(fd);
  }
  links_.push_back(std::move(a));
  spdlog::info("host flows: tc_flow attached to {} (ifindex {}, tcx ingress + egress)", name,
               ifindex);
  return {};
}

void HostTracker::detach() {
  for (Attachment& a : links_) {
    // The last reference to an unpinned link: the kernel detaches the program.
    a.ingress.reset();
    a.egress.reset();
    spdlog::info("host flows: tc_flow detached from {}", a.ifname);
  }
  links_.clear();
}

Status HostTracker::pin(const std::string& dir) {
  if (pins_)
    return Error{EEXIST, "host_flows is already pinned at " + pins_->path_of(kHostFlowsPin)};
  auto d = PinDir::create(dir, /*lock=*/false);
  if (!d) return d.error();
  if (auto s = d->pin(host_flows_fd(), kHostFlowsPin); !s) {
    if (d->created()) d->remove();
    return s;
  }
  pins_ = std::move(*d);
  return {};
}

void HostTracker::unpin() {
  if (!pins_) return;
  pins_->unpin(kHostFlowsPin);
  // Fails (ENOTEMPTY) while the data path's pins are still there; their owner removes it.
  if (pins_->created()) pins_->remove();
  pins_.reset();
}

Status HostTracker::start_expiry(EventLoop& loop, const ConntrackTimeouts& timeouts,
                                 ConntrackOptions opts) {
  expiry_.reset();
  opts.table = CtTable::kHostFlows;
  auto m = std::make_unique<ConntrackManager>(fds_, timeouts, loop, std::move(opts));
  if (auto s = m->start(); !s) return s;
  expiry_ = std::move(m);
  return {};
}

Result<std::unique_ptr<HostTracker>> start_host_tracking(const Config& cfg,
                                                         const std::string& pin_dir,
                                                         EventLoop& loop) {
  if (cfg.track.interfaces.empty()) return std::unique_ptr<HostTracker>();
  auto t = HostTracker::load(cfg.track.max_flows);
  if (!t) return t.error();
  if (auto s = (*t)->attach(cfg.track.interfaces); !s) return s.error();
  // sluiced holds the pin directory (Datapath::open locks it): a host_flows pin found there
  // is a killed agent's. Its links died with it; its table is not carried over.
  PinDir(pin_dir).unpin(kHostFlowsPin);
  if (auto s = (*t)->pin(pin_dir); !s) return s.error();
  ConntrackOptions opts;
  opts.sweep_interval = std::chrono::milliseconds(cfg.conntrack_sweep_interval_ms);
  if (auto s = (*t)->start_expiry(loop, cfg.conntrack_timeouts, opts); !s) return s.error();
  spdlog::info("host flows: tracking TCP on {} interface{} ({} entries), pinned at {}/{}",
               cfg.track.interfaces.size(), cfg.track.interfaces.size() == 1 ? "" : "s",
               cfg.track.max_flows, pin_dir, kHostFlowsPin);
  return t;
}

}  // namespace sluice
