#!/bin/sh
# cross/test-firmware.sh — the firmware build of one target, tested: installs
# the cross tools (cross/setup-cross.sh), builds the pinned dependencies
# (cross/build-deps.sh; skipped when the target's sysroot is current), then
# builds, strips and checks pdrelay and runs its unit and integration suites
# under qemu-user (cross/build-pdrelay.sh --test).
#
# Usage: sh cross/test-firmware.sh TARGET
#   TARGET: aarch64-linux-gnu | arm-linux-gnueabihf | x86_64-linux-gnu
# The README's test command (tests/run-all.sh) runs it for aarch64-linux-gnu and
# arm-linux-gnueabihf after the native, sanitizer and fuzz stages.
set -eu

[ $# -eq 1 ] || { echo "usage: sh cross/test-firmware.sh TARGET" >&2; exit 1; }
here=$(dirname "$0")
sh "$here/setup-cross.sh"
sh "$here/build-deps.sh" "$1"
sh "$here/build-pdrelay.sh" "$1" --test
