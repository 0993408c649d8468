#!/usr/bin/env bash
# The lowbit command line as a user meets it: --help on every verb, --json
# that parses, a quantize -> info -> eval -> generate round trip on the real
# model, and bad input that must fail with a clear message, a non-zero exit
# and no output file left behind.
set -u
NEEDS="MODEL TEXT"
. "$(dirname "$0")/common_cli.sh"

# json FILE EXPR: a Python expression over the parsed object `j` must be true
no_leftovers() {
    if ls "$TMP" | grep -q "$1"; then fail "left behind: $(ls "$TMP")"; else ok; fi
}

# --- help and usage --------------------------------------------------------
expect 0 "usage: lowbit VERB" -- "$LOWBIT" --help
expect 2 "usage: lowbit VERB" -- "$LOWBIT"
expect 2 "unknown verb 'frobnicate'" -- "$LOWBIT" frobnicate
for verb in info quantize eval generate demo; do
    expect 0 "usage: lowbit $verb" -- "$LOWBIT" "$verb" --help
done
expect 2 "unknown option '--bogus'" -- "$LOWBIT" info "$MODEL" --bogus
expect 2 "--threads expects an integer" -- "$LOWBIT" info "$MODEL" --threads 0

# --- info ----------------------------------------------------------------------
expect 0 "dim 64, hidden 172, 5 layers" -- "$LOWBIT" info "$MODEL"
"$LOWBIT" info "$MODEL" --json > "$TMP/info.json"
json "$TMP/info.json" "j['config']['dim'] == 64 and len(j['tensors']) == 47 and j['bpw_all'] == 32"
# a file whose linears carry slots lists them under their weights
expect 0 "+ in_scale outliers(2) lora(r2)" -- "$LOWBIT" info fuzz/corpus/fuzz_model_gguf/slots.gguf
"$LOWBIT" info fuzz/corpus/fuzz_model_gguf/slots.gguf --json > "$TMP/slots.json"
json "$TMP/slots.json" "[t['slots'] for t in j['tensors'] if 'slots' in t] == ['in_scale hadamard bias', 'in_scale outliers(2) lora(r2)']"

# --- quantize -> info -> eval -> generate ---------------------------------------
"$LOWBIT" quantize "$MODEL" -o "$TMP/q.gguf" --format int4:g64:asym --clip mse --json > "$TMP/q.json" || fail "quantize failed"
json "$TMP/q.json" "j['tensors_quantized'] == 35 and abs(j['bpw'] - 4.6271) < 1e-3 and j['clip'] == 'mse' and 1e6 < j['peak_rss'] < 1e9"
"$LOWBIT" info "$TMP/q.gguf" --json > "$TMP/qi.json"
json "$TMP/qi.json" "j['file_format'] == 'gguf' and abs(j['bpw'] - 4.6271) < 1e-3 and 'clip=mse' in j['quant_note']"
"$LOWBIT" eval "$TMP/q.gguf" --text "$TEXT" --split calib --ctx 128 --ref "$MODEL" --json > "$TMP/e.json" || fail "eval failed"
json "$TMP/e.json" "all(k in j for k in ('ppl','nll','tokens','protocol','ctx','bpw','bpw_all','kld','top1','tokens_per_second','kernels')) and j['ctx'] == 128 and j['protocol'] == 'docs' and j['kld'] > 0 and 0 < j['top1'] < 1 and 1e6 < j['peak_rss'] < 1e9"
"$LOWBIT" eval "$MODEL" --text "$TEXT" --split eval --protocol chunks --ctx 128 --json > "$TMP/c.json" || fail "chunks eval failed"
json "$TMP/c.json" "j['protocol'] == 'chunks' and j['tokens'] == j['sequences'] * 63 and j['blocks'] == [129, 1230]"
expect 0 "Once upon a time, there was a little girl named Lily. She loved to play outside in the park." -- \
    "$LOWBIT" generate "$MODEL" -p "Once upon a time" -n 30 --temp 0
