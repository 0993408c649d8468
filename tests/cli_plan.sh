#!/usr/bin/env bash
# lowbit plan on stories260K's first layer (8 calibration blocks, three data-free
# candidates): the recipe fits the budget and quantize applies it to the bits it
# promised, --json holds the choice and the sensitivity table, --keep pins, the
# table and heat map are written, bad budgets and candidates fail with nothing left;
# lowbit tune meets a KL target with a mix no larger than the uniform ones that do.
set -u
NEEDS="MODEL TEXT"
. "$(dirname "$0")/common_cli.sh"
# LB_TEST_QUICK (check-asan): the text cut to its first 200 blocks, so the evaluation
# split that tune and --score-eval read (all but the 8 calibration blocks) is ~15k
# tokens, not ~85k; the calibration blocks and every assertion below are the same
if [ -n "${LB_TEST_QUICK:-}" ]; then
    awk 'BEGIN { RS = ""; ORS = "\n\n" } NR <= 200' "$TEXT" > "$TMP/quick.txt"
    TEXT=$TMP/quick.txt
    echo "LB_TEST_QUICK: the text's first 200 blocks"
fi

expect 0 "usage: lowbit plan" -- "$LOWBIT" plan --help
expect 0 "plan" -- "$LOWBIT" --help
expect 2 "--bpw B or --size SIZE" -- "$LOWBIT" plan "$MODEL" -o "$TMP/r.txt"
expect 2 "--bpw B or --size SIZE" -- "$LOWBIT" plan "$MODEL" -o "$TMP/r.txt" --bpw 3 --size 100K
expect 2 "missing -o" -- "$LOWBIT" plan "$MODEL" --bpw 3
expect 2 "--size '12Q'" -- "$LOWBIT" plan "$MODEL" -o "$TMP/r.txt" --size 12Q
expect 2 "--bpw" -- "$LOWBIT" plan "$MODEL" -o "$TMP/r.txt" --bpw -1
expect 2 "int9" -- "$LOWBIT" plan "$MODEL" -o "$TMP/r.txt" --bpw 3 --candidates 'int9:g64'
expect 2 "not one of the candidates" -- "$LOWBIT" plan "$MODEL" -o "$TMP/r.txt" --bpw 3 --heat int5:g64:asym

Q=(--tensors 'blk.0.*' --calib-blocks 8 --calib "$TEXT")
C='int2:g64:asym,method=rtn,clip=mse;int4:g64:asym,method=rtn,clip=mse;int8:g64:sym,method=rtn'
"$LOWBIT" plan "$MODEL" "${Q[@]}" --candidates "$C" --bpw 4 -o "$TMP/r.txt" --fisher --json --table "$TMP/s.md" \
    --svg "$TMP/h.svg" > "$TMP/p.json" 2> "$TMP/p.err" && ok || fail "plan failed: $(cat "$TMP/p.err")"
