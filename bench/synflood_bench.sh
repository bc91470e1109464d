#!/usr/bin/env bash
# SYN-flood absorption (issue #10): the highest rate of spoofed SYNs that the LB core absorbs
# while 20 established TCP flows through it keep >= 90 % of their throughput, and new honest
# connections still open at once (first SYN answered, no retransmit).
#
# One run, one world (the demo topology of scripts/topology.sh, in namespaces slsf-<pid>-*):
#   - the real sluiced in the LB namespace with two nat TCP VIPs on 198.19.0.1, each over
#     the three backends: :5201 (iperf3 -s on every backend) and :80 (sl-echo on :8080);
#     conntrack {max_entries: 65536, pending_entries: 65536};
#   - baseline: iperf3 -c 198.19.0.1 -P 20 (20 parallel streams, one client address, so one
#     backend) with no flood, while 20 honest connections are opened to 198.19.0.1:80;
#   - then the same under sl-spoof: SYNs from random sources in 100.64.0.0/10 and random
#     ports to 198.19.0.1:80, at increasing rates, until the spoofer falls behind;
#   - a closing baseline, so drift of the shared VM shows; ratios are to the mean of both.
# The achieved flood rate is the LB's own count (packets of VIP :80 during the iperf3 run),
# next to what the spoofer says it sent.
#
# By default the backends drop the flood at ingress (nft, before their TCP stacks): the
# figure is then the LB's, not the backends' SYN-cookie cost. With -a the backends' kernels
# answer it (SYN cookies), and the SYN+ACKs die on blackhole routes for 100.64.0.0/10
# (present in every namespace either way, so nothing ever answers a spoofed source).
#
# usage: bench/synflood_bench.sh [-b BUILD_DIR] [-t SECONDS] [-r "RATE RATE ..."] [-l MBIT] [-a]
#   -b  build directory with agent/daemon/sluiced, agent/ctl/sluicectl and tests/tools/sl-{spoof,probe,echo}
#       (default: <repo>/build)
#   -t  seconds of each iperf3 run, after 1 s omitted for slow start (default 6)
#   -r  flood rates in packets/s, ascending (default "25000 50000 100000 200000 400000 800000")
#   -a  the backends answer the flood (see above)
#   -l  cap the 20 flows at this many Mbit/s in all (iperf3 -b per stream): flows that do not
#       saturate the VM, so the ratio shows what the flood takes from flows with headroom
#       (default: no cap, the flows take all they can)
# Needs root. Builds nothing. About 1.5-2 minutes at the defaults; never more than ~4.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$repo/build
secs=6
rates="25000 50000 100000 200000 400000 800000"
answer=0
load=
while getopts "b:t:r:l:ah" opt; do
  case $opt in
    b) build=$(cd "$OPTARG" && pwd) ;;
    t) secs=$OPTARG ;;
    r) rates=$OPTARG ;;
    a) answer=1 ;;
    l) load=$OPTARG ;;
    *) sed -n '2,30p' "$0"; exit 2 ;;
  esac
done

die() { echo "synflood_bench: $*" >&2; exit 1; }
say() { echo "synflood_bench: $*" >&2; }
[[ $(id -u) -eq 0 ]] || die "needs root (network namespaces, XDP, nftables)"
sluiced=$build/agent/daemon/sluiced
sluicectl=$build/agent/ctl/sluicectl
spoof=$build/tests/tools/sl-spoof
probe=$build/tests/tools/sl-probe
export SL_ECHO=$build/tests/tools/sl-echo
# shellcheck source=bench/lib.sh
source "$repo/bench/lib.sh"
need_built "$repo" "$build" "$sluiced" "$sluicectl" "$spoof" "$probe" "$SL_ECHO"
need_tools ip nft ethtool jq iperf3 curl awk

p=slsf-$$
C=$p-client LB=$p-lb S=$p-sink
B=("$p-b1" "$p-b2" "$p-b3")
pin_dir=/sys/fs/bpf/$p
work=$(mktemp -d /tmp/slsf.XXXXXX)
export TOPO_RUNDIR=$work/topo
sluiced_pid=
spoof_pid=
start_time=$SECONDS
budget=225 # seconds: no new step starts after this

