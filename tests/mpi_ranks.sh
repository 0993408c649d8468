#!/usr/bin/env bash
# lowbit under mpirun (docs/SCALING.md, "MPI"), registered only in a
# -DLOWBIT_MPI=ON build (make test-mpi): 2 and 3 ranks on one machine
# (--oversubscribe) against one process without mpirun.
#   calibrate  the statistics file byte for byte (cmp), also with a token
#              budget, with more ranks than shards, and for 1 and 2 threads;
#              one process runs the layer-by-layer pass (the default), the
#              whole-model pass and a stopped, resumed run of each: the same bytes;
#              the ranks run the whole-model pass, refuse --resume and a
#              journal left beside the output
#   quantize   gptq int3:g32 with saved and with inline statistics: cmp
#   train      1 process with batch 4 vs 2 ranks of batch 2 (and 1 with 6 vs
#              3 of 2): the per-step loss within 1e-4 relative; not bitwise,
#              since the batch's gradient is summed in per-rank parts
#   failures   a bad input exits non-zero on every rank, no file left
set -u
NEEDS="MODEL TEXT"
. "$(dirname "$0")/common_cli.sh"

if ! command -v mpirun >/dev/null 2>&1; then
    echo "SKIPPED: no mpirun (scripts/install-deps.sh mpi)"
    exit 77
fi
# OpenMPI refuses root unless told (CI containers run as root)
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
# one thread per rank: 3 ranks on a 2-core machine are oversubscribed already
MPIRUN() { local n=$1; shift; timeout 300 mpirun -np "$n" --oversubscribe --bind-to none "$@"; }
same() { if cmp -s "$1" "$2"; then ok; else fail "$3: $1 and $2 differ"; fi; }

# calibrate: 48 blocks = 16 shards of 3; 3 ranks take 6, 5 and 5
"$LOWBIT" calibrate "$MODEL" --text "$TEXT" --calib-blocks 48 --threads 1 -o "$TMP/c1.gguf" >/dev/null 2>&1 || fail "calibrate, one process"
"$LOWBIT" calibrate "$MODEL" --text "$TEXT" --calib-blocks 48 --threads 2 -o "$TMP/c1t2.gguf" >/dev/null 2>&1
same "$TMP/c1.gguf" "$TMP/c1t2.gguf" "calibrate, 1 vs 2 threads"
MPIRUN 2 "$LOWBIT" calibrate "$MODEL" --text "$TEXT" --calib-blocks 48 --threads 1 -o "$TMP/c2.gguf" --json \
    > "$TMP/c2.json" 2> "$TMP/c2.err" || fail "calibrate, 2 ranks: $(cat "$TMP/c2.err")"