json "$TMP/p.json" 'j["tensors"] == 7 and j["bpw"] <= 4.0 and j["budget_bpw"] == 4 and j["scored_tokens"] > 500'
json "$TMP/p.json" 'len(j["candidates"]) == 3 and len(j["sensitivity"]) == 7 and all(len(r) == 3 for r in j["sensitivity"])'
json "$TMP/p.json" 'all(r[0]["kld"] > r[1]["kld"] > r[2]["kld"] > 0 for r in j["sensitivity"])'
json "$TMP/p.json" '[c["tensor"] for c in j["choice"]][0] == "blk.0.attn_q.weight" and j["predicted_kld"] > 0'
json "$TMP/p.json" 'abs(j["predicted_kld"] - sum(c["kld"] for c in j["choice"])) < 1e-9'
json "$TMP/p.json" 'all(-1 <= j["rank_correlation"][k] <= 1 for k in ("method", "weight_error", "hawq", "fisher"))'
json "$TMP/p.json" 'all(c is None or c["hawq"] > 0 and c["fisher"] >= 0 for r in j["sensitivity"] for c in r[:2])'
# a mix: not all the same candidate at 4 bits between 2.5 and 8.5
json "$TMP/p.json" 'len(set(c["candidate"] for c in j["choice"])) > 1'
# scripts/plan_rungs.py (the what-if of a gap-free ladder): its knapsack against brute
# force on small random problems, its interpolation through the measured points, and
# on this plan: no ladder it adds can do worse than the candidates, which can do no
# worse than the plan's own choice
RUNGS=$(dirname "$0")/../scripts/plan_rungs.py
python3 - "$RUNGS" <<'PY' && ok || fail "plan_rungs.py knapsack or interpolation"
import importlib.util, itertools, math, random, sys
spec = importlib.util.spec_from_file_location('plan_rungs', sys.argv[1])
m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
rng = random.Random(7)
for trial in range(200):
    opts = [[(rng.randrange(8, 80, 8), rng.uniform(0.01, 1.0)) for _ in range(rng.randrange(1, 4))]
            for _ in range(rng.randrange(1, 5))]
    budget = rng.randrange(8, 240)
    fits = [sum(o[i][1] for o, i in zip(opts, p)) for p in itertools.product(*[range(len(o)) for o in opts])
            if sum(o[i][0] for o, i in zip(opts, p)) <= budget]
    got = m.knapsack(opts, budget)
    assert (got is None) == (not fits), (opts, budget)
    assert got is None or abs(got[0] - min(fits)) < 1e-12, (opts, budget, got, min(fits))
    assert got is None or abs(sum(o[i][1] for o, i in zip(opts, got[1])) - got[0]) < 1e-12
pts = [(100, 0.5), (200, 0.125), (300, 0.0625)]
assert abs(m.interpolated(pts, 150) - 0.25) < 1e-12 and abs(m.interpolated(pts, 200) - 0.125) < 1e-12
assert m.interpolated(pts, 99) is None and m.interpolated(pts, 301) is None
PY
"$RUNGS" "$TMP/p.json" --rung 3 --rung 5 --json > "$TMP/rungs.json" 2> "$TMP/rungs.err" && ok ||
    fail "plan_rungs.py: $(cat "$TMP/rungs.err")"
python3 - "$TMP/p.json" "$TMP/rungs.json" <<'PY' && ok || fail "plan_rungs.py on the plan: $(cat "$TMP/rungs.json")"
import json, sys
p, r = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
lad = r['ladders']
assert len(lad) == 4 and r['tensors'] == 7 and r['budget_bpw'] == 4
assert lad[0]['kld'] <= p['predicted_kld'] + 1e-9 and all(l['bpw'] <= 4 for l in lad)
assert all(l['kld'] <= lad[0]['kld'] + 1e-12 for l in lad[1:]) and lad[3]['kld'] < lad[0]['kld']
PY
[ "$(grep -c '^blk\.0\.' "$TMP/r.txt")" -eq 7 ] && ok || fail "recipe: $(cat "$TMP/r.txt")"
grep -q '^# lowbit plan for' "$TMP/r.txt" && ok || fail "recipe header: $(head -2 "$TMP/r.txt")"
# quantize applies it: the same bits per weight over the seven tensors
"$LOWBIT" quantize "$MODEL" --recipe "$TMP/r.txt" -o "$TMP/m.gguf" --json > "$TMP/q.json" 2> "$TMP/q.err" && ok ||
    fail "quantize --recipe: $(cat "$TMP/q.err")"
python3 - "$TMP/p.json" "$TMP/q.json" <<'PY' && ok || fail "plan bpw vs quantize bpw"
import json, sys
p, q = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert q["tensors_quantized"] == 7 and abs(p["bpw"] - q["bpw"]) < 1e-3, (p["bpw"], q["bpw"])
PY
grep -q '^| blk.0.attn_q.weight |' "$TMP/s.md" && grep -q '\*\*' "$TMP/s.md" && ok || fail "table: $(cat "$TMP/s.md")"
python3 - "$TMP/h.svg" <<'PY' && ok || fail "heat map: $(head -c 600 "$TMP/h.svg")"
import sys, xml.etree.ElementTree as ET
ns = "{http://www.w3.org/2000/svg}"
root = ET.parse(sys.argv[1]).getroot()
cells = [r for r in root.iter(ns + "rect") if r.find(ns + "title") is not None]
assert len(cells) == 7, len(cells)
texts = [t.text or "" for t in root.iter(ns + "text")]
assert "layer 0" in texts and "attn_q" in texts and "ffn_down" in texts, texts
PY

# --keep pins attn_v to int8; a budget the cheapest choice cannot meet fails, leaving nothing
"$LOWBIT" plan "$MODEL" "${Q[@]}" --candidates "$C" --bpw 3 --keep 'blk.0.attn_v.weight=int8:g64:sym,method=rtn' \
    -o "$TMP/k.txt" --json > "$TMP/k.json" 2> "$TMP/k.err" && ok || fail "plan --keep: $(cat "$TMP/k.err")"
grep -q '^blk.0.attn_v.weight int8:g64:sym method=rtn' "$TMP/k.txt" && ok || fail "--keep: $(cat "$TMP/k.txt")"
json "$TMP/k.json" 'j["bpw"] <= 3.0 and len(j["candidates"]) == 4'
# --granularity layer: one choice for the layer's seven linears
"$LOWBIT" plan "$MODEL" "${Q[@]}" --candidates "$C" --bpw 4 --granularity layer --refine 0 -o "$TMP/l.txt" --json \
    > "$TMP/l.json" 2> "$TMP/l.err" && ok || fail "plan --granularity layer: $(cat "$TMP/l.err")"
json "$TMP/l.json" 'len(set(c["candidate"] for c in j["choice"])) == 1 and j["bpw"] <= 4'
expect 2 "tensor, layer, rowblock" -- "$LOWBIT" plan "$MODEL" --bpw 3 -o "$TMP/g.txt" --granularity row
# --granularity rowblock:2 / colblock:2: a choice per block of rows (columns), one recipe line each;
# quantize applies it (a tensor whose two blocks chose differently is a split tensor), and the file
# evaluates to the plan's own figure (the plan scores f32 products of the dequantized blocks: so does the
# dequantize-a-tile kernel path, LB_KERNEL=fallback)
# block_plan KIND BPW NAMES RULE: plans, checks the items' names and the recipe's lines, quantizes, evaluates
block_plan() {
    local kind=$1 bpw=$2 names=$3 rule=$4 f=$TMP/$1
    "$LOWBIT" plan "$MODEL" --tensors 'blk.0.attn_k.weight,blk.0.ffn_down.weight' --calib-blocks 8 --calib "$TEXT" \
        --candidates "$C" --bpw "$bpw" --granularity "$kind:2" --refine 1 --score-eval -o "$f.txt" --json \
        > "$f.json" 2> "$f.err" && ok || fail "plan --granularity $kind:2: $(cat "$f.err")"
    json "$f.json" "j['tensors'] == 4 and j['bpw'] <= $bpw and j['granularity'] == '$kind:2' and j['eval_ppl'] > 1"
    json "$f.json" "[c['tensor'] for c in j['choice']] == $names"
    [ "$(grep -c "^blk.0.ffn_down.weight $rule=[0-9]*:[0-9]* int" "$f.txt")" = 2 ] && ok || fail "$kind recipe: $(cat "$f.txt")"
    "$LOWBIT" quantize "$MODEL" --recipe "$f.txt" -o "$f.gguf" > "$f.q.out" 2>&1 && ok ||
        fail "quantize a $kind recipe: $(cat "$f.q.out")"
    LB_KERNEL=fallback "$LOWBIT" eval "$f.gguf" --text "$TEXT" --split eval --calib-blocks 8 --json > "$f.e.json" 2>&1 &&
        ok || fail "eval the $kind file: $(cat "$f.e.json")"
    python3 - "$f.json" "$f.e.json" <<'PY' && ok || fail "$kind file against the plan's score"
import json, sys
plan, ev = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert abs(ev["ppl"] / plan["eval_ppl"] - 1) < 1e-4, (ev["ppl"], plan["eval_ppl"])
PY
}
block_plan rowblock 4 '["blk.0.attn_k.weight rows 0:16", "blk.0.attn_k.weight rows 16:32", "blk.0.ffn_down.weight rows 0:32", "blk.0.ffn_down.weight rows 32:64"]' rows
# columns: budget 5, as the g64 candidates pad a 32-column block to whole groups
block_plan colblock 5 '["blk.0.attn_k.weight cols 0:32", "blk.0.attn_k.weight cols 32:64", "blk.0.ffn_down.weight cols 0:88", "blk.0.ffn_down.weight cols 88:172"]' cols
expect 2 "colblock or colblock:N" -- "$LOWBIT" plan "$MODEL" --bpw 3 -o "$TMP/g.txt" --granularity colblocks
expect 2 "format 'split' is not a target" -- "$LOWBIT" quantize "$MODEL" --format split -o "$TMP/sp.gguf"
[ ! -e "$TMP/sp.gguf" ] && ok || fail "quantize --format split left a file"
expect 2 "rowblock:N" -- "$LOWBIT" plan "$MODEL" --bpw 3 -o "$TMP/g.txt" --granularity rowblock:0
expect 2 "rowblock or rowblock:N" -- "$LOWBIT" plan "$MODEL" --bpw 3 -o "$TMP/g.txt" --granularity rowblocks
expect 2 "per tensor, not per block" -- "$LOWBIT" plan "$MODEL" --bpw 3 -o "$TMP/g.txt" --granularity rowblock --svg "$TMP/x.svg"
expect 1 "cheapest options need" -- "$LOWBIT" plan "$MODEL" "${Q[@]}" --candidates "$C" --bpw 2 -o "$TMP/no.txt"
[ ! -e "$TMP/no.txt" ] && ok || fail "a failed plan left its recipe"
# --size: the planned tensors' bytes plus the rest as stored
"$LOWBIT" plan "$MODEL" "${Q[@]}" --candidates "$C" --size 1MB -o "$TMP/z.txt" --json > "$TMP/z.json" 2> "$TMP/z.err" &&
    ok || fail "plan --size: $(cat "$TMP/z.err")"
