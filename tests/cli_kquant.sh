#!/usr/bin/env bash
# llama.cpp's K-quants (and IQ4, TQ, MXFP4, NVFP4) through the CLI: on stories260K (rows of 64 and 172
# weights, not whole 256-blocks) --format q4_k falls back per tensor, said on
# stderr and in the dry run's JSON (q5_0 on 64 columns, f16 on 172); on a
# --config model whose rows are whole blocks (dim 256, hidden 512, one layer,
# two training steps) every K-quant is written under its ggml type id (what
# llama.cpp reads), evaluates, and `lowbit info` reports it; GPTQ writes it too.
# NVFP4's tensor scale goes to llama.cpp's <tensor>.scale and comes back
# (lost, it would read as 1 and scale every weight by ~1e4).
set -u
NEEDS="MODEL TEXT TOK"
. "$(dirname "$0")/common_cli.sh"

# the fallback, never silent
expect 0 "not whole blocks of q4_k: int5:g32:sym instead" -- \
    "$LOWBIT" quantize "$MODEL" --format q4_k --dry-run
"$LOWBIT" quantize "$MODEL" --format q4_k --dry-run --json > "$TMP/plan.json" 2> /dev/null
json "$TMP/plan.json" "all(e['fallback_from'] == 'q4_k' for e in j) and \
    {e['spec'] for e in j} == {'int5:g32:sym', 'f16'} and \
    all(e['spec'] == 'f16' for e in j if 'ffn_down' in e['tensor'])"

# a model whose rows are whole 256-weight blocks
"$LOWBIT" train --config dim=256,hidden=512,layers=1,heads=4,seq_len=64 --tokenizer "$TOK" --text "$TEXT" \
    --steps 2 --batch 2 --ctx 64 --threads 1 -o "$TMP/wide.gguf" > /dev/null 2>&1 || fail "training the test model"
"$LOWBIT" eval "$TMP/wide.gguf" --text "$TEXT" --split eval --ctx 64 --calib-blocks 1100 --json > "$TMP/f32.eval.json"
for t in q2_k q3_k q4_k q5_k q6_k iq4_nl iq4_xs tq1_0 tq2_0 mxfp4 nvfp4; do
    expect 0 "" -- "$LOWBIT" quantize "$TMP/wide.gguf" --format $t -o "$TMP/$t.gguf"
    "$LOWBIT" info "$TMP/$t.gguf" --json > "$TMP/$t.json"
    T=$(echo $t | tr a-z A-Z)
    json "$TMP/$t.json" "[x['stored_as'] for x in j['tensors'] if 'attn_q' in x['name'] or 'ffn_down' in x['name']] == ['$T', '$T'] \
        and [x['format'] for x in j['tensors'] if 'ffn_up' in x['name']] == ['$t']"
    "$LOWBIT" eval "$TMP/$t.gguf" --text "$TEXT" --split eval --ctx 64 --calib-blocks 1100 --json > "$TMP/$t.eval.json"
    json "$TMP/$t.eval.json" "j['ppl'] > 1 and j['ppl'] < 1000"
done
[ "$(grep -a -c 'blk.0.attn_q.scale' "$TMP/nvfp4.gguf")" -ge 1 ] || fail "nvfp4: no blk.0.attn_q.scale tensor"
checks=$((checks + 1))
python3 -c "import json,sys; a=json.load(open('$TMP/nvfp4.eval.json'))['ppl']; b=json.load(open('$TMP/f32.eval.json'))['ppl']; \
sys.exit(0 if abs(a / b - 1) < 0.05 else 1)" || fail "nvfp4: perplexity far from f32's (tensor scale lost?)"
expect 0 "" -- "$LOWBIT" quantize "$TMP/wide.gguf" --format q3_k --method gptq --calib "$TEXT" --calib-blocks 4 \
    -o "$TMP/g.gguf"
"$LOWBIT" info "$TMP/g.gguf" --json > "$TMP/g.json"
json "$TMP/g.json" "all(x['stored_as'] == 'Q3_K' for x in j['tensors'] if '.attn_' in x['name'] or '.ffn_' in x['name'] \
    if 'norm' not in x['name'])"

echo "cli_kquant: $checks checks, $fails failed"
[ "$fails" -eq 0 ]
