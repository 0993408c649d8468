#!/usr/bin/env bash
# Issue 11's mixed-precision rows (docs/RESULTS.md "Issue 11: mixed precision"):
# for each budget, `lowbit plan` chooses a candidate per linear of MODEL on the
# calibration split, the recipe is quantized as measured (gptq) and with its
# method switched to gptaq alpha=0.5 applied true-sequentially, and both files
# are scored on the evaluation split against the model.
#
#   scripts/plan_table.sh MODEL TEXT OUTDIR [BPW...]     (default 2.5 3 4)
#
# CANDIDATES overrides the candidate list (lowbit plan --candidates); REFINE the
# refinement rounds (default 3). GRANULARITY (default tensor) is passed to
# lowbit plan --granularity; with rowblock[:N] the recipe's row rules make
# split tensors (docs/FORMATS.md), quantized and scored like any other file,
# and the plan's own evaluation-split figure (--score-eval: f32 products of the
# dequantized weights) is added in the last column, as SCORE_EVAL=1 does for
# tensor plans. Prints a Markdown table; recipes, files and logs stay in OUTDIR.
set -euo pipefail
[ $# -ge 3 ] || { sed -n 2,12p "$0" >&2; exit 2; }
model=$1 text=$2 out=$3
shift 3
budgets=("$@")
[ ${#budgets[@]} -gt 0 ] || budgets=(2.5 3 4)
here=$(cd "$(dirname "$0")/.." && pwd)
lowbit=${LOWBIT:-$here/build/lowbit}
cands=${CANDIDATES:-"trellis2:down:s6,method=gptq;trellis5:v2:down:s6,method=gptq;trellis3:down:s6,method=gptq;trellis4:down:s6,method=gptq;int4:g32:asym;int8:g64:sym"}
refine=${REFINE:-3}
gran=${GRANULARITY:-tensor}
score=${SCORE_EVAL:-0}
case $gran in rowblock* | colblock*) score=1 ;; esac
mkdir -p "$out"

evaluate() { # FILE -> "bpw ppl kld"
    "$lowbit" eval "$1" --text "$text" --split eval --ref "$model" --json > "$1.eval.json"
    python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print('%.4f %.4f %.5f' % (j['bpw'], j['ppl'], j['kld']))" \
        "$1.eval.json"
}

extra=()
[ "$score" = 1 ] && extra=(--score-eval)
echo "| budget | granularity | bpw | calibration KL (summed alone / measured) | ppl, gptq | KLD, gptq | ppl, gptaq seq | KLD, gptaq seq | plan seconds | plan's own evaluation-split ppl / KLD (f32 products) |"
echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for b in "${budgets[@]}"; do
    r=$out/plan-$b
    "$lowbit" plan "$model" --calib "$text" --bpw "$b" --refine "$refine" --candidates "$cands" -o "$r.recipe" \
        --granularity "$gran" "${extra[@]}" --table "$r.md" --json > "$r.json" 2> "$r.log" ||
        { echo "plan at $b bpw failed: $(tail -3 "$r.log")" >&2; exit 1; }
    read -r bpw alone kl secs se < <(python3 -c "import json,sys; j=json.load(open(sys.argv[1])); \
print('%.4f %.5f %.5f %.0f %s' % (j['bpw'], j['predicted_kld'], j['kld'], j['seconds'], \
'%.4f/%.5f' % (j['eval_ppl'], j['eval_kld']) if 'eval_ppl' in j else '-'))" "$r.json")
    "$lowbit" quantize "$model" --calib "$text" --recipe "$r.recipe" -o "$r.gguf" > "$r.q.log" 2>&1
    read -r _ p1 k1 < <(evaluate "$r.gguf")
    sed 's/method=gptq .*/method=gptaq alpha=0.5/' "$r.recipe" > "$r-gptaq.recipe"
    "$lowbit" quantize "$model" --calib "$text" --recipe "$r-gptaq.recipe" --sequential -o "$r-gptaq.gguf" > "$r.s.log" 2>&1
    read -r _ p2 k2 < <(evaluate "$r-gptaq.gguf")
    echo "| $b | $gran | $bpw | $alone / $kl | $p1 | $k1 | $p2 | $k2 | $secs | $se |"
done
