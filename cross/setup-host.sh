#!/bin/sh
# cross/setup-host.sh — install everything pdrelay's build and tests need on the
# host (Debian 12), from Debian packages. The host is the first "target".
#
# It also enables Debian's source packages (deb-src) when none are, as
# cross/setup-cross.sh does: cross/build-mhd-host.sh builds pdrelay's
# libmicrohttpd from the source package pinned in cross/deps.lock.
#
# Safe to run twice: apt-get install is idempotent, deb-src is added only when
# missing, and the package index is only refreshed when deb-src was just
# enabled or has no index yet, or (to install packages) when it is missing or
# older than a day.
# Needs root (or sudo) and asks nothing (DEBIAN_FRONTEND=noninteractive, -y).
set -eu

# openssl: the test CA of the mock PagerDuty (tests/mock/gen-certs.sh).
# clang, libclang-rt-14-dev: the fuzz targets (tests/fuzz/run-fuzz.sh); Debian 12's
# clang-14 only recommends the libFuzzer runtime, so it is named here.
# prometheus: its promtool validates GET /metrics (tests/integration/test_metrics.c).
# dpkg-dev (dpkg-source; brings patch and make): pdrelay's libmicrohttpd from
# Debian's source (cross/build-mhd-host.sh). libmicrohttpd-dev: the system's,
# with TLS, which the mock PagerDuty links.
# busybox: its sh and start-stop-daemon run the init script
# (tests/package/test_init_busybox.sh). curl: the package install test posts
# an event to the installed daemon (tests/package/test_install.sh).
PKGS="build-essential cmake pkg-config ca-certificates
      libsqlite3-dev sqlite3 libcurl4-openssl-dev libmbedtls-dev libcjson-dev
      libinih-dev libmicrohttpd-dev libcmocka-dev dpkg-dev
      openssl clang libclang-rt-14-dev prometheus busybox curl"

. "$(dirname "$0")/apt-common.sh"
apt_root setup-host
export DEBIAN_FRONTEND=noninteractive
sources=$(find /var/lib/apt/lists -maxdepth 1 -name '*Sources*' 2>/dev/null | head -n 1)
if apt_enable_deb_src setup-host || [ -z "$sources" ]; then
    echo "setup-host: apt-get update (source packages)"
    $SUDO apt-get update -q
fi

# shellcheck disable=SC2086
missing=$(apt_missing $PKGS)
if [ -z "$missing" ]; then
    echo "setup-host: all build and test packages are installed"
    exit 0
fi

stamp=/var/lib/apt/periodic/update-success-stamp
lists=$(ls /var/lib/apt/lists/ 2>/dev/null | grep -c Packages || true)
if [ "$lists" -eq 0 ] || [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -n 1)" ]; then
    $SUDO apt-get update -q
fi
echo "setup-host: installing:$missing"
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing
