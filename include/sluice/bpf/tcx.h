// tcx (Linux 6.6) attach types and flags. Debian 12's uapi headers (6.1) and libbpf (1.1) lack
// them; BPF_F_BEFORE arrived with them, as a macro, so it tells which headers these are. The
// values are the kernel's stable uapi (enum bpf_attach_type, BPF_F_*), checked against the
// 6.18 kernel's BTF. libbpf 1.1's bpf_link_create() passes an attach type it does not know
// straight to the kernel. Used by host flow tracking and the tests' fault injector.
#pragma once

#include <linux/bpf.h>

#include <cstdint>

namespace sluice {

#ifdef BPF_F_BEFORE
inline constexpr bpf_attach_type kTcxIngress = BPF_TCX_INGRESS;
inline constexpr bpf_attach_type kTcxEgress = BPF_TCX_EGRESS;
inline constexpr uint32_t kTcxFirst = BPF_F_BEFORE;
#else
inline constexpr auto kTcxIngress = static_cast<bpf_attach_type>(46);
inline constexpr auto kTcxEgress = static_cast<bpf_attach_type>(47);
// BPF_F_BEFORE without a relative program or link: the head of the chain.
inline constexpr uint32_t kTcxFirst = 1u << 3;
#endif

}  // namespace sluice
