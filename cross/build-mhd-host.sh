#!/bin/sh
# cross/build-mhd-host.sh — build the libmicrohttpd the host's pdrelay links:
# Debian's source package of the version pinned in cross/deps.lock, with
# pdrelay's patches (cross/patches/libmicrohttpd: protocol errors answered in
# JSON, see the patch's header), as a static library without TLS (pdrelay's
# ingest never serves TLS), compiled with -fPIC (Debian's gcc links PIE), into
# build-deps-host/mhd (include/, lib/libmicrohttpd.a, lib/pkgconfig/).
# cross/build-host.sh runs it before CMake and passes that prefix as
# -DPDR_MHD_ROOT. The mock PagerDuty keeps Debian's libmicrohttpd (with TLS).
#
# Usage: sh cross/build-mhd-host.sh
# Needs cross/setup-host.sh first (dpkg-dev, deb-src enabled).
#
# Incremental: a prefix stamped with the same libmicrohttpd version, patches,
# scripts, compiler and flags is kept as it is (the check takes milliseconds);
# anything else is rebuilt from scratch. Sources are fetched once into
# build-deps-host/src with apt-get source --download-only (apt verifies them
# against the signed index).
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
me="build-mhd-host"
. "$top/cross/deps-common.sh"

lock=$top/cross/deps.lock
base=$top/build-deps-host
srcdir=$base/src
work=$base/mhd-work
prefix=$base/mhd
stamp=$prefix/.pdr-mhd-stamp
CC=${CC:-gcc}
CFLAGS="-O2 -g -fPIC"
jobs=$(nproc 2>/dev/null || echo 2)
for t in apt-get dpkg-source patch make "$CC"; do
    command -v "$t" >/dev/null 2>&1 || die "$t not found: run sh cross/setup-host.sh"
done
[ -f "$lock" ] || die "$lock is missing"

want="libmicrohttpd=$(ver libmicrohttpd)
patches=$(patches_hash)
scripts=$(cat "$top/cross/build-mhd-host.sh" "$top/cross/deps-common.sh" | sha256sum | cut -d' ' -f1)
cc=$(command -v "$CC") $($CC -dumpmachine) $($CC -dumpfullversion)
cflags=$CFLAGS"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -f "$prefix/lib/libmicrohttpd.a" ]; then
    echo "$me: $prefix is up to date (same libmicrohttpd $(ver libmicrohttpd), patches and scripts)"
    exit 0
fi

fetch_source libmicrohttpd ||
    die "cannot fetch the source of libmicrohttpd=$(ver libmicrohttpd) (deb-src enabled? run sh cross/setup-host.sh): see $srcdir/libmicrohttpd.fetch.log"

rm -rf "$prefix" "$work"
mkdir -p "$work"
echo "$me: building libmicrohttpd $(ver libmicrohttpd) into $prefix"
begin libmicrohttpd
unpack libmicrohttpd
mkdir b && cd b
run ../configure --prefix="$prefix" --enable-static --disable-shared --with-pic \
    CC="$CC" CFLAGS="$CFLAGS" \
    --disable-https --without-gnutls --disable-doc --disable-examples --disable-curl \
    --disable-nls --disable-dependency-tracking
run make -C src/microhttpd -j"$jobs"
run make -C src/microhttpd install
run make -C src/include install
run make install-pkgconfigDATA
rm -f "$prefix"/lib/*.la
[ -f "$prefix/lib/libmicrohttpd.a" ] || die "libmicrohttpd: no libmicrohttpd.a was installed"
grep -q 'Request header too large' "$prefix/lib/libmicrohttpd.a" ||
    die "libmicrohttpd: the built library lacks the JSON error bodies of cross/patches/libmicrohttpd"
end
cd "$top"
rm -rf "$work"
echo "$want" >"$stamp"
