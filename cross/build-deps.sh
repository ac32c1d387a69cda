#!/bin/sh
# cross/build-deps.sh — build pdrelay's dependencies for one target from the
# Debian source packages pinned in cross/deps.lock, as static libraries with
# their headers and pkg-config files, into build-cross/TARGET/sysroot/usr:
#   SQLite (threadsafe, no extension loading), mbedTLS, libcurl (over mbedTLS,
#   HTTP and HTTPS only), cJSON, inih, libmicrohttpd (no TLS), and cmocka for
#   the cross-built tests.
#
# Usage: sh cross/build-deps.sh TARGET
#   TARGET: aarch64-linux-gnu | arm-linux-gnueabihf | x86_64-linux-gnu
#   Environment: PDR_CROSS_PREFIX (default TARGET-, e.g. aarch64-linux-gnu-gcc),
#   PDR_DEPS_CFLAGS (default -Os -ffunction-sections -fdata-sections).
# Needs cross/setup-cross.sh first (compilers, deb-src, build tools).
#
# Sources are fetched once into build-cross/src with apt-get source
# --download-only PKG=VERSION (apt verifies them against the signed index).
# pdrelay's patches to a package, cross/patches/PACKAGE/*.patch, are applied
# after Debian's own (see cross/deps-common.sh).
#
# Incremental: a sysroot stamped with the same deps.lock, patches, this script
# (and cross/deps-common.sh), the toolchain file, the compiler and the flags
# is kept as it is; anything else is rebuilt from scratch. Prints the time
# each dependency took.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
me="build-deps"
. "$top/cross/deps-common.sh"

[ $# -eq 1 ] || die "usage: sh cross/build-deps.sh TARGET (aarch64-linux-gnu, arm-linux-gnueabihf, x86_64-linux-gnu)"
target=$1
case $target in
    aarch64-linux-gnu) debarch=arm64 ;;
    arm-linux-gnueabihf) debarch=armhf ;;
    x86_64-linux-gnu) debarch=amd64 ;;
    *) die "unknown target '$target' (aarch64-linux-gnu, arm-linux-gnueabihf, x86_64-linux-gnu)" ;;
esac
me="build-deps: $target"

lock=$top/cross/deps.lock
script=$top/cross/build-deps.sh
srcdir=$top/build-cross/src
out=$top/build-cross/$target
sysroot=$out/sysroot
work=$out/deps-work
stamp=$sysroot/.pdr-deps-stamp

prefix=${PDR_CROSS_PREFIX:-$target-}
CC=${prefix}gcc
AR=${prefix}ar
RANLIB=${prefix}ranlib
CFLAGS=${PDR_DEPS_CFLAGS:--Os -ffunction-sections -fdata-sections}
build=$(gcc -dumpmachine 2>/dev/null || uname -m)
jobs=$(nproc 2>/dev/null || echo 2)
command -v "$CC" >/dev/null 2>&1 || die "$CC not found: run sh cross/setup-cross.sh (or set PDR_CROSS_PREFIX)"
for t in apt-get dpkg-source make tclsh autoreconf; do
    command -v "$t" >/dev/null 2>&1 || die "$t not found: run sh cross/setup-cross.sh"
done
[ -f "$lock" ] || die "$lock is missing"

# ---- up to date? -------------------------------------------------------------
want="lock=$(sha256sum <"$lock" | cut -d' ' -f1)
script=$(cat "$script" "$top/cross/deps-common.sh" | sha256sum | cut -d' ' -f1)
patches=$(patches_hash)
toolchain=$(cat "$top/toolchains/$target.cmake" "$top/toolchains/linux-gnu-common.cmake" | sha256sum | cut -d' ' -f1)
cc=$(command -v "$CC") $($CC -dumpmachine) $($CC -dumpfullversion)
cflags=$CFLAGS"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "$me: $sysroot is up to date (same deps.lock, patches, scripts and toolchain)"
    exit 0
fi