"$LOWBIT" generate "$TMP/q.gguf" -n 20 --seed 7 --json > "$TMP/g.json" || fail "generate failed"
json "$TMP/g.json" "j['generated_tokens'] == 20 and j['tokens_per_second'] > 0 and len(j['text']) > 0"
# the rates' keys (values depend on the machine): generation and prompt apart, and the kernels used
json "$TMP/g.json" "all(k in j for k in ('generate_seconds','prompt_tokens_per_second','prompt_seconds','threads','kernels')) and j['prompt_tokens'] == 1 and 'f32' in j['kernels']"
"$LOWBIT" quantize "$MODEL" -o "$TMP/q8.gguf" --format q8_0 > /dev/null || fail "quantize q8_0 failed"
"$LOWBIT" generate "$TMP/q8.gguf" -p "Once upon a time" -n 5 --json > "$TMP/g8.json" || fail "generate q8_0 failed"
# q8_0 runs on an integer kernel (its own rows or the uniform panels), not the dequantizing fallback
json "$TMP/g8.json" "j['prompt_tokens'] == 5 and j['prompt_tokens_per_second'] > 0 and ('q8_0_' in j['kernels'] or 'uniform_' in j['kernels']) and 'dequant' not in j['kernels']"
expect 0 "prompt of 5 tokens at" -- "$LOWBIT" generate "$TMP/q8.gguf" -p "Once upon a time" -n 5
"$LOWBIT" generate "$TMP/q.gguf" -n 20 --seed 7 --json > "$TMP/g2.json"
json "$TMP/g2.json" "j['text'] == json.load(open('$TMP/g.json'))['text']"

# the progress line: on stderr when asked for (by default only on a terminal)
"$LOWBIT" eval "$MODEL" --text "$TEXT" --split calib --ctx 64 --progress > /dev/null 2> "$TMP/progress.txt"
grep -q "evaluating: 128/128" "$TMP/progress.txt" && ok || fail "no progress line: $(cat "$TMP/progress.txt")"
"$LOWBIT" eval "$MODEL" --text "$TEXT" --split calib --ctx 64 > /dev/null 2> "$TMP/progress.txt"
[ ! -s "$TMP/progress.txt" ] && ok || fail "progress shown without a terminal: $(cat "$TMP/progress.txt")"

# tensor selection
"$LOWBIT" quantize "$MODEL" -o "$TMP/d.gguf" --format binary:row --tensors 'blk.*.ffn_down.weight,embeddings' --json > "$TMP/d.json"
json "$TMP/d.json" "j['tensors_quantized'] == 6"
expect 2 "matches no tensor" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/x.gguf" --format q8_0 --tensors 'blk.9.*'
expect 2 "selects only norm weights" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/x.gguf" --format q8_0 --tensors 'blk.0.attn_norm.weight'
"$LOWBIT" quantize "$MODEL" -o "$TMP/a.gguf" --format q8_0 --tensors 'blk.*.attn_*' --json > "$TMP/a.json"
json "$TMP/a.json" "j['tensors_quantized'] == 20"
expect 2 "tied to the token embedding" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/x.gguf" --format q8_0 --tensors output
no_leftovers x.gguf

# --- plans: overrides, recipes, dry runs ----------------------------------------
# an override wins over --format for the tensors it matches, the last one over earlier ones
"$LOWBIT" quantize "$MODEL" --format int4:g64:asym --tensor-type 'blk.0.*=q8_0' \
    --tensor-type 'blk.0.ffn_down.weight=ternary:row,method=twn' --dry-run --json > "$TMP/plan.json"
