#!/usr/bin/env bash
# Resumable runs (docs/SCALING.md, "Resumable runs"): quantize and calibrate
# interrupted (--stop-after, a hard kill at a random point, a journal cut
# short or damaged by hand) and resumed write the same bytes as a run never
# interrupted (cmp), for rtn and gptq with --stats or calibrating inline
# (streamed), a plan that is quantized in memory (outliers), --sequential and
# --refine, a split output, and both calibration passes (layer by layer:
# stopped after layer k, killed, SIGTERMed; whole-model: after block k,
# killed); a journal of another command or of the other pass is refused
# naming what differs, a stale one without --resume is refused, a corrupt one
# (or a damaged, cut or missing layered data file) is refused or its torn tail
# dropped with a message,
# never a crash.
set -u
NEEDS="MODEL TEXT TOK"
. "$(dirname "$0")/common_cli.sh"

Q=("$LOWBIT" quantize "$MODEL" --no-progress)
C=("$LOWBIT" calibrate "$MODEL" --no-progress --text "$TEXT" --ctx 128)

expect 0 "--resume" -- "$LOWBIT" quantize --help
expect 0 "--stop-after N" -- "$LOWBIT" calibrate --help
expect 2 "--dry-run writes nothing" -- "${Q[@]}" --format int4 --dry-run --resume
expect 2 "--stop-after" -- "${Q[@]}" -o "$TMP/x.gguf" --format int4 --stop-after 0

# same_after_stop NAME K ARGS...: a reference run, then one stopped after K
# tensors (exit 3, no output, the journal kept) and resumed: the same bytes,
# "resumed": K in --json, the journal removed
same_after_stop() {
    local name=$1 k=$2
    shift 2
    "${Q[@]}" -o "$TMP/$name-ref.gguf" "$@" > /dev/null 2>&1 || fail "$name: the reference run failed"
    expect 3 "stopped after $k of" -- "${Q[@]}" -o "$TMP/$name.gguf" "$@" --stop-after "$k"
    if [ -e "$TMP/$name.gguf" ] || [ ! -s "$TMP/$name.gguf.partial" ]; then fail "$name: --stop-after left an output or no journal"; else ok; fi
    "${Q[@]}" -o "$TMP/$name.gguf" "$@" --resume --json > "$TMP/$name.json" 2> "$TMP/$name.err" || fail "$name: resume failed: $(cat "$TMP/$name.err")"
    json "$TMP/$name.json" "j['resumed'] == $k"
    grep -q "resumed: $k of" "$TMP/$name.err" && ok || fail "$name: no 'resumed: $k of' on stderr"
    if cmp -s "$TMP/$name-ref.gguf" "$TMP/$name.gguf"; then ok; else fail "$name: resumed output differs from the uninterrupted run's"; fi
    if [ -e "$TMP/$name.gguf.partial" ]; then fail "$name: the journal was not removed"; else ok; fi
}

