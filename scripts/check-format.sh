#!/usr/bin/env bash
# Fails, naming each file, when a tracked source is not formatted as its .clang-format says:
# the C++ of agent/, include/, tests/ and bench/ by the root file (Google-derived), the BPF
# programs and the ABI headers they share (bpf/, include/sluice/abi/) by their kernel-style
# files. `scripts/check-format.sh --fix` rewrites them in place instead.
set -euo pipefail
cd "$(dirname "$0")/.."

fmt=$(command -v clang-format-14 || command -v clang-format || true)
if [[ -z $fmt ]]; then
  echo "check-format: clang-format not found (scripts/install-deps.sh installs it)" >&2
  exit 1
fi

# BPF C outside bpf/ (the benchmarks' programs and the header they share) takes the kernel
# style too; everything else takes the .clang-format of its directory.
style_of() {
  case $1 in
    *.bpf.c | bench/fwd/fwd_abi.h) echo "file:bpf/.clang-format" ;;
    *) echo file ;;
  esac
}

mapfile -t files < <(git ls-files -- '*.cc' '*.h' '*.c' | grep -v '^bpf/vmlinux/')
bad=()
for f in "${files[@]}"; do
  if [[ ${1:-} == --fix ]]; then
    "$fmt" -i --style="$(style_of "$f")" "$f"
  else
    "$fmt" --dry-run --Werror --style="$(style_of "$f")" "$f" >/dev/null 2>&1 || bad+=("$f")
  fi
done
[[ ${1:-} == --fix ]] && exit 0
if ((${#bad[@]})); then
  echo "check-format: ${#bad[@]} file(s) differ from their .clang-format:" >&2
  printf '  %s\n' "${bad[@]}" >&2
  echo "run scripts/check-format.sh --fix (or clang-format -i FILE) and review the diff" >&2
  exit 1
fi
echo "check-format: ${#files[@]} files formatted"