# shellcheck source=scripts/topology.sh
source "$repo/scripts/topology.sh"

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_pid "$spoof_pid"
  stop_pid "$sluiced_pid"
  rm -rf "$pin_dir"
  # Kills what is left inside (sl-echo, iperf3 servers) and deletes the namespaces, which
  # takes their veths, XDP programs, nft tables and routes with them.
  topo_down "$p" >/dev/null 2>&1 || true
  del_netns "$C" "${B[@]}" "$LB" "$S"
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- world --------------------------------------------------------------------------------
say "building topology $p-* ..."
topo_up "$p"

# Offloads off on every endpoint, so both runs (with and without flood) carry MTU-sized
# segments alike: XDP on a veth disables GSO on its peer anyway (SPEC.md, veth pitfalls).
# tx checksum offload is already off on c0 and the backends' eth0 (topology.sh: XDP on the
# peer loses partial checksums), and GRO stays on there (the LB redirects into them).
ip netns exec "$C" ethtool -K c0 tso off gso off >/dev/null
for n in 1 2 3; do
  ip netns exec "${B[n - 1]}" ethtool -K eth0 tso off gso off >/dev/null
done
for ifc in lc lb1 lb2 lb3; do ip netns exec "$LB" ethtool -K "$ifc" tso off gso off >/dev/null; done

# The control: a sink namespace on a second veth of the client (c1 -- s0), no XDP. The same
# flood sent there with a foreign destination MAC is dropped at once by the sink's kernel
# (not for this host), so a control step costs the generator and a veth hop, not the LB.
ip netns add "$S"
ip -n "$C" link add c1 type veth peer name s0 netns "$S"
ip -n "$C" link set c1 up
ip -n "$S" link set s0 up
for ns in "$C" "$LB" "${B[@]}" "$S"; do ip -n "$ns" route add blackhole 100.64.0.0/10; done

# Spoofed sources go nowhere real: a blackhole in every namespace of ours.

# Permanent neighbours on the LB: a flood of several seconds must not measure neighbour
# re-resolution (a stale entry makes bpf_fib_lookup miss).
for n in 1 2 3; do
  mac=$(ip -n "${B[n - 1]}" -br link show eth0 | awk '{print $3}')
  ip -n "$LB" neigh replace "198.18.$n.2" lladdr "$mac" dev "lb$n" nud permanent
done
c_mac=$(ip -n "$C" -br link show c0 | awk '{print $3}')
for a in 2 $(seq 100 131); do
  ip -n "$LB" neigh replace "198.18.0.$a" lladdr "$c_mac" dev lc nud permanent
done
lc_mac=$(ip -n "$LB" -br link show lc | awk '{print $3}')
ip -n "$C" neigh replace 198.18.0.1 lladdr "$lc_mac" dev c0 nud permanent

if ((answer == 0)); then
  # The backends drop the flood before their TCP stacks (netdev ingress, cheap).
  for ns in "${B[@]}"; do
    ip netns exec "$ns" nft -f - <<'EOF'
table netdev slsf {
  chain in {
    type filter hook ingress device "eth0" priority -500;
    ip saddr 100.64.0.0/10 counter drop
  }
}
EOF
  done
fi

for n in 1 2 3; do
  ip netns exec "${B[n - 1]}" iperf3 -s -p 5201 -B "198.18.$n.2" >"$work/iperf3-s$n.log" 2>&1 &
done

cat >"$work/sluice.yaml" <<'EOF'
# synflood_bench: two nat TCP VIPs over the three demo backends.
interfaces: [lc, lb1, lb2, lb3]
log_level: warn
metrics: {listen: "127.0.0.1:9435"}
api: {enabled: false}
limits: {max_vips: 4, max_backends: 16}
conntrack: {max_entries: 65536, pending_entries: 65536}
vips:
  - name: web
    address: 198.19.0.1
    port: 80
    protocol: tcp
    scheduler: source-hash
    mode: nat
    backends:
      - {address: 198.18.1.2, port: 8080}
      - {address: 198.18.2.2, port: 8080}
      - {address: 198.18.3.2, port: 8080}
  - name: bulk
    address: 198.19.0.1
    port: 5201
    protocol: tcp
    scheduler: source-hash
    mode: nat
    backends:
      - {address: 198.18.1.2, port: 5201}
      - {address: 198.18.2.2, port: 5201}
      - {address: 198.18.3.2, port: 5201}
