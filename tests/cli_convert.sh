#!/usr/bin/env bash
# lowbit convert as a user meets it: --help; stories260K to a Hugging Face
# folder and back to GGUF (the same greedy text and perplexity as the
# original), info / eval / generate / quantize on the folder itself, f16 and
# bf16 folders, a quantized model (refused without --format, dequantized
# with it), --json; any format into GGUF (--format q4_k: rtn per tensor, the
# fallback said); and bad input that fails clearly and leaves nothing:
# a quantized --format into a folder, an unknown --to, the input's own folder as output,
# a broken config.json, a truncated model.safetensors.
set -u
NEEDS="MODEL TOK TEXT"
. "$(dirname "$0")/common_cli.sh"

expect 0 "usage: lowbit convert" -- "$LOWBIT" convert --help
expect 0 "convert" -- "$LOWBIT" --help
expect 0 "safetensors folder" -- "$LOWBIT" convert "$MODEL" -o "$TMP/hf"
for f in config.json model.safetensors tokenizer.model; do
    if [ -f "$TMP/hf/$f" ]; then ok; else fail "the folder lacks $f"; fi
done
json "$TMP/hf/config.json" "j['architectures'] == ['LlamaForCausalLM'] and j['hidden_size'] == 64 and j['num_key_value_heads'] == 4 and j['tie_word_embeddings'] is True and j['torch_dtype'] == 'float32'"
expect 0 "safetensors, llama: dim 64" -- "$LOWBIT" info "$TMP/hf"
expect 0 "safetensors, llama: dim 64" -- "$LOWBIT" info "$TMP/hf/config.json"
# back to GGUF: the same text as the original, greedy
expect 0 "GGUF" -- "$LOWBIT" convert "$TMP/hf" -o "$TMP/back.gguf"
a=$("$LOWBIT" generate "$MODEL" -p "Once upon a time" -n 40 --temp 0 2>/dev/null)
b=$("$LOWBIT" generate "$TMP/hf" -p "Once upon a time" -n 40 --temp 0 2>/dev/null)
c=$("$LOWBIT" generate "$TMP/back.gguf" -p "Once upon a time" -n 40 --temp 0 2>/dev/null)
if [ -n "$a" ] && [ "$a" = "$b" ] && [ "$a" = "$c" ]; then ok; else fail "greedy text differs: '$a' / '$b' / '$c'"; fi
"$LOWBIT" eval "$MODEL" --text "$TEXT" --split calib --calib-blocks 10 --json > "$TMP/e1.json" 2>/dev/null
"$LOWBIT" eval "$TMP/hf" --text "$TEXT" --split calib --calib-blocks 10 --json > "$TMP/e2.json" 2>/dev/null
json "$TMP/e2.json" "j['ppl'] == json.load(open('$TMP/e1.json'))['ppl']"
# the folder quantizes like any model
expect 0 "" -- "$LOWBIT" quantize "$TMP/hf" --format int4:g32 -o "$TMP/q4.gguf"
expect 1 "ask for f32, f16 or bf16" -- "$LOWBIT" convert "$TMP/q4.gguf" -o "$TMP/q4hf"
if [ ! -e "$TMP/q4hf" ]; then ok; else fail "a refused convert left $TMP/q4hf"; fi
expect 0 "safetensors folder" -- "$LOWBIT" convert "$TMP/q4.gguf" --format f32 -o "$TMP/q4hf"
expect 0 "GGUF" -- "$LOWBIT" convert "$TMP/q4.gguf" --format f16 -o "$TMP/q4f16.gguf"
expect 0 "f16" -- "$LOWBIT" info "$TMP/q4f16.gguf"
for dt in f16 bf16; do
    "$LOWBIT" convert "$MODEL" --to safetensors --format $dt -o "$TMP/$dt" --json > "$TMP/$dt.json"
    json "$TMP/$dt.json" "j['to'] == 'safetensors' and j['format'] == '$dt' and j['tensors'] == 47 and j['tokenizer'] is True and 1e6 < j['peak_rss'] < 1e9"
    expect 0 "$dt" -- "$LOWBIT" info "$TMP/$dt"
done
json "$TMP/bf16/config.json" "j['torch_dtype'] == 'bfloat16'"

# bad input: clear messages, exit codes, nothing half-written
expect 2 "cannot hold: write GGUF" -- "$LOWBIT" convert "$MODEL" --format int4 -o "$TMP/x"
# any format into GGUF: rtn per tensor, the K-quant fallback said on stderr; the
# linears come out as quantize's data-free rtn (clip mse) writes them
expect 0 "not whole blocks of q4_k" -- "$LOWBIT" convert "$MODEL" --format q4_k -o "$TMP/k.gguf"
expect 0 "" -- "$LOWBIT" quantize "$MODEL" --format q4_k --clip mse -o "$TMP/kq.gguf"
"$LOWBIT" info "$TMP/k.gguf" --json > "$TMP/k.json"
"$LOWBIT" info "$TMP/kq.gguf" --json > "$TMP/kq.json"
json "$TMP/k.json" "[x['format'] for x in j['tensors'] if '.attn_' in x['name'] or '.ffn_' in x['name'] if 'norm' not in x['name']] == \
    [x['format'] for x in json.load(open('$TMP/kq.json'))['tensors'] if '.attn_' in x['name'] or '.ffn_' in x['name'] if 'norm' not in x['name']] \
    and [x['format'] for x in j['tensors'] if x['name'] == 'token_embd.weight'] == ['int5:g32:sym']"
"$LOWBIT" eval "$TMP/k.gguf" --text "$TEXT" --split eval --json > "$TMP/k.eval.json"
json "$TMP/k.eval.json" "j['ppl'] < 7.13 * 1.05"  # f32 7.13; q4_k (q5_0 where it falls back) 7.27
expect 2 "--to must be gguf or safetensors" -- "$LOWBIT" convert "$MODEL" --to onnx -o "$TMP/x"
expect 2 "missing -o OUT" -- "$LOWBIT" convert "$MODEL"
expect 1 "is the input's folder" -- "$LOWBIT" convert "$TMP/hf" -o "$TMP/hf"
expect 1 "same file as the input" -- "$LOWBIT" convert "$TMP/back.gguf" -o "$TMP/back.gguf"
if [ ! -e "$TMP/x" ]; then ok; else fail "a refused convert left $TMP/x"; fi
mkdir "$TMP/broken"
cp "$TMP/hf/model.safetensors" "$TMP/broken/"
printf '{"architectures": ["LlamaForCausalLM"], "hidden_size": 64,' > "$TMP/broken/config.json"
expect 1 "config.json" -- "$LOWBIT" convert "$TMP/broken" -o "$TMP/broken.gguf"
cp "$TMP/hf/config.json" "$TMP/broken/"
head -c 5000 "$TMP/hf/model.safetensors" > "$TMP/broken/model.safetensors"
expect 1 "run past the end of the data" -- "$LOWBIT" info "$TMP/broken"
if [ ! -e "$TMP/broken.gguf" ]; then ok; else fail "a failed convert left $TMP/broken.gguf"; fi

finish cli_convert
