#!/usr/bin/env bash
# Builds longhaul (scripts/setup.sh) and runs the whole test suite with CTest.
# Extra arguments go to ctest, e.g. scripts/test.sh -R persistence/ or -L slow.
# Exits non-zero if the build or any test fails.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

"$repo_root/scripts/setup.sh"

build_dir="${LONGHAUL_BUILD_DIR:-build}"
jobs="$(nproc 2>/dev/null || echo 2)"
echo "test: running ctest in $repo_root/$build_dir"
ctest --test-dir "$build_dir" --output-on-failure -j"$jobs" "$@"
echo "test: all tests passed."
