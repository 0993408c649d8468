#!/usr/bin/env bash
# Runs every fuzz target in a build directory for N seconds on its seed
# corpus (fuzz/corpus/<target>/, copied to a scratch dir so the committed
# corpus stays as it is), JOBS targets at a time (default: the cores, as
# each libFuzzer run is one process). Fails if any target finds a crash.
# Usage: scripts/run-fuzzers.sh BUILD [SECONDS] [JOBS]
set -euo pipefail
build=${1:?build dir}
seconds=${2:-30}
jobs=${3:-$(nproc 2>/dev/null || echo 1)}
root=$(cd "$(dirname "$0")/.." && pwd)

# one target: its result line on stdout, its log kept in the build dir
run_one() {
    local bin=$1 name work
    name=$(basename "$bin")
    work=$(mktemp -d)
    cp -r "$root/fuzz/corpus/$name/." "$work/" 2>/dev/null || true
    local seeds
    seeds=$(ls "$work" | wc -l)
    if ! "$bin" -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 \
            -artifact_prefix="$build/$name-" "$work" > "$build/$name.log" 2>&1; then
        echo "fuzz: $name (${seconds}s, $seeds seeds) FAILED; log tail:"; tail -40 "$build/$name.log"
        rm -rf "$work"
        return 1
    fi
    echo "fuzz: $name (${seconds}s, $seeds seeds): $(tail -1 "$build/$name.log")"
    rm -rf "$work"
}

targets=()
for bin in "$build"/fuzz_*; do
    [ -x "$bin" ] && [ -f "$bin" ] && targets+=("$bin")
done
[ ${#targets[@]} -gt 0 ] || { echo "fuzz: no fuzz_* targets in $build" >&2; exit 1; }
echo "fuzz: ${#targets[@]} targets, ${seconds}s each, $jobs at a time"
status=0
pids=()
for bin in "${targets[@]}"; do
    # keep at most $jobs running: wait for the oldest before starting another
    if [ ${#pids[@]} -ge "$jobs" ]; then
        wait "${pids[0]}" || status=1
        pids=("${pids[@]:1}")
    fi
    run_one "$bin" &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || status=1; done
exit $status
