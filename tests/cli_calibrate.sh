#!/usr/bin/env bash
# lowbit calibrate as a user meets it: --help, statistics of the default
# calibration split with the token count of its 128 blocks, --json that
# parses, the same file for 1 and 2 threads, and bad input (eval split, too
# many tokens or blocks, a missing -o) that fails clearly with no file left.
set -u
NEEDS="MODEL TEXT"
. "$(dirname "$0")/common_cli.sh"

expect 0 "usage: lowbit calibrate" -- "$LOWBIT" calibrate --help
expect 0 "calibrate" -- "$LOWBIT" --help
expect 2 "missing -o" -- "$LOWBIT" calibrate "$MODEL"
expect 2 "expected one MODEL" -- "$LOWBIT" calibrate -o "$TMP/x.gguf"
expect 2 "calibration never reads the evaluation split" -- "$LOWBIT" calibrate "$MODEL" --split eval -o "$TMP/x.gguf"
expect 1 "has only" -- "$LOWBIT" calibrate "$MODEL" --text "$TEXT" --calib-blocks 2 --tokens 100000 -o "$TMP/x.gguf"
printf ' \n\n' > "$TMP/blank.txt"
expect 1 "is empty" -- "$LOWBIT" calibrate "$MODEL" --text "$TMP/blank.txt" -o "$TMP/x.gguf"
if [ -e "$TMP/x.gguf" ]; then fail "a failed calibrate left $TMP/x.gguf"; else ok; fi

# the default split: 12,648 tokens in 128 blocks (BOS + each block)
expect 0 "12,648 tokens in 128 blocks" -- "$LOWBIT" calibrate "$MODEL" --threads 1 -o "$TMP/s1.gguf"
"$LOWBIT" calibrate "$MODEL" --threads 2 --json -o "$TMP/s2.gguf" > "$TMP/c.json" 2>/dev/null
json "$TMP/c.json" "j['tokens'] == 12648 and j['sequences'] == 128 and len(j['inputs']) == 20 and all(i['tokens'] == 12648 for i in j['inputs']) and 1e6 < j['peak_rss'] < 1e9"
if cmp -s "$TMP/s1.gguf" "$TMP/s2.gguf"; then ok; else fail "1 and 2 threads wrote different statistics"; fi
expect 0 "300 tokens in" -- "$LOWBIT" calibrate "$MODEL" --tokens 300 --calib-blocks 16 --ctx 64 -o "$TMP/s3.gguf"
# the file is a GGUF that info-style readers recognise as not a model
expect 1 "" -- "$LOWBIT" info "$TMP/s3.gguf"

# llama.cpp's imatrix: written beside the statistics, read by quantize (gptq under
# a diagonal H is rtn weighted per input); methods needing more than X^T X's
# diagonal, and --calib beside it, refused before any work
expect 0 "" -- "$LOWBIT" calibrate "$MODEL" --calib-blocks 8 -o "$TMP/s4.gguf" --imatrix "$TMP/im.gguf"
expect 2 "same file" -- "$LOWBIT" calibrate "$MODEL" -o "$TMP/s5.gguf" --imatrix "$TMP/s5.gguf"
expect 0 "" -- "$LOWBIT" quantize "$MODEL" --format q4_0 --method gptq --imatrix "$TMP/im.gguf" -o "$TMP/qi.gguf"
expect 0 "" -- "$LOWBIT" quantize "$MODEL" --format q4_0 --method rtn -o "$TMP/qr.gguf"
a=$("$LOWBIT" eval "$TMP/qi.gguf" --text "$TEXT" --split eval --calib-blocks 1180 --json 2>/dev/null)
b=$("$LOWBIT" eval "$TMP/qr.gguf" --text "$TEXT" --split eval --calib-blocks 1180 --json 2>/dev/null)
if [ -n "$a" ] && [ "${a#*\"ppl\"}" != "$a" ] && [ "$(echo "${a#*\"ppl\"}" | cut -d, -f1-2)" = "$(echo "${b#*\"ppl\"}" | cut -d, -f1-2)" ]; then
    ok
else
    fail "gptq under an imatrix is not rtn: $a / $b"
fi
expect 2 "only X^T X's diagonal" -- "$LOWBIT" quantize "$MODEL" --format q4_0 --method awq --imatrix "$TMP/im.gguf" -o "$TMP/qa.gguf"
expect 2 "would not be used" -- "$LOWBIT" quantize "$MODEL" --format q4_0 --method gptq --imatrix "$TMP/im.gguf" --calib "$TEXT" -o "$TMP/qa.gguf"
expect 2 "saved --imatrix" -- "$LOWBIT" quantize "$MODEL" --format q4_0 --method gptq --imatrix "$TMP/im.gguf" --refine autoround -o "$TMP/qa.gguf"
expect 1 "not an imatrix" -- "$LOWBIT" quantize "$MODEL" --format q4_0 --method gptq --imatrix "$TMP/s4.gguf" -o "$TMP/qa.gguf"
if [ -e "$TMP/qa.gguf" ]; then fail "a refused quantize left $TMP/qa.gguf"; else ok; fi

finish cli_calibrate
