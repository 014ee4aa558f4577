#!/usr/bin/env bash
# Shared first step of scripts/test.sh and scripts/demo.sh (also runnable alone): installs the
# missing Debian 12 build dependencies, then configures and builds longhaul into build/.
# Environment: LONGHAUL_CMAKE_ARGS (extra cmake arguments, e.g. "-DLONGHAUL_SANITIZE=ON"),
#              LONGHAUL_BUILD_DIR (default: build, relative to the repository root).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

# Debian 12 package names. Boost is pinned to 1.81 on purpose: the unversioned
# libboost-*-dev packages are Boost 1.74, which predates Boost.JSON (1.75) and whose
# headers would clash with 1.81's.
packages=(g++ make cmake libcaf-dev libsqlite3-dev libboost1.81-dev libboost-json1.81-dev
          libspdlog-dev libfmt-dev catch2)

install_missing_packages() {
  if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "setup: dpkg-query not found (not Debian?); skipping the package check." >&2
    echo "setup: longhaul needs the Debian 12 packages: ${packages[*]}" >&2
    return 0
  fi
  local missing=() pkg
  for pkg in "${packages[@]}"; do
    if [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)" != "install ok installed" ]]; then
      missing+=("$pkg")
    fi
  done
  if ((${#missing[@]} == 0)); then
    echo "setup: all build dependencies are installed."
    return 0
  fi
  echo "setup: missing packages: ${missing[*]}"
  if ((EUID != 0)); then
    echo "setup: error: installing packages needs root. Run as root, or first run:" >&2
    echo "  sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

configure_and_build() {
  local build_dir="${LONGHAUL_BUILD_DIR:-build}"
  local extra_args=()
  # Word splitting is wanted here: LONGHAUL_CMAKE_ARGS holds several arguments.
  read -r -a extra_args <<< "${LONGHAUL_CMAKE_ARGS:-}"
  local jobs
  jobs="$(nproc 2>/dev/null || echo 2)"
  echo "setup: configuring $repo_root/$build_dir${extra_args[*]:+ with ${extra_args[*]}}"
  cmake -S . -B "$build_dir" -DLONGHAUL_WERROR=ON "${extra_args[@]}"
  echo "setup: building with $jobs jobs"
  cmake --build "$build_dir" -j"$jobs"
}

install_missing_packages
configure_and_build