# ---- quantize ----------------------------------------------------------------
same_after_stop rtn 7 --format int4
"$LOWBIT" calibrate "$MODEL" --text "$TEXT" --calib-blocks 8 -o "$TMP/st.gguf" --no-progress > /dev/null || fail "calibrate failed"
"$LOWBIT" calibrate "$MODEL" --text "$TEXT" --calib-blocks 6 -o "$TMP/st6.gguf" --no-progress > /dev/null || fail "calibrate failed"
same_after_stop gptq 11 --format int3 --method gptq --stats "$TMP/st.gguf"
json "$TMP/gptq.json" "j['streamed'] is True"
# calibrating inline (through a temporary statistics file beside -o, read a
# layer at a time): the bytes --stats gives, stopped and resumed too, and no
# temporary left after the stop, the resume, or a calibration that fails
same_after_stop gptqcal 11 --format int3 --method gptq --calib "$TEXT" --calib-blocks 8
json "$TMP/gptqcal.json" "j['streamed'] is True"
if cmp -s "$TMP/gptq-ref.gguf" "$TMP/gptqcal.gguf"; then ok; else fail "calibrating inline differs from --stats"; fi
: > "$TMP/empty.txt"
expect 1 "temporary file beside -o" -- "${Q[@]}" -o "$TMP/e.gguf" --format int3 --method gptq --calib "$TMP/empty.txt"
left=$(ls "$TMP" | grep -c '\.calib\.' || true)
[ "$left" -eq 0 ] && ok || fail "$left temporary statistics files left"
# outliers make slot parts: the in-memory path, its slots journaled too
same_after_stop outl 5 --format int3 --outliers 0.01 --report "$TMP/outl-report.json"
json "$TMP/outl.json" "j['streamed'] is False"
json "$TMP/outl-report.json" "len(j['tensors']) == 35 and all(t['rel_error'] > 0 for t in j['tensors'])"
# sequential and refined: the later stages calibrate through the journaled
# quantized layers (stopped inside layer 1 and inside layer 2)
same_after_stop seq 10 --format int3 --method gptq --sequential --calib-blocks 2
json "$TMP/seq.json" "j['sequential'] is True"
same_after_stop refine 16 --format int3 --method gptq --refine autoround:steps=2 --calib-blocks 2
expect 3 "stopped after 3 of 35" -- "${Q[@]}" -o "$TMP/refine.gguf" --format int3 --method gptq --refine autoround:steps=2 --calib-blocks 2 --stop-after 3
expect 1 "this run 'calibration: the calibration split's first 2 blocks; sequential 1; refine autoround:steps=3" -- "${Q[@]}" -o "$TMP/refine.gguf" --format int3 --method gptq --refine autoround:steps=3 --calib-blocks 2 --resume
rm -f "$TMP/refine.gguf.partial"
# a split output: every shard the same
"${Q[@]}" -o "$TMP/sp-ref.gguf" --format int4 --split-max-size 100K > /dev/null 2>&1 || fail "split reference failed"
expect 3 "stopped after 20 of 35" -- "${Q[@]}" -o "$TMP/sp.gguf" --format int4 --split-max-size 100K --stop-after 20
"${Q[@]}" -o "$TMP/sp.gguf" --format int4 --split-max-size 100K --resume > /dev/null 2>&1 || fail "split resume failed"
n=0
for f in "$TMP"/sp-ref-0000*-of-*.gguf; do
    n=$((n + 1))
    if cmp -s "$f" "${f/sp-ref/sp}"; then ok; else fail "shard $f differs after resume"; fi
done
[ "$n" -ge 2 ] && ok || fail "the split reference has $n shards"

# a stale journal is not used silently; one of another command is refused, naming what differs
expect 3 "stopped after 9 of 35" -- "${Q[@]}" -o "$TMP/m.gguf" --format int3 --method gptq --stats "$TMP/st.gguf" --stop-after 9
expect 1 "with --resume) or remove it" -- "${Q[@]}" -o "$TMP/m.gguf" --format int3 --method gptq --stats "$TMP/st.gguf"
expect 1 "this run 'tensor blk.0.attn_q.weight: int4" -- "${Q[@]}" -o "$TMP/m.gguf" --format int4 --method gptq --stats "$TMP/st.gguf" --resume
expect 1 "percdamp=0.05" -- "${Q[@]}" -o "$TMP/m.gguf" --format int3 --method gptq --stats "$TMP/st.gguf" --resume --tensor-type 'blk.0.attn_q.weight=int3,method=gptq,percdamp=0.05'
expect 1 "statistics (--stats)" -- "${Q[@]}" -o "$TMP/m.gguf" --format int3 --method gptq --stats "$TMP/st6.gguf" --resume
"$LOWBIT" synth -o "$TMP/other.gguf" --dim 64 --ffn 172 --layers 5 --heads 8 --vocab 512 --seed 3 > /dev/null || fail "synth failed"
expect 1 "written by another run" -- "$LOWBIT" quantize "$TMP/other.gguf" --no-progress -o "$TMP/m.gguf" --format int3 --method gptq --stats "$TMP/st.gguf" --resume
# resumed twice, the second time stopped again
expect 3 "stopped after 20 of 35" -- "${Q[@]}" -o "$TMP/m.gguf" --format int3 --method gptq --stats "$TMP/st.gguf" --resume --stop-after 20
expect 2 "holds 20 finished tensors already" -- "${Q[@]}" -o "$TMP/m.gguf" --format int3 --method gptq --stats "$TMP/st.gguf" --resume --stop-after 20
expect 0 "resumed: 20 of 35" -- "${Q[@]}" -o "$TMP/m.gguf" --format int3 --method gptq --stats "$TMP/st.gguf" --resume
if cmp -s "$TMP/gptq-ref.gguf" "$TMP/m.gguf"; then ok; else fail "resumed twice: differs"; fi

