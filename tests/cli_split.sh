#!/usr/bin/env bash
# Split GGUF sets from the command line (docs/SCALING.md): --split-max-size
# and --split-max-tensors on quantize and convert, in --help and --json; the
# set written under a small size gives >= 3 shards none over the limit (but
# for a single tensor larger than it), evaluates to the very perplexity and
# greedy text of the unsplit file, and converts back to one file identical
# to the unsplit one; info / eval / generate open it from its first shard.
# Broken sets fail with exit 1 and a message naming the problem: a deleted
# shard, a shard of another set, two shards swapped, a truncated shard, a
# later shard given first. Bad flags exit 2; an output whose shards would
# replace the input's, or a failed write, leaves nothing behind.
set -u
NEEDS="MODEL TOK TEXT"
. "$(dirname "$0")/common_cli.sh"

expect 0 "--split-max-size SIZE" -- "$LOWBIT" quantize --help
expect 0 "--split-max-tensors N" -- "$LOWBIT" quantize --help
expect 0 "--split-max-size SIZE" -- "$LOWBIT" convert --help

# unsplit and split, the same quantization
"$LOWBIT" quantize "$MODEL" --format q4_0 -o "$TMP/one.gguf" >/dev/null 2>&1 || fail "quantize unsplit"
"$LOWBIT" quantize "$MODEL" --format q4_0 -o "$TMP/q.gguf" --split-max-size 100K --json > "$TMP/q.json" 2>/dev/null ||
    fail "quantize split"
json "$TMP/q.json" "len(j['shards']) >= 3 and j['shards'][0].endswith('q-00001-of-%05d.gguf' % len(j['shards']))"
n=$(python3 -c "import json; print(len(json.load(open('$TMP/q.json'))['shards']))")
N=$(printf %05d "$n")
FIRST="$TMP/q-00001-of-$N.gguf"
if [ ! -e "$TMP/q.gguf" ]; then ok; else fail "a split quantize wrote $TMP/q.gguf itself"; fi
json "$TMP/q.json" "j['file_bytes'] == sum(__import__('os').path.getsize(p) for p in j['shards'])"
# no shard over 100 kB unless it holds one tensor alone (the 128 KiB f32 embedding is in the first)
for f in "$TMP"/q-*-of-$N.gguf; do
    s=$(stat -c %s "$f")
    if [ "$s" -le 100000 ] || [ "$f" = "$FIRST" ]; then ok; else fail "$f is $s bytes, over 100K"; fi
done
# the same model: perplexity, text, and the file written back as one
"$LOWBIT" eval "$TMP/one.gguf" --text "$TEXT" --split calib --calib-blocks 10 --json > "$TMP/e1.json" 2>/dev/null
"$LOWBIT" eval "$FIRST" --text "$TEXT" --split calib --calib-blocks 10 --json > "$TMP/e2.json" 2>/dev/null
json "$TMP/e2.json" "j['ppl'] == json.load(open('$TMP/e1.json'))['ppl'] and j['bpw_all'] == json.load(open('$TMP/e1.json'))['bpw_all']"
a=$("$LOWBIT" generate "$TMP/one.gguf" -p "Once upon a time" -n 30 --temp 0 2>/dev/null)
b=$("$LOWBIT" generate "$FIRST" -p "Once upon a time" -n 30 --temp 0 2>/dev/null)
if [ -n "$a" ] && [ "$a" = "$b" ]; then ok; else fail "greedy text differs: '$a' / '$b'"; fi
expect 0 "shards" -- "$LOWBIT" info "$FIRST"
"$LOWBIT" convert "$TMP/one.gguf" -o "$TMP/back1.gguf" >/dev/null 2>&1
"$LOWBIT" convert "$FIRST" -o "$TMP/back2.gguf" >/dev/null 2>&1
if cmp -s "$TMP/back1.gguf" "$TMP/back2.gguf"; then ok; else fail "the set converted to one file differs from the unsplit file's"; fi

