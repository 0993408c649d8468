#!/usr/bin/env bash
# Runs every fuzz target in a build directory for N seconds on its seed
# corpus (fuzz/corpus/<target>/, copied to a scratch dir so the committed
# corpus stays as it is). Fails if any target finds a crash.
set -euo pipefail
build=${1:?build dir}
seconds=${2:-30}
root=$(cd "$(dirname "$0")/.." && pwd)
status=0
for bin in "$build"/fuzz_*; do
    [ -x "$bin" ] || continue
    name=$(basename "$bin")
    work=$(mktemp -d)
    cp -r "$root/fuzz/corpus/$name/." "$work/" 2>/dev/null || true
    echo "fuzz: $name for ${seconds}s ($(ls "$work" | wc -l) seeds)"
    if ! "$bin" -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 \
            -artifact_prefix="$build/$name-" "$work" > "$build/$name.log" 2>&1; then
        echo "fuzz: $name FAILED; log tail:"; tail -40 "$build/$name.log"; status=1
    else
        tail -1 "$build/$name.log"
    fi
    rm -rf "$work"
done
exit $status
