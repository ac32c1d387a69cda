#!/bin/sh
# tests/lint/check-includes.sh — the layers run one way: db/ and config/
# include nothing from agent/ except its base headers, pdr.h and clock.h
# (agent/pdr.h: result codes and shared types; agent/clock.h: the clocks).
# Every #include of a .c or .h file in db/ and config/ is resolved the way
# the compiler finds it (the including file's directory first, then the
# include directories of pdrelay_core: agent/, db/, config/; see
# CMakeLists.txt); one that lands in agent/ on any other header is printed
# as FILE:LINE and fails the check.
#
#   sh tests/lint/check-includes.sh [SOURCE_ROOT]     (default: this checkout)
#
# Run by ctest as test_lint_includes (tests/CMakeLists.txt).
set -eu

root=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$root"
allowed="pdr.h clock.h"
bad=0
checked=0

for f in db/*.c db/*.h config/*.c config/*.h; do
    [ -f "$f" ] || continue
    dir=$(dirname "$f")
    # "LINE NAME" for every #include "NAME" or #include <NAME>
    grep -n -E '^[[:space:]]*#[[:space:]]*include[[:space:]]*["<][^">]+[">]' "$f" |
        sed -E 's/^([0-9]+):[[:space:]]*#[[:space:]]*include[[:space:]]*["<]([^">]+)[">].*/\1 \2/' >"${TMPDIR:-/tmp}/pdr-inc.$$"
    while read -r line name; do
        checked=$((checked + 1))
        found=""
        for d in "$dir" agent db config; do
            if [ -f "$d/$name" ]; then found="$d/$name"; break; fi
        done
        [ -n "$found" ] || continue          # a system header
        # the directory it lands in, after any ../
        real=$(cd "$(dirname "$found")" && pwd -P)
        case "$real" in
        "$(cd agent && pwd -P)")
            base=$(basename "$name")
            case " $allowed " in
            *" $base "*) ;;
            *)
                echo "$f:$line: includes agent/$base (db/ and config/ may include only agent/pdr.h and agent/clock.h)"
                bad=$((bad + 1))
                ;;
            esac
            ;;
        esac
    done <"${TMPDIR:-/tmp}/pdr-inc.$$"
    rm -f "${TMPDIR:-/tmp}/pdr-inc.$$"
done

[ -d db ] && [ -d config ] && [ -d agent ] || { echo "check-includes: $root has no agent/, db/ and config/"; exit 1; }
[ "$checked" -gt 0 ] || { echo "check-includes: found no #include in db/ and config/"; exit 1; }
if [ "$bad" -ne 0 ]; then
    echo "check-includes: $bad include(s) from agent/ in db/ or config/"
    exit 1
fi
echo "check-includes: $checked includes checked: db/ and config/ include only agent/pdr.h and agent/clock.h from agent/"
