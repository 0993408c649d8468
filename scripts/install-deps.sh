#!/usr/bin/env bash
# Installs what building lowbit needs, when it is missing, with apt-get.
#   install-deps.sh build   compiler, make, cmake (OpenMP comes with gcc), python3 (the
#                           CLI test checks --json output with it), pkg-config (CI
#                           builds the example against the installed lowbit.pc),
#                           OpenBLAS + LAPACKE (calibration and calibrated methods)
#   install-deps.sh fuzz    also clang and its sanitizer/libFuzzer runtime
#   install-deps.sh arm     also the AArch64 cross compiler and C library, and
#                           qemu-user to run what it builds (make test-arm)
#   install-deps.sh mpi     also OpenMPI (Debian bookworm: 4.1.4): mpicc's headers and
#                           library, mpirun (-DLOWBIT_MPI=ON, make test-mpi)
# Says what it installs; without root it prints the command instead.
set -euo pipefail
what=${1:-build}

missing=()
need_cmd() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need_pkg() { dpkg -s "$1" >/dev/null 2>&1 || missing+=("$1"); }

need_cmd cc gcc
need_cmd make make
need_cmd cmake cmake
need_cmd python3 python3
need_cmd pkg-config pkg-config
need_pkg libopenblas-dev
need_pkg liblapacke-dev
if [ "$what" = fuzz ]; then
    need_cmd clang clang
    need_pkg libclang-rt-14-dev
    need_pkg libomp-14-dev
fi
if [ "$what" = arm ]; then
    need_cmd aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu # brings libgomp1-arm64-cross
    need_pkg libc6-dev-arm64-cross
    need_cmd qemu-aarch64 qemu-user
fi
if [ "$what" = mpi ]; then
    need_pkg libopenmpi-dev
    need_cmd mpirun openmpi-bin
fi

[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
    echo "lowbit: missing build dependencies: ${missing[*]} (no apt-get here: install them by hand)" >&2
    exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "lowbit: missing build dependencies: ${missing[*]}" >&2
    echo "lowbit: run as root: apt-get install -y ${missing[*]}" >&2
    exit 1
fi
echo "lowbit: installing missing build dependencies with apt-get: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
