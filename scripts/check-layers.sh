#!/usr/bin/env bash
# Checks the layer order (docs/ARCHITECTURE.md) over #include lines: a file
# may include its own layer and lower ones, never a higher one.
#
#   core < formats < kernels, io < model < eval < calib, quant, pipeline, train, plan < tools
#
# Methods (src/quant) see only core, formats and their own folder. src/dist
# (the CLI's MPI module, not in the library) sees only core and itself, and
# only tools include it. A file's
# layer is its folder under src/ (src/kernels/x86/a.c is kernels); a public
# header include/lowbit/X.h has the layer of what it declares (table below);
# "folder/x.h" includes map by folder, bare "x.h" is the includer's own
# folder. Prints `file:line: LAYER includes HIGHER-LAYER (header)` for each
# violation and exits 1 if there is any. Run from anywhere: paths are
# relative to the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."

declare -A rank=([core]=0 [formats]=1 [kernels]=2 [io]=2 [model]=3 [eval]=4 [calib]=5
                 [quant]=5 [pipeline]=5 [train]=5 [plan]=5 [dist]=5 [tools]=6)
# public headers: include/lowbit/<name>.h -> layer (lowbit.h includes them all)
declare -A header_layer=([core]=core [format]=formats [gguf]=io [linear]=kernels [tokenizer]=model
                         [model]=model [eval]=eval [quant]=quant [calib]=calib [pipeline]=pipeline
                         [train]=train [plan]=plan)

# Known violations, allowed until the change that removes them lands. Each
# entry is "file: included header"; keep this list empty when possible.
allowed=(
)

layer_of_file() { # path -> layer, or "" when the path is not in a layer
    case "$1" in
        src/*/*) local d=${1#src/}; echo "${d%%/*}" ;;
        include/lowbit/*.h) local h=${1#include/lowbit/}; echo "${header_layer[${h%.h}]:-?}" ;;
        include/lowbit.h | tools/*) echo tools ;;
        *) echo "" ;;
    esac
}

layer_of_include() { # includer's layer, included name -> layer
    local from=$1 inc=$2
    case "$inc" in
        lowbit.h) echo tools ;;
        lowbit/*.h) local h=${inc#lowbit/}; echo "${header_layer[${h%.h}]:-?}" ;;
        */*) local d=${inc%%/*}; if [ -n "${rank[$d]:-}" ]; then echo "$d"; else echo "?"; fi ;;
        *) echo "$from" ;;
    esac
}

violations=0
unknown=0
declare -A allowed_used=()
while IFS= read -r file; do
    from=$(layer_of_file "$file")
    [ -n "$from" ] || continue
    if [ "$from" = "?" ]; then
        echo "$file: public header with no layer: add it to header_layer in $0"
        unknown=$((unknown + 1))
        continue
    fi
    # "x.h" includes, and <lowbit/x.h> ones (other <...> are system headers)
    while IFS=: read -r line inc; do
        to=$(layer_of_include "$from" "$inc")
        if [ "$to" = "?" ]; then
            echo "$file:$line: includes \"$inc\", which belongs to no known layer (add it to $0)"
            unknown=$((unknown + 1))
            continue
        fi
        bad=0
        if [ "$from" = quant ]; then
            case "$to" in core | formats | quant) ;; *) bad=1 ;; esac
        elif [ "$from" = dist ]; then
            case "$to" in core | dist) ;; *) bad=1 ;; esac
        elif [ "$to" = dist ] && [ "$from" != tools ]; then
            bad=1
        elif [ "${rank[$to]}" -gt "${rank[$from]}" ]; then
            bad=1
        fi
        [ "$bad" -eq 1 ] || continue
        entry="$file: $inc"
        is_allowed=0
        for a in "${allowed[@]}"; do [ "$a" = "$entry" ] && is_allowed=1; done
        if [ "$is_allowed" -eq 1 ]; then
            allowed_used[$entry]=1
            echo "$file:$line: $from includes $to ($inc) [allowed for now: see the list in $0]"
        else
            echo "$file:$line: $from includes $to ($inc)"
            violations=$((violations + 1))
        fi
    done < <(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*("[^"]+"|<lowbit[/.][^>]*>)' "$file" |
        sed -E 's/^([0-9]+):[^"<]*["<]([^">]+)[">].*/\1:\2/')
done < <(find src include tools -type f \( -name '*.c' -o -name '*.h' \) | sort)

for a in "${allowed[@]}"; do
    [ -n "${allowed_used[$a]:-}" ] || echo "note: allowed violation '$a' no longer occurs: remove it from $0"
done
if [ "$violations" -gt 0 ] || [ "$unknown" -gt 0 ]; then
    echo "check-layers: $violations include(s) of a higher layer, $unknown unmapped" >&2
    exit 1
fi
echo "check-layers: layer order holds"
