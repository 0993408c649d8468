#!/usr/bin/env bash
# lowbit quantize --sequential and --report as a user meets them: the flags
# in --help, a sequential gptq run whose JSON report parses and says what it
# should (35 tensors, gptq's proxy loss below rtn's on every layer, totals
# that add up), the same file for 1 and 2 threads, a data-free plan that
# gives the parallel bytes, the same bytes under LB_KERNEL=fallback (float
# activations in the pass), sweep --sequential, and misuse (--stats with
# --sequential, --report with --dry-run, an unwritable report) refused
# before any work with nothing left behind.
set -u
NEEDS="MODEL TEXT"
. "$(dirname "$0")/common_cli.sh"

expect 0 "--sequential" -- "$LOWBIT" quantize --help
expect 0 "--report FILE" -- "$LOWBIT" quantize --help
expect 0 "--sequential" -- "$LOWBIT" sweep --help
Q=(quantize "$MODEL" --format int3:g64:asym --method gptq --calib-blocks 4)  # small: expect allows 60 s
expect 2 "cannot be used" -- "$LOWBIT" quantize "$MODEL" --format int3:g64:asym --method gptq --sequential --stats "$TMP/none.gguf" -o "$TMP/x.gguf"
expect 2 "it needs --sequential" -- "$LOWBIT" quantize "$MODEL" --format int3:g64:asym --method gptaq -o "$TMP/x.gguf"
expect 2 "needs true-sequential calibration" -- "$LOWBIT" sweep "$MODEL" --text "$TEXT" --methods gptaq --formats int4:g64:asym
expect 0 "gptaq" -- "$LOWBIT" quantize --help
expect 2 "no --report" -- "$LOWBIT" "${Q[@]}" --dry-run --report "$TMP/r.json"
expect 1 "$TMP/nodir/r.json" -- "$LOWBIT" "${Q[@]}" --sequential --report "$TMP/nodir/r.json" -o "$TMP/x.gguf"
if [ -e "$TMP/x.gguf" ]; then fail "a refused quantize left $TMP/x.gguf"; else ok; fi

# sequential gptq, 1 and 2 threads: the same bytes; the report parses
expect 0 "sequential" -- "$LOWBIT" "${Q[@]}" --sequential --threads 1 --report "$TMP/r1.json" -o "$TMP/s1.gguf"
expect 0 "sequential" -- "$LOWBIT" "${Q[@]}" --sequential --threads 2 -o "$TMP/s2.gguf"
if cmp -s "$TMP/s1.gguf" "$TMP/s2.gguf"; then ok; else fail "sequential output differs between 1 and 2 threads"; fi
json "$TMP/r1.json" "j['sequential'] and j['tensors_quantized'] == 35 and len(j['tensors']) == 35"
json "$TMP/r1.json" "all(t['method'] == 'gptq' and t['format'] == 'int3:g64:asym' and t['bpw'] >= 3.5 and 0 < t['rel_error'] < 1 for t in j['tensors'])"
json "$TMP/r1.json" "all(0 < t['proxy_loss'] < t['proxy_loss_rtn'] and t['damping'] > 0 and t['dead_inputs'] == 0 for t in j['tensors'])"
json "$TMP/r1.json" "abs(sum(t['proxy_loss'] for t in j['tensors']) - j['totals']['proxy_loss']) < 1e-9 * j['totals']['proxy_loss'] and j['totals']['tensors_with_proxy'] == 35"
json "$TMP/r1.json" "abs(j['totals']['bpw'] - j['bpw']) < 1e-12 and j['totals']['weights'] == 226560"
# the sequential pass computes the quantized layers in float, whatever kernels
# this CPU has: forcing the generic kernels gives the same bytes (int3:g64's
# kernel rounds activations to int8; that rounding used to reach the statistics)
LB_KERNEL=fallback "$LOWBIT" "${Q[@]}" --sequential --threads 1 -o "$TMP/sf.gguf" > /dev/null 2>&1
if cmp -s "$TMP/s1.gguf" "$TMP/sf.gguf"; then ok; else fail "sequential output depends on the kernels (LB_KERNEL=fallback differs)"; fi
# the parallel file is another one (the statistics differ from layer 0's attn_output on)
expect 0 "" -- "$LOWBIT" "${Q[@]}" --json --report "$TMP/rp.json" -o "$TMP/p.gguf"
if cmp -s "$TMP/s1.gguf" "$TMP/p.gguf"; then fail "sequential and parallel gptq gave the same file"; else ok; fi
json "$TMP/rp.json" "not j['sequential'] and j['tensors'][0]['proxy_loss'] == json.load(open('$TMP/r1.json'))['tensors'][0]['proxy_loss']"

# data-free: no statistics, the parallel bytes, no proxy losses (null)
expect 0 "" -- "$LOWBIT" quantize "$MODEL" --format int3:g64:asym --clip mse --sequential --report "$TMP/rr.json" -o "$TMP/rs.gguf"
expect 0 "" -- "$LOWBIT" quantize "$MODEL" --format int3:g64:asym --clip mse -o "$TMP/rp.gguf"
if cmp -s "$TMP/rs.gguf" "$TMP/rp.gguf"; then ok; else fail "a data-free plan differs with --sequential"; fi
json "$TMP/rr.json" "j['tensors'][0]['proxy_loss'] is None and j['totals']['proxy_loss'] is None and j['tensors'][0]['options'] == 'clip=mse mse_steps=50 mse_min_shrink=0.5 weights=plain'"

# sweep --sequential: one small configuration evaluated
"$LOWBIT" sweep "$MODEL" --text "$TEXT" --methods gptq --formats int4:g64:asym --calib-blocks 4 --max-blocks 4 \
    --sequential --json > "$TMP/sw.json" 2> "$TMP/sw.err"
json "$TMP/sw.json" "j['sequential'] and j['status'] == 'ok' and j['ppl_ratio'] < 1.5"

# one grid, two calibration modes: ':seq' makes that method's series sequential
"$LOWBIT" sweep "$MODEL" --text "$TEXT" --methods gptq,gptq:seq --formats int4:g64:asym --calib-blocks 4 --max-blocks 4 \
    --json > "$TMP/mix.jsonl" 2> "$TMP/mix.err"
python3 - "$TMP/mix.jsonl" <<'PY' && ok || fail "mixed sweep: $(cat "$TMP/mix.jsonl" "$TMP/mix.err")"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [r['sequential'] for r in rows] == [False, True], rows
assert [r['label'] for r in rows] == ['gptq', 'gptq seq'], rows
assert all(r['status'] == 'ok' for r in rows) and rows[0]['ppl'] != rows[1]['ppl'], rows
PY
expect 2 "expected key=value, got 'seq'" -- "$LOWBIT" quantize "$MODEL" --format int4:g64:asym --tensor-type "linears=int4:g64:asym,method=gptq,seq" -o "$TMP/x.gguf"

finish cli_sequential
