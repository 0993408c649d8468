#!/usr/bin/env bash
# --outliers, --outlier-rule, --bias-correct through the CLI: bad values
# refused as usage errors, slots written and counted in bpw (quantize and
# sweep agree), applied only to linears, and the recipe/sweep spelling.
set -u
NEEDS="MODEL TEXT"
. "$(dirname "$0")/common_cli.sh"

expect 0 "--outliers FRACTION" -- "$LOWBIT" quantize --help
expect 0 "bias_correct=0" -- "$LOWBIT" quantize --help
expect 2 "'outliers' expects a number in [0, 0.5]" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/x.gguf" --format int4 --outliers 0.6
expect 2 "unknown outlier rule 'big'" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/x.gguf" --format int4 --outliers 0.01 --outlier-rule big
expect 2 "'bias_correct' expects" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/x.gguf" --format int4 --tensor-type 'blk.0.*=int4,bias_correct=3'
# outliers on a tensor that has no slots: refused, nothing written
expect 1 "not a linear's weight" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/x.gguf" --format int4 --tensors embeddings --outliers 0.01
[ ! -e "$TMP/x.gguf" ] && ok || fail "a refused quantize left a file"

# 1% outliers on int4:g64:asym: 32 bits (u16 position + fp16 value) each on top of 4.6271
"$LOWBIT" quantize "$MODEL" -o "$TMP/o.gguf" --format int4:g64:asym --clip mse --outliers 0.01 --json > "$TMP/o.json" \
    || fail "quantize --outliers failed"
json "$TMP/o.json" "abs(j['bpw'] - (4.6271 + 32 * 2266 / 226560)) < 2e-3 and 'outliers=0.01' in j['options']"
expect 0 "outliers(" -- "$LOWBIT" info "$TMP/o.gguf"
# the same through a recipe line
printf 'linears int4:g64:asym clip=mse outliers=0.01\n' > "$TMP/o.recipe"
"$LOWBIT" quantize "$MODEL" -o "$TMP/o2.gguf" --recipe "$TMP/o.recipe" > /dev/null || fail "recipe with outliers failed"
cmp -s "$TMP/o.gguf" "$TMP/o2.gguf" && ok || fail "recipe and flags give different files"

# the sweep spelling, and its bpw counting the slots as quantize does
QUICK=(--ctx 128 --max-blocks 4)
"$LOWBIT" sweep "$MODEL" --text "$TEXT" "${QUICK[@]}" --methods rtn:clip=mse,rtn:clip=mse:outliers=0.01 \
    --formats int4:g64:asym --json > "$TMP/s.jsonl" 2> "$TMP/s.err" && ok || fail "sweep failed: $(cat "$TMP/s.err")"
python3 - "$TMP/s.jsonl" "$TMP/o.json" <<'PY' && ok || fail "sweep bpw: $(cat "$TMP/s.jsonl")"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
q = json.load(open(sys.argv[2]))
assert len(rows) == 2 and all(r["status"] == "ok" for r in rows), rows
assert abs(rows[0]["bpw"] - 4.6271) < 1e-3, rows[0]
assert abs(rows[1]["bpw"] - q["bpw"]) < 1e-9 and "outliers=0.01" in rows[1]["options"], (rows[1], q)
PY
finish cli_outliers
