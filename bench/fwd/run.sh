#!/usr/bin/env bash
# Forwarding benchmark (issue #2): packets through the demo veth topology, delivered to the
# backends, and the load balancer's CPU cost per forwarded packet, for
#   - the floor: XDP_DROP on the LB's lc (generator + one veth hop, nothing forwarded);
#   - trivial: an XDP program that only rewrites MACs and redirects (round-robin, devmap);
#   - trivial + bpf_fib_lookup: the same with a FIB lookup per packet (the cost sluice's
#     next-hop cache avoids), for scale;
#   - sluice (sluiced): UDP fast path and TCP (conntrack hits), nat and dsr;
#   - nftables: DNAT with `jhash ip saddr mod 3` and kernel forwarding;
# all in the same run on the same topology, repeated and reported as medians with ratios to
# the trivial forwarder. Results: docs/benchmarks.md explains every column.
#
# usage: bench/fwd/run.sh [-b BUILD_DIR] [-r REPS] [-s SECONDS] [-c CPU] [-o JSONL]
#   -b  build directory with agent/daemon/sluiced and bench/fwd/fwd_bench (default: <repo>/build)
#   -r  repetitions of every variant (default 5; the table shows medians)
#   -s  seconds per measured run (default 2)
#   -c  CPU the generator is pinned to; the LB's softirq work runs there too (default: last)
#   -o  also keep the raw JSON lines here
# Needs root. Builds nothing: run `cmake -S . -B build && cmake --build build -j2` first.
#
# Everything lives in namespaces named slfb-<pid>-*, and a trap removes them, the sluiced
# process, its pins and any XDP/TC/nft state on every exit path. Takes about 1.5 min at the
# defaults.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=$repo/build
reps=5
seconds=2
cpu=$(($(nproc) - 1))
keep=
while getopts "b:r:s:c:o:h" opt; do
  case $opt in
    b) build=$(cd "$OPTARG" && pwd) ;;
    r) reps=$OPTARG ;;
    s) seconds=$OPTARG ;;
    c) cpu=$OPTARG ;;
    o) keep=$OPTARG ;;
    *) sed -n '2,20p' "$0"; exit 2 ;;
  esac
done

