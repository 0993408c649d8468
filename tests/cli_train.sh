#!/usr/bin/env bash
# lowbit train as a user meets it: --help, the evaluation split (and 'all',
# which contains it) refused before any work with no file left, bad options
# and a quantized model refused, a short run whose --json parses and whose
# output is a model that evaluates, the same file for 1 and 2 threads, and
# training on the training split lowering that split's perplexity (4.291 for
# stories260K as shipped, data/README.md).
set -u
NEEDS="MODEL TEXT"
. "$(dirname "$0")/common_cli.sh"

expect 0 "usage: lowbit train" -- "$LOWBIT" train --help
expect 0 "train" -- "$LOWBIT" --help
expect 2 "missing -o" -- "$LOWBIT" train "$MODEL" --text "$TEXT"
expect 2 "missing --text" -- "$LOWBIT" train "$MODEL" -o "$TMP/x.gguf"
expect 2 "expected one MODEL" -- "$LOWBIT" train --text "$TEXT" -o "$TMP/x.gguf"
expect 2 "the evaluation split is kept for measuring" -- "$LOWBIT" train "$MODEL" --text "$TEXT" --split eval -o "$TMP/x.gguf"
expect 2 "'all' contains it" -- "$LOWBIT" train "$MODEL" --text "$TEXT" --split all -o "$TMP/x.gguf"
expect 2 "unknown split" -- "$LOWBIT" train "$MODEL" --text "$TEXT" --split test -o "$TMP/x.gguf"
expect 1 "ctx must be 1..512" -- "$LOWBIT" train "$MODEL" --text "$TEXT" --ctx 1000 -o "$TMP/x.gguf"
expect 1 "warm-up" -- "$LOWBIT" train "$MODEL" --text "$TEXT" --steps 5 --warmup 9 -o "$TMP/x.gguf"
expect 2 "--lr" -- "$LOWBIT" train "$MODEL" --text "$TEXT" --lr -1 -o "$TMP/x.gguf"
expect 1 "fewer than one window" -- "$LOWBIT" train "$MODEL" --text "$TEXT" --calib-blocks 1 --ctx 500 -o "$TMP/x.gguf"
if [ -e "$TMP/x.gguf" ]; then fail "a refused train left $TMP/x.gguf"; else ok; fi
"$LOWBIT" quantize "$MODEL" --format int4:g32 -o "$TMP/q4.gguf" > /dev/null 2>&1
expect 1 "not f32" -- "$LOWBIT" train "$TMP/q4.gguf" --text "$TEXT" --steps 1 -o "$TMP/x.gguf"
if [ -e "$TMP/x.gguf" ]; then fail "a failed train left $TMP/x.gguf"; else ok; fi

# a short run, JSON, and the same bytes with 1 and 2 threads
"$LOWBIT" train "$MODEL" --text "$TEXT" --steps 4 --batch 2 --ctx 32 --threads 1 --json -o "$TMP/t1.gguf" > "$TMP/t.json" 2> "$TMP/t.err"
json "$TMP/t.json" "j['steps'] == 4 and j['batch'] == 2 and j['ctx'] == 32 and j['split'] == 'train' and j['blocks'] == [1, 128] and j['tokens'] == 12648 and len(j['log']) >= 2 and j['log'][-1]['step'] == 4 and j['tokens_per_second'] > 0 and j['trainer_bytes'] > 0 and j['peak_rss_bytes'] > 0"
expect 0 "step      4/4" -- "$LOWBIT" train "$MODEL" --text "$TEXT" --steps 4 --batch 2 --ctx 32 --threads 2 -o "$TMP/t2.gguf"
if cmp -s "$TMP/t1.gguf" "$TMP/t2.gguf"; then ok; else fail "1 and 2 threads trained different weights"; fi
expect 0 "lowbit train: 4 steps" -- "$LOWBIT" info "$TMP/t1.gguf"

# training on the training split lowers its perplexity (4.291 before)
"$LOWBIT" train "$MODEL" --text "$TEXT" --steps 30 --batch 4 --ctx 128 --threads 1 -o "$TMP/t3.gguf" > /dev/null 2>&1
"$LOWBIT" eval "$TMP/t3.gguf" --text "$TEXT" --split calib --json > "$TMP/e.json" 2>/dev/null
json "$TMP/e.json" "j['ppl'] < 4.0"

finish cli_train
