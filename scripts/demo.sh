#!/usr/bin/env bash
# sluice demo: builds everything, creates the demo topology (scripts/topology.sh) in network
# namespaces, starts sluiced on the load balancer with the embedded default config, sends
# TCP and UDP traffic through every VIP from many client addresses, shows which backend
# answered, prints `sluicectl vips` and `sluicectl stats`, and removes everything again.
#
#   sudo scripts/demo.sh
#
# Environment: BUILD_DIR (default <repo>/build), JOBS (default nproc).
# Everything it creates (namespaces, sl-echo and sluiced processes, the pin directory) is
# removed on every exit path, including Ctrl-C.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$REPO/build}
JOBS=${JOBS:-$(nproc)}
PREFIX=sl-demo-$$
PIN_DIR=/sys/fs/bpf/sluice-demo-$$
export TOPO_RUNDIR=/tmp/$PREFIX
export SL_ECHO=$BUILD_DIR/tests/tools/sl-echo
SL_PROBE=$BUILD_DIR/tests/tools/sl-probe
SLUICED=$BUILD_DIR/agent/daemon/sluiced
SLUICECTL=$BUILD_DIR/agent/ctl/sluicectl
SLUICED_LOG=/tmp/$PREFIX-sluiced.log
API_SOCKET=/tmp/$PREFIX-sluiced.sock
SLUICED_PID=
MISSING_FILE=/tmp/$PREFIX-missing

if [[ $EUID -ne 0 ]]; then
  echo "demo.sh: must run as root (network namespaces, XDP, bpffs)" >&2
  exit 1
fi

# shellcheck source=scripts/topology.sh
source "$REPO/scripts/topology.sh"

step() { printf '\n==> %s\n' "$*"; }

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  if [[ -n $SLUICED_PID ]] && kill -0 "$SLUICED_PID" 2>/dev/null; then
    kill -TERM "$SLUICED_PID"
    # sluiced detaches XDP and removes its pins on SIGTERM; give it 10 s, then force.
    for _ in $(seq 100); do kill -0 "$SLUICED_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$SLUICED_PID" 2>/dev/null; then
      echo "demo.sh: sluiced did not stop within 10 s, killing it" >&2
      kill -KILL "$SLUICED_PID"
    fi
    wait "$SLUICED_PID" 2>/dev/null
  fi
  # Only left behind when sluiced was killed or crashed.
  [[ -d $PIN_DIR ]] && rm -rf "$PIN_DIR"
  # Deleting the namespaces also deletes the veths, and with them any XDP still attached.
  topo_down "$PREFIX"
  rm -f "$SLUICED_LOG" "$MISSING_FILE"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "installing dependencies"
"$REPO/scripts/install-deps.sh"

step "building in $BUILD_DIR"
# Same build type as scripts/test.sh, so the two commands share one build directory.
cmake -S "$REPO" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD_DIR" -j"$JOBS" --target sluiced sluicectl sl-echo sl-probe

if [[ $(stat -f -c %T /sys/fs/bpf 2>/dev/null) != bpf_fs ]]; then
  step "mounting bpffs at /sys/fs/bpf"
  mkdir -p /sys/fs/bpf
  mount -t bpf bpf /sys/fs/bpf
fi

step "building the topology ($PREFIX-{client,lb,b1,b2,b3})"
topo_up "$PREFIX"

step "starting sluiced in $PREFIX-lb (embedded default config)"
"$SLUICED" --netns "$PREFIX-lb" --pin-dir "$PIN_DIR" --api-socket "$API_SOCKET" --detach-on-exit >"$SLUICED_LOG" 2>&1 &
SLUICED_PID=$!
for _ in $(seq 100); do
  [[ -e $PIN_DIR/info ]] && break
  if ! kill -0 "$SLUICED_PID" 2>/dev/null; then
    wait "$SLUICED_PID" || echo "demo.sh: sluiced exited with status $?" >&2
    SLUICED_PID=
    cat "$SLUICED_LOG" >&2
    exit 1
  fi
  sleep 0.1
done
if [[ ! -e $PIN_DIR/info ]]; then
  echo "demo.sh: sluiced not ready after 10 s ($PIN_DIR/info missing); its log:" >&2
  cat "$SLUICED_LOG" >&2
  exit 1
fi
echo "sluiced is up (pid $SLUICED_PID, pins in $PIN_DIR)"

# probe PROTO DST PORT SRC...: one sl-probe per source from the client namespace; prints one
# backend name per line, or "no-reply" for a probe that got none.
probe() {
  local proto=$1 dst=$2 port=$3 src
  shift 3
  for src in "$@"; do
    ip netns exec "$PREFIX-client" "$SL_PROBE" --proto "$proto" --dst "$dst" --port "$port" \
      --src "$src" --timeout-ms 1000 --retries 1 2>/dev/null || echo no-reply
  done
}