# convert: a tensor limit, sizes in 1024s, f16 while splitting
"$LOWBIT" convert "$MODEL" -o "$TMP/c.gguf" --split-max-tensors 10 --json > "$TMP/c.json" 2>/dev/null
json "$TMP/c.json" "len(j['shards']) == 5 and j['tensors'] == 47"
expect 0 "shards" -- "$LOWBIT" convert "$MODEL" -o "$TMP/h.gguf" --format f16 --split-max-size 64KiB
expect 0 "5 shards" -- "$LOWBIT" convert "$TMP/c-00001-of-00005.gguf" -o "$TMP/c2.gguf" --split-max-tensors 10
"$LOWBIT" convert "$MODEL" -o "$TMP/big.gguf" --split-max-size 1G --json > "$TMP/big.json" 2>/dev/null
json "$TMP/big.json" "j['shards'] == ['$TMP/big-00001-of-00001.gguf']"

# broken sets: exit 1, the problem named
cp "$TMP/q-00002-of-$N.gguf" "$TMP/keep.gguf"
rm "$TMP/q-00002-of-$N.gguf"
expect 1 "shard 2 of $n" -- "$LOWBIT" eval "$FIRST" --text "$TEXT" --split calib --calib-blocks 2
cp "$TMP/c-00002-of-00005.gguf" "$TMP/q-00002-of-$N.gguf"
expect 1 "it belongs to a set of 5 shards" -- "$LOWBIT" info "$FIRST"
"$LOWBIT" quantize "$MODEL" --format q8_0 -o "$TMP/o.gguf" --split-max-tensors 16 >/dev/null 2>&1
"$LOWBIT" quantize "$MODEL" --format q4_0 -o "$TMP/p.gguf" --split-max-tensors 16 >/dev/null 2>&1
cp "$TMP/o-00002-of-00003.gguf" "$TMP/p-00002-of-00003.gguf"
expect 1 "from another split set" -- "$LOWBIT" info "$TMP/p-00001-of-00003.gguf"
cp "$TMP/keep.gguf" "$TMP/q-00003-of-$N.gguf"
cp "$TMP/q-00001-of-$N.gguf" "$TMP/q-00002-of-$N.gguf" 2>/dev/null
expect 1 "has split.no" -- "$LOWBIT" info "$FIRST"
"$LOWBIT" quantize "$MODEL" --format q4_0 -o "$TMP/t.gguf" --split-max-tensors 16 >/dev/null 2>&1
head -c 3000 "$TMP/t-00003-of-00003.gguf" > "$TMP/t3" && mv "$TMP/t3" "$TMP/t-00003-of-00003.gguf"
expect 1 "shard 3 of 3" -- "$LOWBIT" generate "$TMP/t-00001-of-00003.gguf" -p "Once" -n 4
expect 1 "open the first shard" -- "$LOWBIT" info "$TMP/o-00002-of-00003.gguf"
cp "$TMP/o-00001-of-00003.gguf" "$TMP/renamed.gguf"
expect 1 "cannot be found" -- "$LOWBIT" info "$TMP/renamed.gguf"

# bad flags, bad outputs: nothing written
expect 2 "--split-max-size '0'" -- "$LOWBIT" quantize "$MODEL" --format q4_0 -o "$TMP/x.gguf" --split-max-size 0
expect 2 "--split-max-size '5X'" -- "$LOWBIT" convert "$MODEL" -o "$TMP/x.gguf" --split-max-size 5X
expect 2 "--split-max-tensors" -- "$LOWBIT" convert "$MODEL" -o "$TMP/x.gguf" --split-max-tensors 0
expect 2 "split a GGUF output" -- "$LOWBIT" convert "$MODEL" -o "$TMP/x" --to safetensors --split-max-tensors 5
expect 1 "refusing to overwrite an input" -- "$LOWBIT" convert "$TMP/o-00001-of-00003.gguf" -o "$TMP/o.gguf" \
    --split-max-tensors 16
mkdir "$TMP/d-00003-of-00003.gguf"
expect 1 "is a directory" -- "$LOWBIT" quantize "$MODEL" --format q4_0 -o "$TMP/d.gguf" --split-max-tensors 16
if [ "$(ls "$TMP" | grep -c '^x\|^d-0000[12]\|\.tmp\.')" = 0 ]; then ok; else fail "refused or failed runs left files: $(ls "$TMP")"; fi

finish cli_split