json "$TMP/z.json" 'j["bpw"] > 4'

# lowbit tune: the smallest mix meeting a KL target on calibration, its evaluation figures apart
expect 0 "usage: lowbit tune" -- "$LOWBIT" tune --help
expect 2 "--max-kld X or --max-ppl-ratio R" -- "$LOWBIT" tune "$MODEL" -o "$TMP/t.gguf"
expect 2 "--max-ppl-ratio" -- "$LOWBIT" tune "$MODEL" -o "$TMP/t.gguf" --max-ppl-ratio 0.9
"$LOWBIT" tune "$MODEL" "${Q[@]}" --candidates "$C" --max-kld 0.02 -o "$TMP/t.gguf" --save-recipe "$TMP/t.txt" \
    --json > "$TMP/t.json" 2> "$TMP/t.err" && ok || fail "tune failed: $(cat "$TMP/t.err")"
json "$TMP/t.json" 'j["calib_kld"] <= 0.02 and j["strategy"] in ("bisection", "fallback") and j["eval_tokens"] > 10000'
json "$TMP/t.json" 'j["eval_kld"] > 0 and j["eval_ppl_ratio"] > 1 and j["file_bytes"] > 0 and j["mixes_measured"] > 2'
json "$TMP/t.json" 'len(j["uniform"]) == 3 and j["uniform"][2]["meets"] and not j["uniform"][0]["meets"]'
# no larger than the smallest uniform mix that meets the target
json "$TMP/t.json" 'j["bpw"] <= min(u["bpw"] for u in j["uniform"] if u["meets"]) + 1e-9'
json "$TMP/t.json" 'abs(j["bpw"] - min(p["bpw"] for p in (j["bisection"], j["fallback"]) if p)) < 1e-6'
[ "$(grep -c '^blk\.0\.' "$TMP/t.txt")" -eq 7 ] && ok || fail "tune recipe: $(cat "$TMP/t.txt")"
"$LOWBIT" info "$TMP/t.gguf" > /dev/null 2>&1 && ok || fail "tune's file does not load"
expect 1 "no mix of these candidates meets the target" -- "$LOWBIT" tune "$MODEL" "${Q[@]}" --candidates "$C" \
    --max-kld 1e-9 -o "$TMP/never.gguf"
[ ! -e "$TMP/never.gguf" ] && ok || fail "a failed tune left its file"
ls "$TMP" | grep -q '\.tmp\.' && fail "temporary left: $(ls "$TMP")" || ok
finish cli_plan