same "$TMP/c1.gguf" "$TMP/c2.gguf" "calibrate, 1 process vs 2 ranks"
json "$TMP/c2.json" "j['ranks'] == 2 and j['calibration'] == 'whole_model' and [r['blocks'] for r in j['rank_times']] == [24, 24] and sum(r['tokens'] for r in j['rank_times']) == j['tokens'] and all(r['seconds'] > 0 for r in j['rank_times'])"
if grep -q "rank 1: 8 shards, 24 blocks" "$TMP/c2.err"; then ok; else fail "no per-rank time on stderr: $(cat "$TMP/c2.err")"; fi
MPIRUN 3 "$LOWBIT" calibrate "$MODEL" --text "$TEXT" --calib-blocks 48 --threads 1 -o "$TMP/c3.gguf" >/dev/null 2>&1 || fail "calibrate, 3 ranks"
same "$TMP/c1.gguf" "$TMP/c3.gguf" "calibrate, 1 process vs 3 ranks"
# one process: the whole-model pass, and one stopped inside a shard and
# resumed; the layer-by-layer pass stopped after layer 2 and resumed
"$LOWBIT" calibrate "$MODEL" --text "$TEXT" --calib-blocks 48 --threads 1 --whole-model -o "$TMP/c1w.gguf" >/dev/null 2>&1 || fail "calibrate --whole-model, one process"
same "$TMP/c1.gguf" "$TMP/c1w.gguf" "calibrate, layer by layer vs whole model"
"$LOWBIT" calibrate "$MODEL" --text "$TEXT" --calib-blocks 48 --threads 1 --whole-model --stop-after 7 -o "$TMP/cr.gguf" >/dev/null 2>&1
if [ -e "$TMP/cr.gguf.partial" ]; then ok; else fail "calibrate --whole-model --stop-after 7 left no journal"; fi
"$LOWBIT" calibrate "$MODEL" --text "$TEXT" --calib-blocks 48 --threads 1 --whole-model --resume -o "$TMP/cr.gguf" >/dev/null 2>&1 || fail "calibrate --whole-model --resume, one process"
same "$TMP/c1.gguf" "$TMP/cr.gguf" "calibrate, stopped after block 7 and resumed vs uninterrupted"
"$LOWBIT" calibrate "$MODEL" --text "$TEXT" --calib-blocks 48 --threads 1 --stop-after 2 -o "$TMP/cl.gguf" >/dev/null 2>&1
if [ -e "$TMP/cl.gguf.partial" ] && [ -e "$TMP/cl.gguf.partial.data" ]; then ok; else fail "calibrate --stop-after 2 (layers) left no journal"; fi
"$LOWBIT" calibrate "$MODEL" --text "$TEXT" --calib-blocks 48 --threads 1 --resume -o "$TMP/cl.gguf" >/dev/null 2>&1 || fail "calibrate --resume (layered), one process"
same "$TMP/c1.gguf" "$TMP/cl.gguf" "calibrate, stopped after layer 2 and resumed vs uninterrupted"
# the ranks: no journal (refused), and an interrupted run's journal is left alone
out=$(MPIRUN 2 "$LOWBIT" calibrate "$MODEL" --text "$TEXT" --calib-blocks 4 --resume -o "$TMP/x.gguf" 2>&1)
if [ $? -ne 0 ] && [ ! -e "$TMP/x.gguf" ]; then ok; else fail "calibrate --resume under 2 ranks not refused: $out"; fi
case "$out" in *"for one process"*) ok ;; *) fail "calibrate --resume under 2 ranks: no reason: $out" ;; esac
"$LOWBIT" calibrate "$MODEL" --text "$TEXT" --calib-blocks 4 --threads 1 --stop-after 2 -o "$TMP/x.gguf" >/dev/null 2>&1
out=$(MPIRUN 2 "$LOWBIT" calibrate "$MODEL" --text "$TEXT" --calib-blocks 4 -o "$TMP/x.gguf" 2>&1)
if [ $? -ne 0 ] && [ ! -e "$TMP/x.gguf" ] && [ -e "$TMP/x.gguf.partial" ]; then ok; else fail "a journal beside the output under 2 ranks: $out"; fi
rm -f "$TMP/x.gguf.partial"
out=$(MPIRUN 2 "$LOWBIT" quantize "$MODEL" --format int4:g32 --resume -o "$TMP/x.gguf" 2>&1)
if [ $? -ne 0 ] && [ ! -e "$TMP/x.gguf" ]; then ok; else fail "quantize --resume under 2 ranks not refused: $out"; fi
# a token budget cutting block 11: every rank finds the cut
"$LOWBIT" calibrate "$MODEL" --text "$TEXT" --tokens 1000 --threads 1 -o "$TMP/b1.gguf" >/dev/null 2>&1
MPIRUN 3 "$LOWBIT" calibrate "$MODEL" --text "$TEXT" --tokens 1000 --threads 1 -o "$TMP/b3.gguf" >/dev/null 2>&1 || fail "calibrate --tokens, 3 ranks"
same "$TMP/b1.gguf" "$TMP/b3.gguf" "calibrate --tokens 1000, 1 process vs 3 ranks"
# 2 blocks, 2 shards, 3 ranks: rank 2 has nothing to run and still takes part
"$LOWBIT" calibrate "$MODEL" --text "$TEXT" --calib-blocks 2 --threads 1 -o "$TMP/s1.gguf" >/dev/null 2>&1
MPIRUN 3 "$LOWBIT" calibrate "$MODEL" --text "$TEXT" --calib-blocks 2 --threads 1 -o "$TMP/s3.gguf" >/dev/null 2>&1 || fail "calibrate, more ranks than shards"
same "$TMP/s1.gguf" "$TMP/s3.gguf" "calibrate, 2 blocks over 3 ranks"

