#!/bin/sh
# cross/setup-host.sh — install everything pdrelay's build and tests need on the
# host (Debian 12), from Debian packages. The host is the first "target".
#
# Safe to run twice: apt-get install is idempotent, and the package index is only
# refreshed when it is missing or older than a day. Needs root (or sudo) and asks
# nothing (DEBIAN_FRONTEND=noninteractive, -y).
set -eu

# openssl: the test CA of the mock PagerDuty (tests/mock/gen-certs.sh).
# clang, libclang-rt-14-dev: the fuzz targets (tests/fuzz/run-fuzz.sh); Debian 12's
# clang-14 only recommends the libFuzzer runtime, so it is named here.
# prometheus: its promtool validates GET /metrics (tests/integration/test_metrics.c).
PKGS="build-essential cmake pkg-config ca-certificates
      libsqlite3-dev sqlite3 libcurl4-openssl-dev libmbedtls-dev libcjson-dev
      libinih-dev libmicrohttpd-dev libcmocka-dev
      openssl clang libclang-rt-14-dev prometheus"

. "$(dirname "$0")/apt-common.sh"
apt_root setup-host
# shellcheck disable=SC2086
missing=$(apt_missing $PKGS)

if [ -z "$missing" ]; then
    echo "setup-host: all build and test packages are installed"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
stamp=/var/lib/apt/periodic/update-success-stamp
lists=$(ls /var/lib/apt/lists/ 2>/dev/null | grep -c Packages || true)
if [ "$lists" -eq 0 ] || [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -n 1)" ]; then
    $SUDO apt-get update -q
fi
echo "setup-host: installing:$missing"
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing
