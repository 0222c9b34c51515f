#!/usr/bin/env bash
# README command 2 (and what .ci/run runs): install what is needed, then build
# and run every test: the release build + ctest, the ASan+UBSan build + ctest,
# the aarch64 cross build with its tests under qemu and the cross-architecture
# check (scripts/test-arm64.sh), then each libFuzzer target for FUZZ_SECONDS
# (default 60) when tests/fuzz/run.sh exists.
# Usage: scripts/test-all.sh [release] [asan] [arm64] [fuzz]   (default: all four,
#        in that order; runs from anywhere; JOBS=N overrides nproc)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(release asan arm64 fuzz)
for s in "${stages[@]}"; do
  case "$s" in release|asan|arm64|fuzz) ;; *) echo "test-all: unknown stage '$s' (release, asan, arm64, fuzz)" >&2; exit 2 ;; esac
done

step "Installing Debian packages (scripts/install-deps.sh)"
scripts/install-deps.sh

for preset in "${stages[@]}"; do
  if [ "$preset" = arm64 ]; then
    # Its own steps and timing summary (scripts/test-arm64.sh); the coordinator
    # side uses build/release (built by the release stage when that ran first).
    step "[arm64] scripts/test-arm64.sh"
    bash scripts/test-arm64.sh
    continue
  fi
  if [ "$preset" = fuzz ]; then
    if [ ! -f tests/fuzz/run.sh ]; then
      step "[fuzz] skipped: tests/fuzz/run.sh does not exist yet"
      continue
    fi
    step "[fuzz] configure (cmake --preset fuzz -> build/fuzz, clang)"
    cmake --preset fuzz
    step "[fuzz] build the fuzzers (-j${JOBS})"
    cmake --build --preset fuzz -j "$JOBS"
    mapfile -t fuzzers < <(find build/fuzz/bin -type f -name 'fuzz-*' -perm -u+x | sort)
    if [ ${#fuzzers[@]} -eq 0 ]; then
      step "[fuzz] find the fuzzers"
      echo "no fuzz-* program was built in build/fuzz/bin" >&2
      false
    fi
    export FUZZ_ARTIFACTS="$TANDEM_ROOT/build/fuzz/artifacts"  # crash reproducers land here
    i=0
    for fuzzer in "${fuzzers[@]}"; do
      i=$((i + 1))
      step "[fuzz ${i}/${#fuzzers[@]}] $(basename "$fuzzer") for ${FUZZ_SECONDS} s (tests/fuzz/run.sh)"
      bash tests/fuzz/run.sh "$fuzzer" "$FUZZ_SECONDS"
    done
    continue
  fi
  step "[$preset] configure (cmake --preset $preset -> build/$preset)"
  cmake --preset "$preset"
  step "[$preset] build everything (-j${JOBS})"
  cmake --build --preset "$preset" -j "$JOBS"
  step "[$preset] run the tests (ctest -j${JOBS})"
  ctest --preset "$preset" -j "$JOBS"
done

finish "All tests passed (${stages[*]})"