# quantize: saved statistics, then calibrated inline (shared, then broadcast)
Q="--format int3:g32 --method gptq --threads 1"
"$LOWBIT" quantize "$MODEL" $Q --stats "$TMP/c1.gguf" -o "$TMP/q1.gguf" >/dev/null 2>&1 || fail "quantize, one process"
MPIRUN 2 "$LOWBIT" quantize "$MODEL" $Q --stats "$TMP/c1.gguf" -o "$TMP/q2.gguf" >/dev/null 2>&1 || fail "quantize, 2 ranks"
MPIRUN 3 "$LOWBIT" quantize "$MODEL" $Q --stats "$TMP/c1.gguf" -o "$TMP/q3.gguf" --report "$TMP/r3.json" >/dev/null 2>&1 || fail "quantize, 3 ranks"
same "$TMP/q1.gguf" "$TMP/q2.gguf" "quantize, 1 process vs 2 ranks"
same "$TMP/q1.gguf" "$TMP/q3.gguf" "quantize, 1 process vs 3 ranks"
json "$TMP/r3.json" "len(j['tensors']) == 35 and all(t['method'] == 'gptq' and t['proxy_loss'] > 0 for t in j['tensors'] if 'blk.' in t['name'])"
"$LOWBIT" quantize "$MODEL" $Q --calib-blocks 16 -o "$TMP/qi1.gguf" >/dev/null 2>&1
MPIRUN 2 "$LOWBIT" quantize "$MODEL" $Q --calib-blocks 16 -o "$TMP/qi2.gguf" >/dev/null 2>&1 || fail "quantize with inline calibration, 2 ranks"
same "$TMP/qi1.gguf" "$TMP/qi2.gguf" "quantize with inline calibration, 1 process vs 2 ranks"
# --sequential runs on rank 0 alone, and says so
out=$(MPIRUN 2 "$LOWBIT" quantize "$MODEL" --format int4:g32 --method gptq --sequential --calib-blocks 4 -o "$TMP/qs.gguf" 2>&1)
case "$out" in *"runs on rank 0 alone"*) ok ;; *) fail "--sequential under mpirun: $out" ;; esac

# train: 2 ranks of batch 2 read the windows one process reads with batch 4
TR="--text $TEXT --steps 8 --ctx 32 --log-every 1 --threads 1 --json"
"$LOWBIT" train "$MODEL" $TR --batch 4 -o "$TMP/t1.gguf" > "$TMP/t1.json" 2>/dev/null || fail "train, one process"
MPIRUN 2 "$LOWBIT" train "$MODEL" $TR --batch 2 -o "$TMP/t2.gguf" > "$TMP/t2.json" 2>/dev/null || fail "train, 2 ranks"
"$LOWBIT" train "$MODEL" $TR --batch 6 --qat ste --format int4:g32 --distill kl -o "$TMP/d1.gguf" > "$TMP/d1.json" 2>/dev/null || fail "QAT distillation, one process"
MPIRUN 3 "$LOWBIT" train "$MODEL" $TR --batch 2 --qat ste --format int4:g32 --distill kl -o "$TMP/d3.gguf" > "$TMP/d3.json" 2>/dev/null || fail "QAT distillation, 3 ranks"
curve() { # same loss curve: every logged step's loss within 1e-4 relative
    python3 - "$1" "$2" <<'PY'
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:3])
la, lb = [r['loss'] for r in a['log']], [r['loss'] for r in b['log']]
bad = [(i, x, y) for i, (x, y) in enumerate(zip(la, lb)) if abs(x - y) > 1e-4 * abs(x)]
ok = len(la) == len(lb) == 8 and b['ranks'] > 1 and not bad
print("" if ok else "losses %s vs %s" % (la, lb))
sys.exit(0 if ok else 1)
PY
}
if out=$(curve "$TMP/t1.json" "$TMP/t2.json"); then ok; else fail "train, 1 process batch 4 vs 2 ranks batch 2: $out"; fi
if out=$(curve "$TMP/d1.json" "$TMP/d3.json"); then ok; else fail "QAT distillation, batch 6 vs 3 ranks of 2: $out"; fi
if [ -s "$TMP/t2.gguf" ]; then ok; else fail "train under mpirun wrote no model"; fi

# failures: every rank exits, non-zero, nothing written
out=$(MPIRUN 2 "$LOWBIT" quantize "$MODEL" $Q --stats "$TMP/missing.gguf" -o "$TMP/x.gguf" 2>&1)
if [ $? -ne 0 ] && [ ! -e "$TMP/x.gguf" ]; then ok; else fail "a missing --stats under mpirun: exit 0 or a file left: $out"; fi
out=$(MPIRUN 2 "$LOWBIT" calibrate "$MODEL" --text "$TEXT" --calib-blocks 2 --tokens 100000 -o "$TMP/x.gguf" 2>&1)
if [ $? -ne 0 ] && [ ! -e "$TMP/x.gguf" ]; then ok; else fail "too many tokens under mpirun: exit 0 or a file left: $out"; fi

finish mpi_ranks
