#!/usr/bin/env bash
# The measurements of docs/SCALING.md, "Streaming", for calibrate, quantize and eval:
# peak_rss (from --json) and seconds of calibrate layer by layer against
# --whole-model (the statistics files compared with cmp), of quantize --method
# gptq calibrating itself and from --stats, and of eval --stream on / off (the
# same nll), with the minor page faults and system time of each eval.
#
# usage: scripts/measure-streaming.sh [BUILD_DIR]   (default: build)
#   BEFORE=LOWBIT  also run the quantize lines with this other lowbit binary
#           (e.g. a build of the commit before a change) on the same inputs,
#           and cmp the outputs
#   MID=1   also quantize --method gptq --stats on a 1.7 GB model of four 7B-shaped
#           layers (5.5 GB of statistics; needs ~8 GB free in $WORK, and with
#           BEFORE about as much memory as the statistics)
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

quantize_gptq() { # MODEL LABEL ARGS...: quantize --method gptq into q.gguf (and with $BEFORE, cmp)
    local m=$1 how=$2; shift 2
    "$LOWBIT" quantize "$m" -o "$WORK/q.gguf" --format int4 --method gptq --tokenizer "$TOK" "$@" --json > "$WORK/q.json"
    echo "quantize --method gptq ($how): $(mb "$(field "$WORK/q.json" peak_rss)"), $(field "$WORK/q.json" seconds) s"
    if [ -n "${BEFORE:-}" ]; then
        "$BEFORE" quantize "$m" -o "$WORK/qb.gguf" --format int4 --method gptq --tokenizer "$TOK" "$@" --json > "$WORK/qb.json"
        echo "  the same with $BEFORE: $(mb "$(field "$WORK/qb.json" peak_rss)"), $(field "$WORK/qb.json" seconds) s"
        cmp "$WORK/q.gguf" "$WORK/qb.gguf" && echo "  cmp: the same output"
        rm -f "$WORK/qb.gguf"
    fi
}

echo "== 259 MB synthetic model: lowbit synth --dim 1024 --ffn 2816 --layers 10 --vocab 512"
"$LOWBIT" synth -o "$WORK/m.gguf" --dim 1024 --ffn 2816 --layers 10 --vocab 512 > /dev/null
calibrate_pair "$WORK/m.gguf" --calib-blocks 4
quantize_gptq "$WORK/m.gguf" calibrated --calib "$TEXT" --calib-blocks 4
quantize_gptq "$WORK/m.gguf" stats --stats "$WORK/l.gguf"
eval_pair "$WORK/m.gguf" --split calib --calib-blocks 16 --ctx 256
echo "int4 (the gptq output above):"
eval_pair "$WORK/q.gguf" --split calib --calib-blocks 16 --ctx 256
rm -f "$WORK"/*.gguf

if [ "${MID:-0}" = 1 ]; then
    echo "== 1.7 GB synthetic model, 7B-shaped layers: lowbit synth --layers 4 --vocab 512 (dim 4096, ffn 11008, f16)"
    "$LOWBIT" synth -o "$WORK/mid.gguf" --layers 4 --vocab 512 > /dev/null
    "$LOWBIT" calibrate "$WORK/mid.gguf" -o "$WORK/ms.gguf" --tokenizer "$TOK" --text "$TEXT" --calib-blocks 1 \
        --tokens 64 --json > "$WORK/ms.json"
    echo "calibrate (layered): $(mb "$(field "$WORK/ms.json" peak_rss)"), $(stat -c %s "$WORK/ms.gguf") bytes of statistics"
    quantize_gptq "$WORK/mid.gguf" stats --stats "$WORK/ms.gguf"
    rm -f "$WORK"/*.gguf
fi

if [ "${BIG:-0}" = 1 ]; then
    echo "== 8.2 GB synthetic model: lowbit synth --layers 19 --vocab 512 (dim 4096, ffn 11008, f16)"
    "$LOWBIT" synth -o "$WORK/big.gguf" --layers 19 --vocab 512 > /dev/null
    SKIP_WHOLE=1 calibrate_pair "$WORK/big.gguf" --calib-blocks 1 --tokens 64
    eval_pair "$WORK/big.gguf" --split calib --calib-blocks 1 --ctx 64
fi
