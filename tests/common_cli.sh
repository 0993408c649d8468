# Shared by the tests/cli_*.sh scripts (sourced, not run; its name keeps it out
# of CTest's cli_*.sh glob): the data paths, the skip when ../shared/data is
# missing, a temporary folder, and the check helpers. The sourcing script sets
# NEEDS to the names of the data variables it reads (default: MODEL).
LOWBIT=${1:?path to the lowbit binary}
DATA=../shared/data
MODEL=$DATA/models/stories260K.bin
TOK=$DATA/models/tok512.bin
TEXT=$DATA/text/tinystories-sample.txt
for v in ${NEEDS:-MODEL}; do
    f=${!v}
    if [ ! -f "$f" ]; then
        echo "SKIPPED: $f is missing (shared/ must sit beside the checkout)"
        exit 77
    fi
done
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0
checks=0

ok() { checks=$((checks + 1)); }
fail() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL: $*"; }

# expect CODE NEEDLE -- command...: exit code and a substring of stderr+stdout;
# 60 s at most, so a command that blocks fails instead of hanging the suite
expect() {
    local code=$1 needle=$2
    shift 3
    local out rc
    out=$(timeout 60 "$@" 2>&1)
    rc=$?
    if [ "$rc" -ne "$code" ]; then fail "'$*' exited $rc, want $code: $out"; return; fi
    case "$out" in *"$needle"*) ok ;; *) fail "'$*' output lacks '$needle': $out" ;; esac
}

# json FILE EXPR: a Python expression over j = the JSON in FILE must hold
json() {
    if python3 -c "import json,sys; j=json.load(open('$1')); sys.exit(0 if ($2) else 1)"; then ok; else
        fail "json check '$2' on $(head -c 2000 "$1")"
    fi
}

# the closing line CTest shows, and the exit status
finish() {
    echo "$1: $checks checks, $fails failed"
    [ "$fails" -eq 0 ]
}
