#!/usr/bin/env bash
# The arm64 stage of scripts/test-all.sh (and .ci/run):
#  1. cross-builds for aarch64 Linux (preset arm64: g++-aarch64-linux-gnu, Debian
#     multiarch OpenSSL and GLPK) the tests of the kernels, engine, pipeline and
#     protocol areas , a second kernel test built for
#     ARMv8.2 dot-product CPUs, and the `tandem` CLI;
#  2. runs those tests under qemu-aarch64 (ctest --preset arm64);
#  3. the cross-architecture check: an aarch64 `tandem worker` under qemu and a
#     native x86-64 worker serve one model over TLS on loopback for a native
#     coordinator (`tandem run --devices ...`), in both ring orders; the greedy
#     text must equal the golden text of the embedded model
#     (models/stories260K.greedy.txt, llama2.c's output) and the all-native
#     `tandem run --local-workers 2` text with the same arguments.
# Usage: scripts/test-arm64.sh          (JOBS=N overrides nproc)
#   NATIVE_BUILD=DIR  native build tree for the coordinator (default build/release,
#                     configured with the release preset if it does not exist yet)
#   ARM64_BENCH=1     also time the NEON kernels against the scalar ones under qemu
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
NATIVE_BUILD="${NATIVE_BUILD:-build/release}"
QEMU=(qemu-aarch64 -L /usr/aarch64-linux-gnu -E LD_LIBRARY_PATH=/usr/aarch64-linux-gnu/lib)

step "[arm64] configure (cmake --preset arm64 -> build/arm64, cross g++-aarch64-linux-gnu)"
cmake --preset arm64

step "[arm64] build the tests and the tandem CLI for aarch64 (-j${JOBS})"
# The areas the issue names (kernels, engine, pipeline, protocol) and the CLI for
# the cross-arch check; core, gguf and tokenizer are byte-order clean by their own
# tests on x86 and are left out here to keep CI short.
targets=(test_kernels test_kernels_dotprod test_model test_runtime test_transport tandem_cli)
cmake --build --preset arm64 -j "$JOBS" --target "${targets[@]}"
# ELF magic, then e_machine (bytes 18-19, little-endian) = 183, EM_AARCH64. With od
# (coreutils): `file` is not on a fresh Debian machine.
elf_head=$(od -An -t x1 -N 20 build/arm64/bin/tandem | tr -d ' \n')
[ "${elf_head:0:8}" = 7f454c46 ] && [ "${elf_head:36:4}" = b700 ] ||
  { echo "build/arm64/bin/tandem is not an aarch64 program (ELF header: $elf_head)" >&2; false; }

step "[arm64] run the tests under qemu-aarch64 (ctest --preset arm64)"
# A test that fails is run once more: under emulation on a busy machine, the
# transport tests' real-time deadlines (400 ms handshakes) are tight. A real
# failure fails twice.
ctest --preset arm64 -j "$JOBS" --repeat until-pass:2

step "[arm64] native tandem CLI for the coordinator ($NATIVE_BUILD)"
if [ ! -f "$NATIVE_BUILD/build.ninja" ]; then
  if [ "$NATIVE_BUILD" = build/release ]; then cmake --preset release
  else cmake -S . -B "$NATIVE_BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release; fi
fi
cmake --build "$NATIVE_BUILD" -j "$JOBS" --target tandem_cli

step "[arm64] cross-architecture check: aarch64 worker (qemu) + x86-64 worker, x86-64 coordinator"
bash scripts/cross-arch-check.sh "$NATIVE_BUILD/bin/tandem" build/arm64/bin/tandem "${QEMU[@]}"

if [ "${ARM64_BENCH:-0}" = 1 ]; then
  step "[arm64] NEON vs scalar kernels under qemu (benchmarks/arm64/neon_vs_scalar.cpp; not phone timings)"
  bench=build/arm64/neon-vs-scalar
  mkdir -p "$bench"
  cxx=(aarch64-linux-gnu-g++ -std=c++20 -O3 -DNDEBUG -Wall -Wextra -Wpedantic -Iinclude -isystem /usr/include/eigen3)
  src=benchmarks/arm64/neon_vs_scalar.cpp
  "${cxx[@]}" -DTANDEM_KERNELS_FORCE_SCALAR -fno-tree-vectorize -fno-tree-slp-vectorize -c "$src" -o "$bench/scalar.o"
  "${cxx[@]}" -DNEON_VS_SCALAR_MAIN "$src" "$bench/scalar.o" -o "$bench/neon" -pthread
  "${cxx[@]}" -march=armv8.2-a+dotprod -DNEON_VS_SCALAR_MAIN "$src" "$bench/scalar.o" -o "$bench/neon-dotprod" -pthread
  "${QEMU[@]}" "$bench/neon"
  "${QEMU[@]}" "$bench/neon-dotprod"
fi

finish "arm64: cross-build, tests under qemu and the cross-architecture check passed"
