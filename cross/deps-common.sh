# shellcheck shell=sh disable=SC2154
# cross/deps-common.sh — sourced by cross/build-deps.sh (the firmware sysroot)
# and cross/build-mhd-host.sh (the host's patched libmicrohttpd), POSIX sh:
# fetching the Debian source packages pinned in cross/deps.lock, unpacking
# them with pdrelay's patches (cross/patches/PACKAGE/*.patch) and running the
# build steps with their output in a log.
#
# The sourcing script sets, before calling any of these:
#   me      the prefix of messages, e.g. "build-deps: aarch64-linux-gnu"
#   top     the checkout; lock: cross/deps.lock; srcdir: where sources are fetched
#   work    where sources are unpacked (for unpack)
#
#   die MESSAGE...          print "$me: MESSAGE" on stderr and exit 1
#   ver PACKAGE             its version in the lock file
#   dsc PACKAGE             the path of its .dsc in $srcdir
#   fetch_source PACKAGE    apt-get source --download-only into $srcdir
#                           (log: $srcdir/PACKAGE.fetch.log); fails if apt does
#   patches_hash            one hash of every file under cross/patches
#   begin PACKAGE / end     a build step with its log ($work/PACKAGE.log) and time
#   run COMMAND...          COMMAND with its output in the log; on failure shows
#                           the log's end and dies
#   unpack PACKAGE          dpkg-source -x (Debian's patches), then pdrelay's
#                           patches in name order (patch -p1); cd into it

die() { echo "$me: $*" >&2; exit 1; }

ver() {
    v=$(awk -v p="$1" '$1 == p { print $2 }' "$lock")
    [ -n "$v" ] || die "$1 has no version in $lock"
    echo "$v"
}
# The .dsc name: PKG_VERSION without an epoch.
dsc() { echo "$srcdir/${1}_$(ver "$1" | sed 's/^[0-9]*://').dsc"; }

# apt-get checks files already in the cache against the index and fetches
# only what is missing.
fetch_source() {
    mkdir -p "$srcdir"
    (cd "$srcdir" && apt-get source -q --download-only "$1=$(ver "$1")") >"$srcdir/$1.fetch.log" 2>&1
}

# Names and contents, so that a renamed, added or removed patch counts too.
patches_hash() {
    (cd "$top/cross" && find patches -type f | LC_ALL=C sort | while read -r f; do
        echo "$f"; cat "$f"
    done) | sha256sum | cut -d' ' -f1
}

t0=0
begin() { t0=$(date +%s); cur=$1; log=$work/$1.log; : >"$log"; }
end() { echo "$me: $cur $(ver "$cur") took $(( $(date +%s) - t0 )) s"; }
run() {
    if ! "$@" >>"$log" 2>&1; then
        tail -n 25 "$log" | cut -c1-300 >&2
        die "$cur: '$*' failed (whole log: $log)"
    fi
}
unpack() {
    run dpkg-source -x "$(dsc "$1")" "$work/$1"
    cd "$work/$1" || die "$1: cannot enter $work/$1"
    for p in "$top/cross/patches/$1"/*.patch; do
        [ -f "$p" ] || continue
        echo "$me: $1: applying $(basename "$p")"
        run patch -p1 --batch --forward -i "$p"
    done
}
