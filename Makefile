# Thin wrapper over CMake + CTest. The two commands the README promises:
#   make demo   - build, then quantize stories260K with a handful of formats and print the table
#   make test   - build, then run every test
# Missing build tools are installed by scripts/install-deps.sh (apt-get, as root).
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
FUZZ_SECONDS ?= 30
CMAKE_ARGS ?=
ifeq ($(LB_WERROR),1)
CMAKE_ARGS += -DLB_WERROR=ON
endif

.PHONY: all deps build test test-arm test-mpi demo check-asan fuzz clean

all: build

deps:
	@scripts/install-deps.sh build

build: deps
	@cmake -S . -B $(BUILD) $(CMAKE_ARGS) > $(BUILD).cmake.log 2>&1 || (cat $(BUILD).cmake.log; exit 1)
	@cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

demo: build
	$(BUILD)/lowbit demo

# The same tests under AddressSanitizer + UndefinedBehaviorSanitizer
# (LB_TEST_QUICK: the slowest tests check a subset: test_rtn_reference 3 of its
# 28 cells, test_ggml_parity q4_0's perplexities only, test_kernel_registry 4 of
# its 7 column counts and no 512-row batch, cli_plan's evaluations on the text's first 200 blocks;
# the full sets run in `make test`).
check-asan: deps
	@cmake -S . -B build-asan -DLB_SANITIZE=ON $(CMAKE_ARGS) > build-asan.cmake.log 2>&1 || (cat build-asan.cmake.log; exit 1)
	@cmake --build build-asan -j $(JOBS)
	cd build-asan && LB_TEST_QUICK=1 ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j $(JOBS)

# The AArch64 cross build and its kernel tests under qemu-user, with and
# without the dot-product extension (scripts/test-arm.sh). Skipped, saying
# so, without the cross tools; LB_ARM_REQUIRED=1 (CI) installs them or fails.
test-arm:
	@LB_ARM_REQUIRED=$(LB_ARM_REQUIRED) LB_WERROR=$(LB_WERROR) scripts/test-arm.sh build-arm

# lowbit under mpirun -np 2 and 3 against one process (tests/mpi_ranks.sh;
# docs/SCALING.md, "MPI"): OpenMPI from scripts/install-deps.sh mpi, the CLI
# alone built with -DLOWBIT_MPI=ON in build-mpi, only the MPI tests run.
test-mpi:
	@scripts/install-deps.sh mpi
	@cmake -S . -B build-mpi -DLOWBIT_MPI=ON $(CMAKE_ARGS) > build-mpi.cmake.log 2>&1 || (cat build-mpi.cmake.log; exit 1)
	@cmake --build build-mpi --target lowbit -j $(JOBS) > build-mpi.build.log 2>&1 || (cat build-mpi.build.log; exit 1)
	cd build-mpi && ctest --output-on-failure -R '^mpi_'

# libFuzzer targets (clang), each run for FUZZ_SECONDS on its seed corpus.
fuzz:
	@scripts/install-deps.sh fuzz
	@CC=clang cmake -S . -B build-fuzz -DLB_FUZZ=ON $(CMAKE_ARGS) > build-fuzz.cmake.log 2>&1 || (cat build-fuzz.cmake.log; exit 1)
	@cmake --build build-fuzz --target fuzzers -j $(JOBS) > build-fuzz.build.log 2>&1 || (cat build-fuzz.build.log; exit 1)
	@scripts/run-fuzzers.sh build-fuzz $(FUZZ_SECONDS) $(JOBS)

clean:
	rm -rf $(BUILD) build-asan build-fuzz build-arm build-mpi *.cmake.log *.build.log