json "$TMP/plan.json" "len(j) == 35 and {e['tensor']: e['spec'] for e in j}['blk.0.attn_q.weight'] == 'int8:g32:sym' and {e['tensor']: e['method'] for e in j}['blk.0.ffn_down.weight'] == 'twn' and {e['tensor']: e['spec'] for e in j}['blk.1.attn_q.weight'] == 'int4:g64:asym' and all(set(e) == {'tensor','spec','method','options','bpw'} for e in j)"
# --dry-run writes no model (a recipe only when asked for)
"$LOWBIT" quantize "$MODEL" -o "$TMP/dry.gguf" --format int4 --dry-run > "$TMP/dry.txt" || fail "dry run failed"
grep -q "blk.4.ffn_up.weight" "$TMP/dry.txt" && ok || fail "dry run lacks the plan: $(cat "$TMP/dry.txt")"
no_leftovers dry.gguf
# a saved recipe reads back to the same plan and the same quantized model
"$LOWBIT" quantize "$MODEL" -o "$TMP/r1.gguf" --format int3:g32:asym --clip mse --tensors linears,embeddings \
    --tensor-type 'blk.*.ffn_down.weight=int4:g64:asym,mse_steps=20' --save-recipe "$TMP/plan.recipe" --json > "$TMP/r1.json" || fail "save-recipe failed"
grep -q "^blk.3.ffn_down.weight int4:g64:asym method=rtn clip=mse mse_steps=20" "$TMP/plan.recipe" && ok || fail "recipe: $(cat "$TMP/plan.recipe")"
"$LOWBIT" quantize "$MODEL" -o "$TMP/r2.gguf" --recipe "$TMP/plan.recipe" --json > "$TMP/r2.json" || fail "--recipe failed"
json "$TMP/r2.json" "j['tensors_quantized'] == 36 and j['bpw'] == json.load(open('$TMP/r1.json'))['bpw'] and j['format'] is None"
"$LOWBIT" quantize "$MODEL" --recipe "$TMP/plan.recipe" --dry-run --json > "$TMP/p2.json"
"$LOWBIT" quantize "$MODEL" --format int3:g32:asym --clip mse --tensors linears,embeddings \
    --tensor-type 'blk.*.ffn_down.weight=int4:g64:asym,mse_steps=20' --dry-run --json > "$TMP/p1.json"
json "$TMP/p2.json" "j == json.load(open('$TMP/p1.json'))"
"$LOWBIT" info "$TMP/r1.gguf" --json > "$TMP/r1i.json"
json "$TMP/r1i.json" "'method=rtn clip=mse format=int3:g32:asym tensors=linears,embeddings' in j['quant_note'] and 'mse_steps=20' in j['quant_note']"
# a recipe with a bad line: its line number, and nothing written
printf 'linears int4\n# fine\nembeddings int4 clip=best\n' > "$TMP/bad.recipe"
expect 1 "bad.recipe:3: unknown clipping rule 'best'" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/bad.gguf" --recipe "$TMP/bad.recipe"
expect 2 "empty tensor selection" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/bad.gguf" --format int4 --tensors ''
expect 2 "empty entry" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/bad.gguf" --format int4 --tensors 'linears,'
expect 2 "unknown method 'nosuch' (available: rtn, twn" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/bad.gguf" --format int4 --method nosuch
expect 2 "method twn has no option 'clip'" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/bad.gguf" --format ternary --method twn --clip mse
expect 1 "ternary formats only" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/bad.gguf" --format int4 --method twn
expect 2 "expected PATTERN=SPEC" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/bad.gguf" --format int4 --tensor-type 'blk.0.*'
expect 2 "missing --format SPEC (or --recipe FILE)" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/bad.gguf"
expect 0 "twn" -- "$LOWBIT" quantize --help
"$LOWBIT" quantize "$MODEL" -o "$TMP/t.gguf" --format ternary:row --method twn --json > "$TMP/t.json" || fail "twn failed"
json "$TMP/t.json" "j['method'] == 'twn' and j['clip'] is None and j['tensors_quantized'] == 35"
# hqq: --method, a recipe line with its options, an override, a refusal
expect 0 "hqq" -- "$LOWBIT" quantize --help
printf 'linears int3:g64:asym method=hqq p=0.7 iters=10\nblk.0.ffn_down.weight int4:g64:asym:zint method=hqq scale=update\n' > "$TMP/hqq.recipe"
"$LOWBIT" quantize "$MODEL" -o "$TMP/h.gguf" --recipe "$TMP/hqq.recipe" \
    --tensor-type 'blk.1.attn_q.weight=int2:g32:asym,method=hqq,p=0.5' --json > "$TMP/h.json" || fail "hqq recipe failed"