# ---- sources -----------------------------------------------------------------
# A binary package of the target's architecture, through a private apt state
# (build-cross/apt/ARCH: its own index of that architecture, from the same
# signed archive), so that dpkg's architectures and the system's index stay
# as they are. An index of the archive that fails to download (a mirror in
# sync) is ignored by apt; the package must still verify against the rest.
fetch_binary() {
    d=$top/build-cross/apt/$debarch
    [ -f "$srcdir/${1}_$(ver libinih)_$debarch.deb" ] && return 0
    mkdir -p "$d/lists/partial" "$d/cache/archives/partial"
    set -- "$1" -o Dir::State::Lists="$d/lists" -o Dir::Cache="$d/cache" \
        -o APT::Architecture="$debarch" -o APT::Architectures::="$debarch" -o Debug::NoLocking=1
    pkg=$1; shift
    apt-get "$@" update -q || echo "$me: apt-get update ($debarch) reported errors; going on"
    (cd "$srcdir" && apt-get "$@" download -q "$pkg:$debarch=$(ver libinih)")
}

mkdir -p "$srcdir"
pkgs=$(awk '!/^#/ && NF >= 2 { print $1 }' "$lock")
for p in $pkgs; do
    if ! fetch_source "$p"; then
        if [ "$p" = libinih ]; then
            echo "$me: libinih $(ver libinih): source not served by the archive; using the libinih-dev:$debarch binary package of the same version"
            rm -f "$(dsc libinih)"
            fetch_binary libinih-dev >>"$srcdir/$p.fetch.log" 2>&1 ||
                die "cannot fetch libinih-dev:$debarch=$(ver libinih): see $srcdir/$p.fetch.log"
        else
            die "cannot fetch the source of $p=$(ver "$p") (deb-src enabled? run sh cross/setup-cross.sh): see $srcdir/$p.fetch.log"
        fi
    fi
done

# ---- from scratch ------------------------------------------------------------
rm -rf "$sysroot" "$work"
mkdir -p "$sysroot/usr/include" "$sysroot/usr/lib/pkgconfig" "$work"
echo "$me: building into $sysroot with $CC ($CFLAGS)"

total0=$(date +%s)
pc() {   # pc NAME VERSION DESCRIPTION LIBS [LIBS_PRIVATE [REQUIRES_PRIVATE [CFLAGS]]]
    cat >"$sysroot/usr/lib/pkgconfig/$1.pc" <<EOF
prefix=/usr
exec_prefix=\${prefix}
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: $1
Description: $3
Version: $2
Libs: -L\${libdir} $4
Libs.private: ${5:-}
Requires.private: ${6:-}
Cflags: -I\${includedir} ${7:-}
EOF
}
ac_env() {   # the cross environment of an autoconf configure
    echo "--host=$target --build=$build --prefix=/usr --disable-shared --enable-static"
}

# ---- SQLite: the amalgamation, generated with the host's compiler and tclsh,
# compiled for the target.
begin sqlite3
unpack sqlite3
mkdir gen && cd gen
run env CC=gcc CFLAGS=-O0 ../configure --disable-tcl --disable-readline
run make sqlite3.c
run "$CC" $CFLAGS -c sqlite3.c -o sqlite3.o \
    -DSQLITE_THREADSAFE=1 -DSQLITE_OMIT_LOAD_EXTENSION=1 \
    -DHAVE_USLEEP=1 -DHAVE_LOCALTIME_R=1 -DHAVE_GMTIME_R=1 -DHAVE_FDATASYNC=1
run "$AR" rcs "$sysroot/usr/lib/libsqlite3.a" sqlite3.o
cp sqlite3.h sqlite3ext.h "$sysroot/usr/include/"
pc sqlite3 "$(sed -n 's/^#define SQLITE_VERSION *"\(.*\)"/\1/p' sqlite3.h)" "SQL database engine" -lsqlite3 "-lm -lpthread"
end