# a journal cut inside a record (a kill while writing it) or with a damaged
# record: the tail is dropped with a message, the rest used, the same bytes
for cut in 1 100 5000; do
    expect 3 "stopped after 12" -- "${Q[@]}" -o "$TMP/t.gguf" --format int4 --stop-after 12
    size=$(stat -c %s "$TMP/t.gguf.partial")
    truncate -s $((size - cut)) "$TMP/t.gguf.partial"
    expect 0 "cut short or damaged" -- "${Q[@]}" -o "$TMP/t.gguf" --format int4 --resume
    if cmp -s "$TMP/rtn-ref.gguf" "$TMP/t.gguf"; then ok; else fail "resumed from a journal cut by $cut bytes: differs"; fi
done
expect 3 "stopped after 12" -- "${Q[@]}" -o "$TMP/t.gguf" --format int4 --stop-after 12
size=$(stat -c %s "$TMP/t.gguf.partial")
printf '\x55' | dd of="$TMP/t.gguf.partial" bs=1 seek=$((size - 3000)) conv=notrunc status=none
expect 0 "cut short or damaged" -- "${Q[@]}" -o "$TMP/t.gguf" --format int4 --resume
if cmp -s "$TMP/rtn-ref.gguf" "$TMP/t.gguf"; then ok; else fail "resumed from a damaged journal: differs"; fi
# a damaged header, a file that is no journal, an empty one: refused, no crash
expect 3 "stopped after 3" -- "${Q[@]}" -o "$TMP/t.gguf" --format int4 --stop-after 3
printf 'X' | dd of="$TMP/t.gguf.partial" bs=1 seek=40 conv=notrunc status=none
expect 1 "fails its checksum" -- "${Q[@]}" -o "$TMP/t.gguf" --format int4 --resume
head -c 10 /dev/urandom > "$TMP/t.gguf.partial"
expect 1 "not a lowbit journal" -- "${Q[@]}" -o "$TMP/t.gguf" --format int4 --resume
: > "$TMP/t.gguf.partial"
expect 1 "not a lowbit journal" -- "${Q[@]}" -o "$TMP/t.gguf" --format int4 --resume
rm -f "$TMP/t.gguf.partial"
# --resume with no journal: from the first tensor
expect 0 "starting from the first" -- "${Q[@]}" -o "$TMP/t.gguf" --format int4 --resume
if cmp -s "$TMP/rtn-ref.gguf" "$TMP/t.gguf"; then ok; else fail "--resume without a journal: differs"; fi

# kill_when FILE BYTES CMD...: runs CMD, and SIGKILLs it (SIGNAL=TERM: SIGTERMs)
# once FILE holds at least BYTES (at a random point of the run, whatever the
# machine's speed); says "killed" when it did, "finished" when the run ended first
kill_when() {
    local file=$1 bytes=$2
    shift 2
    "$@" > /dev/null 2>&1 &
    local pid=$!
    while kill -0 "$pid" 2> /dev/null; do
        if [ -e "$file" ] && [ "$(stat -c %s "$file" 2> /dev/null || echo 0)" -ge "$bytes" ]; then
            kill -"${SIGNAL:-KILL}" "$pid" 2> /dev/null && { wait "$pid" 2> /dev/null; echo killed; return; }
        fi
        sleep 0.02
    done
    wait "$pid" 2> /dev/null
    echo finished
}

