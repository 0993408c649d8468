#!/usr/bin/env bash
# Streaming quantize, convert, calibrate and eval (docs/SCALING.md, "Streaming"): a seeded
# synthetic Llama-shaped model (lowbit synth, 24 layers, 163 MB as f16) is
# quantized and converted with a peak resident memory (peak_rss, from --json)
# under 40 MB, a quarter of the model (convert also to a safetensors folder), and the outputs are byte-identical to
# the in-memory path's (--sequential with rtn quantizes everything in memory
# first and saves after: the same tensors, the old way) and to a run split
# into shards and one as a single file. Calibration layer by layer writes the
# statistics file of the whole-model pass byte for byte (stories260K and a
# synthetic model) under a bound the whole-model pass exceeds; quantize
# --method gptq from those statistics, saved or calibrated inline, holds one
# layer's of them, under a bound a fraction of their size; eval with
# --stream gives the same perplexity under a bound the resident model exceeds.
#
# Memory is checked two ways: a bound on peak_rss (ru_maxrss, what a cgroup
# would charge: touched heap, stacks and mapped file pages) for every verb,
# and an imposed limit, prlimit --data (RLIMIT_DATA: private writable memory,
# not the input's read-only mapping), under which the streamed quantize and
# convert must work and the in-memory path must fail. Not prlimit --as: the
# address space includes the input's whole mapping; not a cgroup: CI has no
# write access to one (docs/SCALING.md, "Under an imposed memory limit").
set -u
NEEDS="TEXT TOK MODEL"
. "$(dirname "$0")/common_cli.sh"

SHAPE=(--dim 512 --ffn 1408 --layers 24 --heads 8 --vocab 4096 --seed 7)
LIMIT=40000000 # bytes: the model is 4x this
# Under AddressSanitizer (make check-asan) the process's RSS holds ASan's
# shadow memory and freed-memory quarantine (a streamed quantize peaks near
# 280 MB there), so the upper bounds are not checked: UNDER is the bound a
# streamed run must stay below, LIMIT the one an in-memory run must exceed.
UNDER=$LIMIT
if [ "${LB_SANITIZED:-0}" = 1 ]; then
    echo "cli_stream: a sanitizer build: peak_rss upper bounds NOT checked (bytes and paths still are)" >&2
    UNDER=1000000000000000
fi

expect 0 "Llama-shaped model with seeded random weights" -- "$LOWBIT" synth --help
expect 2 "--type must be f32, f16 or bf16" -- "$LOWBIT" synth -o "$TMP/x.gguf" --type q4_0
expect 2 "must divide" -- "$LOWBIT" synth -o "$TMP/x.gguf" --dim 100 --heads 3
"$LOWBIT" synth -o "$TMP/m.gguf" "${SHAPE[@]}" --json > "$TMP/s.json" || fail "synth failed"
json "$TMP/s.json" "j['tensors'] == 3 + 9 * 24 and j['file_bytes'] > 4 * $LIMIT and j['peak_rss'] < $UNDER"
# seeded: the same bytes again, other bytes under another seed
"$LOWBIT" synth -o "$TMP/m2.gguf" "${SHAPE[@]}" > /dev/null || fail "synth again failed"
if cmp -s "$TMP/m.gguf" "$TMP/m2.gguf"; then ok; else fail "synth is not reproducible"; fi
rm -f "$TMP/m2.gguf"
"$LOWBIT" synth -o "$TMP/m3.gguf" --dim 64 --ffn 172 --layers 1 --heads 4 --vocab 64 --seed 8 > /dev/null
"$LOWBIT" synth -o "$TMP/m4.gguf" --dim 64 --ffn 172 --layers 1 --heads 4 --vocab 64 --seed 9 > /dev/null
if cmp -s "$TMP/m3.gguf" "$TMP/m4.gguf"; then fail "two seeds gave the same model"; else ok; fi
"$LOWBIT" info "$TMP/m.gguf" --json > "$TMP/i.json" || fail "info on the synthetic model failed"
json "$TMP/i.json" "j['config']['dim'] == 512 and j['config']['n_layers'] == 24 and j['config']['vocab_size'] == 4096"

