// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Bench harness. BPF_PROG_TEST_RUN (without live frames) runs every repeat on the same
 * buffer, so a program that rewrites the packet (NAT) would see its own output from the second
 * repeat on. This program restores the first 64 bytes from `tmpl` and tail-calls the program
 * under test. The baseline is the same restore + tail call into an empty program, so the
 * difference is the cost of the program under test alone.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define TMPL_LEN 64

__u8 tmpl[TMPL_LEN]; /* written by userspace through the mmapped .bss */
/* Non-zero: give every run a new source port (bytes 34-35: IPv4 without options), so each
 * run of a TCP SYN is a new flow. The L4 checksum is not fixed: sluice does not verify it. */
__u32 vary_sport;
__u32 counter;
__u32 modulo; /* non-zero: the counter cycles through [0, modulo) (a fixed set of flows) */

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} next SEC(".maps");

SEC("xdp")
int xdp_restore(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;

	if (data + TMPL_LEN > end)
		return XDP_ABORTED;
	__builtin_memcpy(data, tmpl, TMPL_LEN);
	if (vary_sport) {
		__u32 c = counter++;

		if (modulo) {
			if (counter >= modulo)
				counter = 0;
			c %= modulo;
		}

		((__u8 *)data)[34] = c >> 8;
		((__u8 *)data)[35] = c;
		((__u8 *)data)[29] = c >> 16; /* low byte of the source address: > 64k flows */
	}
	bpf_tail_call(ctx, &next, 0);
	return XDP_ABORTED;
}
