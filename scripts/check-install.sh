#!/usr/bin/env bash
# Installs a built tree into a temporary prefix and uses it as a user would:
#   - the installed files are there (headers, static and versioned shared
#     library, lowbit.pc, lowbitConfig.cmake + version file, the CLI);
#   - examples/quantize.c (the README quotes it verbatim: checked) compiles
#     with `cc $(pkg-config --cflags --libs lowbit)` against the shared library
#     (with an rpath so it runs from the prefix) and against the static one
#     (pkg-config --static for OpenMP and libm), and through a CMake project
#     using find_package(lowbit) / lowbit::lowbit;
#   - each program runs on ../shared/data/models/stories260K.bin and writes
#     a GGUF the installed CLI can read (skipped, loudly, without the data).
#   usage: scripts/check-install.sh [BUILD_DIR]   (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
MODEL=../shared/data/models/stories260K.bin
CC=${CC:-cc}
[ -f "$BUILD/CMakeCache.txt" ] || { echo "check-install: $BUILD is not a configured build (run make build)" >&2; exit 1; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
PREFIX=$WORK/prefix
cmake --install "$BUILD" --prefix "$PREFIX" > "$WORK/install.log"

fail() { echo "check-install: FAIL: $*" >&2; exit 1; }
pc=$(find "$PREFIX" -name lowbit.pc)
[ -n "$pc" ] || fail "no lowbit.pc installed"
export PKG_CONFIG_PATH=$(dirname "$pc")
libdir=$(pkg-config --variable=libdir lowbit)
for f in "$PREFIX/include/lowbit.h" "$PREFIX/include/lowbit/core.h" "$PREFIX/bin/lowbit" "$libdir/liblowbit.a" \
         "$libdir/liblowbit.so" "$libdir/cmake/lowbit/lowbitConfig.cmake" \
         "$libdir/cmake/lowbit/lowbitConfigVersion.cmake"; do
    [ -e "$f" ] || fail "$f was not installed"
done
soname=$(objdump -p "$libdir/liblowbit.so" 2> /dev/null | awk '/SONAME/ {print $2}')
case "$soname" in liblowbit.so.[0-9]*) ;; *) fail "liblowbit.so has soname '$soname', want liblowbit.so.N" ;; esac
[ -e "$libdir/$soname" ] || fail "$libdir/$soname (the soname link) is missing"
pkg-config --static --libs lowbit | grep -q -- '-lm' || fail "lowbit.pc's static libs lack -lm"
echo "check-install: installed into a temporary prefix; soname $soname; pkg-config $(pkg-config --modversion lowbit)"

# the README's program, three ways
src=examples/quantize.c
# the README quotes it verbatim (the first ```c block under "Using the library")
awk '/^## Using the library/ {s = 1} s && /^```c$/ {p = 1; next} p && /^```$/ {exit} p' README.md > "$WORK/readme.c"
cmp -s "$WORK/readme.c" "$src" || { diff "$WORK/readme.c" "$src" >&2 || true; fail "README.md's program differs from $src"; }
# shared: what `cc $(pkg-config --cflags --libs lowbit)` picks, with an rpath so it runs
# shellcheck disable=SC2046
$CC -std=c11 -Wall -Wextra -Werror "$src" $(pkg-config --cflags --libs lowbit) -Wl,-rpath,"$libdir" \
    -o "$WORK/quantize_shared"
deps=$(ldd "$WORK/quantize_shared")
grep -q "$soname => $libdir" <<< "$deps" || fail "the shared build does not load $libdir/$soname"
# static: the archive, plus the private libraries pkg-config lists for it
static_libs=$(pkg-config --static --libs lowbit | sed 's/-llowbit/-Wl,-Bstatic -llowbit -Wl,-Bdynamic/')
# shellcheck disable=SC2086
$CC -std=c11 -Wall -Wextra -Werror "$src" $(pkg-config --cflags lowbit) $static_libs -o "$WORK/quantize_static"
deps=$(ldd "$WORK/quantize_static")
if grep -q liblowbit <<< "$deps"; then fail "the static build links liblowbit.so"; fi
# CMake: find_package(lowbit) and the exported target
mkdir "$WORK/consumer"
cp "$src" "$WORK/consumer/"
cat > "$WORK/consumer/CMakeLists.txt" << 'EOF'
cmake_minimum_required(VERSION 3.18)
project(consumer C)
find_package(lowbit 0.1 REQUIRED)
add_executable(quantize quantize.c)
target_link_libraries(quantize PRIVATE lowbit::lowbit)
EOF
cmake -S "$WORK/consumer" -B "$WORK/consumer/build" -DCMAKE_PREFIX_PATH="$PREFIX" > "$WORK/consumer.log" 2>&1 ||
    { cat "$WORK/consumer.log"; fail "a CMake project cannot find_package(lowbit)"; }
cmake --build "$WORK/consumer/build" > "$WORK/consumer-build.log" 2>&1 ||
    { cat "$WORK/consumer-build.log"; fail "a CMake project cannot build against lowbit::lowbit"; }
echo "check-install: examples/quantize.c builds with pkg-config (shared and static) and with find_package(lowbit)"

if [ ! -f "$MODEL" ]; then
    echo "check-install: SKIPPED running the programs: $MODEL is missing (shared/ must sit beside the checkout)"
    exit 0
fi
for prog in "$WORK/quantize_shared" "$WORK/quantize_static" "$WORK/consumer/build/quantize"; do
    out=$WORK/out-$(basename "$prog").gguf
    "$prog" "$MODEL" "$out" || fail "$prog failed"
    info=$("$PREFIX/bin/lowbit" info "$out") || fail "the installed lowbit cannot read $out"
    grep -q "blk.0.ffn_gate.weight .* int4:g64:asym" <<< "$info" || fail "$out does not hold the quantized tensor"
done
echo "check-install: the three builds ran on $MODEL; the installed lowbit reads their output"