# ---- mbedTLS: static libraries, with threading (as Debian builds it; libcurl
# may be used from several threads).
begin mbedtls
unpack mbedtls
run python3 scripts/config.py set MBEDTLS_THREADING_C
run python3 scripts/config.py set MBEDTLS_THREADING_PTHREAD
run make -C library -j"$jobs" CC="$CC" AR="$AR" CFLAGS="$CFLAGS" static
cp -R include/mbedtls "$sysroot/usr/include/"
[ -d include/psa ] && cp -R include/psa "$sysroot/usr/include/"
cp library/libmbedcrypto.a library/libmbedx509.a library/libmbedtls.a "$sysroot/usr/lib/"
mv_=$(ver mbedtls | sed 's/-.*//')
pc mbedcrypto "$mv_" "mbedTLS crypto" -lmbedcrypto -lpthread
pc mbedx509 "$mv_" "mbedTLS X.509" -lmbedx509 "" mbedcrypto
pc mbedtls "$mv_" "mbedTLS TLS" -lmbedtls "" "mbedx509 mbedcrypto"
end

# ---- libcurl: over mbedTLS, HTTP and HTTPS only. As for Debian's own
# libcurl (the OpenSSL flavour), the last two patches, which rename the
# library for the GnuTLS and NSS flavours, are taken off again. Debian's
# patches change configure.ac, so configure is generated again (autoreconf).
begin curl
unpack curl
run patch -R -p1 -i debian/patches/99_nss.patch
run patch -R -p1 -i debian/patches/90_gnutls.patch
run autoreconf -fi
mkdir b && cd b
# shellcheck disable=SC2046
run ../configure $(ac_env) CC="$CC" AR="$AR" RANLIB="$RANLIB" CFLAGS="$CFLAGS" \
    CPPFLAGS="-I$sysroot/usr/include" LDFLAGS="-L$sysroot/usr/lib" \
    --with-mbedtls="$sysroot/usr" --without-openssl --without-gnutls --without-wolfssl \
    --without-bearssl --without-rustls --without-nss \
    --with-ca-bundle=/etc/ssl/certs/ca-certificates.crt --without-ca-path \
    --disable-ftp --disable-file --disable-ldap --disable-ldaps --disable-rtsp \
    --disable-dict --disable-telnet --disable-tftp --disable-pop3 --disable-imap \
    --disable-smb --disable-smtp --disable-gopher --disable-mqtt --disable-manual \
    --disable-ntlm --disable-ntlm-wb --disable-kerberos-auth --disable-negotiate-auth \
    --disable-aws --disable-netrc --disable-dependency-tracking \
    --without-zlib --without-brotli --without-zstd --without-libssh2 --without-libssh \
    --without-librtmp --without-libidn2 --without-libpsl --without-nghttp2 \
    --without-nghttp3 --without-ngtcp2 --without-quiche --without-msh3 --without-hyper \
    --without-libgsasl --without-gssapi
grep -q 'SSL:.*mbedTLS' "$log" && grep -q 'Protocols:.*HTTP' "$log" ||
    { tail -n 25 "$log" | cut -c1-300 >&2; die "curl: configure did not select mbedTLS (log: $log)"; }
protocols=$(sed -n 's/^ *Protocols: *//p' "$log" | tail -n 1)
[ "$protocols" = "HTTP HTTPS" ] || die "curl: protocols are '$protocols', expected only HTTP and HTTPS"
run make -C lib -j"$jobs"
run make -C lib install DESTDIR="$sysroot"
run make -C include install DESTDIR="$sysroot"
run make install-pkgconfigDATA DESTDIR="$sysroot"
[ -f "$sysroot/usr/lib/libcurl.a" ] || die "curl: no libcurl.a was installed"
end

