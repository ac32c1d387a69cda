#!/bin/sh
# tests/lint/checksrc.sh — banned functions, in the style of curl's checksrc:
# strcpy, sprintf, strcat, gets, atoi and strtok must not be called in
# agent/, db/ or config/ (use snprintf, a length-checked memcpy, strtol or
# strtoll with an end pointer, strtok_r or a hand-written scanner instead).
#
# A call is the name as a whole word followed by "(" (so snprintf, vsnprintf,
# fgets, strtok_r and my_atoi( are not calls of it), outside comments and
# string or character literals. Each one is printed as FILE:LINE: the
# function, and fails the check.
#
#   sh tests/lint/checksrc.sh [SOURCE_ROOT]     (default: this checkout)
#
# Run by ctest as test_lint_banned (tests/CMakeLists.txt).
set -eu

root=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$root"
[ -d agent ] && [ -d db ] && [ -d config ] || { echo "checksrc: $root has no agent/, db/ and config/"; exit 1; }

files=$(find agent db config -type f \( -name '*.c' -o -name '*.h' \) | LC_ALL=C sort)
[ -n "$files" ] || { echo "checksrc: no C sources under agent/, db/, config/"; exit 1; }

# shellcheck disable=SC2086
awk '
    FNR == 1 { incomment = 0 }
    {
        # Blank out comments and literals, keeping the columns of the rest.
        line = $0; out = ""; i = 1; n = length(line)
        while (i <= n) {
            c = substr(line, i, 1); c2 = substr(line, i, 2)
            if (incomment) {
                if (c2 == "*/") { incomment = 0; out = out "  "; i += 2 } else { out = out " "; i++ }
            } else if (c2 == "/*") { incomment = 1; out = out "  "; i += 2 }
            else if (c2 == "//") { break }
            else if (c == "\"" || c == "\047") {
                q = c; out = out " "; i++
                while (i <= n) {
                    c = substr(line, i, 1)
                    if (c == "\\") { out = out "  "; i += 2; continue }
                    out = out " "; i++
                    if (c == q) break
                }
            } else { out = out c; i++ }
        }
        rest = out
        while (match(rest, /(^|[^A-Za-z0-9_])(strcpy|sprintf|strcat|gets|atoi|strtok)[ \t]*\(/)) {
            m = substr(rest, RSTART, RLENGTH)
            sub(/^[^A-Za-z_]/, "", m); sub(/[ \t]*\($/, "", m)
            printf "%s:%d: %s() is banned in agent/, db/ and config/\n", FILENAME, FNR, m
            bad++
            rest = substr(rest, RSTART + RLENGTH)
        }
    }
    END {
        if (bad) { printf "checksrc: %d call(s) of banned functions\n", bad; exit 1 }
    }
' $files
echo "checksrc: no strcpy, sprintf, strcat, gets, atoi or strtok in agent/, db/, config/ ($(echo "$files" | wc -l) files)"