die() { echo "run.sh: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || die "needs root (network namespaces, XDP, nftables)"
fwd_bench=$build/bench/fwd/fwd_bench
sluiced=$build/agent/daemon/sluiced
sluicectl=$build/agent/ctl/sluicectl
# shellcheck source=bench/lib.sh
source "$repo/bench/lib.sh"
need_built "$repo" "$build" "$fwd_bench" "$sluiced" "$sluicectl"
need_tools ip nft ethtool jq

p=slfb-$$
C=$p-client LB=$p-lb
B=("$p-b1" "$p-b2" "$p-b3")
pin_dir=/sys/fs/bpf/$p
work=$(mktemp -d /tmp/slfb.XXXXXX)
results=$work/results.jsonl
declare -A said=()
sluiced_pid=
bench_pid=

stop_sluiced() {
  stop_pid "$sluiced_pid"
  sluiced_pid=
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  # fwd_bench owns its XDP attachments through bpf_link fds: killing it detaches them.
  if [[ -n $bench_pid ]]; then
    kill -TERM "$bench_pid" 2>/dev/null || true
    wait "$bench_pid" 2>/dev/null || true
  fi
  stop_sluiced
  rm -rf "$pin_dir"
  # Deleting a namespace removes its veths (and with them XDP, TC and neighbours) and its
  # nft tables. No process of ours is left inside: fwd_bench and sluiced are gone by now.
  del_netns "$C" "${B[@]}" "$LB"
  if [[ -n $keep && -f $results ]]; then cp "$results" "$keep"; fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- topology: the one of scripts/topology.sh (same names and addresses), without sl-echo
# (the backends' XDP sinks drop every IPv4 frame before any socket could see it) and with
# benchmark-specific settings, marked BENCH below. IPv4 only: the generator sends IPv4.
topo_up() {
  local ns n
  for ns in "$C" "$LB" "${B[@]}"; do
    ip netns add "$ns"
    # BENCH 0: no IPv6 (the benchmark is IPv4-only). IPv6 sends router solicitations and
    # MLD reports on its own timers, on whichever CPU the timer fires: one such frame
    # schedules the receiving veth's NAPI on that CPU, and under load the NAPI then stays
    # there, so the LB's work silently moves off the generator's CPU and frames overflow
    # the veth ring (seen as c0 tx_queue_0_xdp_xmit_errors a few seconds after link-up).
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
    ip -n "$ns" link set lo up
  done
  ip -n "$C" link add c0 type veth peer name lc netns "$LB"
  for n in 1 2 3; do
    ip -n "$LB" link add "lb$n" type veth peer name eth0 netns "${B[n - 1]}"
  done

  ip netns exec "$LB" sysctl -qw net.ipv4.ip_forward=1
  ip netns exec "$LB" sysctl -qw net.ipv4.conf.all.rp_filter=0
  ip netns exec "$LB" sysctl -qw net.ipv4.conf.default.rp_filter=0
  ip -n "$LB" addr add 198.18.0.1/24 dev lc
  for n in 1 2 3; do ip -n "$LB" addr add "198.18.$n.1/24" dev "lb$n"; done
  for ns in lc lb1 lb2 lb3; do
    ip netns exec "$LB" sysctl -qw "net.ipv4.conf.$ns.rp_filter=0"
    ip -n "$LB" link set "$ns" up
  done

  ip -n "$C" addr add 198.18.0.2/24 dev c0
  for n in $(seq 100 131); do ip -n "$C" addr add "198.18.0.$n/24" dev c0; done
  ip netns exec "$C" ethtool -K c0 tx off >/dev/null
  ip -n "$C" link set c0 up
  ip netns exec "$C" ethtool -K c0 gro on >/dev/null
  ip -n "$C" route add 198.19.0.0/24 via 198.18.0.1

  for n in 1 2 3; do
    ns=${B[n - 1]}
    ip -n "$ns" addr add "198.18.$n.2/24" dev eth0
    ip netns exec "$ns" ethtool -K eth0 tx off >/dev/null
    ip -n "$ns" link set eth0 up
    ip netns exec "$ns" ethtool -K eth0 gro on >/dev/null
    ip -n "$ns" route add default via "198.18.$n.1"
    ip -n "$ns" addr add 198.19.0.2/32 dev lo
  done

  # BENCH 1: GRO on lc. The generator's frames are XDP-redirected out of c0, and a veth
  # takes redirected frames only when its peer (lc) has XDP or GRO. sluice and the trivial
  # forwarder attach XDP to lc; the nftables and kernel-forwarding runs have none, so GRO
  # must be on. As in topology.sh, GRO goes on while both ends are up. With XDP attached,
  # redirected frames never reach GRO, so the XDP variants are unaffected.
  ip netns exec "$LB" ethtool -K lc gro on >/dev/null

  # BENCH 2: permanent neighbours for the backends. The sinks drop every IPv4 frame, and a
  # neighbour entry that goes stale would be re-probed by the kernel (nftables runs) or make
  # bpf_fib_lookup miss (sluice, fwd_fib): both would measure neighbour resolution instead
  # of forwarding.
  local mac
  for n in 1 2 3; do
    mac=$(ip -n "${B[n - 1]}" -br link show eth0 | awk '{print $3}')
    ip -n "$LB" neigh replace "198.18.$n.2" lladdr "$mac" dev "lb$n" nud permanent
  done
}

echo "run.sh: building topology $p-* ..." >&2
topo_up

common=(--client-ns "$C" --lb-ns "$LB" --backend-ns "$(IFS=,; echo "${B[*]}")"
        --seconds "$seconds" --cpu "$cpu")

diagnose() {
  echo "---- diagnostics ($1)" >&2
  if [[ -n $sluiced_pid && -e $pin_dir/info ]]; then
    "$sluicectl" --pin-dir "$pin_dir" stats >&2 || true
  fi
  local i
  ip netns exec "$LB" ethtool -S lc 2>/dev/null | grep -Ev ': 0$' >&2 || true
  for i in 1 2 3; do
    ip netns exec "$LB" ethtool -S "lb$i" 2>/dev/null | grep -Ev ': 0$' >&2 || true
  done
  if [[ -f $work/sluiced.log ]]; then tail -20 "$work/sluiced.log" >&2; fi
  ip netns exec "$C" ethtool -S c0 2>/dev/null | grep -Ev ': 0$' >&2 || true
}

# measure LABEL ARGS...: one run, appended to $results; complains when packets went missing.
measure() {
  local label=$1 out rc=0
  shift
  # In the background, so that a signal to this script is handled at once: fwd_bench runs
  # in a session of its own (see its setsid) and would not see a terminal's Ctrl-C.
  "$fwd_bench" measure --label "$label" "${common[@]}" "$@" >"$work/out.json" &
  bench_pid=$!
  wait "$bench_pid" || rc=$?
  bench_pid=
  if ((rc != 0)); then
    diagnose "$label"
    die "measurement '$label' failed"
  fi
  out=$(<"$work/out.json")
  echo "$out" >>"$results"
  local gen del note
  gen=$(jq -r .generated <<<"$out")
  del=$(jq -r .delivered <<<"$out")
  # The fallbacks fwd_bench took (no CPU probe, no live frames): said once per run.sh run.
  while IFS= read -r note; do
    [[ -n $note && -z ${said[$note]:-} ]] || continue
    said[$note]=1
    echo "run.sh: $note" >&2
  done < <(jq -r '.notes // [] | .[]' <<<"$out")
  # Without the CPU probe the ns/pkt fields are absent: n/a.
  printf 'run.sh: %-28s %6.3f Mpps  LB %6s ns/pkt  NET_RX %6s ns/pkt  delivered %s/%s  (%s)\n' \
    "$label" "$(jq -r '.pps / 1e6' <<<"$out")" \
    "$(jq -r '.lb_ns_per_pkt | if . == null then "n/a" else . * 10 | round / 10 end' <<<"$out")" \
    "$(jq -r '.ns_per_pkt | if . == null then "n/a" else . * 10 | round / 10 end' <<<"$out")" \
    "$del" "$gen" "$(jq -r '.samples | join(", ")' <<<"$out")" >&2
  if ((del * 100 < gen * 99)); then
    echo "run.sh: WARNING: '$label' lost more than 1% of the packets" >&2
    diagnose "$label"
  fi
  if jq -e '.ours_off_cpu_share > 0.01' <<<"$out" >/dev/null; then
    echo "run.sh: WARNING: '$label': part of the LB's or backends' NAPI work ran off the" \
      "generator's CPU (counted, but that CPU also runs other work)" >&2
  fi
}

start_sluiced() {
  # --detach-on-exit: by default sluiced leaves its data path (XDP and pins) running for the
  # next sluiced; here the next variants must run without it.
  "$sluiced" --netns "$LB" --pin-dir "$pin_dir" --config "$repo/bench/fwd/sluice-bench.yaml" \
    --detach-on-exit --log-level warn >>"$work/sluiced.log" 2>&1 &
  sluiced_pid=$!
  local i
  for ((i = 0; i < 100; i++)); do
    [[ -e $pin_dir/info ]] && return 0
    kill -0 "$sluiced_pid" 2>/dev/null || break
    sleep 0.1
  done
  cat "$work/sluiced.log" >&2
  die "sluiced did not become ready (no $pin_dir/info)"
}

udp_nat=(--proto udp --dst 198.19.0.1 --dport 53)
udp_dsr=(--proto udp --dst 198.19.0.2 --dport 53)
tcp_nat=(--proto tcp --dst 198.19.0.1 --dport 80)
tcp_dsr=(--proto tcp --dst 198.19.0.2 --dport 80)

nft_rules='table ip slbench {
  chain pre {
    type nat hook prerouting priority -100;
    ip daddr 198.19.0.1 udp dport 53 dnat to jhash ip saddr mod 3 map { 0 : 198.18.1.2, 1 : 198.18.2.2, 2 : 198.18.3.2 }
  }
}'

# Variants are interleaved (rep 1 of every variant, then rep 2, ...) so slow drift of the
# shared VM affects all of them alike.
for ((rep = 1; rep <= reps; rep++)); do
  echo "run.sh: repetition $rep/$reps" >&2
  measure "floor: XDP_DROP on lc" --lc drop "${udp_nat[@]}"
  measure "trivial" --lc trivial "${udp_nat[@]}"
  measure "trivial + bpf_fib_lookup" --lc fib "${udp_nat[@]}"

  start_sluiced
  measure "sluice UDP nat" "${udp_nat[@]}"
  measure "sluice UDP dsr" "${udp_dsr[@]}"
  measure "sluice TCP nat" "${tcp_nat[@]}"
  measure "sluice TCP dsr" "${tcp_dsr[@]}"
  stop_sluiced
  if [[ -e $pin_dir ]]; then
    tail -20 "$work/sluiced.log" >&2
    die "sluiced left its pins in $pin_dir: $(find "$pin_dir" -mindepth 1 -printf '%f ')"
  fi

  ip netns exec "$LB" nft -f - <<<"$nft_rules"
  measure "nftables UDP DNAT" "${udp_nat[@]}"
  # The same with a TC sink. Kernel-forwarded skbs reach the backends' XDP sink only after
  # veth copies them into an XDP buffer; a TC sink takes the skb as it is. The LB's own cost
  # (lc's polls) must not depend on the sink: this run checks that.
  measure "nftables UDP DNAT, tc sink" --sink tc "${udp_nat[@]}"
  ip netns exec "$LB" nft delete table ip slbench
done

echo >&2
echo "Machine: $(uname -r), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "sluice: $(git -C "$repo" log -1 --format='%h %s' 2>/dev/null || echo unknown)$(
  [[ -z $(git -C "$repo" status --porcelain -- bpf agent include config 2>/dev/null) ]] ||
    echo ' + uncommitted changes in bpf/ agent/ include/ config/')"
echo "Generator and LB softirq on CPU $cpu; $reps repetitions of ${seconds}s; medians (min–max)."

echo
"$fwd_bench" report "$results" --baseline trivial
