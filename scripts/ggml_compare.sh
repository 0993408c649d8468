#!/usr/bin/env bash
# lowbit's llama.cpp files against llama-quantize's, every file evaluated by
# llama.cpp's own llama-perplexity (perplexity and KL divergence to the f32
# model), as in docs/RESULTS.md "Issue 10: K-quants written".
#
#   LLAMA_BIN=/path/to/llama.cpp/build/bin scripts/ggml_compare.sh MODEL.gguf TEXT OUTDIR [TYPE...]
#
# MODEL: an f32 GGUF whose linears' rows are whole 256-weight blocks. TEXT is
# split as lowbit splits it (blank-line blocks; 1..128 calibration, 129..
# evaluation): llama-imatrix and lowbit's calibrated methods see only the
# calibration blocks, llama-perplexity only the evaluation blocks. TYPE: any
# type both write (default q2_k q3_k q4_k q5_k q6_k iq4_nl iq4_xs). Every file quantizes the linears and keeps the
# token embedding (and tied classifier) f32: llama-quantize with --pure and
# f32 embedding/output types, lowbit with --format TYPE. The variants:
#   llama         llama-quantize, no importance matrix
#   llama-imat    llama-quantize --imatrix (llama-imatrix on the calibration blocks, ctx 256)
#   rtn           lowbit rtn clip=mse (data-free, like llama-quantize without imatrix)
#   rtn-mag       the same with weights=magnitude (ggml's data-free error weighting, rms + |w|)
#   imat          lowbit gptq under llama-imatrix's file (--imatrix: rtn weighted per input,
#                 weighted_grid=1), the same information llama-quantize gets
#   gptq          lowbit gptq clip=mse act_order=1 (calibrated on the same blocks as the imatrix)
# (ternary types: rtn and gptq without a clip, and twn instead of imat; mxfp4
# is llama-quantize's MXFP4_MOE, which with --pure stores every linear as MXFP4)
# VARIANTS="llama rtn ..." runs only those (ternary types: twn stands for imat).
# LLAMA_TENSOR_TYPES="ffn_down=f16 ..." gives llama-quantize overrides that come
# first (stories260K's 172-column ffn_down fits no 32-block type; lowbit falls
# back there by itself): the linears are then named by overrides (attn_, ffn_)
# over a Q8_0 default instead of --pure, which ignores overrides. nvfp4 has no
# llama-quantize ftype and always takes that form.
# Prints a Markdown table; the logs stay in OUTDIR. llama.cpp is not part of
# lowbit: build it yourself (docs/RESULTS.md names the commit and options).
set -euo pipefail
[ $# -ge 3 ] || { sed -n 2,20p "$0" >&2; exit 2; }
model=$1 text=$2 out=$3
shift 3
types=("$@")
[ ${#types[@]} -gt 0 ] || types=(q2_k q3_k q4_k q5_k q6_k iq4_nl iq4_xs)
: "${LLAMA_BIN:?set LLAMA_BIN to llama.cpp build/bin (llama-quantize, llama-imatrix, llama-perplexity)}"
here=$(cd "$(dirname "$0")/.." && pwd)
lowbit=${LOWBIT:-$here/build/lowbit}
threads=${THREADS:-2}
ctx=${CTX:-256}
mkdir -p "$out"

# the split, as src/eval/text.c makes it
python3 - "$text" "$out/calib.txt" "$out/eval.txt" <<'EOF'
import re, sys
blocks = [b for b in re.split(r'\n[ \t\r]*\n(?:[ \t\r]*\n)*', open(sys.argv[1], encoding='utf-8').read()) if b.strip()]
open(sys.argv[2], 'w').write('\n\n'.join(blocks[:128]))
open(sys.argv[3], 'w').write('\n\n'.join(blocks[128:]))
EOF

ppl() { # FILE LOG: perplexity and KLD against the f32 logits
    "$LLAMA_BIN/llama-perplexity" -m "$1" -f "$out/eval.txt" -c "$ctx" -b "$ctx" -t "$threads" --no-repack \
        --kl-divergence-base "$out/base.kld" --kl-divergence > "$2" 2>&1 ||
        { echo "llama-perplexity failed on $1: $(tail -3 "$2")" >&2; echo "? ?"; return; }
    # llama.cpp logs from a thread of its own: under load a run has ended
    # without its last lines (exit status 0); such a run is made once more
    grep -q 'Mean    KLD:' "$2" || "$LLAMA_BIN/llama-perplexity" -m "$1" -f "$out/eval.txt" -c "$ctx" -b "$ctx" \
        -t "$threads" --no-repack --kl-divergence-base "$out/base.kld" --kl-divergence > "$2" 2>&1 || true
    local p k
    p=$(grep -m1 'Mean PPL(Q)  ' "$2" | awk '{print $4}') || { echo "no perplexity in $2" >&2; echo "? ?"; return; }
    k=$(grep -m1 'Mean    KLD:' "$2" | awk '{print $3}')
    echo "$p $k"
}

[ -s "$out/base.kld" ] || "$LLAMA_BIN/llama-perplexity" -m "$model" -f "$out/eval.txt" -c "$ctx" -b "$ctx" \
    -t "$threads" --no-repack --kl-divergence-base "$out/base.kld" > "$out/base.log" 2>&1
base=$(grep -m1 'Final estimate: PPL' "$out/base.log" | sed 's/.*PPL = \([0-9.]*\).*/\1/')
[ -s "$out/imatrix.gguf" ] || "$LLAMA_BIN/llama-imatrix" -m "$model" -f "$out/calib.txt" -c "$ctx" -b "$ctx" \
    -t "$threads" --no-repack -o "$out/imatrix.gguf" > "$out/imatrix.log" 2>&1

echo "model $model, f32 perplexity $base (llama-perplexity, evaluation blocks, ctx $ctx, KLD on the second half of each window)"
echo
echo "| type | file | bpw (linears) | llama-perplexity | KLD | lowbit eval |"
echo "|---|---|---:|---:|---:|---:|"
for t in "${types[@]}"; do
    T=$(echo "$t" | tr a-z A-Z)
    [ "$t" = mxfp4 ] && T=MXFP4_MOE
    # ternary grids (tq1_0, tq2_0) take their own scale rule, not a clip; twn is theirs too
    clip=(--clip mse) variants=(llama llama-imat rtn rtn-mag imat gptq)
    case $t in tq*) clip=() variants=(llama llama-imat rtn twn gptq) ;; esac
    if [ -n "${VARIANTS:-}" ]; then
        read -r -a want <<< "$VARIANTS"
        keep=()
        for v in "${variants[@]}"; do
            for x in "${want[@]}"; do [ "$v" = "$x" ] && keep+=("$v"); done
        done
        variants=("${keep[@]}")
    fi
    for v in "${variants[@]}"; do
        f="$out/$t-$v.gguf"
        # llama-quantize's type choice: --pure with the ftype, or overrides (see above)
        qargs=(--pure) qtype=$T
        if [ -n "${LLAMA_TENSOR_TYPES:-}" ] || [ "$t" = nvfp4 ]; then
            qargs=()
            for o in ${LLAMA_TENSOR_TYPES:-}; do qargs+=(--tensor-type "$o"); done
            qargs+=(--tensor-type "attn_=$t" --tensor-type "ffn_=$t") qtype=Q8_0
        fi
        if [ ! -s "$f" ]; then
            case $v in
            llama) "$LLAMA_BIN/llama-quantize" "${qargs[@]}" --token-embedding-type f32 --output-tensor-type f32 \
                "$model" "$f" "$qtype" "$threads" > "$out/$t-$v.qlog" 2>&1 ;;
            llama-imat) "$LLAMA_BIN/llama-quantize" "${qargs[@]}" --token-embedding-type f32 --output-tensor-type f32 \
                --imatrix "$out/imatrix.gguf" "$model" "$f" "$qtype" "$threads" > "$out/$t-$v.qlog" 2>&1 ;;
            rtn) "$lowbit" quantize "$model" --format "$t" --method rtn "${clip[@]}" -o "$f" > "$out/$t-$v.qlog" 2>&1 ;;
            rtn-mag) "$lowbit" quantize "$model" --format "$t" --method rtn "${clip[@]}" \
                --tensor-type "linears=$t,weights=magnitude" -o "$f" > "$out/$t-$v.qlog" 2>&1 ;;
            twn) "$lowbit" quantize "$model" --format "$t" --method twn -o "$f" > "$out/$t-$v.qlog" 2>&1 ;;
            imat) "$lowbit" quantize "$model" --format "$t" --method gptq "${clip[@]}" --imatrix "$out/imatrix.gguf" \
                --tensor-type "linears=$t,weighted_grid=1" -o "$f" > "$out/$t-$v.qlog" 2>&1 ;;
            gptq) "$lowbit" quantize "$model" --format "$t" --method gptq "${clip[@]}" \
                --tensor-type "linears=$t,act_order=1" --calib "$text" -o "$f" > "$out/$t-$v.qlog" 2>&1 ;;
            esac || { echo "quantizing $f failed: $(tail -3 "$out/$t-$v.qlog")" >&2; rm -f "$f"; continue; }
        fi
        read -r p k < <(ppl "$f" "$out/$t-$v.plog")
        # lowbit's own evaluation of the same file (the same protocol): perplexity and bpw of the linears
        read -r mine bits < <("$lowbit" eval "$f" --text "$text" --split eval --ctx "$ctx" --protocol chunks \
            --json | python3 -c 'import json,sys; j=json.load(sys.stdin); print("%.4f %.4f" % (j["ppl"], j["bpw"]))')
        echo "| $t | $v | $bits | $p | $k | $mine |"
    done
done
