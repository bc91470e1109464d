#!/usr/bin/env bash
# Installs every Debian package sluice needs to build, test, benchmark and run the demo.
# Idempotent: packages already present are skipped by apt; apt-get update runs only when
# something is missing. Must run as root on Debian 12.
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake pkg-config clang llvm clang-format
  # BPF: libbpf headers/library, bpftool for skeletons and vmlinux.h, libelf/zlib for libbpf
  libbpf-dev bpftool libelf-dev zlib1g-dev
  # agent libraries
  libspdlog-dev libfmt-dev libyaml-cpp-dev libcli11-dev nlohmann-json3-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev
  # network tooling used by the demo, the netns and e2e tests and the benchmarks
  iproute2 ethtool nftables iperf3 iputils-ping procps netcat-openbsd
  prometheus  # for promtool: tests/netns/metrics_endpoint_test.cc checks /metrics with it
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "install-deps: all ${#PACKAGES[@]} packages present"
fi
