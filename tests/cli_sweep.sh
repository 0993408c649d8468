#!/usr/bin/env bash
# lowbit sweep on a tiny grid (one method x two formats, 8 evaluation blocks,
# ctx 128): JSON lines with the required keys, a markdown table with one row
# per configuration, a well-formed SVG with one line per method, skips and
# bad grids, atomic outputs.
set -u
NEEDS="MODEL TEXT"
. "$(dirname "$0")/common_cli.sh"

expect 0 "usage: lowbit sweep" -- "$LOWBIT" sweep --help
expect 0 "sweep" -- "$LOWBIT" --help
expect 2 "missing --text" -- "$LOWBIT" sweep "$MODEL"

QUICK=(--ctx 128 --max-blocks 8)
"$LOWBIT" sweep "$MODEL" --text "$TEXT" "${QUICK[@]}" --methods rtn:clip=mse --formats int4:g64:asym,int8:g32:sym \
    --json --md "$TMP/t.md" --svg "$TMP/t.svg" > "$TMP/t.jsonl" 2> "$TMP/t.err" && ok || fail "sweep failed: $(cat "$TMP/t.err")"
python3 - "$TMP/t.jsonl" <<'PY' && ok || fail "JSON lines: $(cat "$TMP/t.jsonl")"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
keys = ("method", "format", "bpw", "ppl", "kld", "top1", "split", "seconds", "file_bytes", "options", "ppl_ratio")
assert len(rows) == 2, rows
assert all(all(k in r for k in keys) for r in rows), rows
assert [r["format"] for r in rows] == ["int4:g64:asym", "int8:g32:sym"]
assert all(r["method"] == "rtn" and "clip=mse" in r["options"] and r["status"] == "ok" for r in rows)
assert all(r["split"] == "eval" and r["ctx"] == 128 and r["file_bytes"] > 0 and r["kld"] > 0 for r in rows)
assert abs(rows[0]["bpw"] - 4.6271) < 1e-3 and rows[1]["ppl_ratio"] < 1.01 < rows[0]["ppl_ratio"]
PY
# the markdown table: header, rule and one row per configuration
[ "$(grep -c '^| rtn clip=mse |' "$TMP/t.md")" -eq 2 ] && ok || fail "markdown rows: $(cat "$TMP/t.md")"
grep -q '^| method | format | bpw |' "$TMP/t.md" && grep -q 'Made by `lowbit sweep' "$TMP/t.md" && ok || fail "markdown header: $(cat "$TMP/t.md")"
# one progress line per configuration
[ "$(grep -c '^\[[12]/2\]' "$TMP/t.err")" -eq 2 ] && ok || fail "progress lines: $(cat "$TMP/t.err")"
# the SVG: well-formed XML, one polyline per method, the front, text labels
python3 - "$TMP/t.svg" <<'PY' && ok || fail "SVG: $(head -c 600 "$TMP/t.svg")"
import sys, xml.etree.ElementTree as ET
ns = "{http://www.w3.org/2000/svg}"
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == ns + "svg"
lines = [p for p in root.iter(ns + "polyline") if p.get("class") == "series"]
assert len(lines) == 1 and len(lines[0].get("points").split()) == 2, lines
assert any(p.get("class") == "pareto" for p in root.iter(ns + "polyline"))
texts = [t.text or "" for t in root.iter(ns + "text")]
for want in ("rtn clip=mse", "Pareto front", "fp32", "1", "1.1", "5"):
    assert want in texts, (want, texts)
assert any("stories260K.bin" in t and "eval split" in t and "docs protocol" in t for t in texts), texts
PY
ls "$TMP" | grep -q '\.tmp\.' && fail "temporary left: $(ls "$TMP")" || ok

# --grid: two methods, one skipped configuration (twn makes only ternary), stdout table
cat > "$TMP/grid.txt" <<'GRID'
# formats            method and options
int4:g64:asym        method=rtn clip=mse
int4:g64:asym,ternary:g64:1.6bit   method=twn
GRID
"$LOWBIT" sweep "$MODEL" --text "$TEXT" "${QUICK[@]}" --grid "$TMP/grid.txt" --svg "$TMP/g.svg" > "$TMP/g.md" 2> "$TMP/g.err" \
    && ok || fail "grid sweep failed: $(cat "$TMP/g.err")"
grep -q 'SKIPPED' "$TMP/g.err" && grep -q '^- skipped: twn int4:g64:asym: ' "$TMP/g.md" && ok || fail "skip note: $(cat "$TMP/g.err" "$TMP/g.md")"
[ "$(grep -c '^| \(rtn clip=mse\|twn\) |' "$TMP/g.md")" -eq 2 ] && ok || fail "grid rows: $(cat "$TMP/g.md")"
python3 -c "
import sys, xml.etree.ElementTree as ET
r = ET.parse('$TMP/g.svg').getroot()
assert len([p for p in r.iter('{http://www.w3.org/2000/svg}polyline') if p.get('class') == 'series']) == 2
" && ok || fail "grid SVG has not two series"

