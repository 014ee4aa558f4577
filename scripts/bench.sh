#!/usr/bin/env bash
# Builds longhaul in Release (build-release/) and runs the benchmarks in bench/.
# Usage: scripts/bench.sh [name] [-- bench flags...]; without a name every benchmark runs.
# Each benchmark prints a table and, as its last line, one JSON object.
set -euo pipefail

# The benchmarks, in run order: "<name> <executable in build-release/bench/>".
# Adding a benchmark is one line here plus its target in bench/CMakeLists.txt.
benches=(
  "journal journal_bench"
  "actors actor_bench"
  "timers timer_bench"
  "retail retail_bench"
)

usage() {
  local names=()
  for entry in "${benches[@]}"; do names+=("${entry%% *}"); done
  echo "usage: $0 [name] [-- flags passed to the benchmark]" >&2
  echo "benchmarks: ${names[*]}" >&2
}

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${repo}/build-release"

selected=""
if [[ $# -gt 0 && "$1" != "--" ]]; then
  case "$1" in
    -h|--help) usage; exit 0 ;;
  esac
  selected="$1"
  shift
fi
if [[ $# -gt 0 ]]; then
  if [[ "$1" != "--" ]]; then
    echo "error: unexpected argument '$1' (bench flags go after --)" >&2
    usage
    exit 2
  fi
  shift
fi
bench_flags=("$@")

to_run=()
for entry in "${benches[@]}"; do
  if [[ -z "${selected}" || "${entry%% *}" == "${selected}" ]]; then
    to_run+=("${entry}")
  fi
done
if [[ ${#to_run[@]} -eq 0 ]]; then
  echo "error: unknown benchmark '${selected}'" >&2
  usage
  exit 2
fi

targets=()
for entry in "${to_run[@]}"; do targets+=("${entry##* }"); done

# Build output goes to stderr so that stdout holds only the benchmarks' reports.
cmake -S "${repo}" -B "${build}" -DCMAKE_BUILD_TYPE=Release -DLONGHAUL_BUILD_TESTS=OFF >&2
cmake --build "${build}" -j"$(nproc)" --target "${targets[@]}" >&2

for entry in "${to_run[@]}"; do
  name="${entry%% *}"
  exe="${build}/bench/${entry##* }"
  echo "== ${name} =="
  "${exe}" "${bench_flags[@]}"
done
