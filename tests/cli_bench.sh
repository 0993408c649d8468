#!/usr/bin/env bash
# lowbit bench as a user meets it: --help, a tiny run whose JSON lines carry
# every promised key with sane values (timings are NOT asserted: the machine
# is shared), the table form, --kernels (every registry entry, the choice
# marked), `bench block` (a tiny synthetic transformer block, decode and
# prefill), and bad arguments refused with exit 2 before any work. Needs no
# data files.
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
keys = ["format", "bpw", "rows", "cols", "batch", "threads", "us", "gbps", "roofline", "kernel", "chosen",
        "bandwidth_gbps", "bytes", "copies", "repack_ms", "packed_bytes", "streamed_bytes", "streamed_roofline"]
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
    # the registry's own choice (no --kernels): always the chosen one
    assert r["chosen"] is True, r
    # repacking: its cost per tensor, and the bytes a call streams are the
    # packed layout's when there is one, else the stored bytes
    assert math.isfinite(r["repack_ms"]) and r["repack_ms"] >= 0, r
    assert isinstance(r["packed_bytes"], int) and r["packed_bytes"] >= 0, r
    assert r["streamed_bytes"] == (r["packed_bytes"] or r["bytes"]), r
    assert abs(r["streamed_roofline"] - r["roofline"] * r["streamed_bytes"] / r["bytes"]) <= 1e-6 * r["streamed_roofline"], r
repacked = sorted({r["kernel"] for r in rows if r["packed_bytes"]})
print("repacking kernels exercised:", repacked or "NONE (no registry entry repacks these formats yet)")
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

# --kernels all: every registry entry that takes the format on this CPU, the
# registry's choice marked; the same under LB_CPU=generic gives references only
T="--shapes 32x64 --batch 1,3 --threads 1 --reps 1 --min-mib 1 --json"
"$LOWBIT" bench --formats q4_0,int4:g64:asym --kernels all $T > "$TMP/all.jsonl" 2> "$TMP/all.err" &&
    ok || fail "--kernels all: $(cat "$TMP/all.err")"
"$LOWBIT" bench --formats q4_0,int4:g64:asym $T > "$TMP/one.jsonl" 2> /dev/null && ok || fail "registry-choice run"
LB_CPU=generic "$LOWBIT" bench --formats q4_0 --kernels all $T > "$TMP/gen.jsonl" 2> /dev/null && ok || fail "generic run"
"$LOWBIT" bench --formats q4_0,int4:g64:asym --kernels q4_0_ref,fallback $T > "$TMP/list.jsonl" 2> "$TMP/list.err" &&
    ok || fail "--kernels list: $(cat "$TMP/list.err")"
python3 - "$TMP" <<'PY' && ok || fail "--kernels: $(head -c 1500 "$TMP/all.jsonl")"
import json, sys
def rows(name):
    return [l for l in map(json.loads, open(sys.argv[1] + "/" + name)) if "format" in l]
every, one, gen, lst = rows("all.jsonl"), rows("one.jsonl"), rows("gen.jsonl"), rows("list.jsonl")
for r in every + gen + lst:
    assert isinstance(r["chosen"], bool), r
for f in ["q4_0", "int4:g64:asym"]:
    mine = [r for r in every if r["format"] == f]
    kernels = list(dict.fromkeys(r["kernel"] for r in mine))
    # one row per kernel x batch x threads, the kernels in registry order
    assert len(mine) == 2 * len(kernels), (f, kernels)
    assert "dequant_ref" in kernels and kernels[-1] == "dequant_ref", kernels  # takes everything, needs nothing
    for b in (1, 3):
        chosen = [r["kernel"] for r in mine if r["batch"] == b and r["chosen"]]
        # exactly one choice, the one the registry-choice run used
        assert chosen == [r["kernel"] for r in one if r["format"] == f and r["batch"] == b], (f, chosen)
    if f == "q4_0":
        assert "q4_0_ref" in kernels, kernels
    else:
        assert not [k for k in kernels if k.startswith("q4_0")], kernels
# references only when the CPU features are masked; the registry still chooses one
assert gen and all(r["kernel"].endswith("_ref") for r in gen), gen
assert [r["kernel"] for r in gen if r["chosen"]] == ["q4_0_ref", "q4_0_ref"], gen
# a list: q4_0_ref where it applies, the generic path for "fallback"
assert [r["kernel"] for r in lst if r["format"] == "q4_0"][:2] == ["q4_0_ref", "q4_0_ref"], lst
assert all(r["kernel"].startswith("dequant_") for r in lst if r["format"] == "int4:g64:asym"), lst
PY
grep -q "kernel q4_0_ref does not take this format" "$TMP/list.err" && ok || fail "no skip note: $(cat "$TMP/list.err")"
expect 2 "--kernels: no registry entry 'nope'" -- "$LOWBIT" bench $T --kernels q4_0_ref,nope

# bench block: a tiny block (width 64, MLP 172, 4 heads), decode over a
# 16-position context and prefill of 4 and 8 tokens, two thread counts
B="--dim 64 --hidden 172 --heads 4 --ctx 16 --batch 4,8 --threads 1,2 --reps 2 --min-mib 1"
"$LOWBIT" bench block --formats q4_0,int3:g64:asym $B --json > "$TMP/blk.jsonl" 2> "$TMP/blk.err" &&
    ok || fail "bench block: $(cat "$TMP/blk.err")"
python3 - "$TMP/blk.jsonl" <<'PY' && ok || fail "bench block --json: $(head -c 1500 "$TMP/blk.jsonl")"
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
# formats > threads > (decode, prefill per batch)
want = [(f, t, m, b) for f in ["q4_0", "int3:g64:asym"] for t in (1, 2) for m, b in [("decode", 1), ("prefill", 4), ("prefill", 8)]]
assert [(r["format"], r["threads"], r["mode"], r["batch"]) for r in rows] == want, rows
keys = ["format", "bpw", "mode", "batch", "ctx", "threads", "tokens_per_s", "us", "blocks", "block_bytes", "kernel",
        "repack_ms", "dim", "hidden", "heads"]
weights = 4 * 64 * 64 + 3 * 64 * 172
for r in rows:
    assert all(k in r for k in keys), r
    assert (r["dim"], r["hidden"], r["heads"]) == (64, 172, 4), r
    for k in ["bpw", "tokens_per_s", "us"]:
        assert math.isfinite(r[k]) and r[k] > 0, (k, r)
    assert r["ctx"] == (16 if r["mode"] == "decode" else 0), r
    # tokens/s through one block: the batch over the time of one block call
    assert abs(r["tokens_per_s"] - r["batch"] / (r["us"] * 1e-6)) <= 1e-6 * r["tokens_per_s"], r
    # enough copies of the block to hold --min-mib, and bpw counts every stored byte of the linears
    assert r["blocks"] * r["block_bytes"] >= 1 << 20 and (r["blocks"] - 1) * r["block_bytes"] < 1 << 20, r
    assert abs(r["bpw"] - 8 * r["block_bytes"] / weights) < 1e-9, r
    assert math.isfinite(r["repack_ms"]) and r["repack_ms"] >= 0, r
q4 = [r for r in rows if r["format"] == "q4_0"]
# q4_0 of a 64-wide block: 18 bytes per 32 weights; the MLP down rows (172) pad to 192
assert q4[0]["block_bytes"] == (4 * 64 * 64 + 2 * 172 * 64) // 32 * 18 + 64 * 192 // 32 * 18, q4[0]
# an integer kernel for q4_0 (its own rows or the uniform panels), not the dequantizing fallback
assert all(r["kernel"].startswith(("q4_0_", "uniform_")) for r in q4), q4
PY
grep -q "filling the KV cache (16 positions)" "$TMP/blk.err" && ok || fail "block progress: $(cat "$TMP/blk.err")"
"$LOWBIT" bench block --formats q8_0 $B --modes prefill > "$TMP/blk.txt" 2> /dev/null && ok || fail "block table"
[ "$(grep -c '^q8_0 .* prefill ' "$TMP/blk.txt")" = 4 ] && ok || fail "block table rows: $(cat "$TMP/blk.txt")"
grep -q "tokens/s" "$TMP/blk.txt" && ! grep -q decode "$TMP/blk.txt" && ok || fail "block table: $(cat "$TMP/blk.txt")"
expect 0 "--ctx N" -- "$LOWBIT" bench block --help
expect 0 "bench block" -- "$LOWBIT" bench --help
expect 2 "--heads 5 must divide --dim 64" -- "$LOWBIT" bench block $B --heads 5
expect 2 "--heads 64 must divide --dim 64 into even" -- "$LOWBIT" bench block $B --heads 64
expect 2 "--modes: 'train'" -- "$LOWBIT" bench block $B --modes decode,train
expect 2 "--ctx expects an integer" -- "$LOWBIT" bench block $B --ctx -1
expect 2 "--formats: 'int9'" -- "$LOWBIT" bench block $B --formats int9
expect 2 "half of this machine's memory" -- "$LOWBIT" bench block --dim 4096 --hidden 11008 --heads 32 --min-mib 100000
expect 2 "unknown option '--shapes'" -- "$LOWBIT" bench block $B --shapes 8x8

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
