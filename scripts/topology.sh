# shellcheck shell=bash
# The demo topology: one client, one load balancer, three backends, each in its own network
# namespace. Source this file, then call `topo_up PREFIX` and `topo_down PREFIX`. Names and
# addresses come from tests/common/topology.env, which the end-to-end tests' fixture
# (tests/common/agent.cc) builds the same world from.
#
#   <prefix>-client            <prefix>-lb                            <prefix>-bN (N = 1..3)
#   c0 198.18.0.2/24   ---- lc 198.18.0.1/24
#      fd00:18::2/64            fd00:18::1/64
#      + 198.18.0.100-131       lbN 198.18.N.1/24, fd00:18:N::1/64 ---- eth0 198.18.N.2/24
#                                                                           fd00:18:N::2/64
#   routes: 198.19.0.0/24 and fd00:19::/64 (the VIPs) via the LB.      lo: 198.19.0.2/32 (DSR VIP)
#   Backends route everything via the LB, so NAT replies cross it      sl-echo backend-N
#   and DSR replies are forwarded by its kernel.                         tcp 80,8080 udp 53,5353
#
# Environment:
#   SL_ECHO     path of the sl-echo binary (default: <repo>/build/tests/tools/sl-echo)
#   TOPO_RUNDIR directory for sl-echo logs and ready files (default: /tmp/<prefix>)

_topo_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=tests/common/topology.env
source "$_topo_repo/tests/common/topology.env"

# Every namespace of the topology, in teardown order.
_topo_namespaces() {
  local p=$1
  local n out="$p-client"
  for ((n = 1; n <= TOPO_BACKENDS; n++)); do out+=" $p-b$n"; done
  echo "$out $p-lb"
}

