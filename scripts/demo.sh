#!/usr/bin/env bash
# Builds longhaul (scripts/setup.sh) and runs the retail demo (`retail demo`: ~1,000 orders
# on an accelerated clock) in build/demo/, where its SQLite journal stays afterwards for
# inspection (sqlite3 -readonly build/demo/retail.db). Extra arguments go to `retail demo`,
# e.g. scripts/demo.sh --orders 300 --seed 7.
set -euo pipefail

# The demo executable, relative to the build directory (samples/CMakeLists.txt defines it).
demo_program="samples/retail"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

"$repo_root/scripts/setup.sh"

build_dir="$repo_root/${LONGHAUL_BUILD_DIR:-build}"
demo="$build_dir/$demo_program"
if [[ ! -x "$demo" ]]; then
  echo "demo: error: $demo was not built (is LONGHAUL_BUILD_SAMPLES off?)" >&2
  exit 1
fi

work_dir="$build_dir/demo"
mkdir -p "$work_dir"
echo "demo: running $demo_program in $work_dir"
status=0
(cd "$work_dir" && "$demo" demo "$@") || status=$?
echo "demo: files left by the demo in $work_dir:"
ls -l "$work_dir"
exit "$status"
