#!/usr/bin/env bash
# Builds sluice and runs the whole test suite (labels unit, bpf, netns and e2e; tests/CMakeLists.txt).
# Run as root on Debian 12: installs its packages, mounts bpffs if needed, then builds in
# build/ and runs ctest. Exits non-zero if any test fails or if a test left state behind.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $EUID -ne 0 ]]; then
  echo "scripts/test.sh: run as root (the tests load BPF programs and create network namespaces)" >&2
  exit 1
fi

bash scripts/install-deps.sh
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf

# Formatting first: it takes seconds, and a diff is cheaper to fix than a failed hour.
bash scripts/check-format.sh

jobs=$(nproc)
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j"$jobs"

# Integration tests build namespaces and run agents; running them one at a time keeps
# timings honest on a 2-core machine.
ctest --test-dir build --output-on-failure --timeout 300 "$@"

# Tests must clean up on every path: namespaces, pins and XDP they created.
left=$(ip netns list | grep -E '^sl-' || true)
pins=$(find /sys/fs/bpf -maxdepth 1 -name 'sluice*' 2>/dev/null || true)
if [[ -n $left || -n $pins ]]; then
  echo "scripts/test.sh: tests left state behind:" >&2
  [[ -n $left ]] && echo "  namespaces: $left" >&2
  [[ -n $pins ]] && echo "  pins: $pins" >&2
  exit 1
fi
