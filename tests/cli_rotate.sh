#!/usr/bin/env bash
# --rotate / rotate= through the CLI: bad values refused as usage errors,
# refused combinations leave no file, the signs stored and counted in bpw
# (1 bit per row and column), shown by info, and the recipe spelling.
set -u
NEEDS="MODEL"
. "$(dirname "$0")/common_cli.sh"

expect 0 "--rotate " -- "$LOWBIT" quantize --help
expect 0 "rotate=none" -- "$LOWBIT" quantize --help
expect 2 "unknown rotation 'givens'" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/x.gguf" --format int4 --tensor-type 'blk.*=int4,rotate=givens'
expect 2 "'rotate_seed' expects" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/x.gguf" --format int4 --rotate --rotate-seed -3
# not on the embedding (no linear slots), not on float formats, not with a static activation range
expect 1 "not a linear's weight" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/x.gguf" --format int4 --tensors embeddings --rotate
expect 1 "not float ones" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/x.gguf" --format f16 --rotate
expect 1 "static activation range" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/x.gguf" --format int4 --rotate --act int8:tensor:minmax
[ ! -e "$TMP/x.gguf" ] && ok || fail "a refused quantize left a file"

# both sides: 4.6271 bpw plus (64 + 64) bits per 64 x 64 linear, and so on: 5 layers of
# wq wo (64x64), wk wv (32x64), w1 w3 (172x64), w2 (64x172) over 226,560 weights
"$LOWBIT" quantize "$MODEL" -o "$TMP/r.gguf" --format int4:g64:asym --rotate --json > "$TMP/r.json" \
    || fail "quantize --rotate failed"
bits=$(( 5 * (2 * (64 + 64) + 2 * (64 + 32) + 2 * (64 + 176) + (176 + 64)) ))
json "$TMP/r.json" "abs(j['bpw'] - (4.6271 + $bits / 226560)) < 2e-4 and 'rotate=hadamard' in j['options']"
expect 0 "hadamard out_hadamard" -- "$LOWBIT" info "$TMP/r.gguf"
# the same through a recipe line; another seed gives another file
printf 'linears int4:g64:asym rotate=hadamard\n' > "$TMP/r.recipe"
"$LOWBIT" quantize "$MODEL" -o "$TMP/r2.gguf" --recipe "$TMP/r.recipe" > /dev/null || fail "recipe with rotate failed"
cmp -s "$TMP/r.gguf" "$TMP/r2.gguf" && ok || fail "recipe and flags give different files"
"$LOWBIT" quantize "$MODEL" -o "$TMP/r3.gguf" --format int4:g64:asym --rotate --rotate-seed 7 > /dev/null || fail "seed 7"
cmp -s "$TMP/r.gguf" "$TMP/r3.gguf" && fail "another seed gave the same file" || ok
# input side only: no output signs
"$LOWBIT" quantize "$MODEL" -o "$TMP/i.gguf" --format int4:g64:asym --tensor-type 'blk.*=int4:g64:asym,rotate=input' > /dev/null \
    || fail "rotate=input failed"
"$LOWBIT" info "$TMP/i.gguf" > "$TMP/i.txt"
grep -q "hadamard" "$TMP/i.txt" && ! grep -q "out_hadamard" "$TMP/i.txt" && ok || fail "rotate=input: $(grep hadamard "$TMP/i.txt" | head -2)"
finish cli_rotate