EOF

"$sluiced" --netns "$LB" --pin-dir "$pin_dir" --config "$work/sluice.yaml" --log-level warn \
  >>"$work/sluiced.log" 2>&1 &
sluiced_pid=$!
for ((i = 0; i < 150; i++)); do
  [[ -e $pin_dir/info ]] && break
  kill -0 "$sluiced_pid" 2>/dev/null || break
  sleep 0.1
done
[[ -e $pin_dir/info ]] || { cat "$work/sluiced.log" >&2; die "sluiced did not become ready"; }

# Wait until both services answer through the LB.
for ((i = 0; i < 50; i++)); do
  ip netns exec "$C" "$probe" --proto tcp --dst 198.19.0.1 --port 80 --timeout-ms 500 \
    >/dev/null 2>&1 && break
  sleep 0.2
done
ip netns exec "$C" "$probe" --proto tcp --dst 198.19.0.1 --port 80 --timeout-ms 1000 >/dev/null ||
  { cat "$work/sluiced.log" >&2; die "no answer from 198.19.0.1:80 through sluiced"; }

# --- measurements -------------------------------------------------------------------------
stats() { "$sluicectl" --pin-dir "$pin_dir" stats -o json; }
metrics() { ip netns exec "$LB" curl -s --max-time 2 http://127.0.0.1:9435/metrics || true; }
# Drop counters of every veth of the world, as "ns/if:counter value" lines. A frame that
# finds its receiver's ring full is dropped and counted as tx_dropped on the sender (c0's
# tx_dropped: the LB's ingress ring was full, as a NIC's rx_missed would be).
veth_counters() {
  local ns
  for ns in "$C" "$LB" "${B[@]}"; do
    ip -n "$ns" -s -j link show type veth | jq -r --arg k "${ns#"$p"-}" \
      '.[] | "\($k)/\(.ifname):tx_dropped \(.stats64.tx.dropped)",
             "\($k)/\(.ifname):rx_dropped \(.stats64.rx.dropped)"'
  done
}
# Sum of one gauge family over its states.
gauge_sum() { awk -v f="$1" '$1 ~ "^"f"[{ ]" || $1 == f {s += $NF} END {print s + 0}'; }

# honest OUT: 20 new connections to 198.19.0.1:80, 100 ms apart, each from one of the
# client's 20 secondary addresses (spread over the backends by source hash). A line per
# connection: "ok|fail|skip milliseconds" (skip: not started within the iperf3 run). sl-probe does connect + greeting + close handshake, so
# the time is an upper bound of the connect time (process start included).
honest() {
  local out=$1 i t0 t1 rc deadline=$((SECONDS + secs + 2))
  : >"$out"
  for ((i = 0; i < 20; i++)); do
    if ((SECONDS > deadline)); then # bounded: probes not started in time count as failed
      echo "skip 0 not_started_within_the_run" >>"$out"
      continue
    fi
    t0=$EPOCHREALTIME
    rc=0
    ip netns exec "$C" "$probe" --proto tcp --dst 198.19.0.1 --port 80 \
      --src "198.18.0.$((100 + i))" --timeout-ms 3000 >/dev/null 2>"$out.err" || rc=$?
    t1=$EPOCHREALTIME
    awk -v a="$t0" -v b="$t1" -v rc="$rc" -v why="$(head -1 "$out.err" | tr -s ' \t' '__')" \
      'BEGIN {printf "%s %.1f %s\n", (rc == 0 ? "ok" : "fail"), (b - a) * 1000, why}' >>"$out"
    sleep 0.1
  done
}

# step LABEL RATE: one iperf3 run with RATE spoofed SYNs/s (0: none), honest connections
# meanwhile. LABEL control: the flood goes to the sink instead of the LB. Appends a JSON line to $work/steps.jsonl.
step() {
  local label=$1 rate=$2 ifc=c1 mac=02:00:5e:00:53:01 s0 s1 t0 t1 gbps note="" spoof_sent=0 spoof_secs=0
  local planned=$((secs + 4)) # flood lead-in 1 s + omit 1 s + run + margin
  : >"$work/spoof.out"
  if ((rate > 0)); then
    local t_sp0=$EPOCHREALTIME
    [[ $label == control ]] || { ifc=c0 mac=$lc_mac; }
    ip netns exec "$C" "$spoof" --ifname "$ifc" --dst-mac "$mac" --src 100.64.0.0/10 \
      --sport random --dst 198.19.0.1 --dport 80 --flags S --count $((rate * planned)) \
      --rate "$rate" >"$work/spoof.out" 2>"$work/spoof.err" &
    spoof_pid=$!
    sleep 1 # let the pending table fill to its steady state
  fi
  veth_counters >"$work/veth0"
  s0=$(stats)
  t0=$EPOCHREALTIME
  honest "$work/honest.out" &
  local honest_pid=$!
  local rc=0
  ip netns exec "$C" iperf3 -c 198.19.0.1 -p 5201 -B 198.18.0.2 -P 20 -t "$secs" -O 1 \
    ${load:+-b "$((load / 20))M"} --connect-timeout 3000 -J >"$work/iperf.json" 2>"$work/iperf.err" || rc=$?
  t1=$EPOCHREALTIME
  s1=$(stats)
  veth_counters >"$work/veth1"
  # Deltas of the veth counters over the iperf3 run, as one string.
  local veth
  veth=$(awk 'NR == FNR {a[$1] = $2; next} {d = $2 - a[$1]; if (d) printf "%s%s +%d", sep, $1, d; sep = ", "}' \
    "$work/veth0" "$work/veth1")
  local m
  m=$(metrics)
  wait "$honest_pid" || true
  if ((rate > 0)); then
    # The spoofer paces itself to stop about 1 s after iperf3; if it is still running, it
    # fell behind its rate: stop it (its own count is then lost; the LB's count stands).
    local i
    for ((i = 0; i < 30; i++)); do
      kill -0 "$spoof_pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$spoof_pid" 2>/dev/null; then
      stop_pid "$spoof_pid"
      note="spoofer behind its rate, stopped"
    else
      local sp_rc=0
      wait "$spoof_pid" 2>/dev/null || sp_rc=$?
      ((sp_rc == 0)) || note="sl-spoof rc=$sp_rc: $(head -c 80 "$work/spoof.err")"
      spoof_secs=$(awk -v a="$t_sp0" -v b="$EPOCHREALTIME" 'BEGIN {print b - a}')
      spoof_sent=$(awk '/sent/ {print $3}' "$work/spoof.out")
      spoof_sent=${spoof_sent:-0}
    fi
    spoof_pid=
  fi
  if ((rc == 0)) && jq -e '.end.sum_received.bits_per_second' "$work/iperf.json" >/dev/null 2>&1; then
    gbps=$(jq '.end.sum_received.bits_per_second / 1e9' "$work/iperf.json")
  else
    gbps=0
    note="${note:+$note; }iperf3 failed: $(jq -r '.error // empty' "$work/iperf.json" 2>/dev/null | head -c 80)$(head -c 80 "$work/iperf.err")"
  fi
  local dt
  dt=$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')
  jq -cn --arg kind "$label" --argjson rate "$rate" --argjson gbps "$gbps" --argjson dt "$dt" \
    --argjson s0 "$s0" --argjson s1 "$s1" --arg note "$note" \
    --arg veth "$veth" --argjson spoof_sent "$spoof_sent" --argjson spoof_secs "$spoof_secs" \
    --argjson pending "$(gauge_sum sluice_conntrack_pending_entries <<<"$m")" \
    --argjson confirmed "$(gauge_sum sluice_conntrack_entries <<<"$m")" \
    --rawfile honest "$work/honest.out" '
    def vip(s; port): [s.vips[] | select(.vip | startswith("198.19.0.1:" + port + "/"))][0];
    def dropsum(s): [s.drops[] | .packets] | add;
    {kind: $kind, rate: $rate, gbps: $gbps, secs: $dt, note: $note, veth: $veth,
     flood_pps: ((vip($s1; "80").packets - vip($s0; "80").packets) / $dt),
     spoof_pps: (if $spoof_secs > 0 then $spoof_sent / $spoof_secs else null end),
     drops: (dropsum($s1) - dropsum($s0)),
     full_untracked: ($s1.conntrack.full_untracked - $s0.conntrack.full_untracked),
     pending: $pending, confirmed: $confirmed,
     honest: [$honest | split("\n")[] | select(length > 0) | split(" ") |
              {ok: (.[0] == "ok"), ms: (if .[0] == "skip" then null else (.[1] | tonumber) end),
               why: (.[2] // "")}]}' >>"$work/steps.jsonl"
  jq -r '"synflood_bench: \(.kind): \(.gbps * 1000 | round / 1000) Gbit/s, flood \(.flood_pps | round) pps at the LB, honest \([.honest[] | select(.ok)] | length)/\(.honest | length), max \([.honest[].ms] | max) ms \(if .note != "" then "(" + .note + ")" else "" end)"' \
    <(tail -1 "$work/steps.jsonl") >&2
}

if [[ -n ${SLSF_PAUSE:-} ]]; then # debugging: keep the world up for inspection
  say "world up: namespaces $p-{client,lb,b1,b2,b3}, pins $pin_dir; pausing ${SLSF_PAUSE}s"
  sleep "$SLSF_PAUSE" &
  wait $! || true
fi
over_budget() { (((SECONDS - start_time) > budget)); }

say "baseline (no flood) ..."
step "baseline" 0
last_note=""
for r in $rates; do
  if over_budget; then
    last_note="time budget reached before $r pps: higher rates skipped"
    say "$last_note"
    break
  fi
  say "flood $r pps ..."
  step "flood" "$r"
  say "control $r pps (the same flood into the sink) ..."
  step "control" "$r"
  # Stop escalating once the spoofer cannot keep up: the LB saw < 85 % of the rate asked.
  if jq -e --argjson r "$r" '.flood_pps < 0.85 * $r' <(tail -2 "$work/steps.jsonl" | head -1) >/dev/null; then
    last_note="the spoofer reached only $(jq '.flood_pps | round' <(tail -2 "$work/steps.jsonl" | head -1)) of $r pps at the LB: higher rates skipped (generator-bound)"
    say "$last_note"
    break
  fi
done
say "closing baseline ..."
step "baseline" 0

# The spoofer's own ceiling on this VM, alone (no iperf3, no probes): 1 M SYNs asked at
# 1 M/s, stopped after 4 s, counted by the LB.
say "spoofer ceiling (flood alone) ..."
s0=$(stats)
t0=$EPOCHREALTIME
ip netns exec "$C" timeout 4 "$spoof" --ifname c0 --dst-mac "$lc_mac" --src 100.64.0.0/10 \
  --sport random --dst 198.19.0.1 --dport 80 --flags S --count 1000000 --rate 1000000 \
  >/dev/null 2>&1 || true
t1=$EPOCHREALTIME
s1=$(stats)
ceiling=$(jq -n --argjson s0 "$s0" --argjson s1 "$s1" --argjson dt "$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')" '
  def vip(s): [s.vips[] | select(.vip | startswith("198.19.0.1:80/"))][0];
  (vip($s1).packets - vip($s0).packets) / $dt | round')

# --- report -------------------------------------------------------------------------------
echo
echo "Machine: $(uname -r), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "sluice: $(git -C "$repo" log -1 --format='%h %s' 2>/dev/null | cut -c1-90 || echo unknown)$(
  [[ -z $(git -C "$repo" status --porcelain -- bpf agent include 2>/dev/null) ]] ||
    echo ' + uncommitted changes in bpf/ agent/ include/')"
echo "Note: on this $(nproc)-core VM the spoofer, iperf3 (client and server), sl-echo and the"
echo "LB's XDP (softirq) all share the same cores, unpinned: a flood costs the flows CPU on"
echo "the generator's side too, so the figure is a lower bound of what the LB alone absorbs."
if ((answer)); then
  echo "Backends ANSWER the flood (-a): their kernels send SYN cookies into a blackhole."
else
  echo "Backends drop the flood at ingress (nft): the cost measured is the LB's and the generator's."
fi
echo "iperf3 -c 198.19.0.1:5201 -P 20 -t $secs -O 1 (nat VIP, one backend); flood: sl-spoof SYNs"
echo "from 100.64.0.0/10 to 198.19.0.1:80 (nat VIP); honest: 20 x sl-probe to 198.19.0.1:80."
echo
jq -rs --arg note "$last_note" --argjson ceiling "$ceiling" '
  def r(x; n): (x * pow(10; n) | round) / pow(10; n);
  def ring: (.veth | capture("client/c0:tx_dropped \\+(?<n>[0-9]+)").n // "0") | tonumber;
  def okn: [.honest[] | select(.ok)] | length;
  def slow: [.honest[] | select(.ok and .ms >= 900)] | length;
  ([.[] | select(.kind == "baseline") | .gbps]) as $b |
  (($b | add) / ($b | length)) as $base |
  "baseline Gbit/s: first \(r($b[0]; 3)), last \(r($b[-1]; 3)); ratios are to their mean \(r($base; 3))",
  "",
  "| step | flood pps asked | at the LB | spoofer says | Gbit/s | ratio | honest ok | of which >= 0.9 s | max ms | LB ring drops | pending | confirmed | LB drops | full_untracked | note |",
  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
  (.[] | "| \(.kind) | \(.rate) | \(if .kind == "control" then "-" else .flood_pps | round end) | \(if .spoof_pps then (.spoof_pps | round) else "-" end) | \(r(.gbps; 3)) | \(if $base > 0 then r(.gbps / $base; 3) else "-" end) | \(okn)/\(.honest | length) | \(slow) | \([.honest[].ms | select(. != null) | round] | max) | \(ring) | \(.pending) | \(.confirmed) | \(.drops) | \(.full_untracked) | \(.note) |"),
  "",
  ([.[] | select(.kind != "baseline")] | group_by(.rate)[] |
   (map(select(.kind == "flood"))[0]) as $f | (map(select(.kind == "control"))[0]) as $c |
   select($f and $c and $base > 0) |
   "At \($f.rate) SYN/s asked: ratio \(r($f.gbps / $base; 3)) through the LB, \(r($c.gbps / $base; 3)) for the same flood into the sink: the LB path costs the flows \(r(($c.gbps - $f.gbps) / $base; 3)) of the baseline."),
  "",
  "Spoofer alone (no flows, no probes): \($ceiling) SYN/s at the LB (1 M/s asked).",
  ([.[] | select(.kind == "flood" and $base > 0 and .gbps / $base >= 0.90)] | max_by(.flood_pps)) as $tput |
  (if $tput then "Highest flood with ratio >= 0.90 (throughput alone): \($tput.flood_pps | round) SYN/s at the LB (asked \($tput.rate))."
   else "No flood rate kept ratio >= 0.90." end),
  ([.[] | select(.kind == "flood" and $base > 0 and .gbps / $base >= 0.90 and okn == (.honest | length))]
   | max_by(.flood_pps)) as $best |
  if $best then
    "Highest flood with ratio >= 0.90 and every honest connection ok: \($best.flood_pps | round) SYN/s at the LB (asked \($best.rate))."
  else
    "No flood rate kept ratio >= 0.90 with every honest connection ok."
  end,
  (if $note != "" then "Stopped: " + $note else empty end),
  "",
  "Steps: flood = spoofed SYNs to the VIP through the LB; control = the same flood out of another",
  "veth of the client into a sink that drops it at once (what the generator alone costs the flows).",
  "Columns: at the LB = packets of VIP :80 during the iperf3 run / its duration; honest ok = sl-probe",
  "connections that completed (connect, greeting, close) within 3 s; >= 0.9 s = needed a",
  "retransmission (1 s RTO); LB ring drops = frames c0 could not hand to the LB (veth ring of",
  "lc full: tx_dropped of c0), flood and flows alike; pending / confirmed = sluiced conntrack",
  "gauges at the end of the run; LB drops = sum of the data path drop reasons."
' "$work/steps.jsonl"
echo
echo "Honest connections per step: milliseconds, sorted (sl-probe: connect, greeting, close);"
echo "failures with sl-probe's reason."
jq -r '"  \(.kind)\(if .rate > 0 then " \(.rate)" else "" end): \([.honest[] | select(.ok) | .ms | round] | sort | map(tostring) | join(" "))" +
       ([.honest[] | select(.ok | not) | .why] | if length > 0 then "\n    failed: " + (group_by(.) | map("\(length) x \(.[0] | gsub("_"; " "))") | join("; ")) else "" end)' \
  "$work/steps.jsonl"
echo
echo "veth drop counters that moved during each iperf3 run (ip -s link):"
jq -r '"  \(.kind)\(if .rate > 0 then " \(.rate)" else "" end): \(if .veth == "" then "none" else .veth end)"' \
  "$work/steps.jsonl"
