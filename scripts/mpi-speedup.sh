#!/usr/bin/env bash
# The MPI speed-up of calibration (docs/SCALING.md, "MPI"): a synthetic
# 4096-wide Llama block (lowbit synth: 1 layer, MLP 11008, vocab 512 so that
# stories260K's tokenizer reads the text) calibrated over the first BLOCKS
# blocks of the TinyStories sample, by one process with 1 thread, by
# mpirun -np 2 with 1 thread per rank, and by one process with 2 threads for
# reference; the statistics compared with cmp, the wall times and the 1 -> 2
# rank efficiency t1 / (2 t2) printed, with each rank's running / reducing
# seconds. Usage (from the repository root, a -DLOWBIT_MPI=ON build):
#   scripts/mpi-speedup.sh [LOWBIT] [WORKDIR] [BLOCKS]
# defaults build-mpi/lowbit, /tmp/lowbit-mpi-speedup, 32. Needs ~4 GB of RAM
# and ~0.4 GB of disk in WORKDIR; a few minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
LOWBIT=${1:-build-mpi/lowbit}
WORK=${2:-/tmp/lowbit-mpi-speedup}
BLOCKS=${3:-32}
DATA=../shared/data
mkdir -p "$WORK"
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
MODEL=$WORK/synth-4096.gguf
[ -f "$MODEL" ] || "$LOWBIT" synth -o "$MODEL" --dim 4096 --ffn 11008 --layers 1 --heads 32 --vocab 512 --ctx 512 >/dev/null
C=(calibrate "$MODEL" --tokenizer "$DATA/models/tok512.bin" --text "$DATA/text/tinystories-sample.txt"
   --calib-blocks "$BLOCKS" --json)
secs() { python3 -c "import json,sys; print('%.2f' % json.load(open(sys.argv[1]))['seconds'])" "$1"; }
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) before the runs"
"$LOWBIT" "${C[@]}" --threads 1 -o "$WORK/s1.gguf" > "$WORK/s1.json"
mpirun -np 2 --bind-to none "$LOWBIT" "${C[@]}" --threads 1 -o "$WORK/s2.gguf" > "$WORK/s2.json"
"$LOWBIT" "${C[@]}" --threads 2 -o "$WORK/s1t2.gguf" > "$WORK/s1t2.json"
cmp "$WORK/s1.gguf" "$WORK/s2.gguf" && echo "statistics: 1 process and 2 ranks byte-identical (cmp)"
cmp "$WORK/s1.gguf" "$WORK/s1t2.gguf" && echo "statistics: 1 and 2 threads byte-identical (cmp)"
t1=$(secs "$WORK/s1.json") t2=$(secs "$WORK/s2.json") t12=$(secs "$WORK/s1t2.json")
echo "1 process, 1 thread:      $t1 s"
echo "2 ranks, 1 thread each:   $t2 s   speed-up $(python3 -c "print('%.2f' % ($t1 / $t2))"), efficiency $(python3 -c "print('%.0f%%' % (100 * $t1 / (2 * $t2)))")"
echo "1 process, 2 threads:     $t12 s   speed-up $(python3 -c "print('%.2f' % ($t1 / $t12))")"
python3 - "$WORK/s2.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
for r in j['rank_times']:
    print("  rank %d: %d shards, %d blocks, %d tokens, %.2f s running, %.2f s reducing / waiting, %.2f s in all"
          % (r['rank'], r['shards'], r['blocks'], r['tokens'], r['work_seconds'], r['reduce_seconds'], r['seconds']))
PY
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