# a hard kill at a random point of a slower run (a larger synthetic model,
# clip=mse; its journal grows to about 600 KB), then --resume: the same bytes
# whatever the point, even inside a record
"$LOWBIT" synth -o "$TMP/big.gguf" --dim 128 --ffn 344 --layers 4 --heads 8 --vocab 512 --seed 5 > /dev/null || fail "synth failed"
B=("$LOWBIT" quantize "$TMP/big.gguf" --no-progress --format int3 --clip mse)
"${B[@]}" -o "$TMP/big-ref.gguf" > /dev/null 2>&1 || fail "big reference failed"
for i in 1 2 3; do
    rm -f "$TMP/big.q.gguf" "$TMP/big.q.gguf.partial"
    how=$(kill_when "$TMP/big.q.gguf.partial" $((RANDOM * 12 + 20000)) "${B[@]}" -o "$TMP/big.q.gguf")
    [ -e "$TMP/big.q.gguf" ] && how=finished # killed as it exited
    "${B[@]}" -o "$TMP/big.q.gguf" --resume > /dev/null 2> "$TMP/kill.err" || fail "resume after a kill failed: $(cat "$TMP/kill.err")"
    if [ "$how" = killed ]; then grep -q "resumed: [1-9][0-9]* of 28" "$TMP/kill.err" && ok || fail "killed ($i) with a journal, resumed none: $(cat "$TMP/kill.err")"; fi
    if cmp -s "$TMP/big-ref.gguf" "$TMP/big.q.gguf"; then ok; else fail "resumed after a kill ($i, $how): differs"; fi
    rm -f "$TMP"/big.q.gguf.tmp.* # a SIGKILL leaves the output's temporary
done

# ---- calibrate: the layer-by-layer pass (the default), journaled per layer -------
"${C[@]}" --calib-blocks 12 -o "$TMP/c-ref.gguf" > "$TMP/c-ref.txt" || fail "calibrate reference failed"
expect 3 "stopped after 2 of 5 layers" -- "${C[@]}" --calib-blocks 12 -o "$TMP/l.gguf" --stop-after 2
if [ -e "$TMP/l.gguf" ] || [ ! -s "$TMP/l.gguf.partial" ] || [ ! -s "$TMP/l.gguf.partial.data" ]; then
    fail "calibrate --stop-after left an output, or no journal and data file"; else ok; fi
