#!/usr/bin/env bash
# The measurements of docs/SCALING.md, "Streaming", for calibrate and eval:
# peak_rss (from --json) and seconds of calibrate layer by layer against
# --whole-model (the statistics files compared with cmp), of quantize --method
# gptq calibrating itself and from --stats, and of eval --stream on / off (the
# same nll), with the minor page faults and system time of each eval.
#
# usage: scripts/measure-streaming.sh [BUILD_DIR]   (default: build)
#   BIG=1   also the 8.2 GB model (dim 4096, ffn 11008, 19 layers): needs
#           ~45 GB free in $WORK (the model, 26 GB of statistics) and a few
#           minutes; the whole-model calibration is not run there (its
#           statistics alone would be 26 GB of memory)
#   WORK=DIR scratch directory (default: a new one under /tmp), removed at the end
# Times depend on the machine's load; peak_rss does not.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
LOWBIT=$top/${1:-build}/lowbit
DATA=$top/../shared/data
TOK=$DATA/models/tok512.bin
TEXT=$DATA/text/tinystories-sample.txt
WORK=${WORK:-$(mktemp -d /tmp/lb_measure_XXXXXX)}
trap 'rm -rf "$WORK"' EXIT

field() { python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print(*(j.get(k) for k in sys.argv[2:]))" "$@"; }
mb() { python3 -c "import sys; print('%.0f MB' % (int(sys.argv[1]) / 1e6))" "$1"; }

calibrate_pair() { # MODEL CAL_OPTS... : layered, then whole-model, then cmp
    local m=$1; shift
    "$LOWBIT" calibrate "$m" -o "$WORK/l.gguf" --tokenizer "$TOK" --text "$TEXT" "$@" --json > "$WORK/l.json"
    echo "calibrate (layered):     $(mb "$(field "$WORK/l.json" peak_rss)"), $(field "$WORK/l.json" seconds) s," \
         "$(field "$WORK/l.json" tokens) tokens, $(stat -c %s "$WORK/l.gguf") bytes of statistics"
    if [ "${SKIP_WHOLE:-0}" = 1 ]; then rm -f "$WORK/l.gguf"; return; fi
    "$LOWBIT" calibrate "$m" -o "$WORK/w.gguf" --tokenizer "$TOK" --text "$TEXT" "$@" --whole-model --json > "$WORK/w.json"
    echo "calibrate --whole-model: $(mb "$(field "$WORK/w.json" peak_rss)"), $(field "$WORK/w.json" seconds) s"
    cmp "$WORK/l.gguf" "$WORK/w.gguf" && echo "cmp: the same statistics file"
    rm -f "$WORK/w.gguf"
}

eval_pair() { # MODEL EVAL_OPTS...
    local m=$1; shift
    for s in on off; do
        /usr/bin/time -f "%R %S" -o "$WORK/time" "$LOWBIT" eval "$m" --tokenizer "$TOK" --text "$TEXT" "$@" \
            --stream $s --json > "$WORK/e$s.json"
        read -r minor sys < "$WORK/time"
        echo "eval --stream $s: $(mb "$(field "$WORK/e$s.json" peak_rss)"), $(field "$WORK/e$s.json" seconds) s," \
             "nll $(field "$WORK/e$s.json" nll), $minor minor faults, $sys s system time"
    done
    [ "$(field "$WORK/eon.json" nll)" = "$(field "$WORK/eoff.json" nll)" ] && echo "the same nll"
}

echo "== 259 MB synthetic model: lowbit synth --dim 1024 --ffn 2816 --layers 10 --vocab 512"
"$LOWBIT" synth -o "$WORK/m.gguf" --dim 1024 --ffn 2816 --layers 10 --vocab 512 > /dev/null
calibrate_pair "$WORK/m.gguf" --calib-blocks 4
for how in calibrated stats; do
    if [ $how = stats ]; then extra=(--stats "$WORK/l.gguf"); else extra=(--calib "$TEXT" --calib-blocks 4); fi
    "$LOWBIT" quantize "$WORK/m.gguf" -o "$WORK/q.gguf" --format int4 --method gptq --tokenizer "$TOK" \
        "${extra[@]}" --json > "$WORK/q.json"
    echo "quantize --method gptq ($how): $(mb "$(field "$WORK/q.json" peak_rss)"), $(field "$WORK/q.json" seconds) s"
done
eval_pair "$WORK/m.gguf" --split calib --calib-blocks 16 --ctx 256
echo "int4 (the gptq output above):"
eval_pair "$WORK/q.gguf" --split calib --calib-blocks 16 --ctx 256
rm -f "$WORK"/*.gguf

if [ "${BIG:-0}" = 1 ]; then
    echo "== 8.2 GB synthetic model: lowbit synth --layers 19 --vocab 512 (dim 4096, ffn 11008, f16)"
    "$LOWBIT" synth -o "$WORK/big.gguf" --layers 19 --vocab 512 > /dev/null
    SKIP_WHOLE=1 calibrate_pair "$WORK/big.gguf" --calib-blocks 1 --tokens 64
    eval_pair "$WORK/big.gguf" --split calib --calib-blocks 1 --ctx 64
fi