# quantize: streamed under the bound, the same file as in memory
"$LOWBIT" quantize "$TMP/m.gguf" -o "$TMP/q.gguf" --format int4 --json > "$TMP/q.json" || fail "quantize failed"
json "$TMP/q.json" "j['streamed'] is True and 0 < j['peak_rss'] < $UNDER and j['tensors_quantized'] == 168"
"$LOWBIT" quantize "$TMP/m.gguf" -o "$TMP/qm.gguf" --format int4 --sequential --json > "$TMP/qm.json" \
    || fail "in-memory quantize failed"
json "$TMP/qm.json" "j['streamed'] is False and j['peak_rss'] > $LIMIT"
if cmp -s "$TMP/q.gguf" "$TMP/qm.gguf"; then ok; else fail "streamed and in-memory quantize differ"; fi
rm -f "$TMP/qm.gguf"
# under an imposed limit: RLIMIT_DATA (prlimit --data, ulimit -d) caps the
# process's private writable memory (heap, anonymous maps, thread stacks) and
# not the input's read-only mapping, so a streamed run fits in a limit an
# eighth of the model's size and writes the same bytes, while the in-memory
# path fails cleanly under it (exit 1, out of memory). Run with OPENBLAS_NUM_THREADS unset: lowbit
# restarts itself with one OpenBLAS thread under such a limit (tools/lowbit/
# main.c), without which every command would hang (expect's timeout says so).
DATA_LIMIT=20000000
if [ "${LB_SANITIZED:-0}" = 1 ]; then
    echo "cli_stream: a sanitizer build: the prlimit --data runs are NOT checked (ASan's shadow is private memory)" >&2
elif ! command -v prlimit > /dev/null; then
    echo "cli_stream: no prlimit (util-linux): the imposed-limit runs are NOT checked" >&2
else
    expect 0 '"streamed":true' -- env -u OPENBLAS_NUM_THREADS prlimit --data=$DATA_LIMIT \
        "$LOWBIT" quantize "$TMP/m.gguf" -o "$TMP/ql.gguf" --format int4 --json
    if cmp -s "$TMP/q.gguf" "$TMP/ql.gguf"; then ok; else fail "quantize under prlimit --data differs"; fi
    expect 1 "memory" -- env -u OPENBLAS_NUM_THREADS prlimit --data=$DATA_LIMIT \
        "$LOWBIT" quantize "$TMP/m.gguf" -o "$TMP/qlm.gguf" --format int4 --sequential
    if [ -e "$TMP/qlm.gguf" ]; then fail "a failed in-memory run wrote its output"; else ok; fi
    expect 0 '"peak_rss"' -- env -u OPENBLAS_NUM_THREADS prlimit --data=$DATA_LIMIT \
        "$LOWBIT" convert "$TMP/m.gguf" -o "$TMP/cl.gguf" --json
    rm -f "$TMP/ql.gguf" "$TMP/qlm.gguf"*
fi
# split while streaming: converted back to one file, the single file's bytes
"$LOWBIT" quantize "$TMP/m.gguf" -o "$TMP/qs.gguf" --format int4 --split-max-size 20M --json > "$TMP/qs.json" \
    || fail "split quantize failed"
json "$TMP/qs.json" "j['streamed'] is True and len(j['shards']) >= 3 and j['peak_rss'] < $UNDER"
"$LOWBIT" convert "$TMP/qs-00001-of-"*.gguf -o "$TMP/qj.gguf" --json > "$TMP/qj.json" || fail "joining convert failed"
json "$TMP/qj.json" "j['peak_rss'] < $UNDER"
if cmp -s "$TMP/q.gguf" "$TMP/qj.gguf"; then ok; else fail "split set joined differs from the single file"; fi
rm -f "$TMP"/qs-*.gguf "$TMP/qj.gguf"
# a plan that cannot stream (outliers' count is data-dependent) says so and still works
"$LOWBIT" quantize "$TMP/m.gguf" -o "$TMP/qo.gguf" --format int4 --tensors 'blk.0.*' --outliers 0.01 --json \
    > "$TMP/qo.json" || fail "outlier quantize failed"
