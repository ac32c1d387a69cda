#!/bin/sh
# test_deb.sh — builds the .deb with CPack from a build directory and checks
# what an operator would get from it: the exact file list, the conffiles, a
# packaged config that passes `pdrelay config check` with its data_dir in
# /var/lib/pdrelay, a gzip'd man page holding the `run` help, a Type=notify
# unit with a reload command, and maintainer scripts that create the user.
#
#   sh tests/package/test_deb.sh BUILD_DIR VERSION
#
# The package is made in a scratch directory (cpack -B), so the build
# directory is left as it was. Every check runs; the exit status is 1 if any
# failed.
set -u

build=${1:?usage: test_deb.sh BUILD_DIR VERSION}
version=${2:?usage: test_deb.sh BUILD_DIR VERSION}
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { echo "ok: $*"; }

scratch=$(mktemp -d "${TMPDIR:-/tmp}/pdrelay-deb.XXXXXX") || exit 1
trap 'rm -rf "$scratch"' EXIT
root=$scratch/root
ctl=$scratch/control

arch=$(dpkg --print-architecture)
deb=$scratch/out/pdrelay_${version}_${arch}.deb
if ! cpack -G DEB --config "$build/CPackConfig.cmake" -B "$scratch/out" >"$scratch/cpack.log" 2>&1; then
    cat "$scratch/cpack.log"
    echo "FAIL: cpack -G DEB"
    exit 1
fi
[ -f "$deb" ] || { ls "$scratch/out"; echo "FAIL: no $deb"; exit 1; }
ok "cpack made $(basename "$deb")"
dpkg-deb -x "$deb" "$root" || { echo "FAIL: dpkg-deb -x"; exit 1; }
dpkg-deb -e "$deb" "$ctl" || { echo "FAIL: dpkg-deb -e"; exit 1; }

# ---- the file list: exactly these, nothing more -------------------------
cat >"$scratch/expected" <<'LIST'
./etc/init.d/pdrelay
./etc/pdrelay/pdrelay.ini
./lib/systemd/system/pdrelay.service
./usr/bin/pdrelay
./usr/share/doc/pdrelay/README.md
./usr/share/doc/pdrelay/copyright
./usr/share/man/man1/pdrelay.1.gz
LIST
(cd "$root" && find . ! -type d | LC_ALL=C sort) >"$scratch/actual"
if diff -u "$scratch/expected" "$scratch/actual"; then ok "file list"; else fail "file list (- expected, + in the package)"; fi
[ -x "$root/usr/bin/pdrelay" ] || fail "/usr/bin/pdrelay is not executable"
[ -x "$root/etc/init.d/pdrelay" ] || fail "/etc/init.d/pdrelay is not executable"

# ---- control area --------------------------------------------------------
printf '/etc/init.d/pdrelay\n/etc/pdrelay/pdrelay.ini\n' >"$scratch/conf.expected"
LC_ALL=C sort "$ctl/conffiles" 2>/dev/null >"$scratch/conf.actual"
if diff -u "$scratch/conf.expected" "$scratch/conf.actual"; then ok "conffiles"; else fail "conffiles"; fi
grep -qx "Package: pdrelay" "$ctl/control" || fail "control: Package"
grep -qx "Version: $version" "$ctl/control" || fail "control: Version is not $version"
grep -qx "Section: admin" "$ctl/control" || fail "control: Section"
grep -q "^Depends:.*libc6" "$ctl/control" || fail "control: Depends lacks libc6 (dpkg-shlibdeps not run?)"
for s in postinst prerm postrm; do
    [ -x "$ctl/$s" ] || fail "$s missing or not executable"
    sh -n "$ctl/$s" || fail "sh -n $s"
done
grep -Eq "adduser --system|useradd -r" "$ctl/postinst" || fail "postinst creates no system user"
grep -q "/var/lib/pdrelay" "$ctl/postinst" || fail "postinst does not make /var/lib/pdrelay"
grep -q "chmod 0700 /var/lib/pdrelay" "$ctl/postinst" || fail "postinst: /var/lib/pdrelay is not 0700"
ok "control area checked"

# ---- the packaged config -------------------------------------------------
ini=$root/etc/pdrelay/pdrelay.ini
grep -qx "data_dir = /var/lib/pdrelay" "$ini" || fail "packaged ini: data_dir is not /var/lib/pdrelay"
grep -q "^data_dir = \./var" "$ini" && fail "packaged ini still has data_dir = ./var"
if out=$("$root/usr/bin/pdrelay" config check -c "$ini" 2>&1); then
    ok "pdrelay config check of the packaged ini"
else
    echo "$out"
    fail "pdrelay config check -c $ini"
fi