expect 1 "with --resume) or remove it" -- "${C[@]}" --calib-blocks 12 -o "$TMP/l.gguf"
expect 1 "this run 'calibration: --calib-blocks 11" -- "${C[@]}" --calib-blocks 11 -o "$TMP/l.gguf" --resume
head -c 20000 "$TEXT" > "$TMP/other.txt"
expect 1 "calibration text" -- "$LOWBIT" calibrate "$MODEL" --no-progress --text "$TMP/other.txt" --ctx 128 --calib-blocks 12 -o "$TMP/l.gguf" --resume
expect 1 "is the layer-by-layer pass's journal" -- "${C[@]}" --calib-blocks 12 -o "$TMP/l.gguf" --whole-model --resume
"${C[@]}" --calib-blocks 12 -o "$TMP/l.gguf" --resume --json > "$TMP/l.json" 2> "$TMP/l.err" || fail "layered resume failed: $(cat "$TMP/l.err")"
json "$TMP/l.json" "j['resumed'] == 2 and j['sequences'] == 12 and j['calibration'] == 'layered_to_file'"
grep -q "resumed: 2 of 5 layers" "$TMP/l.err" && ok || fail "calibrate: no 'resumed: 2 of 5 layers' on stderr"
if cmp -s "$TMP/c-ref.gguf" "$TMP/l.gguf"; then ok; else fail "layered: resumed statistics differ"; fi
if [ -e "$TMP/l.gguf.partial" ] || [ -e "$TMP/l.gguf.partial.data" ]; then fail "layered: journal or data file left"; else ok; fi
# the printed summary too (the journaled layers' read back from the file), all but the time line
expect 3 "stopped after 4 of 5" -- "${C[@]}" --calib-blocks 12 -o "$TMP/l.gguf" --stop-after 4
"${C[@]}" --calib-blocks 12 -o "$TMP/l.gguf" --resume > "$TMP/l.txt" 2> /dev/null || fail "layered resume (text) failed"
if diff <(grep -v " tokens in " "$TMP/c-ref.txt") <(grep -v " tokens in " "$TMP/l.txt") > /dev/null; then ok; else fail "layered: resumed summary differs"; fi
# a journal every 2 layers, stopped at 1 (its own snapshot), then at 3 (resumed), then finished
expect 3 "stopped after 1 of 5 layers" -- "${C[@]}" --calib-blocks 12 -o "$TMP/l2.gguf" --journal-every 2 --stop-after 1
expect 3 "stopped after 3 of 5 layers" -- "${C[@]}" --calib-blocks 12 -o "$TMP/l2.gguf" --journal-every 2 --stop-after 3 --resume
expect 0 "resumed: 3 of 5 layers" -- "${C[@]}" --calib-blocks 12 -o "$TMP/l2.gguf" --journal-every 2 --resume
if cmp -s "$TMP/c-ref.gguf" "$TMP/l2.gguf"; then ok; else fail "layered resumed twice: differs"; fi
# damage: each refused with a message, nothing written; the saved pair still resumes to the same bytes
expect 3 "stopped after 3 of 5" -- "${C[@]}" --calib-blocks 12 -o "$TMP/l3.gguf" --stop-after 3
cp "$TMP/l3.gguf.partial" "$TMP/j.saved"
cp "$TMP/l3.gguf.partial.data" "$TMP/d.saved"
restore() { cp "$TMP/j.saved" "$TMP/l3.gguf.partial"; cp "$TMP/d.saved" "$TMP/l3.gguf.partial.data"; }
size=$(stat -c %s "$TMP/l3.gguf.partial")
truncate -s $((size - 9)) "$TMP/l3.gguf.partial"
expect 1 "fails its checksum" -- "${C[@]}" --calib-blocks 12 -o "$TMP/l3.gguf" --resume
restore
printf '\x55' | dd of="$TMP/l3.gguf.partial" bs=1 seek=$((size / 2)) conv=notrunc status=none
expect 1 "fails its checksum" -- "${C[@]}" --calib-blocks 12 -o "$TMP/l3.gguf" --resume
head -c 5 /dev/urandom > "$TMP/l3.gguf.partial"
expect 1 "not a lowbit calibration journal" -- "${C[@]}" --calib-blocks 12 -o "$TMP/l3.gguf" --resume
restore
dsize=$(stat -c %s "$TMP/l3.gguf.partial.data")
printf '\x55' | dd of="$TMP/l3.gguf.partial.data" bs=1 seek=$((dsize / 2)) conv=notrunc status=none
expect 1 "is not what the journal" -- "${C[@]}" --calib-blocks 12 -o "$TMP/l3.gguf" --resume
restore
truncate -s $((dsize / 2)) "$TMP/l3.gguf.partial.data"
expect 1 "is cut short" -- "${C[@]}" --calib-blocks 12 -o "$TMP/l3.gguf" --resume
rm "$TMP/l3.gguf.partial.data"
expect 1 "l3.gguf.partial.data', the statistics the journal" -- "${C[@]}" --calib-blocks 12 -o "$TMP/l3.gguf" --resume
if [ -e "$TMP/l3.gguf" ]; then fail "a refused resume wrote the output"; else ok; fi
restore
head -c 100000 /dev/urandom >> "$TMP/l3.gguf.partial.data" # a killed run's half-written layer: cut off
expect 0 "resumed: 3 of 5 layers" -- "${C[@]}" --calib-blocks 12 -o "$TMP/l3.gguf" --resume
if cmp -s "$TMP/c-ref.gguf" "$TMP/l3.gguf"; then ok; else fail "layered: resumed after the damage tests: differs"; fi
# --imatrix keeps its statistics in memory: asking for the journal takes the whole-model pass
expect 3 "stopped after 2 of 12 blocks" -- "${C[@]}" --calib-blocks 12 -o "$TMP/im.gguf" --imatrix "$TMP/im.imatrix.gguf" --stop-after 2
rm -f "$TMP/im.gguf.partial"

