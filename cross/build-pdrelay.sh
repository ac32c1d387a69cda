#!/bin/sh
# cross/build-pdrelay.sh — build the firmware flavour of pdrelay for one
# target: the toolchain file toolchains/TARGET.cmake, the static dependencies
# of build-cross/TARGET/sysroot (cross/build-deps.sh) linked in with
# -DPDR_STATIC_DEPS=ON, only the C library dynamic. Builds into
# build-cross/TARGET/build, writes the stripped binary to
# build-cross/TARGET/pdrelay, prints its size, its NEEDED libraries and
# `pdrelay --version` (run under qemu-user for a foreign target), and fails
# if anything but libc and its siblings is NEEDED, libcurl's TLS backend is
# not mbedTLS or libmicrohttpd lacks pdrelay's patch. With --test, runs the unit and integration suites there
# (ctest -LE slow; under qemu-user for a foreign target) against the host's
# mock PagerDuty, built natively into build-cross/host.
#
# Usage: sh cross/build-pdrelay.sh TARGET [--test]
#   TARGET: aarch64-linux-gnu | arm-linux-gnueabihf | x86_64-linux-gnu
#   Environment: PDR_CROSS_PREFIX (as for build-deps.sh), CTEST_JOBS (2).
# Needs: cross/setup-cross.sh, cross/build-deps.sh TARGET (and for --test the
# host's packages, cross/setup-host.sh). Incremental, like any CMake build.
set -eu

die() { echo "build-pdrelay: $*" >&2; exit 1; }

usage="usage: sh cross/build-pdrelay.sh TARGET [--test]"
[ $# -ge 1 ] && [ $# -le 2 ] || die "$usage"
target=$1
test=0
if [ $# -eq 2 ]; then
    [ "$2" = --test ] || die "$usage"
    test=1
fi
case $target in
    aarch64-linux-gnu) qemu=qemu-aarch64 ;;
    arm-linux-gnueabihf) qemu=qemu-arm ;;
    x86_64-linux-gnu) qemu=qemu-x86_64 ;;
    *) die "unknown target '$target' (aarch64-linux-gnu, arm-linux-gnueabihf, x86_64-linux-gnu)" ;;
esac

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
out=build-cross/$target
sysroot=$top/$out/sysroot
bdir=$out/build
prefix=${PDR_CROSS_PREFIX:-$target-}
jobs=$(nproc 2>/dev/null || echo 2)
[ -f "$sysroot/.pdr-deps-stamp" ] || die "no dependencies for $target: run sh cross/build-deps.sh $target"
command -v "${prefix}gcc" >/dev/null 2>&1 || die "${prefix}gcc not found: run sh cross/setup-cross.sh"

# A foreign target's programs run under qemu-user with its libc (-L); the
# host's own kind runs them directly.
host_machine=$(uname -m)
emu=""
case $target in
    "$host_machine"-*) ;;
    *)
        command -v "$qemu" >/dev/null 2>&1 || die "$qemu not found: run sh cross/setup-cross.sh"
        emu="$qemu -L /usr/$target"
        ;;
esac

# ---- the host's mock PagerDuty (for --test): HTTPS needs the host's GnuTLS
# libmicrohttpd; the firmware's has none.
mock=""
if [ "$test" -eq 1 ]; then
    echo "build-pdrelay: building the host's mock PagerDuty (build-cross/host)"
    cmake -S . -B build-cross/host -DPDR_WERROR=OFF >build-cross/host.configure.log 2>&1 ||
        { tail -n 20 build-cross/host.configure.log >&2; die "cannot configure the native build for the mock (run sh cross/setup-host.sh)"; }
    cmake --build build-cross/host --target mock_pd -j "$jobs" >/dev/null
    mock=$top/build-cross/host/tests/mock/mock_pd
fi

# ---- configure and build
cmake -S . -B "$bdir" \
    -DCMAKE_TOOLCHAIN_FILE="$top/toolchains/$target.cmake" \
    -DPDR_CROSS_PREFIX="$prefix" \
    -DPDR_DEPS_ROOT="$sysroot" \
    -DPDR_STATIC_DEPS=ON \
    -DCMAKE_BUILD_TYPE=MinSizeRel \
    -DPDR_HOST_MOCK_PD="$mock"
cmake --build "$bdir" -j "$jobs"

# ---- strip, size, NEEDED, version
"${prefix}strip" -o "$out/pdrelay" "$bdir/pdrelay"
size=$(wc -c <"$out/pdrelay" | tr -d ' ')
needed=$("${prefix}readelf" -d "$out/pdrelay" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ' | sed 's/ $//')
echo "build-pdrelay: $target: $out/pdrelay (stripped): $size bytes"
echo "build-pdrelay: $target: NEEDED: $needed"
for lib in $needed; do
    case $lib in
        libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*|ld-linux*) ;;
        *) die "$target: $lib is linked dynamically; only libc and its siblings may be" ;;
    esac
done
# shellcheck disable=SC2086
version=$($emu "$out/pdrelay" --version) || die "$target: pdrelay --version failed${emu:+ under $emu}"
echo "$version" | sed 's/^/    /'
echo "$version" | grep -q 'TLS backend: mbedTLS' || die "$target: libcurl's TLS backend is not mbedTLS"
echo "$version" | grep -q 'pdrelay patches: json-errors' ||
    die "$target: libmicrohttpd lacks pdrelay's patch (cross/patches/libmicrohttpd): run sh cross/build-deps.sh $target"

printf '%s\t%s\t%s\n' "$target" "$size" "$needed" >"$out/size.tsv"

# ---- tests
if [ "$test" -eq 1 ]; then
    echo "build-pdrelay: $target: ctest -LE slow${emu:+ under $emu}"
    ctest --test-dir "$bdir" --output-on-failure -j "${CTEST_JOBS:-2}" -LE slow
fi

sh "$top/cross/report.sh" "$target"