# report LABEL: reads backend names on stdin and prints the count per backend; counts the
# probes without a reply into $MISSING_FILE (the function runs in a pipeline subshell).
report() {
  local label=$1
  sort | uniq -c | awk -v label="$label" -v missing="$MISSING_FILE" '
    { total += $1; parts = parts sprintf("  %s=%d", $2, $1); if ($2 == "no-reply") lost += $1 }
    END { printf "%-34s %3d probes:%s\n", label, total, parts; print lost + 0 >> missing }'
}

V4_SOURCES=()
for n in $(seq 100 131); do V4_SOURCES+=("198.18.0.$n"); done
# The client has one IPv6 address, and the VIP hashes on the source address only: every probe
# lands on the same backend. That is the point of source-hash: one client, one backend.
V6_SOURCES=()
for _ in $(seq 8); do V6_SOURCES+=("fd00:18::2"); done

step "traffic from 32 client addresses (IPv6: 8 probes from one address)"
probe udp 198.19.0.1 53 "${V4_SOURCES[@]}" | report "198.19.0.1:53/udp (nat)"
probe tcp 198.19.0.1 80 "${V4_SOURCES[@]}" | report "198.19.0.1:80/tcp (nat)"
probe tcp fd00:19::1 80 "${V6_SOURCES[@]}" | report "[fd00:19::1]:80/tcp (nat)"
probe tcp 198.19.0.2 80 "${V4_SOURCES[@]}" | report "198.19.0.2:80/tcp (dsr)"
probe udp 198.19.0.2 53 "${V4_SOURCES[@]}" | report "198.19.0.2:53/udp (dsr, src port)"

step "a held connection: 198.18.0.100 -> 198.19.0.1:80, data every 50 ms for 1 s"
ip netns exec "$PREFIX-client" "$SL_PROBE" --proto tcp --dst 198.19.0.1 --port 80 \
  --src 198.18.0.100 --hold-ms 1000 | sed 's/^/answered by /' || echo "no-reply" >>"$MISSING_FILE"

step "congestion control: the LB connects to each backend; sluicectl cc lists them live"
# The `congestion` rules of the default config, one per backend network: reno, sluice_aimd
# with a first flight of 32 segments, cubic with 128 KiB buffers.
cc_probes=()
for n in 1 2 3; do
  ip netns exec "$PREFIX-lb" "$SL_PROBE" --proto tcp --dst "198.18.$n.2" --port 8080 \
    --src "198.18.$n.1" --hold-ms 1500 >/dev/null 2>&1 &
  cc_probes+=($!)
done
sleep 0.5
"$SLUICECTL" --pin-dir "$PIN_DIR" cc
"$SLUICECTL" --pin-dir "$PIN_DIR" cc --rules
wait "${cc_probes[@]}" || echo "no-reply" >>"$MISSING_FILE"

step "sluicectl --pin-dir $PIN_DIR vips"
"$SLUICECTL" --pin-dir "$PIN_DIR" vips

step "sluicectl --pin-dir $PIN_DIR stats"
"$SLUICECTL" --pin-dir "$PIN_DIR" stats

step "drain 198.18.1.2 through the control API: new flows avoid it, established ones stay"
"$SLUICECTL" --api-socket "$API_SOCKET" backend drain 198.19.0.1:80/tcp 198.18.1.2:8080
probe tcp 198.19.0.1 80 "${V4_SOURCES[@]}" | report "198.19.0.1:80/tcp (1.2 drained)"
"$SLUICECTL" --api-socket "$API_SOCKET" backend enable 198.19.0.1:80/tcp 198.18.1.2:8080
"$SLUICECTL" --api-socket "$API_SOCKET" status

step "stopping sluiced and removing the topology"
kill -TERM "$SLUICED_PID"
status=0
wait "$SLUICED_PID" || status=$?
SLUICED_PID=
echo "sluiced exited with status $status"
problems=0
if ((status != 0)); then
  problems=1
fi
if [[ -d $PIN_DIR ]]; then
  echo "demo.sh: sluiced left $PIN_DIR behind" >&2
  problems=1
fi
if ip -n "$PREFIX-lb" -d link show | grep -qw xdp; then
  echo "demo.sh: XDP still attached after sluiced stopped" >&2
  problems=1
fi
missing=$(awk '$1 ~ /^[0-9]+$/ { n += $1 } $1 == "no-reply" { n++ } END { print n + 0 }' \
  "$MISSING_FILE" 2>/dev/null || echo 0)
if ((missing > 0)); then
  echo "demo.sh: $missing probes got no reply" >&2
  problems=1
fi
if ((problems)); then
  echo "demo: FAILED (see above)"
  exit 1
fi
echo "demo: OK"
