// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Baseline for ns/packet figures: the cost of running any XDP program at all. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("xdp")
int xdp_empty(struct xdp_md *ctx)
{
	return XDP_PASS;
}
