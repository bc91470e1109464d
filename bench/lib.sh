# shellcheck shell=bash
# Shared by the shell benchmarks (synflood_bench.sh, fwd/run.sh): what they check before they
# start, and how they stop their processes and remove their namespaces on the way out. Sourced
# after the script has defined die(); defines functions only.

# REPO BUILD_DIR PATH...: dies unless every PATH is an executable, saying how to build them.
need_built() {
  local repo=$1 build=$2 b
  shift 2
  for b in "$@"; do
    [[ -x $b ]] || die "$b not found: build first with
  cmake -S $repo -B $build && cmake --build $build -j2
(or point -b at a build directory that has it)"
  done
}

# COMMAND...: dies unless every COMMAND is on PATH.
need_tools() {
  local t
  for t in "$@"; do
    command -v "$t" >/dev/null || die "'$t' is required (scripts/install-deps.sh)"
  done
}

# PID: TERM, wait up to 5 s, then KILL; reaped either way. An empty PID is nothing to stop.
stop_pid() {
  local pid=$1 i
  [[ -n $pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# NAMESPACE...: deletes those that exist (and with them their veths, XDP and TC programs, nft
# tables and routes).
del_netns() {
  local ns
  for ns in "$@"; do
    if [[ -e /run/netns/$ns ]]; then ip netns del "$ns" 2>/dev/null || true; fi
  done
}