# ---- calibrate: the whole-model pass (--whole-model), journaled per block ---------
W=("${C[@]}" --whole-model)
expect 3 "stopped after 5 of 12 blocks" -- "${W[@]}" --calib-blocks 12 -o "$TMP/c.gguf" --stop-after 5
if [ -e "$TMP/c.gguf" ] || [ ! -s "$TMP/c.gguf.partial" ]; then fail "calibrate --stop-after left an output or no journal"; else ok; fi
expect 1 "with --resume) or remove it" -- "${W[@]}" --calib-blocks 12 -o "$TMP/c.gguf"
expect 1 "this run 'calibration: --calib-blocks 11" -- "${W[@]}" --calib-blocks 11 -o "$TMP/c.gguf" --resume
expect 1 "calibration text" -- "$LOWBIT" calibrate "$MODEL" --no-progress --whole-model --text "$TMP/other.txt" --calib-blocks 12 -o "$TMP/c.gguf" --resume
expect 1 "is the whole-model pass's (--whole-model) journal" -- "${C[@]}" --calib-blocks 12 -o "$TMP/c.gguf" --resume
"${W[@]}" --calib-blocks 12 -o "$TMP/c.gguf" --resume --json > "$TMP/c.json" 2> "$TMP/c.err" || fail "calibrate resume failed: $(cat "$TMP/c.err")"
json "$TMP/c.json" "j['resumed'] == 5 and j['sequences'] == 12 and j['calibration'] == 'whole_model'"
grep -q "resumed: 5 of 12 blocks" "$TMP/c.err" && ok || fail "calibrate: no 'resumed: 5 of 12' on stderr"
if cmp -s "$TMP/c-ref.gguf" "$TMP/c.gguf"; then ok; else fail "calibrate: resumed statistics differ"; fi
if [ -e "$TMP/c.gguf.partial" ]; then fail "calibrate: the journal was not removed"; else ok; fi
# snapshots every 2 blocks, stopped at 7 (saved there), resumed twice
expect 3 "stopped after 3 of 12" -- "${W[@]}" --calib-blocks 12 -o "$TMP/c2.gguf" --journal-every 2 --stop-after 3
expect 3 "stopped after 7 of 12" -- "${W[@]}" --calib-blocks 12 -o "$TMP/c2.gguf" --journal-every 2 --stop-after 7 --resume
expect 0 "resumed: 7 of 12" -- "${W[@]}" --calib-blocks 12 -o "$TMP/c2.gguf" --journal-every 2 --resume
if cmp -s "$TMP/c-ref.gguf" "$TMP/c2.gguf"; then ok; else fail "calibrate resumed twice: differs"; fi
# a damaged or cut snapshot: refused with a message, never used
expect 3 "stopped after 4" -- "${W[@]}" --calib-blocks 12 -o "$TMP/c3.gguf" --stop-after 4
size=$(stat -c %s "$TMP/c3.gguf.partial")
truncate -s $((size - 9)) "$TMP/c3.gguf.partial"
expect 1 "fails its checksum" -- "${W[@]}" --calib-blocks 12 -o "$TMP/c3.gguf" --resume
head -c 5 /dev/urandom > "$TMP/c3.gguf.partial"
expect 1 "not a lowbit calibration journal" -- "${W[@]}" --calib-blocks 12 -o "$TMP/c3.gguf" --resume
# a quantize journal is no calibration journal (of either pass), and the reverse
expect 3 "stopped after 3" -- "${Q[@]}" -o "$TMP/x.gguf" --format int4 --stop-after 3
cp "$TMP/x.gguf.partial" "$TMP/c3.gguf.partial"
expect 1 "not a lowbit calibration journal" -- "${W[@]}" --calib-blocks 12 -o "$TMP/c3.gguf" --resume
expect 1 "not a lowbit calibration journal" -- "${C[@]}" --calib-blocks 12 -o "$TMP/c3.gguf" --resume
cp "$TMP/c2.gguf" "$TMP/x.gguf.partial" 2> /dev/null || cp "$TMP/c-ref.gguf" "$TMP/x.gguf.partial"
expect 1 "not a lowbit journal" -- "${Q[@]}" -o "$TMP/x.gguf" --format int4 --resume
# a hard kill at a random point after the first snapshot (saved after every block)
for i in 1 2; do
    rm -f "$TMP/ck.gguf" "$TMP/ck.gguf.partial"
    how=$(kill_when "$TMP/ck.gguf.partial" 0 "${W[@]}" --calib-blocks 12 -o "$TMP/ck.gguf" --journal-every 1)
    [ -e "$TMP/ck.gguf" ] && how=finished
    "${W[@]}" --calib-blocks 12 -o "$TMP/ck.gguf" --journal-every 1 --resume > /dev/null 2> "$TMP/ck.err" \
        || fail "calibrate resume after a kill failed: $(cat "$TMP/ck.err")"
    if [ "$how" = killed ]; then grep -q "resumed: [1-9][0-9]* of 12" "$TMP/ck.err" && ok || fail "calibrate killed with a snapshot, resumed none"; fi
    if cmp -s "$TMP/c-ref.gguf" "$TMP/ck.gguf"; then ok; else fail "calibrate resumed after a kill ($i, $how): differs"; fi
    rm -f "$TMP"/ck.gguf.partial.tmp.*
