// FaultInjector (fault.h).
#include "fault.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <net/if.h>

#include <sluice/bpf/tcx.h>

#include "tc_fault.skel.h"

namespace sluice::test {

Result<std::unique_ptr<FaultInjector>> FaultInjector::attach(const std::string& ifname, Hook hook) {
  std::unique_ptr<FaultInjector> f(new FaultInjector());
  const unsigned ifindex = if_nametoindex(ifname.c_str());
  if (ifindex == 0) return sys_error("fault injector: no interface '" + ifname + "' here");
  f->skel_ = tc_fault_bpf__open_and_load();
  if (!f->skel_) return sys_error("load BPF program tc_fault");
  // First in the chain: a dropped packet is never seen by the programs behind it.
  LIBBPF_OPTS(bpf_link_create_opts, opts, .flags = kTcxFirst);
  f->link_.reset(bpf_link_create(bpf_program__fd(f->skel_->progs.tc_fault),
                                 static_cast<int>(ifindex),
                                 hook == Hook::kIngress ? kTcxIngress : kTcxEgress, &opts));
  if (!f->link_.valid()) {
    return sys_error("fault injector: attach tc_fault to '" + ifname + "' (tcx " +
                     (hook == Hook::kIngress ? "ingress" : "egress") + ", needs Linux 6.6+)");
  }
  return f;
}

FaultInjector::~FaultInjector() {
  link_.reset();
  if (skel_) tc_fault_bpf__destroy(skel_);
}

Status FaultInjector::configure(const sl_fault_config& c) {
  const uint32_t zero = 0;
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.fault_config), &zero, &c, BPF_ANY) != 0)
    return sys_error("fault injector: write fault_config");
  return {};
}

Status FaultInjector::drop_random(uint32_t ppm, bool tcp_payload_only) {
  if (ppm > 1000000) return Error{EINVAL, "fault injector: ppm above 1000000"};
  return configure({SL_FAULT_RANDOM, ppm, 0, tcp_payload_only ? 1u : 0u});
}

Status FaultInjector::drop_every(uint32_t n, bool tcp_payload_only) {
  if (n == 0) return Error{EINVAL, "fault injector: drop every 0th packet"};
  return configure({SL_FAULT_NTH, 0, n, tcp_payload_only ? 1u : 0u});
}

Status FaultInjector::off() { return configure({SL_FAULT_OFF, 0, 0, 0}); }

Result<sl_fault_stats> FaultInjector::stats() const {
  const uint32_t zero = 0;
  sl_fault_stats s{};
  if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.fault_stats), &zero, &s) != 0)
    return sys_error("fault injector: read fault_stats");
  return s;
}

Status FaultInjector::reset_stats() {
  const uint32_t zero = 0;
  const sl_fault_stats s{};
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.fault_stats), &zero, &s, BPF_ANY) != 0)
    return sys_error("fault injector: reset fault_stats");
  return {};
}

}  // namespace sluice::test
