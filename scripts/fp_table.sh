#!/usr/bin/env bash
# The FP storage formats (and the 4-bit codebooks they compete with) on one
# model, evaluated by lowbit (docs protocol: the evaluation split), as in
# docs/RESULTS.md "Issue 10: FP8, MXFP4 and NVFP4".
#
#   scripts/fp_table.sh MODEL TEXT [FORMAT...]
#
# Each format by rtn (min-max and clip=mse, data-free) and gptq (calibrated
# on TEXT's calibration split, min-max and clip=mse). Prints a Markdown table:
# bpw of the quantized tensors, evaluation perplexity, the kernels that ran.
set -euo pipefail
[ $# -ge 2 ] || { sed -n 2,11p "$0" >&2; exit 2; }
model=$1 text=$2
shift 2
formats=("$@")
[ ${#formats[@]} -gt 0 ] || formats=(mxfp4 nvfp4 fp8_e4m3 fp8_e5m2 iq4_nl q4_0)
here=$(cd "$(dirname "$0")/.." && pwd)
lowbit=${LOWBIT:-$here/build/lowbit}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "| format | method | bpw | eval ppl | kernels |"
echo "|---|---|---:|---:|---|"
for f in "${formats[@]}"; do
    for m in "rtn" "rtn --clip mse" "gptq --calib $text" "gptq --clip mse --calib $text"; do
        # shellcheck disable=SC2086 # the method's words
        "$lowbit" quantize "$model" --format "$f" --method $m -o "$tmp/q.gguf" > /dev/null 2> "$tmp/err" ||
            { echo "| $f | ${m%% --calib*} | failed: $(tail -1 "$tmp/err") | | |"; continue; }
        "$lowbit" eval "$tmp/q.gguf" --text "$text" --split eval --json | python3 -c '
import json, sys
j = json.load(sys.stdin)
print("| %s | %s | %.4f | %.4f | %s |" % (sys.argv[1], sys.argv[2], j["bpw"], j["ppl"], j["kernels"]))' "$f" "${m%% --calib*}"
    done
done
