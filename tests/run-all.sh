#!/bin/sh
# tests/run-all.sh — the whole test suite, what CI runs (.ci/run calls the
# README's test command, which is this script). In order, stopping at the
# first failure:
#
#   1. sh cross/build-host.sh, then the native suite in build/
#      (ctest -LE slow).
#   2. The same suite under ASan + UBSan: build-asan/ (-DPDR_SANITIZE=ON, the
#      patched libmicrohttpd of build-deps-host/mhd as cross/build-host.sh
#      passes it). The package tests (label "package": a .deb of a
#      sanitizer build, or installing one on this machine) run only in 1.
#   3. Each fuzz target for FUZZ_SECONDS (default 10) as a smoke test: the
#      targets still build and run (tests/fuzz/run-fuzz.sh, clang).
#   4. The firmware builds tested under qemu-user: aarch64-linux-gnu and
#      arm-linux-gnueabihf (cross/test-firmware.sh; the first run builds each
#      target's pinned dependencies, later runs reuse a current sysroot).
#
#   sh tests/run-all.sh
#
# Every stage prints its time; the total is printed at the end.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
jobs=2
fuzz_seconds=${FUZZ_SECONDS:-10}

t_all=$(date +%s)
stage() {
    t=$(date +%s)
    echo "==== run-all: $1"
    shift
    "$@"
    echo "==== run-all: done in $(( $(date +%s) - t ))s"
}

stage "native build and suite (build/)" sh -c \
    'sh cross/build-host.sh && ctest --test-dir build --output-on-failure -j'"$jobs"' -LE slow'
stage "ASan + UBSan build and suite (build-asan/)" sh -c '
    cmake -S . -B build-asan -DPDR_SANITIZE=ON -DPDR_MHD_ROOT="$PWD/build-deps-host/mhd" &&
    cmake --build build-asan -j'"$jobs"' &&
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        ctest --test-dir build-asan --output-on-failure -j'"$jobs"' -LE "slow|package"'
stage "fuzz smoke test, ${fuzz_seconds}s per target (build-fuzz/)" sh tests/fuzz/run-fuzz.sh "$fuzz_seconds"
stage "firmware aarch64-linux-gnu under qemu-user" sh cross/test-firmware.sh aarch64-linux-gnu
stage "firmware arm-linux-gnueabihf under qemu-user" sh cross/test-firmware.sh arm-linux-gnueabihf
echo "==== run-all: all passed in $(( $(date +%s) - t_all ))s"