done

# ---- calibrate, layered: killed at a random point --------------------------------
# a slower run (the 4-layer synthetic model above, 16 blocks of 128 tokens; its
# statistics file is about 5.4 MB): SIGKILL once the data file passed a random
# size (inside a layer, or while a snapshot is written), then --resume: the same
# bytes; SIGTERM once a journal exists: the data file the journal refers to
# survives the signal handler (which removes the output's temporaries)
K=("$LOWBIT" calibrate "$TMP/big.gguf" --tokenizer "$TOK" --no-progress --text "$TEXT" --ctx 128 --calib-blocks 16)
"${K[@]}" -o "$TMP/k-ref.gguf" > /dev/null 2>&1 || fail "layered kill reference failed"
killed=0
for i in 1 2 3; do
    rm -f "$TMP/k.gguf" "$TMP/k.gguf.partial" "$TMP/k.gguf.partial.data"
    how=$(kill_when "$TMP/k.gguf.partial.data" $((RANDOM * 120 + 800000)) "${K[@]}" -o "$TMP/k.gguf" --journal-every 1)
    [ -e "$TMP/k.gguf" ] && how=finished
    journal=no; [ -e "$TMP/k.gguf.partial" ] && journal=yes
    "${K[@]}" -o "$TMP/k.gguf" --journal-every 1 --resume > /dev/null 2> "$TMP/k.err" || fail "layered resume after a kill failed: $(cat "$TMP/k.err")"
    if [ "$how" = killed ] && [ $journal = yes ]; then
        killed=$((killed + 1))
        grep -q "resumed: [1-3] of 4 layers" "$TMP/k.err" && ok || fail "layered: killed with a journal, resumed none: $(cat "$TMP/k.err")"
    fi
    if cmp -s "$TMP/k-ref.gguf" "$TMP/k.gguf"; then ok; else fail "layered: resumed after a kill ($i, $how, journal $journal): differs"; fi
    rm -f "$TMP"/k.gguf.partial.tmp.*
done
echo "note: $killed of 3 layered runs were killed after a journal was written (the others finished or had none)"
rm -f "$TMP/k.gguf" "$TMP/k.gguf.partial" "$TMP/k.gguf.partial.data"
how=$(SIGNAL=TERM kill_when "$TMP/k.gguf.partial" 0 "${K[@]}" -o "$TMP/k.gguf" --journal-every 1)
if [ "$how" = killed ] && [ ! -e "$TMP/k.gguf" ]; then
    [ -s "$TMP/k.gguf.partial.data" ] && ok || fail "layered: SIGTERM removed the data file a journal refers to"
    expect 0 "resumed: " -- "${K[@]}" -o "$TMP/k.gguf" --journal-every 1 --resume
    if cmp -s "$TMP/k-ref.gguf" "$TMP/k.gguf"; then ok; else fail "layered: resumed after SIGTERM: differs"; fi
else
    echo "note: the SIGTERM run finished before the signal; not checked"
fi

finish cli_resume
