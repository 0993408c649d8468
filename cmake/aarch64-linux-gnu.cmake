# Cross build for 64-bit ARM with Debian's cross compiler (gcc-aarch64-linux-gnu,
# libc6-dev-arm64-cross); CTest runs the binaries under qemu-user. Used by
# `make test-arm` (scripts/test-arm.sh), which also sets QEMU_CPU to test the
# kernels with and without the dot-product extension.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
# the emulator finds the ARM dynamic loader and libraries under -L
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -L /usr/aarch64-linux-gnu)
