#!/usr/bin/env bash
# lowbit tokenize as a user meets it: --help, a vocab-only GGUF (the ids
# llama.cpp's test vectors give), --bos/--special/--json, -f FILE, a
# llama2.c checkpoint with its tokenizer and a lowbit GGUF made from it (same
# ids), and bad input that fails clearly: no text, both -p and -f, a file
# that is no model, an unsupported pre-tokenizer.
set -u
VOCAB=../shared/data/vocab
GPT2=$VOCAB/ggml-vocab-gpt-2.gguf
SPM=$VOCAB/ggml-vocab-llama-spm.gguf
FALCON=$VOCAB/ggml-vocab-falcon.gguf
NEEDS="MODEL TOK GPT2 SPM FALCON"
. "$(dirname "$0")/common_cli.sh"

expect 0 "usage: lowbit tokenize" -- "$LOWBIT" tokenize --help
expect 0 "tokenize" -- "$LOWBIT" --help
# from the .out files (llama.cpp's ids, no BOS)
expect 0 "15496 995" -- "$LOWBIT" tokenize "$GPT2" -p "Hello world"
expect 0 "29871 15043 3186" -- "$LOWBIT" tokenize "$SPM" -p " Hello world"
expect 0 "1 15043 3186" -- "$LOWBIT" tokenize "$SPM" -p "Hello world" --bos
# control tokens are text unless --special
expect 0 "1 15043" -- "$LOWBIT" tokenize "$SPM" -p "<s>Hello" --special
out=$("$LOWBIT" tokenize "$FALCON" -p "a<|endoftext|>")
if [ "$out" != "76 11" ] && [ "$(echo "$out" | wc -w)" -gt 2 ]; then ok; else fail "falcon without --special gave '$out'"; fi
expect 0 "76 11" -- "$LOWBIT" tokenize "$FALCON" -p "a<|endoftext|>" --special
printf 'Hello world\n' > "$TMP/t.txt"
expect 0 "15496 995 198" -- "$LOWBIT" tokenize "$GPT2" -f "$TMP/t.txt"
"$LOWBIT" tokenize "$GPT2" -p "Hello, y'all!" --json > "$TMP/j.json"
json "$TMP/j.json" "j['tokenizer'] == 'gpt2' and j['pre'] == 'gpt-2' and j['vocab_size'] == 50257 and j['n_tokens'] == len(j['ids']) and j['text'] == \"Hello, y'all!\""
# a llama2.c checkpoint (tok512.bin beside it) and the same model saved as GGUF
a=$("$LOWBIT" tokenize "$MODEL" -p "Once upon a time, Lily's cat." --bos)
expect 0 "1 403 407 261 378" -- "$LOWBIT" tokenize "$MODEL" -p "Once upon a time" --bos
"$LOWBIT" quantize "$MODEL" --format f32 -o "$TMP/m.gguf" > /dev/null 2>&1
b=$("$LOWBIT" tokenize "$TMP/m.gguf" -p "Once upon a time, Lily's cat." --bos)
if [ -n "$a" ] && [ "$a" = "$b" ]; then ok; else fail "llama2.c '$a' vs its GGUF '$b'"; fi
"$LOWBIT" tokenize "$TMP/m.gguf" -p "x" --json > "$TMP/m.json"
json "$TMP/m.json" "j['tokenizer'] == 'llama' and j['vocab_size'] == 512"

expect 2 "exactly one of -p TEXT or -f FILE" -- "$LOWBIT" tokenize "$GPT2"
expect 2 "exactly one of -p TEXT or -f FILE" -- "$LOWBIT" tokenize "$GPT2" -p x -f "$TMP/t.txt"
expect 2 "expected one MODEL_OR_VOCAB" -- "$LOWBIT" tokenize -p x
expect 1 "not a GGUF file" -- "$LOWBIT" tokenize "$TMP/t.txt" -p x
expect 1 "No such file" -- "$LOWBIT" tokenize "$GPT2" -f "$TMP/missing.txt"
expect 1 "invalid UTF-8" -- "$LOWBIT" tokenize "$GPT2" -p $'\xff'
# a vocab whose pre-tokenizer lowbit does not implement: refused by name
python3 - "$GPT2" "$TMP/bloom.gguf" <<'PY'
import sys
data = open(sys.argv[1], 'rb').read()
key = b'tokenizer.ggml.pre'
i = data.index(key) + len(key) + 4          # after the key and its value type
n = int.from_bytes(data[i:i + 8], 'little')  # the string's length
assert data[i + 8:i + 8 + n] == b'gpt-2'
out = data[:i] + (5).to_bytes(8, 'little') + b'bloom' + data[i + 8 + n:]
open(sys.argv[2], 'wb').write(out)
PY
expect 1 "pre-tokenizer 'bloom' (tokenizer.ggml.pre) is not supported; supported: default, gpt-2" -- "$LOWBIT" tokenize "$TMP/bloom.gguf" -p x

finish cli_tokenize