# bad grids: usage errors before any work, no output file
# a calibrated method: statistics from the calibration split, once for the grid;
# gptq's proxy-loss-optimal rounding beats rtn at 3 bits on the same blocks
"$LOWBIT" sweep "$MODEL" --text "$TEXT" --methods rtn,gptq --formats int3:g64:asym --max-blocks 8 --json \
    > "$TMP/g.jsonl" 2> "$TMP/g.err" && ok || fail "calibrated sweep failed: $(cat "$TMP/g.err")"
python3 - "$TMP/g.jsonl" <<'PY' && ok || fail "calibrated sweep JSON: $(cat "$TMP/g.jsonl")"
import json, sys
rows = {r["method"]: r for r in map(json.loads, open(sys.argv[1]))}
assert rows["gptq"]["status"] == "ok" and rows["rtn"]["status"] == "ok", rows
assert rows["gptq"]["ppl"] < rows["rtn"]["ppl"], rows
PY
# awq's folded scales and clip search beat rtn at 3 bits on the same blocks
"$LOWBIT" sweep "$MODEL" --text "$TEXT" --methods rtn,awq --formats int3:g32:asym --max-blocks 8 --json \
    > "$TMP/a.jsonl" 2> "$TMP/a.err" && ok || fail "awq sweep failed: $(cat "$TMP/a.err")"
python3 - "$TMP/a.jsonl" <<'PY' && ok || fail "awq sweep JSON: $(cat "$TMP/a.jsonl")"
import json, sys
rows = {r["method"]: r for r in map(json.loads, open(sys.argv[1]))}
assert rows["awq"]["status"] == "ok" and rows["rtn"]["status"] == "ok", rows
assert rows["awq"]["ppl"] < rows["rtn"]["ppl"], rows
PY
expect 2 "need --split eval" -- "$LOWBIT" sweep "$MODEL" --text "$TEXT" --methods gptq --formats int4 --split calib
expect 2 "int5:g7" -- "$LOWBIT" sweep "$MODEL" --text "$TEXT" --formats int4:g64:asym,int5:g7 --svg "$TMP/bad.svg"
expect 2 "unknown method" -- "$LOWBIT" sweep "$MODEL" --text "$TEXT" --methods rtn,nosuch
expect 2 "clip" -- "$LOWBIT" sweep "$MODEL" --text "$TEXT" --methods rtn:clip=nosuch
expect 2 "empty entry" -- "$LOWBIT" sweep "$MODEL" --text "$TEXT" --formats int4,,int8
printf 'int4:g64:asym method=rtn\nint3:gxx\n' > "$TMP/bad.txt"
expect 2 "bad.txt:2:" -- "$LOWBIT" sweep "$MODEL" --text "$TEXT" --grid "$TMP/bad.txt"
expect 2 "--grid replaces" -- "$LOWBIT" sweep "$MODEL" --text "$TEXT" --grid "$TMP/grid.txt" --formats int4
expect 2 "--max-blocks expects" -- "$LOWBIT" sweep "$MODEL" --text "$TEXT" --max-blocks 0
[ ! -e "$TMP/bad.svg" ] && ok || fail "bad grid left an SVG"
expect 1 "" -- "$LOWBIT" sweep "$MODEL" --text "$TMP/missing.txt" --formats int4

# --recipes: a plan's recipe as a row of its own, "recipe" naming it; other rows have "recipe": null
printf 'linears int4:g64:asym method=rtn clip=mse\nblk.0.* int8:g32:sym method=rtn\n' > "$TMP/mix.recipe"
"$LOWBIT" sweep "$MODEL" --text "$TEXT" "${QUICK[@]}" --methods rtn:clip=mse --formats int4:g64:asym \
    --recipes "$TMP/mix.recipe" --json > "$TMP/r.jsonl" 2> "$TMP/r.err" && ok || fail "sweep --recipes: $(cat "$TMP/r.err")"
python3 - "$TMP/r.jsonl" <<'PY' && ok || fail "recipe rows: $(cat "$TMP/r.jsonl")"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert len(rows) == 2 and rows[0]["recipe"] is None, rows
r = rows[1]
assert r["method"] == "recipe" and r["recipe"].endswith("mix.recipe") and r["format"] == "mix.recipe", r
assert r["status"] == "ok" and r["bpw"] > rows[0]["bpw"] and r["kld"] < rows[0]["kld"], (r, rows[0])
PY
expect 2 "--recipes" -- "$LOWBIT" sweep "$MODEL" --text "$TEXT" "${QUICK[@]}" --recipes "$TMP/none.recipe"
finish cli_sweep
