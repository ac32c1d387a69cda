#!/bin/sh
# tests/fuzz/run-fuzz.sh [SECONDS] — builds the libFuzzer targets in
# build-fuzz/ (clang, -DPDR_FUZZ=ON, no tests) and runs each for SECONDS
# (default 20) on a scratch copy of its seed corpus (the seeds in the tree
# stay as they are). Exits non-zero if a build fails or any fuzzer finds a
# crash, a leak or undefined behaviour; the reproducer is left in
# build-fuzz/artifacts/.
set -eu

secs=${1:-20}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build="$root/build-fuzz"
jobs=$(nproc 2>/dev/null || echo 2)

CC=clang cmake -S "$root" -B "$build" -DPDR_FUZZ=ON -DPDR_TESTS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$jobs" --target fuzz_pagerduty fuzz_alertmanager fuzz_alerts fuzz_config fuzz_ingest_diff

mkdir -p "$build/artifacts"
status=0
for t in pagerduty alertmanager alerts config ingest_diff; do
    work="$build/corpus-run/$t"
    rm -rf "$work"
    mkdir -p "$work"
    cp "$here/corpus/$t/"* "$work/"
    echo "run-fuzz: fuzz_$t for ${secs}s"
    # -rss_limit_mb: a 512 KB body must never need more than this.
    if ! ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
        "$build/tests/fuzz/fuzz_$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
            -print_final_stats=1 -artifact_prefix="$build/artifacts/$t-" "$work" \
            >"$build/fuzz_$t.log" 2>&1; then
        echo "run-fuzz: fuzz_$t FAILED (see $build/fuzz_$t.log)" >&2
        tail -n 40 "$build/fuzz_$t.log" >&2
        status=1
    else
        grep -E '^stat::number_of_executed_units' "$build/fuzz_$t.log" | sed "s/^/run-fuzz: fuzz_$t /"
    fi
done
exit $status
