#!/usr/bin/env bash
# lowbit bench as a user meets it: --help, a tiny run whose JSON lines carry
# every promised key with sane values (timings are NOT asserted: the machine
# is shared), the table form, and bad arguments refused with exit 2 before
# any work. Needs no data files.
set -u
NEEDS=" " # nothing from ../shared/data (an empty NEEDS would mean MODEL)
. "$(dirname "$0")/common_cli.sh"

expect 0 "--min-mib N" -- "$LOWBIT" bench --help
expect 0 "roofline" -- "$LOWBIT" bench --help
expect 0 "bench" -- "$LOWBIT" --help

# tiny run: every default format, two shapes (one with columns that are not a
# multiple of the groups), two batch sizes, two thread counts
"$LOWBIT" bench --shapes 64x64,8x100 --batch 1,2 --threads 1,2 --reps 2 --min-mib 1 --json \
    > "$TMP/b.jsonl" 2> "$TMP/b.err" && ok || fail "tiny bench run: $(cat "$TMP/b.err")"
python3 - "$TMP/b.jsonl" <<'PY' && ok || fail "bench --json: $(head -c 1500 "$TMP/b.jsonl")"
import json, math, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
bw = [l for l in lines if l.get("measure") == "read_bandwidth"]
rows = [l for l in lines if "format" in l]
assert len(bw) + len(rows) == len(lines), lines
assert [b["threads"] for b in bw] == [1, 2], bw
assert all(isinstance(b["bandwidth_gbps"], (int, float)) and math.isfinite(b["bandwidth_gbps"]) and b["bandwidth_gbps"] > 0 for b in bw), bw
assert lines[:2] == bw, "the bandwidth lines come first"
want = ["q8_0", "q4_0", "int4:g64:asym", "int3:g64:asym", "int2:g64:asym", "nf4:g64", "ternary:g64:2bit",
        "ternary:g64:1.6bit", "binary:row", "pow2:4:g64", "int3:g16:sym:s4:r16"]
# formats x shapes x batch x threads, in that nesting order
assert len(rows) == len(want) * 2 * 2 * 2, len(rows)
assert [r["format"] for r in rows[::8]] == want, [r["format"] for r in rows]
assert [(r["rows"], r["batch"], r["threads"]) for r in rows[:8]] == [
    (64, 1, 1), (64, 1, 2), (64, 2, 1), (64, 2, 2), (8, 1, 1), (8, 1, 2), (8, 2, 1), (8, 2, 2)], rows[:8]
keys = ["format", "bpw", "rows", "cols", "batch", "threads", "us", "gbps", "roofline", "kernel", "bandwidth_gbps",
        "bytes", "copies"]
bw_of = {b["threads"]: b["bandwidth_gbps"] for b in bw}
for r in rows:
    for k in keys:
        assert k in r, (k, r)
    for k in ["bpw", "us", "gbps", "roofline"]:
        assert isinstance(r[k], (int, float)) and math.isfinite(r[k]) and r[k] > 0, (k, r)
    assert (r["rows"], r["cols"]) in [(64, 64), (8, 100)], r
    assert r["batch"] in (1, 2) and r["threads"] in (1, 2), r
    assert isinstance(r["kernel"], str) and r["kernel"], r
    assert r["bandwidth_gbps"] == bw_of[r["threads"]], r
    # the definitions: bpw counts every stored byte, GB/s is those bytes per
    # second, roofline is GB/s over the bandwidth of the same thread count
    assert abs(r["bpw"] - 8 * r["bytes"] / (r["rows"] * r["cols"])) < 1e-9, r
    assert abs(r["gbps"] - r["bytes"] / (r["us"] * 1e-6) / 1e9) <= 1e-6 * r["gbps"], r
    assert abs(r["roofline"] - r["gbps"] / r["bandwidth_gbps"]) <= 1e-6 * r["roofline"], r
    # the copies total at least --min-mib (1 MiB)
    assert r["copies"] * r["bytes"] >= 1 << 20, r
# known sizes: q8_0 is 34 bytes per 32 weights, q4_0 18 per 32
q8 = [r for r in rows if r["format"] == "q8_0" and r["cols"] == 64]
q4 = [r for r in rows if r["format"] == "q4_0" and r["cols"] == 64]
assert q8 and all(r["bytes"] == 64 * 64 // 32 * 34 and r["bpw"] == 8.5 for r in q8), q8
assert q4 and all(r["bytes"] == 64 * 64 // 32 * 18 and r["bpw"] == 4.5 for r in q4), q4
PY
grep -q "bench: q4_0 64x64" "$TMP/b.err" && ok || fail "no progress on stderr: $(cat "$TMP/b.err")"

# the table: a bandwidth line and one row per configuration
"$LOWBIT" bench --formats q4_0,binary:row --shapes 32x64 --batch 1 --threads 1 --reps 1 --min-mib 1 \
    > "$TMP/t.txt" 2> /dev/null && ok || fail "table run"
grep -q "^read bandwidth, 1 MiB buffer, 1 thread: " "$TMP/t.txt" && ok || fail "table lacks the bandwidth: $(cat "$TMP/t.txt")"
grep -q "roofline" "$TMP/t.txt" && ok || fail "table lacks its header: $(cat "$TMP/t.txt")"
[ "$(grep -cE '^(q4_0|binary:row) ' "$TMP/t.txt")" = 2 ] && ok || fail "table rows: $(cat "$TMP/t.txt")"

# bad arguments: exit 2 with a message naming the problem, before any work
T="--shapes 16x32 --batch 1 --threads 1 --reps 1 --min-mib 1"
expect 2 "--formats: 'int9:g64'" -- "$LOWBIT" bench $T --formats q4_0,int9:g64
expect 2 "--formats: empty item" -- "$LOWBIT" bench $T --formats q4_0,,q8_0
expect 2 "--shapes expects ROWSxCOLS" -- "$LOWBIT" bench $T --shapes 64
expect 2 "--shapes (rows)" -- "$LOWBIT" bench $T --shapes 0x64
expect 2 "--shapes (cols)" -- "$LOWBIT" bench $T --shapes 64x-3
expect 2 "--shapes (rows)" -- "$LOWBIT" bench $T --shapes 2000000x1
expect 2 "more than 2^30 weights" -- "$LOWBIT" bench $T --shapes 1048576x4096
expect 2 "--batch expects an integer in 1..512" -- "$LOWBIT" bench $T --batch 0
expect 2 "--batch expects an integer in 1..512" -- "$LOWBIT" bench $T --batch 1,100000
expect 2 "--threads expects an integer in 1..1024" -- "$LOWBIT" bench $T --threads 1,0
expect 2 "--reps expects an integer" -- "$LOWBIT" bench $T --reps 0
expect 2 "--reps expects an integer" -- "$LOWBIT" bench $T --reps nan
expect 2 "--min-mib expects an integer" -- "$LOWBIT" bench $T --min-mib 0
expect 2 "--min-mib expects an integer" -- "$LOWBIT" bench $T --min-mib 99999999999
# larger than the machine can hold: refused up front, not an OOM kill half-way
expect 2 "half of this machine's memory" -- "$LOWBIT" bench $T --min-mib 1048576
expect 2 "unknown option '--bogus'" -- "$LOWBIT" bench $T --bogus
expect 2 "unexpected argument 'extra'" -- "$LOWBIT" bench $T extra
expect 2 "needs a value" -- "$LOWBIT" bench --reps

finish cli_bench