# ---- cJSON
begin cjson
unpack cjson
run "$CC" $CFLAGS -std=c89 -c cJSON.c -o cJSON.o
run "$AR" rcs "$sysroot/usr/lib/libcjson.a" cJSON.o
mkdir -p "$sysroot/usr/include/cjson"
cp cJSON.h "$sysroot/usr/include/cjson/"
pc libcjson "$(ver cjson | sed 's/-.*//')" "Ultralightweight JSON parser in ANSI C" -lcjson -lm "" "-I\${includedir}/cjson"
end

# ---- inih: from source when the archive serves it, else Debian's own static
# library from libinih-dev of the same version.
begin libinih
iv=$(ver libinih | sed 's/-.*//')
if [ -f "$(dsc libinih)" ]; then
    unpack libinih
    run "$CC" $CFLAGS -c ini.c -o ini.o
    run "$AR" rcs "$sysroot/usr/lib/libinih.a" ini.o
    cp ini.h "$sysroot/usr/include/"
    echo "$me: libinih built from source"
else
    deb=$(ls "$srcdir"/libinih-dev_"$(ver libinih)"_"$debarch".deb 2>/dev/null | head -n 1)
    [ -n "$deb" ] || die "libinih: neither source nor libinih-dev_$(ver libinih)_$debarch.deb in $srcdir"
    run dpkg-deb -x "$deb" "$work/libinih"
    a=$(find "$work/libinih" -name libinih.a | head -n 1)
    [ -n "$a" ] || die "libinih: no libinih.a in $deb"
    cp "$a" "$sysroot/usr/lib/"
    cp "$work/libinih/usr/include/ini.h" "$sysroot/usr/include/"
    echo "$me: libinih from $(basename "$deb") (no source served)"
fi
pc inih "$iv" "simple .INI file parser" -linih
end

# ---- libmicrohttpd: HTTP only (pdrelay's ingest listens on loopback or a
# unix socket; no GnuTLS on the target), with pdrelay's patch
# (cross/patches/libmicrohttpd: protocol errors answered in JSON).
begin libmicrohttpd
unpack libmicrohttpd
mkdir b && cd b
# shellcheck disable=SC2046
run ../configure $(ac_env) CC="$CC" AR="$AR" RANLIB="$RANLIB" CFLAGS="$CFLAGS" \
    --disable-https --without-gnutls --disable-doc --disable-examples --disable-curl \
    --disable-nls --disable-dependency-tracking
run make -C src/microhttpd -j"$jobs"
run make -C src/microhttpd install DESTDIR="$sysroot"
run make -C src/include install DESTDIR="$sysroot"
run make install-pkgconfigDATA DESTDIR="$sysroot"
end

# ---- cmocka: only for the cross-built tests, with the toolchain file.
begin cmocka
unpack cmocka
run cmake -S . -B b -DCMAKE_TOOLCHAIN_FILE="$top/toolchains/$target.cmake" \
    -DPDR_CROSS_PREFIX="$prefix" -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_FLAGS="$CFLAGS" \
    -DWITH_STATIC_LIB=ON -DWITH_EXAMPLES=OFF -DUNIT_TESTING=OFF -DCMAKE_INSTALL_PREFIX=/usr \
    -DCMAKE_INSTALL_LIBDIR=lib
run cmake --build b -j "$jobs"
run env DESTDIR="$sysroot" cmake --install b
rm -f "$sysroot"/usr/lib/libcmocka.so*
[ -f "$sysroot/usr/lib/libcmocka-static.a" ] && mv "$sysroot/usr/lib/libcmocka-static.a" "$sysroot/usr/lib/libcmocka.a"
[ -f "$sysroot/usr/lib/libcmocka.a" ] || die "cmocka: no static library was built"
end

# ---- no shared libraries, no libtool archives: only static ones are linked.
find "$sysroot" \( -name '*.la' -o -name '*.so' -o -name '*.so.*' \) -exec rm -f {} +
rm -rf "$sysroot/usr/lib/cmake" "$sysroot/usr/share/man"
echo "$want" >"$stamp"
echo "$me: all dependencies took $(( $(date +%s) - total0 )) s -> $sysroot"
