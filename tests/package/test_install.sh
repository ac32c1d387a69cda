#!/bin/sh
# test_install.sh — the .deb installed for real on this machine, as an
# operator would: dpkg -i, `pdrelay config check` of the installed config,
# start with the init script (config/pdrelay.init, as the package installs
# it), an event posted to the running daemon and seen queued by
# `pdrelay queue status`, stop, dpkg --purge. Checks that purge keeps an
# outbox with pending events and says so naming the file
# (config/debian/postrm), that PDRELAY_PURGE_PENDING=yes deletes it, and
# that after each purge no file is left but what Debian policy keeps (the
# system user pdrelay).
#
#   sh tests/package/test_install.sh BUILD_DIR VERSION
#
# Needs root; exits 77 (ctest: skipped) with the reason when not root, when
# pdrelay is already installed, or when /etc/pdrelay, /var/lib/pdrelay or
# /etc/default/pdrelay exist (it must not touch an operator's files). The
# daemon's uplink is a closed port, so the event stays queued. Whatever
# fails, the trap stops the daemon, purges the package and removes what the
# test made. Runs alone (flock), as it owns machine-wide paths.
set -u

build=${1:?usage: test_install.sh BUILD_DIR VERSION}
version=${2:?usage: test_install.sh BUILD_DIR VERSION}
skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "not root: installing the .deb needs root (run ctest as root to include it)"
for t in dpkg cpack curl flock update-rc.d; do
    command -v "$t" >/dev/null 2>&1 || skip "$t is not installed (sh cross/setup-host.sh)"
done

exec 9>/run/lock/pdrelay-test-install.lock
flock 9
if dpkg-query -W -f='${Status}' pdrelay 2>/dev/null | grep -qv "not-installed"; then
    skip "a pdrelay package is on this machine ($(dpkg-query -W -f='${Status}' pdrelay)); not touching it"
fi
for p in /etc/pdrelay /var/lib/pdrelay /etc/default/pdrelay; do
    [ -e "$p" ] && skip "$p exists; not touching an operator's files"
done

failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { echo "ok: $*"; }
scratch=$(mktemp -d "${TMPDIR:-/tmp}/pdrelay-install.XXXXXX") || exit 1
chmod 0755 "$scratch"
cleanup() {
    [ -x /etc/init.d/pdrelay ] && /etc/init.d/pdrelay stop >/dev/null 2>&1
    PDRELAY_PURGE_PENDING=yes dpkg --purge pdrelay >/dev/null 2>&1
    rm -rf /var/lib/pdrelay /var/run/pdrelay /etc/pdrelay /etc/default/pdrelay
    rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# Names with "pdrelay" in the system's trees (dpkg's own records aside).
pdrelay_paths() {
    find /etc /usr /var /run /opt -xdev \( -path /var/lib/dpkg -o -path /var/cache -o -path /var/tmp \) -prune \
        -o -name '*pdrelay*' -print 2>/dev/null | LC_ALL=C sort
}
arch=$(dpkg --print-architecture)
deb=$scratch/out/pdrelay_${version}_${arch}.deb
if ! cpack -G DEB --config "$build/CPackConfig.cmake" -B "$scratch/out" >"$scratch/cpack.log" 2>&1 || [ ! -f "$deb" ]; then
    cat "$scratch/cpack.log"
    echo "FAIL: cpack -G DEB made no $deb"
    exit 1
fi

# The daemon the init script starts (from the postinst on) uses a config of
# the test: the packaged one with ingest on a unix socket in the run
# directory the init script makes, and PagerDuty on a closed port.
sock=/var/run/pdrelay/ingest.sock
sed -e 's|^port = 8787$|port = 0|' -e "s|^unix_socket =\$|unix_socket = $sock|" \
    -e 's|^url = https://events.pagerduty.com$|url = http://127.0.0.1:9|' \
    "$build/package/pdrelay.ini" >"$scratch/pdrelay.ini"
grep -q "^unix_socket = $sock\$" "$scratch/pdrelay.ini" && grep -q '^url = http://127.0.0.1:9$' "$scratch/pdrelay.ini" ||
    { echo "FAIL: cannot make the test config from $build/package/pdrelay.ini"; exit 1; }
chmod 0644 "$scratch/pdrelay.ini"
mkdir -m 0777 "$scratch/log"
printf 'CONFIG=%s\nLOG=%s\nSTOP_TIMEOUT=10\n' "$scratch/pdrelay.ini" "$scratch/log/pdrelay.log" >/etc/default/pdrelay
# (the test's own file, removed by the trap: part of the baseline)
pdrelay_paths >"$scratch/before"

install_ok() {
    if dpkg -i "$deb" >"$scratch/dpkg.log" 2>&1; then ok "dpkg -i ($1)"; else cat "$scratch/dpkg.log"; fail "dpkg -i ($1)"; fi
}

# Left after a purge: nothing new with "pdrelay" in its name; the user stays.
check_purged() {
    if dpkg-query -W -f='${Status}' pdrelay 2>/dev/null | grep -qv "not-installed"; then
        fail "$1: dpkg still knows pdrelay: $(dpkg-query -W -f='${Status}' pdrelay)"
    fi
    pdrelay_paths >"$scratch/after"
    left=$(LC_ALL=C comm -13 "$scratch/before" "$scratch/after")
    if [ -n "$left" ]; then printf '%s\n' "$left"; fail "$1: files left after purge (above)"; else ok "$1: no files left"; fi
    getent passwd pdrelay >/dev/null || fail "$1: the system user pdrelay is gone (Debian keeps system users)"
}

# ---- 1. install, check, start, stop, purge: an empty outbox goes ----------
install_ok "first install"
if out=$(pdrelay config check 2>&1); then ok "pdrelay config check (/etc/pdrelay/pdrelay.ini)"; else echo "$out"; fail "pdrelay config check"; fi
/etc/init.d/pdrelay status >/dev/null || fail "the postinst did not start pdrelay through the init script"
/etc/init.d/pdrelay stop || fail "init stop"
/etc/init.d/pdrelay start || { cat "$scratch/log/pdrelay.log"; fail "init start"; }
pid=$(cat /var/run/pdrelay/pdrelay.pid 2>/dev/null)
[ "$(ps -o user= -p "${pid:-0}" 2>/dev/null)" = pdrelay ] || fail "the daemon (pid ${pid:-none}) does not run as user pdrelay"
/etc/init.d/pdrelay stop || fail "init stop"
/etc/init.d/pdrelay status >/dev/null; [ $? -eq 3 ] || fail "init status after stop is not 3 (not running)"
dpkg --purge pdrelay >"$scratch/purge1.log" 2>&1 || { cat "$scratch/purge1.log"; fail "dpkg --purge"; }
grep -q "kept the outbox" "$scratch/purge1.log" && { cat "$scratch/purge1.log"; fail "purge kept an empty outbox"; }
[ -e /var/lib/pdrelay ] && fail "purge of an empty outbox left /var/lib/pdrelay"
check_purged "empty outbox"

# ---- 2. an event queued: purge keeps the outbox and says so ---------------
install_ok "second install"
/etc/init.d/pdrelay status >/dev/null || fail "pdrelay is not running after the second install"
ev='{"routing_key":"R0aaaaaaaaaaaaaaaaaaaaaaaaaaab12","event_action":"trigger","dedup_key":"install-1","payload":{"summary":"installed for real","source":"test","severity":"error"}}'
code=$(curl -s -o "$scratch/reply" -w '%{http_code}' --max-time 10 --unix-socket "$sock" \
    -H 'Content-Type: application/json' --data "$ev" http://localhost/v2/enqueue)
[ "$code" = 202 ] && ok "event posted (202)" || { cat "$scratch/reply" 2>/dev/null; fail "POST /v2/enqueue answered $code"; }
/etc/init.d/pdrelay stop || fail "init stop"
if pdrelay queue status >"$scratch/status" 2>&1 && grep -q 'R0…ab12' "$scratch/status"; then
    ok "queue status shows the event's key"
else
    cat "$scratch/status"; fail "queue status"
fi
pdrelay queue status --json | tr -d ' \t\n' | grep -q '"database":"/var/lib/pdrelay/pdrelay.db","pending":1' ||
    fail "queue status --json: not 1 pending in /var/lib/pdrelay/pdrelay.db"
dpkg --purge pdrelay >"$scratch/purge2.log" 2>&1 || { cat "$scratch/purge2.log"; fail "dpkg --purge"; }
msg="pdrelay: purge kept the outbox /var/lib/pdrelay/pdrelay.db: it holds 1 pending event(s) not yet delivered to PagerDuty."
if grep -qxF "$msg" "$scratch/purge2.log"; then ok "purge kept the outbox and said so"; else cat "$scratch/purge2.log"; fail "purge did not say: $msg"; fi
[ -f /var/lib/pdrelay/pdrelay.db ] || fail "purge deleted an outbox with a pending event"

# ---- 3. installed again, purged with PDRELAY_PURGE_PENDING=yes ------------
install_ok "third install, on the kept outbox"
[ -e /var/lib/pdrelay/.pending-at-remove ] && fail "postinst left prerm's count"
PDRELAY_PURGE_PENDING=yes dpkg --purge pdrelay >"$scratch/purge3.log" 2>&1 || { cat "$scratch/purge3.log"; fail "dpkg --purge"; }
grep -q "kept the outbox" "$scratch/purge3.log" && fail "PDRELAY_PURGE_PENDING=yes still kept the outbox"
[ -e /var/lib/pdrelay ] && fail "PDRELAY_PURGE_PENDING=yes left /var/lib/pdrelay"
check_purged "PDRELAY_PURGE_PENDING=yes"

if [ "$failures" -ne 0 ]; then
    echo "$failures check(s) failed"
    exit 1
fi
echo "all install checks passed"