json "$TMP/h.json" "j['tensors_quantized'] == 35"
"$LOWBIT" info "$TMP/h.gguf" | grep -q "method=hqq iters=10 format=int3:g64:asym" && ok || fail "hqq note: $("$LOWBIT" info "$TMP/h.gguf" | grep -i note)"
expect 1 "uniform int formats" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/bad.gguf" --format nf4 --method hqq
expect 2 "method hqq has no option 'clip'" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/bad.gguf" --format int4 --method hqq --clip mse
no_leftovers bad.gguf
# hierarchical scales: every bit counted (3.8037 bpw, docs/FORMATS.md), the spec back from the file,
# hqq refuses them, r<N> alone is nonsense
expect 0 "s<k>" -- "$LOWBIT" quantize --help
"$LOWBIT" quantize "$MODEL" -o "$TMP/hs.gguf" --format int3:g16:asym:s6:r16 --json > "$TMP/hs.json" || fail "hscale quantize failed"
json "$TMP/hs.json" "j['tensors_quantized'] == 35 and abs(j['bpw'] - 3.8037) < 1e-3"
"$LOWBIT" info "$TMP/hs.gguf" | grep -q "format=int3:g16:asym:s6:r16" && ok || fail "hscale spec not in the file"
expect 1 "does not support hierarchical scales" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/bad.gguf" --format int3:g16:s6 --method hqq
expect 2 "need hierarchical scales (s<k>)" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/bad.gguf" --format int3:g16:r4
no_leftovers bad.gguf

# --- bad input: clear message, non-zero exit, nothing written ------------------
expect 2 "'int4x' in 'int4x': int formats take 1 to 8 bits" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/bad.gguf" --format int4x
expect 2 "unknown format 'fp4'" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/bad.gguf" --format fp4
expect 2 "not a power of two" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/bad.gguf" --format int4:g0
expect 2 "not a power of two" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/bad.gguf" --format int4:g48
expect 2 "unknown clipping rule" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/bad.gguf" --format int4 --clip best
# gptq calibrates on the calibration split when no statistics are given, or
# uses saved ones (lowbit calibrate); both give the same bytes
expect 0 "(gptq" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/gptq.gguf" --format int3:g64 --method gptq --calib "$TEXT" --calib-blocks 16
expect 0 "" -- "$LOWBIT" calibrate "$MODEL" -o "$TMP/stats.gguf" --text "$TEXT" --calib-blocks 16
expect 0 "(gptq" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/gptq2.gguf" --format int3:g64 --method gptq --stats "$TMP/stats.gguf"
if cmp -s "$TMP/gptq.gguf" "$TMP/gptq2.gguf"; then ok; else fail "gptq with --stats differs from gptq calibrating itself"; fi
# awq, awq+gptq and smoothquant fold input scales into the model (norms and
# all) before quantizing; statistics as for gptq; bad formats and options refused
expect 0 "(awq)" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/awq.gguf" --format int4:g64:asym --method awq --stats "$TMP/stats.gguf"
expect 0 "method=awq format=int4:g64:asym" -- "$LOWBIT" info "$TMP/awq.gguf"
expect 0 "(awq+gptq" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/awqg.gguf" --format int4:g64:asym --method awq+gptq --stats "$TMP/stats.gguf"
expect 0 "(smoothquant" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/sq.gguf" --format int8:g32:sym --method smoothquant \
    --tensor-type 'linears=int8:g32:sym,method=smoothquant,alpha=0.85' --stats "$TMP/stats.gguf"
expect 0 "ppl " -- "$LOWBIT" eval "$TMP/awq.gguf" --text "$TEXT" --split calib --calib-blocks 4
expect 1 "method awq quantizes to uniform (int) formats" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/bad.gguf" --format nf4 --method awq --stats "$TMP/stats.gguf"
expect 2 "awq option 'max_shrink' expects a number in [0, 0.99]" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/bad.gguf" --format int4 \
    --method awq --tensor-type 'linears=int4,method=awq,max_shrink=2' --stats "$TMP/stats.gguf"
