#!/usr/bin/env bash
# lowbit train --lora as a user meets it: the options in --help; a rank out
# of range, --lora with --qat or --act-bits, --lora-alpha / --merge without
# --lora, --distill without the fp32 --teacher, an unknown --merge method:
# non-zero exit, a clear message, no file left. A short run over a 2-bit
# base writes the base with rank-2 fp16 adapters that `lowbit info` shows
# and `eval` counts in bpw; --merge writes the plain 2-bit format again;
# --json names the rank; a checkpointed, interrupted and resumed run writes
# the uninterrupted run's file byte for byte.
set -u
NEEDS="MODEL TEXT"
. "$(dirname "$0")/common_cli.sh"

"$LOWBIT" quantize "$MODEL" --format int2:g64:asym --method hqq -o "$TMP/base.gguf" > /dev/null 2>&1 || fail "quantizing the base"
BASE="$TMP/base.gguf"
expect 0 "--lora RANK" -- "$LOWBIT" train --help
expect 0 "--merge METHOD" -- "$LOWBIT" train --help
expect 2 "--lora" -- "$LOWBIT" train "$BASE" --teacher "$MODEL" --text "$TEXT" --distill kl --lora 0 -o "$TMP/x.gguf"
expect 2 "not with --qat" -- "$LOWBIT" train "$BASE" --teacher "$MODEL" --text "$TEXT" --distill kl --lora 2 --qat bwn -o "$TMP/x.gguf"
expect 2 "not with --qat" -- "$LOWBIT" train "$BASE" --teacher "$MODEL" --text "$TEXT" --distill kl --lora 2 --act-bits 8 -o "$TMP/x.gguf"
expect 2 "go with --lora" -- "$LOWBIT" train "$BASE" --text "$TEXT" --merge hqq -o "$TMP/x.gguf"
expect 2 "go with --lora" -- "$LOWBIT" train "$BASE" --text "$TEXT" --lora-alpha 2 -o "$TMP/x.gguf"
expect 2 "needs the fp32 --teacher" -- "$LOWBIT" train "$BASE" --text "$TEXT" --distill kl --lora 2 -o "$TMP/x.gguf"
expect 2 "unknown method 'nosuch'" -- "$LOWBIT" train "$BASE" --teacher "$MODEL" --text "$TEXT" --distill kl --lora 2 --merge nosuch -o "$TMP/x.gguf"
# without --lora a quantized model is not trainable
expect 1 "a quantized base: --lora" -- "$LOWBIT" train "$BASE" --text "$TEXT" --steps 1 -o "$TMP/x.gguf"
if [ -e "$TMP/x.gguf" ]; then fail "a refused train left $TMP/x.gguf"; else ok; fi

RUN=(train "$BASE" --teacher "$MODEL" --text "$TEXT" --distill kl --lora 2 --lora-alpha 2 --steps 6 --batch 2 --ctx 32 --lr 5e-3 --threads 1)
"$LOWBIT" "${RUN[@]}" --json -o "$TMP/a.gguf" > "$TMP/a.json" 2> "$TMP/a.err"
json "$TMP/a.json" "j['lora_rank'] == 2 and j['lora_alpha'] == 2 and j['merge'] == '' and j['last_loss'] < j['first_loss']"
expect 0 "int2:g64:asym" -- "$LOWBIT" info "$TMP/a.gguf"
expect 0 "+ lora(r2)" -- "$LOWBIT" info "$TMP/a.gguf"
"$LOWBIT" eval "$BASE" --text "$TEXT" --split calib --calib-blocks 8 --json > "$TMP/e0.json" 2>/dev/null
"$LOWBIT" eval "$TMP/a.gguf" --text "$TEXT" --split calib --calib-blocks 8 --json > "$TMP/e1.json" 2>/dev/null
# rank 2 fp16 adapters on stories260K's linears (per layer 1156 rows + cols,
# 45312 weights) and each linear's fp32 alpha: (2 * 2 * 1156 + 7 * 4) bytes
# per layer, 0.8213 bpw more
python3 - "$TMP/e0.json" "$TMP/e1.json" <<'PY' && ok || fail "adapter bpw: the adapted model's bpw is not the base's + 0.8213"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
sys.exit(0 if abs(b['bpw'] - a['bpw'] - 8 * (2 * 2 * 1156 + 7 * 4) / 45312) < 1e-4 and b['ppl'] > 1 else 1)
PY
expect 0 "" -- "$LOWBIT" generate "$TMP/a.gguf" -n 8

# merged: the base's format, no adapter, the base's bpw
expect 0 "merged at the end" -- "$LOWBIT" "${RUN[@]}" --merge hqq -o "$TMP/m.gguf"
"$LOWBIT" eval "$TMP/m.gguf" --text "$TEXT" --split calib --calib-blocks 8 --json > "$TMP/e2.json" 2>/dev/null
json "$TMP/e2.json" "abs(j['bpw'] - 2.5706) < 1e-3"
if "$LOWBIT" info "$TMP/m.gguf" | grep -q "lora("; then fail "the merged model still has adapters"; else ok; fi

# interrupted and resumed: the same file
expect 0 "stopped after step 3" -- "$LOWBIT" "${RUN[@]}" --checkpoint "$TMP/l.ckpt" --save-every 1 --stop-after 3 -o "$TMP/b.gguf"
expect 0 "wrote" -- "$LOWBIT" "${RUN[@]}" --resume "$TMP/l.ckpt" -o "$TMP/b.gguf"
if cmp -s "$TMP/a.gguf" "$TMP/b.gguf"; then ok; else fail "lora: the resumed run's file differs from the uninterrupted one"; fi

finish cli_train_lora
