#!/usr/bin/env bash
# --act as a user meets it: quantize with dynamic and static activation
# quantizers (static ones calibrate on the calibration split, or read --stats),
# info showing the slot, eval of the file, a sweep crossing formats with
# activation quantizers, and bad specs refused before any work, no file left.
set -u
NEEDS="MODEL TEXT"
. "$(dirname "$0")/common_cli.sh"

expect 0 "--act SPEC" -- "$LOWBIT" quantize --help
expect 0 "--act LIST" -- "$LOWBIT" sweep --help

# bad specs: usage errors naming the problem, nothing written
for bad in int3:token int8 int8:token:kl int8:tensor:p99.99999 int8:tensor:bogus int8:row ''; do
    expect 2 "--act: activation spec" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/bad.gguf" --format q8_0 --act "$bad"
done
if [ -e "$TMP/bad.gguf" ]; then fail "a refused --act left $TMP/bad.gguf"; else ok; fi
expect 2 "--act: activation spec" -- "$LOWBIT" sweep "$MODEL" --text "$TEXT" --formats q8_0 --act int8:token,int2:token

# the seed file of fuzz_model_gguf with every kind of quantizer loads and shows them
expect 0 "act(int6:tensor:p99.99 clip=0.5)" -- "$LOWBIT" info fuzz/corpus/fuzz_model_gguf/act.gguf
expect 0 "act(int4:token)" -- "$LOWBIT" info fuzz/corpus/fuzz_model_gguf/act.gguf

# W8A8, dynamic per-token: the file says so
expect 0 "activations int8:token" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/tok.gguf" --format q8_0 --act int8:token
expect 0 "act(int8:token)" -- "$LOWBIT" info "$TMP/tok.gguf"
expect 0 "act=int8:token" -- "$LOWBIT" info "$TMP/tok.gguf"
# static from saved statistics (a quick calibration) and from the default split
"$LOWBIT" calibrate "$MODEL" --calib-blocks 8 -o "$TMP/stats.gguf" > /dev/null 2>&1 && ok || fail "calibrate"
expect 0 "" -- "$LOWBIT" calibrate "$MODEL" --calib-blocks 4 --hist-bins 2048 -o "$TMP/s2048.gguf"
expect 1 "multiple of 4" -- "$LOWBIT" calibrate "$MODEL" --calib-blocks 4 --hist-bins 2050 -o "$TMP/s2050.gguf"
if [ -e "$TMP/s2050.gguf" ]; then fail "a refused --hist-bins left a file"; else ok; fi
expect 0 "activations int8:tensor:p99.99" -- "$LOWBIT" quantize "$MODEL" -o "$TMP/p.gguf" --format q8_0 \
    --act int8:tensor:p99.99 --stats "$TMP/stats.gguf"
expect 0 "act(int8:tensor:p99.99 clip=" -- "$LOWBIT" info "$TMP/p.gguf"
"$LOWBIT" quantize "$MODEL" -o "$TMP/kl.gguf" --format q8_0 --act int8:tensor:kl --calib-blocks 16 --json > "$TMP/kl.json" 2>/dev/null && ok || fail "static kl quantize"
python3 -c "import json,sys; j=json.load(open('$TMP/kl.json')); sys.exit(0 if j['act'] == 'int8:tensor:kl' else 1)" && ok || fail "quantize --json act: $(cat "$TMP/kl.json")"
"$LOWBIT" info "$TMP/kl.gguf" --json > "$TMP/info.json" 2>/dev/null
python3 - "$TMP/info.json" <<'PY' && ok || fail "info --json slots: $(head -c 600 "$TMP/info.json")"
import json, sys
j = json.load(open(sys.argv[1]))
slots = [t.get("slots", "") for t in j["tensors"] if t["name"].startswith("blk.")and t["name"].endswith(".weight") and "norm" not in t["name"]]
assert len(slots) == 35 and all(s.startswith("act(int8:tensor:kl clip=") for s in slots), slots
PY
# same bytes for any thread count (calibration, range search, file)
"$LOWBIT" quantize "$MODEL" -o "$TMP/kl1.gguf" --format q8_0 --act int8:tensor:kl --calib-blocks 16 --threads 1 > /dev/null 2>&1 && ok || fail "kl, 1 thread"
if cmp -s "$TMP/kl.gguf" "$TMP/kl1.gguf"; then ok; else fail "1 and 2 threads wrote different files"; fi
expect 0 "ppl" -- "$LOWBIT" eval "$TMP/kl.gguf" --text "$TEXT" --split calib  # a smoke test: the file runs

# a sweep: one format x (none, per-token, static) on a few blocks
"$LOWBIT" sweep "$MODEL" --text "$TEXT" --formats q8_0 --methods rtn --act none,int8:token,int8:tensor:mse --calib-blocks 16 \
    --max-blocks 4 --json > "$TMP/s.jsonl" 2> "$TMP/s.err" && ok || fail "sweep --act: $(cat "$TMP/s.err")"
python3 - "$TMP/s.jsonl" <<'PY' && ok || fail "sweep --act JSON: $(cat "$TMP/s.jsonl")"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [r["act"] for r in rows] == ["none", "int8:token", "int8:tensor:mse"], rows
assert all(r["status"] == "ok" for r in rows)
assert rows[1]["label"] == "rtn act=int8:token"
assert rows[0]["ppl"] != rows[1]["ppl"]  # the quantizer reached the evaluated file
# a static clip is one stored f32 per linear: 35 x 32 bits over 226,560 weights, counted in bpw
assert rows[0]["bpw"] == rows[1]["bpw"] and abs(rows[2]["bpw"] - rows[1]["bpw"] - 35 * 32 / 226560) < 1e-9, rows
PY

finish cli_act