no_leftovers bad.gguf
# statistics of another model, or a corrupt file: refused, nothing written
expect 1 "" -- "$LOWBIT" quantize fuzz/corpus/fuzz_model_gguf/untied.gguf -o "$TMP/bad.gguf" --format int4 --method gptq --stats "$TMP/stats.gguf"
if [ -e "$TMP/bad.gguf" ]; then fail "a refused gptq run left $TMP/bad.gguf"; else ok; fi
head -c 100 "$TMP/stats.gguf" > "$TMP/short.gguf"
expect 1 "" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/bad.gguf" --format int4 --method gptq --stats "$TMP/short.gguf"
expect 2 "would not be used" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/bad.gguf" --format int4 --method gptq --stats "$TMP/stats.gguf" --calib-blocks 4
# calibration never reaches into the evaluation split: --calib-blocks 0 is refused
expect 2 "--calib-blocks" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/bad.gguf" --format int4 --method gptq --calib-blocks 0
if [ -e "$TMP/bad.gguf" ]; then fail "a refused gptq run left $TMP/bad.gguf"; else ok; fi
expect 2 "missing -o OUT" -- "$LOWBIT" quantize "$MODEL" --format int4
expect 1 "own rule" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/bad.gguf" --format binary --clip mse
head -c 5000 "$MODEL" > "$TMP/cut.bin"
expect 1 "truncated" -- "$LOWBIT" quantize "$TMP/cut.bin" -o "$TMP/bad.gguf" --format int4
expect 1 "cannot open" -- "$LOWBIT" quantize "$TMP/none.bin" -o "$TMP/bad.gguf" --format int4
printf 'GGUF\003\0\0\0' > "$TMP/cut.gguf"
expect 1 "cut.gguf" -- "$LOWBIT" info "$TMP/cut.gguf"
head -c 100000 "$TMP/q.gguf" > "$TMP/q-cut.gguf"
expect 1 "past the end" -- "$LOWBIT" eval "$TMP/q-cut.gguf" --text "$TEXT"
# a NaN weight in the middle of wq of layer 2
cp "$MODEL" "$TMP/nan.bin"
printf '\000\000\300\177' | dd of="$TMP/nan.bin" bs=1 seek=$((28 + 4 * (512 * 64 + 5 * 64 + 2 * 64 * 64 + 100))) conv=notrunc 2> /dev/null
expect 1 "NaN" -- "$LOWBIT" quantize "$TMP/nan.bin" -o "$TMP/bad.gguf" --format int4
expect 1 "non-finite" -- "$LOWBIT" eval "$TMP/nan.bin" --tokenizer "$DATA/models/tok512.bin" --text "$TEXT" --split calib
expect 1 "cannot create" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/no/such/dir/out.gguf" --format int4
no_leftovers "bad.gguf"
ls "$TMP"/*.tmp.* > /dev/null 2>&1 && fail "temporary files left: $(ls "$TMP")" || ok
: > "$TMP/empty.txt"
expect 1 "is empty" -- "$LOWBIT" eval "$MODEL" --text "$TMP/empty.txt"
printf 'hello \377 world\n' > "$TMP/latin1.txt"
expect 1 "not valid UTF-8 (byte offset 6)" -- "$LOWBIT" eval "$MODEL" --text "$TMP/latin1.txt"
expect 2 "missing --text" -- "$LOWBIT" eval "$MODEL"
expect 2 "unknown protocol 'windows'" -- "$LOWBIT" eval "$MODEL" --text "$TEXT" --protocol windows
expect 1 "outside" -- "$LOWBIT" eval "$MODEL" --text "$TEXT" --ctx 4096
expect 1 "split" -- "$LOWBIT" eval "$MODEL" --text "$TEXT" --split eval --calib-blocks 5000
expect 2 "--temp expects a number" -- "$LOWBIT" generate "$MODEL" --temp -1
expect 2 "-n expects an integer" -- "$LOWBIT" generate "$MODEL" -n 0
expect 1 "tokenizer" -- "$LOWBIT" generate "$MODEL" --tokenizer "$TMP/empty.txt"

finish cli_lowbit
