#!/bin/sh
# cross/build-host.sh — set up the host (cross/setup-host.sh), build the
# patched static libmicrohttpd pdrelay links (cross/build-mhd-host.sh, into
# build-deps-host/mhd) and build pdrelay and its tests into ./build with CMake.
# Extra arguments go to CMake's configure step, e.g. -DPDR_SANITIZE=ON or
# -DCMAKE_BUILD_TYPE=Debug.
#
# Safe to run again: setup is idempotent and the builds are incremental.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
sh cross/setup-host.sh
sh cross/build-mhd-host.sh
cmake -S . -B build -DPDR_MHD_ROOT="$top/build-deps-host/mhd" "$@"
cmake --build build -j "$(nproc 2>/dev/null || echo 2)"
