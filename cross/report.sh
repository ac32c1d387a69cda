#!/bin/sh
# cross/report.sh — print the size table of the firmware builds made by
# cross/build-pdrelay.sh: per target, the stripped binary's size and its
# NEEDED libraries (from build-cross/TARGET/size.tsv).
#
# Usage: sh cross/report.sh [TARGET...]     (no TARGET: every built target)
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -eq 0 ]; then
    set -- $(cd "$top/build-cross" 2>/dev/null && ls -d */size.tsv 2>/dev/null | sed 's,/size.tsv$,,')
fi
if [ $# -eq 0 ]; then
    echo "report: no firmware build yet (sh cross/build-pdrelay.sh TARGET)" >&2
    exit 1
fi

printf '| %-21s | %-22s | %s |\n' "target" "stripped size" "NEEDED"
printf '|%s|%s|%s|\n' "-----------------------" "------------------------" "--------"
for t in "$@"; do
    f=$top/build-cross/$t/size.tsv
    [ -f "$f" ] || { echo "report: $t is not built (sh cross/build-pdrelay.sh $t)" >&2; exit 1; }
    IFS="$(printf '\t')" read -r target size needed <"$f"
    human=$(awk -v b="$size" 'BEGIN { printf "%.2f MB", b / 1048576 }')
    printf '| %-21s | %-22s | %s |\n' "$target" "$size B ($human)" "$needed"
done
