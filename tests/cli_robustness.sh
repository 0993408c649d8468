#!/usr/bin/env bash
# The lowbit command line against hostile paths and signals: an output that
# is the input, a symlink or a FIFO; a missing output directory (refused
# before any work, naming the user's path); a FIFO as input (refused, never
# blocking); SIGINT in the middle of writing (no temporary left behind).
set -u
NEEDS="MODEL TOK"
. "$(dirname "$0")/common_cli.sh"

no_temporaries() {
    if ls "$1" | grep -q '\.tmp\.'; then fail "temporary left behind in $1: $(ls "$1")"; else ok; fi
}

# --- the output is an input ------------------------------------------------------
cp "$MODEL" "$TMP/in.bin"
cp "$TOK" "$TMP/tok512.bin"
sum=$(cksum < "$TMP/in.bin")
expect 1 "output '$TMP/in.bin' is the same file as the input" -- \
    "$LOWBIT" quantize "$TMP/in.bin" -o "$TMP/in.bin" --format q8_0
ln "$TMP/in.bin" "$TMP/hardlink.bin"
expect 1 "is the same file as the input '$TMP/in.bin'" -- \
    "$LOWBIT" quantize "$TMP/in.bin" -o "$TMP/hardlink.bin" --format q8_0
expect 1 "is the same file as the input '$TMP/tok512.bin'" -- \
    "$LOWBIT" quantize "$TMP/in.bin" --tokenizer "$TMP/tok512.bin" -o "$TMP/tok512.bin" --format q8_0
[ "$(cksum < "$TMP/in.bin")" = "$sum" ] && ok || fail "the input model was modified"

# --- the output exists but is not a regular file ---------------------------------
ln -s in.bin "$TMP/link.gguf"
expect 1 "output '$TMP/link.gguf' is a symbolic link" -- \
    "$LOWBIT" quantize "$MODEL" -o "$TMP/link.gguf" --format q8_0
[ -L "$TMP/link.gguf" ] && ok || fail "the symlink was replaced"
[ "$(cksum < "$TMP/in.bin")" = "$sum" ] && ok || fail "the symlink's target was modified"
mkfifo "$TMP/fifo"
expect 1 "output '$TMP/fifo' is a FIFO" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/fifo" --format q8_0
[ -p "$TMP/fifo" ] && ok || fail "the FIFO was replaced"
mkdir "$TMP/dir"
expect 1 "is a directory" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/dir" --format q8_0
no_temporaries "$TMP"

# --- the output directory is checked first, and the message names the user's path --
# (the model is truncated: loading it would fail, so the output error must come first)
head -c 5000 "$MODEL" > "$TMP/cut.bin"
expect 1 "cannot create '$TMP/none/out.gguf': directory '$TMP/none': No such file or directory" -- \
    "$LOWBIT" quantize "$TMP/cut.bin" -o "$TMP/none/out.gguf" --format q8_0
expect 1 "cannot create '/nonexistent/x'" -- "$LOWBIT" quantize "$MODEL" -o /nonexistent/x --format q8_0

# --- a FIFO as an input is refused at once ----------------------------------------
expect 1 "'$TMP/fifo' is a FIFO, not a regular file" -- "$LOWBIT" info "$TMP/fifo"
expect 1 "'$TMP/fifo' is a FIFO, not a regular file" -- "$LOWBIT" info "$MODEL" --tokenizer "$TMP/fifo"
expect 1 "'$TMP/fifo' is a FIFO, not a regular file" -- "$LOWBIT" eval "$MODEL" --text "$TMP/fifo"
expect 1 "'$TMP/dir' is a directory, not a regular file" -- "$LOWBIT" info "$TMP/dir"

# --- weights that overflow: NaN logits stop generation, greedy or sampled -------
# (one exponent bit flipped in blk.1.attn_q: a finite 1.6e38; top-p sampling
# used to read before its buffer, greedy printed <unk> and exited 0)
mkdir "$TMP/flip"
cp "$MODEL" "$TMP/flip/model.bin"
cp "$TOK" "$TMP/flip/tok512.bin"
byte=$(od -An -tu1 -j 160187 -N 1 "$TMP/flip/model.bin" | tr -d ' ')
printf "\\$(printf '%03o' $((byte ^ 0x40)))" | dd of="$TMP/flip/model.bin" bs=1 seek=160187 conv=notrunc 2> /dev/null
expect 1 "logits at position 1 (after token 403) are not finite" -- "$LOWBIT" generate "$TMP/flip/model.bin" -n 5
expect 1 "are not finite" -- "$LOWBIT" generate "$TMP/flip/model.bin" -n 5 --temp 0
expect 1 "are not finite" -- "$LOWBIT" generate "$TMP/flip/model.bin" -n 5 --temp 1 --top-p 1
# a NaN stored in a norm is named at load time, by every verb
cp "$MODEL" "$TMP/nan-norm.bin"
printf '\000\000\300\177' | dd of="$TMP/nan-norm.bin" bs=1 seek=$((28 + 4 * (512 * 64 + 3))) conv=notrunc 2> /dev/null
for verb in info generate; do
    expect 1 "tensor 'blk.0.attn_norm.weight' has a non-finite value: row 0, column 3 is NaN" -- \
        "$LOWBIT" $verb "$TMP/nan-norm.bin" --tokenizer "$TOK"
done
expect 1 "tensor 'blk.0.attn_norm.weight' has a non-finite value" -- \
    "$LOWBIT" quantize "$TMP/nan-norm.bin" -o "$TMP/nan.gguf" --format q8_0
[ ! -e "$TMP/nan.gguf" ] && ok || fail "quantize wrote a model with a NaN norm"

# --- SIGINT while the temporary exists ----------------------------------------------
# Job control on: a non-interactive shell starts background jobs with SIGINT
# ignored, and lowbit (rightly) leaves ignored signals alone. The temporary
# exists only while the GGUF is written, at the end of the run; poll for it
# and retry a bounded number of times if the run finishes first.
set -m
mkdir "$TMP/sig"
caught=0
for attempt in $(seq 1 20); do
    "$LOWBIT" quantize "$MODEL" -o "$TMP/sig/out.gguf" --format int4 --tensors all --clip mse > /dev/null 2>&1 &
    pid=$!
    while kill -0 "$pid" 2> /dev/null; do
        if [ -e "$TMP/sig/out.gguf.tmp.$pid" ]; then
            kill -INT "$pid"
            break
        fi
    done
    wait "$pid"
    rc=$?
    if [ "$rc" -eq 130 ]; then
        caught=1
        break
    fi
    [ "$rc" -eq 0 ] || { fail "quantize exited $rc"; break; }
    rm -f "$TMP/sig/out.gguf"
done
set +m
if [ "$caught" -eq 1 ]; then
    ok
    no_temporaries "$TMP/sig"
    [ ! -e "$TMP/sig/out.gguf" ] && ok || fail "an interrupted quantize left out.gguf"
else
    fail "could not interrupt quantize while its temporary existed in 20 attempts"
fi

finish cli_robustness
