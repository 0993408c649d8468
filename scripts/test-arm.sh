#!/usr/bin/env bash
# The ARM (AArch64) build and its kernel tests, on an x86 machine: a cross
# build with Debian's aarch64-linux-gnu-gcc (cmake/aarch64-linux-gnu.cmake,
# without OpenBLAS/LAPACKE, which the runtime does not need) and the tests
# of the kernels and the model run under qemu-user twice: on an emulated CPU
# with the dot-product extension (QEMU_CPU=max: the SDOT kernels) and on a
# Cortex-A53, which lacks it (the plain NEON kernels). Emulation is slow, so
# the tests take their LB_TEST_QUICK subsets (test_kernel_registry: four of
# its seven column counts, no 512-row batch; every entry still checked).
#
#   test-arm.sh [BUILD_DIR]   default build-arm
#
# Without the cross compiler or qemu it says so and exits 0 (SKIPPED), unless
# LB_ARM_REQUIRED=1 (CI), where it first installs them (install-deps.sh arm)
# and fails when they are still missing.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-arm}
if [ "${LB_ARM_REQUIRED:-0}" = 1 ]; then
    scripts/install-deps.sh arm
fi
missing=()
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || missing+=(gcc-aarch64-linux-gnu)
[ -e /usr/aarch64-linux-gnu/include/stdio.h ] || missing+=(libc6-dev-arm64-cross)
command -v qemu-aarch64 >/dev/null 2>&1 || missing+=(qemu-user)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "${LB_ARM_REQUIRED:-0}" = 1 ]; then
        echo "lowbit: test-arm FAILED: missing ${missing[*]}" >&2
        exit 1
    fi
    echo "SKIPPED test-arm: missing ${missing[*]} (scripts/install-deps.sh arm installs them, as root)"
    exit 0
fi

cmake_args=(-DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake -DLB_BLAS=OFF)
[ "${LB_WERROR:-0}" = 1 ] && cmake_args+=(-DLB_WERROR=ON)
cmake -S . -B "$build" "${cmake_args[@]}" > "$build.cmake.log" 2>&1 || { cat "$build.cmake.log"; exit 1; }
# the tests that need no BLAS and exercise the kernels: each SIMD routine
# against its scalar twin, the float tables, lb_matmul, and the model forward;
# without dotprod only the ones whose kernels change (the float table does not)
tests=(test_core test_formats test_kernel_registry test_kernels test_trellis_kernels test_lookup_kernels test_vq_kernels test_linear test_forward_block test_model test_mnist)
tests_nodot=(test_kernel_registry test_kernels test_linear)
# test_mnist builds the binary; its CTest entry test_mnist_kernels runs only the IDX and XNOR-kernel checks
ctest_names=("${tests[@]/test_mnist/test_mnist_kernels}")
cmake --build "$build" -j "${JOBS:-$(nproc)}" --target "${tests[@]}" > "$build.build.log" 2>&1 ||
    { cat "$build.build.log"; exit 1; }
# each CPU must really run its kernels (not skip them): the registry test's
# lines say which entries were checked
run() { # cpu, the tests (a|b|c), then the patterns its log must hold
    local cpu=$1 regex="^($2)\$" log=$build/test-arm-$1.log
    shift 2
    echo "== test-arm: qemu-aarch64 -cpu $cpu"
    if ! (cd "$build" && QEMU_CPU=$cpu LB_TEST_SIMD_ONLY=${simd_only:-0} LB_TEST_QUICK=1 ctest -V --no-tests=error -j "${JOBS:-$(nproc)}" -R "$regex") > "$log" 2>&1; then
        cat "$log"
        echo "lowbit: test-arm FAILED on -cpu $cpu (log: $log)" >&2
        exit 1
    fi
    grep -E "tests passed|Test +#" "$log" | sed 's/^[0-9]*: //'
    for pat in "$@"; do
        grep -qE "$pat" "$log" || { echo "lowbit: test-arm on -cpu $cpu: no line matching '$pat' in $log" >&2; exit 1; }
    done
}
# The two CPUs run at once: on -cpu max test_kernel_registry is the long pole
# (about 3 of its minutes with the other tests done), which the Cortex-A53 run
# fills; each run's lines are printed when both are done.
run max "$(IFS='|'; echo "${ctest_names[*]}")" "XNOR kernel 'neon' checked" "q8_0_dotprod +\(needs neon dotprod.*checked on" "q4_0_dotprod +\(needs neon dotprod.*checked on" \
    "q8_0_neon +\(needs neon,.*checked on" "uniform_dotprod +\(needs neon dotprod.*checked on" \
    "uniform_neon +\(needs neon,.*checked on" "trellis_neon +\(needs neon,.*checked on" \
    "trellis_neon on random v2 trellis codes: [1-9]" "lut_neon +\(needs neon,.*checked on" "lut_neon on random codes: [1-9]" \
    "e8p_neon +\(needs neon,.*checked on" "e8p_neon on random codes: [1-9]" \
    "vq_neon +\(needs neon,.*checked on" "vq_neon on random codes: [1-9]" \
    > "$build/test-arm-max.out" 2>&1 &
max_pid=$!
# the second CPU runs only the SIMD entries: the scalar ones behave the same
simd_only=1 run cortex-a53 "$(IFS='|'; echo "${tests_nodot[*]}")" "SKIPPED q8_0_dotprod" "q8_0_neon +\(needs neon,.*checked on" "q4_0_neon +\(needs neon,.*checked on" \
    "SKIPPED uniform_dotprod" "uniform_neon +\(needs neon,.*checked on" "trellis_neon +\(needs neon,.*checked on" \
    "lut_neon +\(needs neon,.*checked on" "e8p_neon +\(needs neon,.*checked on" \
    "vq_neon +\(needs neon,.*checked on" > "$build/test-arm-a53.out" 2>&1 &
a53_pid=$!
status=0
wait $max_pid || status=1
cat "$build/test-arm-max.out"
wait $a53_pid || status=1
cat "$build/test-arm-a53.out"
[ $status -eq 0 ] || exit 1
echo "test-arm: passed on -cpu max (dotprod) and -cpu cortex-a53 (plain NEON)"