json "$TMP/qo.json" "j['streamed'] is False"

# convert: as stored and retyped, under the bound
"$LOWBIT" convert "$TMP/m.gguf" -o "$TMP/c.gguf" --json > "$TMP/c.json" || fail "convert failed"
json "$TMP/c.json" "0 < j['peak_rss'] < $UNDER"
if [ -e "$TMP/cl.gguf" ]; then # written under prlimit --data above
    if cmp -s "$TMP/c.gguf" "$TMP/cl.gguf"; then ok; else fail "convert under prlimit --data differs"; fi
    rm -f "$TMP/cl.gguf"
fi
"$LOWBIT" convert "$TMP/m.gguf" -o "$TMP/c32.gguf" --format bf16 --json > "$TMP/c32.json" || fail "convert bf16 failed"
json "$TMP/c32.json" "0 < j['peak_rss'] < $UNDER"
"$LOWBIT" convert "$TMP/m.gguf" -o "$TMP/hf" --json > "$TMP/hf.json" || fail "convert to safetensors failed"
json "$TMP/hf.json" "0 < j['peak_rss'] < $UNDER"
rm -rf "$TMP/hf"
# calibrate layer by layer: the whole-model pass's bytes, on stories260K (all
# parts; a budget, fewer bins, a shorter context) and on a synthetic model
for opts in "--calib-blocks 8" "--calib-blocks 12 --tokens 777 --hist-bins 64 --ctx 100"; do
    "$LOWBIT" calibrate "$MODEL" -o "$TMP/cl.gguf" --text "$TEXT" $opts --json > "$TMP/cl.json" \
        || fail "layered calibrate failed ($opts)"
    json "$TMP/cl.json" "j['calibration'] == 'layered_to_file'"
    "$LOWBIT" calibrate "$MODEL" -o "$TMP/cw.gguf" --text "$TEXT" $opts --whole-model --json > "$TMP/cw.json" \
        || fail "whole-model calibrate failed ($opts)"
    json "$TMP/cw.json" "j['calibration'] == 'whole_model'"
    if cmp -s "$TMP/cl.gguf" "$TMP/cw.gguf"; then ok; else fail "layered and whole-model statistics differ ($opts)"; fi
done
# 12 layers of dim 512, ffn 1408 (78 MB as f16); statistics: 22 MB of X^T X a
# layer, 266 MB for the model. Bound 120 MB: the layered pass holds one
# layer's X^T X (22 MB), one block's pages (6.4 MB), the residual stream of
# 177 tokens and the process's own ~25 MB (measured: 53 MB); the whole-model
# pass holds all 266 MB of statistics (measured: 659 MB)
CSHAPE=(--dim 512 --ffn 1408 --layers 12 --heads 8 --vocab 512 --seed 7)
CLIMIT=120000000
CUNDER=$CLIMIT
[ "${LB_SANITIZED:-0}" = 1 ] && CUNDER=$UNDER
"$LOWBIT" synth -o "$TMP/cm.gguf" "${CSHAPE[@]}" > /dev/null || fail "synth (calibration model) failed"
CAL=(--tokenizer "$TOK" --text "$TEXT" --calib-blocks 2)
"$LOWBIT" calibrate "$TMP/cm.gguf" -o "$TMP/cl.gguf" "${CAL[@]}" --json > "$TMP/cl.json" || fail "layered calibrate failed"
json "$TMP/cl.json" "j['calibration'] == 'layered_to_file' and 0 < j['peak_rss'] < $CUNDER"
"$LOWBIT" calibrate "$TMP/cm.gguf" -o "$TMP/cw.gguf" "${CAL[@]}" --whole-model --json > "$TMP/cw.json" \
    || fail "whole-model calibrate failed"