# ---- the man page --------------------------------------------------------
man=$root/usr/share/man/man1/pdrelay.1.gz
if gzip -t "$man" 2>/dev/null; then
    gzip -dc "$man" >"$scratch/pdrelay.1"
    grep -q '^\.TH PDRELAY 1' "$scratch/pdrelay.1" || fail "man page has no .TH"
    # Every prose line of `pdrelay help run` that roff leaves alone (no '-',
    # '\', leading '.' or non-ASCII) is in the page as it is, bold aside.
    sed 's/\\f[BIR]//g' "$scratch/pdrelay.1" >"$scratch/pdrelay.plain"
    # shellcheck disable=SC1003
    "$root/usr/bin/pdrelay" help run | LC_ALL=C grep -v -e '^ ' -e '^$' -e '-' -e '\\' -e '^\.' -e '[^ -~]' \
        >"$scratch/runlines"
    [ -s "$scratch/runlines" ] || fail "no help run lines to look for"
    missing=$(grep -Fxv -f "$scratch/pdrelay.plain" "$scratch/runlines")
    if [ -n "$missing" ]; then
        printf '%s\n' "$missing"
        fail "man page lacks the run help lines above"
    fi
    grep -q 'Usage: pdrelay' "$scratch/pdrelay.1" && fail "man page has raw Usage: lines"
    if command -v groff >/dev/null 2>&1; then
        warn=$(groff -man -Tutf8 -ww -z "$scratch/pdrelay.1" 2>&1)
        if [ -n "$warn" ]; then echo "$warn"; fail "groff warnings"; else ok "groff -ww: no warnings"; fi
    fi
else
    fail "man page is not gzip"
fi

# ---- the copyright file: DEP-5, the license of LICENSE ------------------
cr=$root/usr/share/doc/pdrelay/copyright
src=$(cd "$(dirname "$0")/../.." && pwd)
grep -qx 'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/' "$cr" || fail "copyright: no DEP-5 Format line"
grep -qx 'License: Expat' "$cr" || fail "copyright: no License: Expat"
grep -q '^Copyright (c) 2026 the pdrelay authors$' "$src/LICENSE" || fail "LICENSE: no copyright line of the pdrelay authors"
grep -qx 'Copyright: 2026 the pdrelay authors' "$cr" || fail "copyright: Copyright is not 2026 the pdrelay authors"
# the license text, unindented (" ." is an empty line), is the end of LICENSE word for word
sed -n '/^License: Expat$/,$p' "$cr" | sed '1,/^License: Expat$/d' | sed -n '/^ Permission/,$p' |
    sed -e 's/^ \.$//' -e 's/^ //' >"$scratch/license.pkg"
sed -n '/^Permission is hereby granted/,$p' "$src/LICENSE" >"$scratch/license.src"
if [ -s "$scratch/license.src" ] && diff -u "$scratch/license.src" "$scratch/license.pkg"; then
    ok "copyright states the license of LICENSE"
else
    fail "copyright: the license text differs from LICENSE"
fi

# ---- the systemd unit and the init script -------------------------------
unit=$root/lib/systemd/system/pdrelay.service
grep -qx "Type=notify" "$unit" || fail "unit: not Type=notify"
# shellcheck disable=SC2016
grep -qx 'ExecReload=/bin/kill -HUP $MAINPID' "$unit" || fail "unit: no ExecReload"
grep -qx "ExecStart=/usr/bin/pdrelay run -c /etc/pdrelay/pdrelay.ini" "$unit" || fail "unit: ExecStart"
grep -qx "StateDirectory=pdrelay" "$unit" || fail "unit: no StateDirectory"
if command -v systemd-analyze >/dev/null 2>&1; then
    # verify checks that ExecStart exists: point it at the unpacked binary.
    mkdir -p "$scratch/units"
    sed "s|^ExecStart=/usr/bin/pdrelay|ExecStart=$root/usr/bin/pdrelay|" "$unit" >"$scratch/units/pdrelay.service"
    if out=$(SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no "$scratch/units/pdrelay.service" 2>&1) &&
        ! printf '%s\n' "$out" | grep -q 'pdrelay.service'; then
        ok "systemd-analyze verify${out:+ (}$out${out:+)}"
    else
        printf '%s\n' "$out"
        fail "systemd-analyze verify"
    fi
else
    echo "skip: systemd-analyze not installed"
fi
sh -n "$root/etc/init.d/pdrelay" || fail "sh -n /etc/init.d/pdrelay"
grep -q '^### BEGIN INIT INFO' "$root/etc/init.d/pdrelay" || fail "init script has no LSB header"

if [ "$failures" -ne 0 ]; then
    echo "$failures check(s) failed"
    exit 1
fi
echo "all package checks passed"
