#!/bin/sh
# test_init_busybox.sh — config/pdrelay.init on a BusyBox system: run by
# BusyBox's sh, with BusyBox's applets (start-stop-daemon, kill, sleep, ...)
# first in PATH and BusyBox's sh as /bin/sh of the daemon's wrapper. The
# script's paths are pointed at a scratch directory (pid, log, config) and
# at the pdrelay under test; it runs as the current user. Checks start
# (the pid is pdrelay's and it logs "pdrelay started"), a second start,
# status, reload (SIGHUP: "configuration reloaded"), stop and status after it.
#
#   sh tests/package/test_init_busybox.sh PDRELAY_BINARY
#
# Exits 77 (ctest: skipped) when busybox is not installed
# (sh cross/setup-host.sh installs it).
set -u

daemon=${1:?usage: test_init_busybox.sh PDRELAY_BINARY}
here=$(cd "$(dirname "$0")" && pwd)
bb=$(command -v busybox) || { echo "SKIP: busybox is not installed (sh cross/setup-host.sh)"; exit 77; }
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { echo "ok: $*"; }

scratch=$(mktemp -d "${TMPDIR:-/tmp}/pdrelay-bb.XXXXXX") || exit 1
bin=$scratch/bin
cleanup() {
    # Every process started with this test's config (unique: the scratch
    # path), also one that never wrote its pid file.
    for p in /proc/[0-9]*; do
        tr '\000' ' ' <"$p/cmdline" 2>/dev/null | grep -qF "run -c $scratch/pdrelay.ini" && kill -KILL "${p#/proc/}" 2>/dev/null
    done
    rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# Every applet of this busybox as a command, and nothing else but pdrelay.
mkdir -p "$bin"
for a in $("$bb" --list); do ln -s "$bb" "$bin/$a"; done
[ -x "$bin/start-stop-daemon" ] || { echo "FAIL: this busybox has no start-stop-daemon applet"; exit 1; }
PATH=$bin
export PATH

cfg=$scratch/pdrelay.ini
printf '[agent]\ndata_dir = %s/var\n[listen]\nport = 0\n[pagerduty]\nurl = http://127.0.0.1:9\n' "$scratch" >"$cfg"
# The script as installed, its settings pointed at the scratch directory
# and its /bin/sh at BusyBox's.
sed -e "s|^DAEMON=.*|DAEMON=$daemon|" -e "s|^CONFIG=.*|CONFIG=$cfg|" \
    -e "s|^PDRELAY_USER=.*|PDRELAY_USER=$(id -un)|" -e "s|^RUNDIR=.*|RUNDIR=$scratch/run|" \
    -e "s|^LOG=.*|LOG=$scratch/pdrelay.log|" -e "s|^STOP_TIMEOUT=.*|STOP_TIMEOUT=10|" \
    -e "s|/bin/sh|$bin/sh|g" -e "s|/etc/default/pdrelay|$scratch/default|" \
    "$here/../../config/pdrelay.init" >"$scratch/pdrelay.init"
grep -q "^RUNDIR=$scratch/run\$" "$scratch/pdrelay.init" || { echo "FAIL: cannot point the init script at $scratch"; exit 1; }
init() { "$bin/sh" "$scratch/pdrelay.init" "$@"; }

init start >"$scratch/out" 2>&1 || { cat "$scratch/out" "$scratch/pdrelay.log" 2>/dev/null; fail "start"; }
pid=$(cat "$scratch/run/pdrelay.pid" 2>/dev/null)
case "$pid" in ''|*[!0-9]*) fail "no pid file after start" ; pid=0 ;; esac
if tr '\000' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$daemon run -c $cfg"; then
    ok "started under busybox sh and start-stop-daemon (pid $pid)"
else
    fail "pid $pid is not '$daemon run -c $cfg'"
fi
grep -q 'msg="pdrelay started"' "$scratch/pdrelay.log" || { cat "$scratch/pdrelay.log"; fail "no 'pdrelay started' in the log"; }
init start >"$scratch/out" 2>&1 && grep -q "already running (pid $pid)" "$scratch/out" || { cat "$scratch/out"; fail "a second start"; }
init status | grep -qx "pdrelay is running (pid $pid)" || fail "status while running"
init reload >"$scratch/out" 2>&1 || { cat "$scratch/out"; fail "reload"; }
# The daemon logs the reload: polled for up to 10 s, as the integration
# tests await log lines (tests/integration/itutil.c, it_wait_log).
i=0
until grep -q 'msg="configuration reloaded"' "$scratch/pdrelay.log"; do
    i=$((i + 1)); [ $i -gt 200 ] && break
    "$bin/sleep" 0.05
done
if grep -q 'msg="configuration reloaded"' "$scratch/pdrelay.log"; then ok "reload reached the daemon"; else cat "$scratch/pdrelay.log"; fail "no 'configuration reloaded' in the log"; fi
init stop >"$scratch/out" 2>&1 || { cat "$scratch/out"; fail "stop"; }
[ "$pid" -ne 0 ] && kill -0 "$pid" 2>/dev/null && fail "pid $pid still runs after stop"
grep -q 'msg="pdrelay stopped"' "$scratch/pdrelay.log" || fail "no 'pdrelay stopped' in the log"
init status >/dev/null; st=$?
[ "$st" -eq 3 ] && ok "status after stop: 3" || fail "status after stop: $st, not 3"

if [ "$failures" -ne 0 ]; then
    echo "$failures check(s) failed"
    exit 1
fi
echo "all busybox init checks passed"
