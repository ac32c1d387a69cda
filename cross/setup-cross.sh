#!/bin/sh
# cross/setup-cross.sh — install from Debian (12, bookworm) everything a cross
# build of pdrelay needs: the cross compilers for aarch64-linux-gnu and
# arm-linux-gnueabihf (their libc6-dev-*-cross and binutils come with them),
# qemu-user to run the target's binaries and tests, and the tools that build
# the dependencies from Debian's source packages (cross/build-deps.sh).
# It also enables Debian's source packages (deb-src) for the suites already
# configured, if they are not enabled, and refreshes the package index.
#
# Usage: sh cross/setup-cross.sh        (root, or a user with sudo)
#
# Safe to run twice: deb-src entries are only added when no deb-src exists
# (in a file of its own, /etc/apt/sources.list.d/pdrelay-deb-src.*), the index
# is refreshed only when it was changed or is older than a day, and apt-get
# install is idempotent. Asks nothing (DEBIAN_FRONTEND=noninteractive, -y).
set -eu

# gcc-*: the cross compilers; libc6-dev-*-cross: their C library (only
# recommended by gcc-*, so named here for --no-install-recommends).
# qemu-user: qemu-aarch64 / qemu-arm for the target's tests (no binfmt needed).
# dpkg-dev: dpkg-source, which apt-get source uses to unpack.
# make, perl, python3: the dependencies' build systems (mbedTLS's config.py).
# autoconf, automake, libtool: curl's configure is generated again, since
# Debian's patches change configure.ac. file: libtool's checks. tcl: tclsh
# generates the SQLite amalgamation. pkg-config, cmake: cmocka and pdrelay.
# xz-utils, bzip2: unpacking the sources.
PKGS="gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf
      libc6-dev-arm64-cross libc6-dev-armhf-cross
      binutils-aarch64-linux-gnu binutils-arm-linux-gnueabihf
      qemu-user dpkg-dev make perl python3 autoconf automake libtool file
      pkg-config cmake tcl xz-utils bzip2 ca-certificates"

. "$(dirname "$0")/apt-common.sh"
apt_root setup-cross
export DEBIAN_FRONTEND=noninteractive

# ---- deb-src ----------------------------------------------------------------
changed=0
apt_enable_deb_src setup-cross && changed=1

# ---- index ------------------------------------------------------------------
fresh=$(find /var/lib/apt/lists -maxdepth 1 -name '*Sources*' -mtime -1 2>/dev/null | head -n 1)
if [ "$changed" -eq 1 ] || [ -z "$fresh" ]; then
    echo "setup-cross: apt-get update"
    $SUDO apt-get update -q
fi

# ---- packages ---------------------------------------------------------------
# shellcheck disable=SC2086
missing=$(apt_missing $PKGS)
if [ -z "$missing" ]; then
    echo "setup-cross: all cross-build packages are installed"
else
    echo "setup-cross: installing:$missing"
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -q --no-install-recommends $missing
fi

for t in aarch64-linux-gnu-gcc arm-linux-gnueabihf-gcc qemu-aarch64 qemu-arm dpkg-source; do
    command -v "$t" >/dev/null 2>&1 || { echo "setup-cross: $t is missing after install" >&2; exit 1; }
done