json "$TMP/cw.json" "j['calibration'] == 'whole_model' and j['peak_rss'] > $CLIMIT"
if cmp -s "$TMP/cl.gguf" "$TMP/cw.gguf"; then ok; else fail "layered and whole-model statistics differ"; fi
rm -f "$TMP/cw.gguf"
# quantize --stats with a calibrated method reads the statistics from the
# file a layer at a time (lb_calib_stats_open) and gives each layer's pages
# back after its tensors. gptq on the 12 ffn_down (the 1408-wide input: 16 MB
# of X^T X a layer): the file's 269 MB of statistics are over twice the
# bound, 120 MB, and what touching every layer's would keep (190 MB) is over
# it too; loaded whole, as before, they peaked at 338 MB; read a layer at a
# time, one layer's plus gptq's buffers and the process stay (measured:
# 86 MB). Calibrating inline goes through a temporary file beside -o, read
# the same way: the same bytes, the same bound, the file removed.
QLIMIT=120000000
QUNDER=$QLIMIT
[ "${LB_SANITIZED:-0}" = 1 ] && QUNDER=$UNDER
[ "$(wc -c < "$TMP/cl.gguf")" -gt $((2 * QLIMIT)) ] && ok || fail "the statistics file is not over twice the bound"
QG=(--format int4 --method gptq --tensors 'blk.*.ffn_down.weight' --tokenizer "$TOK")
"$LOWBIT" quantize "$TMP/cm.gguf" -o "$TMP/qg.gguf" "${QG[@]}" --stats "$TMP/cl.gguf" --json > "$TMP/qg.json" \
    || fail "quantize --stats failed"
json "$TMP/qg.json" "j['streamed'] is True and j['tensors_quantized'] == 12 and 0 < j['peak_rss'] < $QUNDER"
"$LOWBIT" quantize "$TMP/cm.gguf" -o "$TMP/qc.gguf" "${QG[@]}" --calib "$TEXT" --calib-blocks 2 --json \
    > "$TMP/qc.json" || fail "quantize calibrating inline failed"
json "$TMP/qc.json" "j['streamed'] is True and j['tensors_quantized'] == 12 and 0 < j['peak_rss'] < $QUNDER"
if cmp -s "$TMP/qg.gguf" "$TMP/qc.gguf"; then ok; else fail "quantize with --stats and calibrating inline differ"; fi
left=$(ls "$TMP" | grep -c '\.calib\.' || true)
[ "$left" -eq 0 ] && ok || fail "$left temporary statistics files left"
rm -f "$TMP/cl.gguf" "$TMP/qg.gguf" "$TMP/qc.gguf"
# eval --stream: the same perplexity, bit for bit; bound 60 MB: streamed, the
# process (~25 MB) and about one block per thread (2 x 6.4 MB) stay
# (measured: 37 MB); resident, the 78 MB model does (measured: 106 MB)
ELIMIT=60000000
EUNDER=$ELIMIT
[ "${LB_SANITIZED:-0}" = 1 ] && EUNDER=$UNDER
EV=(--tokenizer "$TOK" --text "$TEXT" --split calib --calib-blocks 4 --ctx 128)
"$LOWBIT" eval "$TMP/cm.gguf" "${EV[@]}" --stream on --json > "$TMP/es.json" || fail "streamed eval failed"
"$LOWBIT" eval "$TMP/cm.gguf" "${EV[@]}" --stream off --json > "$TMP/er.json" || fail "resident eval failed"
json "$TMP/es.json" "j['streamed'] is True and 0 < j['peak_rss'] < $EUNDER"
json "$TMP/er.json" "j['streamed'] is False and j['peak_rss'] > $ELIMIT"
python3 -c "import json,sys; a,b=(json.load(open(f)) for f in sys.argv[1:]); sys.exit(a['nll']!=b['nll'] or a['tokens']!=b['tokens'])" \
    "$TMP/es.json" "$TMP/er.json" && ok || fail "streamed and resident eval differ"
expect 2 "--stream is auto, on or off" -- "$LOWBIT" eval "$TMP/cm.gguf" "${EV[@]}" --stream maybe
rm -f "$TMP/cm.gguf"

# nothing left behind but what was asked for
left=$(ls "$TMP" | grep -c '\.tmp\.' || true)
if [ "$left" -eq 0 ]; then ok; else fail "$left temporaries left"; fi

finish cli_stream
