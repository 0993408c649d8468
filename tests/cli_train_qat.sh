#!/usr/bin/env bash
# lowbit train --qat as a user meets it: the options in --help; an unknown
# scheme, a format the scheme cannot write, a format or --stochastic without
# the scheme they belong to, bad bit counts: non-zero exit, a clear message,
# no file left. A short BitNet run writes a ternary:tensor model with int8
# per-token activation quantizers that `lowbit eval` and `generate` run
# through the real kernels, and whose --json names the scheme; 8-bit
# gradients and activations train a float model.
set -u
NEEDS="MODEL TEXT"
. "$(dirname "$0")/common_cli.sh"

expect 0 "--qat SCHEME" -- "$LOWBIT" train --help
expect 0 "paretoq" -- "$LOWBIT" train --help
expect 1 "unknown QAT scheme 'nosuch'" -- "$LOWBIT" train "$MODEL" --text "$TEXT" --qat nosuch -o "$TMP/x.gguf"
expect 1 "writes the binary family" -- "$LOWBIT" train "$MODEL" --text "$TEXT" --qat bwn --format int4:g32 -o "$TMP/x.gguf"
expect 1 "lut2" -- "$LOWBIT" train "$MODEL" --text "$TEXT" --qat ttq --format ternary:row -o "$TMP/x.gguf"
expect 1 "needs a format" -- "$LOWBIT" train "$MODEL" --text "$TEXT" --qat ste -o "$TMP/x.gguf"
expect 1 "QAT format" -- "$LOWBIT" train "$MODEL" --text "$TEXT" --qat paretoq --format int2:zz -o "$TMP/x.gguf"
expect 2 "--format needs --qat" -- "$LOWBIT" train "$MODEL" --text "$TEXT" --format binary:row -o "$TMP/x.gguf"
expect 2 "binaryconnect's option" -- "$LOWBIT" train "$MODEL" --text "$TEXT" --qat bwn --stochastic -o "$TMP/x.gguf"
expect 2 "--act-bits" -- "$LOWBIT" train "$MODEL" --text "$TEXT" --act-bits 3 -o "$TMP/x.gguf"
expect 2 "--grad-bits" -- "$LOWBIT" train "$MODEL" --text "$TEXT" --grad-bits 1 -o "$TMP/x.gguf"
expect 2 "--grad-scale" -- "$LOWBIT" train "$MODEL" --text "$TEXT" --grad-bits 8 --grad-scale row -o "$TMP/x.gguf"
if [ -e "$TMP/x.gguf" ]; then fail "a refused train left $TMP/x.gguf"; else ok; fi

# BitNet: a ternary model with int8 activations, run by eval and generate
"$LOWBIT" train "$MODEL" --text "$TEXT" --qat bitnet --steps 6 --batch 2 --ctx 32 --threads 1 --json -o "$TMP/b.gguf" > "$TMP/b.json" 2> "$TMP/b.err"
json "$TMP/b.json" "j['qat'] == 'bitnet' and j['format'] == 'ternary:tensor' and j['steps'] == 6 and j['last_loss'] < j['first_loss']"
expect 0 "ternary:tensor" -- "$LOWBIT" info "$TMP/b.gguf"
expect 0 "int8:token" -- "$LOWBIT" info "$TMP/b.gguf"
"$LOWBIT" eval "$TMP/b.gguf" --text "$TEXT" --split calib --json > "$TMP/e.json" 2>/dev/null
json "$TMP/e.json" "abs(j['bpw'] - 1.6395) < 1e-3 and j['ppl'] > 1"
expect 0 "" -- "$LOWBIT" generate "$TMP/b.gguf" -n 8

# ParetoQ 2-bit and OneBit write their formats
expect 0 "wrote" -- "$LOWBIT" train "$MODEL" --text "$TEXT" --qat paretoq --format int2:g64:asym:s4:r16 --steps 2 --batch 1 --ctx 16 -o "$TMP/p.gguf"
expect 0 "int2:g64:asym:s4:r16" -- "$LOWBIT" info "$TMP/p.gguf"
expect 0 "wrote" -- "$LOWBIT" train "$MODEL" --text "$TEXT" --qat onebit --steps 2 --batch 1 --ctx 16 -o "$TMP/o.gguf"
expect 0 "onebit" -- "$LOWBIT" info "$TMP/o.gguf"

# item 7 on a float model: int8 activations and 8-bit stochastic gradients
expect 0 "activations quantized per token, gradients quantized, per tensor" -- "$LOWBIT" train "$MODEL" --text "$TEXT" --act-bits 8 --grad-bits 8 --grad-scale tensor --grad-round stochastic --steps 2 --batch 1 --ctx 16 -o "$TMP/g.gguf"
expect 0 "int8:token" -- "$LOWBIT" info "$TMP/g.gguf"

# from scratch (item 9's BitNet run): a seeded config trained ternary, with a
# checkpoint and a resume that reproduce the uninterrupted file byte for byte
TOK="$(dirname "$MODEL")/tok512.bin"
SCRATCH=(train --config dim=32,hidden=64,layers=1,heads=2,seq_len=32 --tokenizer "$TOK" --text "$TEXT" --qat bitnet --steps 4 --batch 2 --ctx 16 --threads 1)
expect 0 "wrote" -- "$LOWBIT" "${SCRATCH[@]}" -o "$TMP/s1.gguf"
expect 0 "ternary:tensor" -- "$LOWBIT" info "$TMP/s1.gguf"
expect 0 "stopped after step 2" -- "$LOWBIT" "${SCRATCH[@]}" --checkpoint "$TMP/s.ckpt" --save-every 1 --stop-after 2 -o "$TMP/s2.gguf"
expect 0 "wrote" -- "$LOWBIT" "${SCRATCH[@]}" --resume "$TMP/s.ckpt" -o "$TMP/s2.gguf"
if cmp -s "$TMP/s1.gguf" "$TMP/s2.gguf"; then ok; else fail "from-scratch bitnet: the resumed run's file differs from the uninterrupted one"; fi

finish cli_train_qat
