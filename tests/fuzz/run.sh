#!/usr/bin/env bash
# Runs a libFuzzer target on its seed corpus for a given time; fails if it finds
# a crash, sanitizer report, leak, timeout or out-of-memory.
#
#   tests/fuzz/run.sh <fuzzer-binary> <seconds>
#
# Seeds: tests/fuzz/corpus/<area>/ (fuzz-gguf-reader -> area gguf)
# plus the real model files (*.gguf under $TANDEM_MODELS_DIR, default models/).
# New inputs go to a scratch corpus; findings go to $FUZZ_ARTIFACTS (default
# ./fuzz-artifacts). FUZZ_MAX_LEN (default 65536) and FUZZ_RSS_MB (default 2048)
# bound input size and memory.
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 <fuzzer-binary> <seconds>" >&2
  exit 2
fi
bin=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
seconds=$2
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
name=$(basename "$bin")
area=${name#fuzz-}
area=${area%%[-_]*}
seeds="$here/corpus/$area"
models=${TANDEM_MODELS_DIR:-$root/models}
artifacts=${FUZZ_ARTIFACTS:-$PWD/fuzz-artifacts}
max_len=${FUZZ_MAX_LEN:-65536}
rss_mb=${FUZZ_RSS_MB:-2048}

[ -x "$bin" ] || { echo "run.sh: $bin is not an executable" >&2; exit 2; }
[ -d "$seeds" ] || { echo "run.sh: no seed corpus at $seeds" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/tandem-fuzz-$name.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus" "$work/models" "$artifacts"
# Only the model files themselves are seeds (not the test vectors beside them).
find "$models" -name '*.gguf' -type f -exec ln -s {} "$work/models/" \; 2>/dev/null || true

echo "run.sh: fuzzing $name for ${seconds}s (seeds: $seeds, $(ls "$work/models" | wc -l) model files)"
set +e
"$bin" "$work/corpus" "$seeds" "$work/models" \
  -max_total_time="$seconds" -max_len="$max_len" -rss_limit_mb="$rss_mb" -timeout=10 \
  -artifact_prefix="$artifacts/" -print_final_stats=1 > "$work/log" 2>&1
status=$?
set -e
# Keep the coverage summary, final stats and any report; drop progress lines and
# libFuzzer's recommended dictionary.
sed -e '/Recommended dictionary/,/End of recommended dictionary/d' "$work/log" |
  grep -v -E '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse)|NEW_FUNC' | tail -n 60
if [ "$status" -ne 0 ] || grep -q '^==[0-9]*==ERROR\|^SUMMARY: \|runtime error' "$work/log"; then
  echo "run.sh: $name FAILED (exit $status); reproducers in $artifacts:" >&2
  ls -l "$artifacts" >&2 || true
  exit 1
fi
echo "run.sh: $name ran ${seconds}s without findings"
