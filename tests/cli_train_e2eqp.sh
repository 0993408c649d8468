#!/usr/bin/env bash
# EfficientQAT's two phases as a user runs them: `lowbit quantize --refine
# blockap` (phase 1) writes a plain int2:g64:asym:zint model and names the
# refinement in its note; `lowbit train --qat e2eqp` (phase 2) over it
# refuses --format, --distill without the fp32 --teacher and an fp32 MODEL
# (non-zero exit, a clear message, no file left), and a short run writes
# the same formats at the same bpw with a lower perplexity on the blocks it
# trained on; an
# interrupted and resumed run writes the uninterrupted run's file byte for
# byte.
set -u
NEEDS="MODEL TEXT"
. "$(dirname "$0")/common_cli.sh"

expect 0 "blockap" -- "$LOWBIT" quantize --help
expect 0 "e2eqp" -- "$LOWBIT" train --help
expect 1 "unknown key" -- "$LOWBIT" quantize "$MODEL" --format int2:g64:asym:zint --refine autoround:wlr=0.1 -o "$TMP/x.gguf"
expect 0 "int2:g64:asym:zint" -- "$LOWBIT" quantize "$MODEL" --format int2:g64:asym:zint --refine blockap:steps=5 \
    --calib-blocks 16 -o "$TMP/p1.gguf"
expect 0 "refine blockap steps=5 lr=0.002 batch=8 target=fp" -- "$LOWBIT" info "$TMP/p1.gguf"
P1="$TMP/p1.gguf"

expect 2 "no --format" -- "$LOWBIT" train "$P1" --teacher "$MODEL" --text "$TEXT" --distill kl --qat e2eqp --format int2:g64:asym -o "$TMP/x.gguf"
expect 2 "needs the fp32 --teacher" -- "$LOWBIT" train "$P1" --text "$TEXT" --distill kl --qat e2eqp -o "$TMP/x.gguf"
expect 1 "int<b>:g<G>" -- "$LOWBIT" train "$MODEL" --text "$TEXT" --qat e2eqp --steps 1 -o "$TMP/x.gguf"
if [ -e "$TMP/x.gguf" ]; then fail "a refused train left $TMP/x.gguf"; else ok; fi

RUN=(train "$P1" --teacher "$MODEL" --text "$TEXT" --distill kl --qat e2eqp --steps 20 --batch 4 --ctx 64 --lr 1e-2 --threads 1)
expect 0 "MODEL's own (codes frozen)" -- "$LOWBIT" "${RUN[@]}" -o "$TMP/a.gguf"
"$LOWBIT" "${RUN[@]}" --json -o "$TMP/a.gguf" > "$TMP/a.json" 2> "$TMP/a.err"
json "$TMP/a.json" "j['qat'] == 'e2eqp' and j['format'] == 'model'"
"$LOWBIT" eval "$P1" --text "$TEXT" --split calib --calib-blocks 8 --json > "$TMP/e0.json" 2>/dev/null
"$LOWBIT" eval "$TMP/a.gguf" --text "$TEXT" --split calib --calib-blocks 8 --json > "$TMP/e1.json" 2>/dev/null
python3 - "$TMP/e0.json" "$TMP/e1.json" <<'PY' && ok || fail "e2eqp changed the bpw or broke the model"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
print(f"  calibration blocks 1..8 (trained on): ppl {a['ppl']:.4f} -> {b['ppl']:.4f} at {a['bpw']:.4f} bpw")
sys.exit(0 if b['bpw'] == a['bpw'] and 1 < b['ppl'] < a['ppl'] else 1)
PY
expect 0 "int2:g64:asym:zint" -- "$LOWBIT" info "$TMP/a.gguf"

expect 0 "stopped after step 3" -- "$LOWBIT" "${RUN[@]}" --checkpoint "$TMP/e.ckpt" --save-every 1 --stop-after 3 -o "$TMP/b.gguf"
expect 0 "wrote" -- "$LOWBIT" "${RUN[@]}" --resume "$TMP/e.ckpt" -o "$TMP/b.gguf"
if cmp -s "$TMP/a.gguf" "$TMP/b.gguf"; then ok; else fail "e2eqp: the resumed run's file differs from the uninterrupted one"; fi

finish cli_train_e2eqp
