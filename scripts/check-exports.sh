#!/usr/bin/env bash
# The shared library exports exactly the public API: every symbol `nm -D`
# lists as defined must be a function declared LB_API in include/lowbit/*.h,
# and every such function must be exported. Usage: check-exports.sh LIB.so
set -euo pipefail
lib=${1:?usage: check-exports.sh path/to/liblowbit.so}
top=$(cd "$(dirname "$0")/.." && pwd)
declared=$(mktemp) exported=$(mktemp)
trap 'rm -f "$declared" "$exported"' EXIT
# LB_API <return type> lb_name(  -- possibly with the name on the same line only
grep -hoE '^LB_API [^(]*\blb_[a-z0-9_]+\(' "$top"/include/lowbit/*.h | grep -oE 'lb_[a-z0-9_]+\($' | tr -d '(' | sort -u >"$declared"
nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVWiu]$/ {print $3}' | grep -vE '^(_init|_fini|_edata|_end|__bss_start)$' | sort -u >"$exported"
extra=$(comm -13 "$declared" "$exported")
missing=$(comm -23 "$declared" "$exported")
status=0
if [ -n "$extra" ]; then
    echo "check-exports: $lib exports symbols that no public header declares LB_API:" >&2
    echo "$extra" | sed 's/^/  /' >&2
    status=1
fi
if [ -n "$missing" ]; then
    echo "check-exports: declared LB_API but not exported by $lib:" >&2
    echo "$missing" | sed 's/^/  /' >&2
    status=1
fi
[ $status -eq 0 ] && echo "check-exports: $(wc -l <"$exported") exported symbols, all declared LB_API in include/lowbit"
exit $status
