#!/usr/bin/env bash
# Cross-architecture check (run by scripts/test-arm64.sh): an aarch64
# `tandem worker` run under an emulator and a native x86-64 worker serve the
# embedded model for a native coordinator, over TLS on 127.0.0.1. Hidden states
# (F32, and Q8_0 in the second run) and logits cross between the architectures
# in both directions:
#   run 1  --devices ARM,NATIVE   the aarch64 worker holds the embedding and the
#                                 first layers; the x86-64 one sends the logits
#   run 2  --devices NATIVE,ARM   the aarch64 worker computes the last layers and
#                                 the output head (logits from aarch64), --encoding q8_0
# Passes when run 1's greedy text equals models/stories260K.greedy.txt (llama2.c's
# text for this model) and each run's output equals the all-native
# `tandem run --local-workers 2` output with the same arguments.
#
# Usage: scripts/cross-arch-check.sh NATIVE_TANDEM ARM64_TANDEM EMULATOR [EMULATOR ARGS...]
#   e.g. scripts/cross-arch-check.sh build/release/bin/tandem build/arm64/bin/tandem \
#          qemu-aarch64 -L /usr/aarch64-linux-gnu -E LD_LIBRARY_PATH=/usr/aarch64-linux-gnu/lib
set -Eeuo pipefail
if [ $# -lt 3 ]; then
  sed -n '2,/^set /p' "$0" | sed '$d' >&2
  exit 2
fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
native="$(realpath "$1")"
arm="$(realpath "$2")"
shift 2
emu=("$@")
golden_file="$root/models/stories260K.greedy.txt"
# llama2.c's text is 120 steps from BOS; tandem run's -n counts the same steps.
n_predict=120

work="$(mktemp -d "${TMPDIR:-/tmp}/tandem-cross-arch.XXXXXX")"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Generous link timing: the emulated worker runs ~10-50x slower than native.
link=(--idle-timeout 30000 --heartbeat 1000 --handshake-timeout 30000)

"$native" keygen -o "$work/cluster.key" >/dev/null

# start_worker NAME LOGFILE CMD...: starts a worker on a free port and sets
# $port once the worker says "listening on 127.0.0.1:PORT".
start_worker() {
  local name="$1" log="$2"
  shift 2
  "$@" worker --listen 127.0.0.1:0 --name "$name" --key "$work/cluster.key" --threads 2 \
    --cache-dir "$work/cache-$name" "${link[@]}" >"$log" 2>&1 &
  pids+=($!)
  local pid=$!
  port=""
  for _ in $(seq 1 600); do
    port="$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$log" | head -n1)"
    [ -n "$port" ] && break
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "worker $name exited before listening:" >&2
      cat "$log" >&2
      return 1
    fi
    sleep 0.1
  done
  if [ -z "$port" ]; then
    echo "worker $name did not report its port within 60 s:" >&2
    cat "$log" >&2
    return 1
  fi
}

start_worker arm64 "$work/arm64.log" "${emu[@]}" "$arm"
arm_port="$port"
start_worker x86-64 "$work/x86-64.log" "$native"
native_port="$port"
echo "aarch64 worker (emulated) on 127.0.0.1:$arm_port, x86-64 worker on 127.0.0.1:$native_port"

# run_case NAME DEVICES [tandem run args...]: mixed cluster vs all-native local workers.
run_case() {
  local name="$1" devices="$2"
  shift 2
  local args=(-n "$n_predict" --quiet "$@")
  echo "--- $name: tandem run --devices $devices ${args[*]}"
  "$native" run --devices "$devices" --key "$work/cluster.key" "${link[@]}" "${args[@]}" \
    >"$work/$name.mixed.txt" 2>"$work/$name.mixed.err" || {
    echo "the mixed-architecture run failed:" >&2
    cat "$work/$name.mixed.err" >&2
    echo "aarch64 worker log:" >&2
    cat "$work/arm64.log" >&2
    return 1
  }
  "$native" run --local-workers 2 "${args[@]}" >"$work/$name.native.txt" 2>"$work/$name.native.err" || {
    echo "the all-native run failed:" >&2
    cat "$work/$name.native.err" >&2
    return 1
  }
  if ! cmp -s "$work/$name.mixed.txt" "$work/$name.native.txt"; then
    echo "$name: the aarch64+x86-64 cluster's text differs from the all-native run:" >&2
    diff "$work/$name.native.txt" "$work/$name.mixed.txt" >&2 || true
    return 1
  fi
  echo "$name: same text as the all-native run ($(wc -c <"$work/$name.mixed.txt") bytes)"
}

run_case f32 "127.0.0.1:$arm_port,127.0.0.1:$native_port"
# One request with --quiet: stdout is exactly the generated text (streamed).
cp "$work/f32.mixed.txt" "$work/f32.text"
if ! diff <(sed -e :a -e '/^\n*$/{$d;N;ba' -e '}' "$golden_file") \
          <(sed -e :a -e '/^\n*$/{$d;N;ba' -e '}' "$work/f32.text") >"$work/golden.diff"; then
  echo "f32: the mixed cluster's greedy text is not llama2.c's golden text ($golden_file):" >&2
  cat "$work/golden.diff" >&2
  exit 1
fi
echo "f32: equals the golden text ($(wc -c <"$golden_file") bytes)"

run_case q8_0 "127.0.0.1:$native_port,127.0.0.1:$arm_port" --encoding q8_0

# The coordinator really used both workers: each one logged its assignment.
for w in arm64 x86-64; do
  if ! grep -qi "assign\|blocks" "$work/$w.log"; then
    echo "worker $w shows no assignment in its log:" >&2
    cat "$work/$w.log" >&2
    exit 1
  fi
done
echo "cross-architecture check passed"