# Runs in a subshell with -e: any failing step aborts topo_up with a non-zero status and the
# caller's cleanup (topo_down) removes what was built so far. Call it as a plain command, not
# in `if`/`||`/`&&`: bash ignores -e inside a function whose status is being tested.
topo_up() (
  set -euo pipefail
  local p=${1:?usage: topo_up PREFIX}
  local echo_bin=${SL_ECHO:-$_topo_repo/build/tests/tools/sl-echo}
  local rundir=${TOPO_RUNDIR:-/tmp/$p}
  [[ -x $echo_bin ]] || { echo "topo_up: sl-echo not found at $echo_bin" >&2; exit 1; }
  mkdir -p "$rundir"

  local c=$p-client lb=$p-lb ns n
  local -a backends=()
  for ((n = 1; n <= TOPO_BACKENDS; n++)); do backends+=("$n"); done
  for ns in $c $lb "${backends[@]/#/$p-b}"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    # No IPv6 duplicate address detection, set before any link exists so the veths inherit
    # it: their link-local addresses are usable at once. While a link-local address is still
    # tentative the kernel cannot send neighbour solicitations from it, and the first packet
    # to each new IPv6 neighbour waits a whole retransmit (1 s).
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
  done

  # --- links: created directly inside the namespaces, so no name ever touches the host.
  local cif=$TOPO_CLIENT_IF lif=$TOPO_LB_CLIENT_IF bif=$TOPO_BACKEND_IF
  local lbif=$TOPO_LB_BACKEND_IF_PREFIX be4=$TOPO_BACKEND4_PREFIX be6=$TOPO_BACKEND6_PREFIX
  ip -n "$c" link add "$cif" type veth peer name "$lif" netns "$lb"
  for n in "${backends[@]}"; do
    ip -n "$lb" link add "$lbif$n" type veth peer name "$bif" netns "$p-b$n"
  done

  # --- load balancer. It routes between the client and backend subnets; rp_filter is off
  # because DSR replies arrive from the backends with the VIP (not a backend address) as
  # source, which strict reverse-path filtering would drop. The sysctl that takes effect is
  # max(all, <iface>), so every level is set.
  ip netns exec "$lb" sysctl -qw net.ipv4.ip_forward=1
  ip netns exec "$lb" sysctl -qw net.ipv6.conf.all.forwarding=1
  ip netns exec "$lb" sysctl -qw net.ipv4.conf.all.rp_filter=0
  ip netns exec "$lb" sysctl -qw net.ipv4.conf.default.rp_filter=0
  ip -n "$lb" addr add "$TOPO_LB_CLIENT4/24" dev "$lif"
  # nodad: addresses are usable at once instead of after ~1 s of duplicate detection.
  ip -n "$lb" addr add "$TOPO_LB_CLIENT6/64" dev "$lif" nodad
  for n in "${backends[@]}"; do
    ip -n "$lb" addr add "$be4$n.1/24" dev "$lbif$n"
    ip -n "$lb" addr add "$be6$n::1/64" dev "$lbif$n" nodad
  done
  local ifc
  for ifc in "$lif" "${backends[@]/#/$lbif}"; do
    ip netns exec "$lb" sysctl -qw "net.ipv4.conf.$ifc.rp_filter=0"
    ip -n "$lb" link set "$ifc" up
  done

  # --- client.
  ip -n "$c" addr add "$TOPO_CLIENT4/24" dev "$cif"
  ip -n "$c" addr add "$TOPO_CLIENT6/64" dev "$cif" nodad
  # 32 extra sources (secondaries: .2 stays the default source) so a test can show how the
  # source hash spreads clients over the backends.
  for ((n = TOPO_SOURCE_FIRST; n < TOPO_SOURCE_FIRST + TOPO_SOURCES; n++)); do
    ip -n "$c" addr add "$TOPO_SOURCE4_PREFIX$n/24" dev "$cif"
  done
  # XDP on the LB's lc loses the partial-checksum state of packets the client's stack leaves
  # for "hardware" to finish (a veth only pretends to offload): without this, TCP segments
  # reach the backends with bad checksums. Real NICs finish checksums in hardware, so this is
  # a test-topology setting, not a data-path fix.
  ip netns exec "$c" ethtool -K "$cif" tx off >/dev/null
  ip -n "$c" link set "$cif" up
  # A veth accepts XDP-redirected frames only when its peer has XDP attached or GRO on: the
  # LB redirects NAT replies out of lc, and they land on c0. GRO must be switched on while
  # BOTH ends are up: the kernel (veth_set_features) ignores the change on a down device,
  # and lc's "can take redirects" flag is only computed at lc's open or at this change.
  ip netns exec "$c" ethtool -K "$cif" gro on >/dev/null
  ip -n "$c" route add "$TOPO_VIP_NET4" via "$TOPO_LB_CLIENT4"
  ip -n "$c" -6 route add "$TOPO_VIP_NET6" via "$TOPO_LB_CLIENT6"

  # --- backends.
  for n in "${backends[@]}"; do
    ns=$p-b$n
    ip -n "$ns" addr add "$be4$n.2/24" dev "$bif"
    ip -n "$ns" addr add "$be6$n::2/64" dev "$bif" nodad
    # Same two reasons as on c0: the LB's XDP sits on our peer (lbN), and it redirects
    # client packets into lbN, which reach us only with GRO on.
    ip netns exec "$ns" ethtool -K "$bif" tx off >/dev/null
    ip -n "$ns" link set "$bif" up
    # GRO after both ends are up (see c0 above).
    ip netns exec "$ns" ethtool -K "$bif" gro on >/dev/null
    ip -n "$ns" route add default via "$be4$n.1"
    ip -n "$ns" -6 route add default via "$be6$n::1"
    # DSR: the backend accepts packets for the VIP because it holds it on lo. The LB must
    # not hold it (its replies would be martians there). fd00:19::2 is the IPv6 twin.
    ip -n "$ns" addr add "$TOPO_DSR_VIP4/32" dev lo
    ip -n "$ns" addr add "$TOPO_DSR_VIP6/128" dev lo nodad
    rm -f "$rundir/b$n.ready"
    ip netns exec "$ns" "$echo_bin" --name "$TOPO_ECHO_NAME_PREFIX$n" \
      --tcp "$TOPO_ECHO_TCP" --udp "$TOPO_ECHO_UDP" \
      --ready-file "$rundir/b$n.ready" </dev/null >"$rundir/b$n.log" 2>&1 &
  done

  # DSR rewrites only MACs, so the LB needs each backend's MAC in its neighbour table before
  # the first packet: one ping per backend resolves it.
  for n in "${backends[@]}"; do
    ip netns exec "$lb" ping -c1 -W2 -q "$be4$n.2" >/dev/null
    ip netns exec "$lb" ping -6 -c1 -W2 -q "$be6$n::2" >/dev/null
  done

  local i
  for n in "${backends[@]}"; do
    for ((i = 0; i < 100; i++)); do
      [[ -e $rundir/b$n.ready ]] && break
      sleep 0.05
    done
    [[ -e $rundir/b$n.ready ]] || {
      echo "topo_up: sl-echo in $p-b$n did not start:" >&2
      cat "$rundir/b$n.log" >&2
      exit 1
    }
  done
)

# Removes everything topo_up built; safe to call on a partly built or absent topology.
topo_down() {
  local p=${1:?usage: topo_down PREFIX}
  local rundir=${TOPO_RUNDIR:-/tmp/$p}
  local ns pid
  for ns in $(_topo_namespaces "$p"); do
    [[ -e /run/netns/$ns ]] || continue
    # Processes left inside (sl-echo) would keep the namespace and its veths alive.
    for pid in $(ip netns pids "$ns" 2>/dev/null); do
      kill -TERM "$pid" 2>/dev/null || true
    done
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$rundir"
}
