#!/usr/bin/env bash
# Runs scripts/test-all.sh (all stages, or those named) in a fresh `git clone` of
# this repository under /tmp, so that only committed files take part: a file
# that is used but not committed fails here, not in CI. The clone is removed
# afterwards unless KEEP=1.
# Usage: scripts/clean-clone-check.sh [release] [asan] [fuzz]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
clone="$(mktemp -d "${TMPDIR:-/tmp}/tandem-clean.XXXXXX")"
if [ "${KEEP:-0}" != 1 ]; then trap 'rm -rf "$clone"' EXIT; fi
git clone --quiet "$root" "$clone"
echo "clean-clone-check: $(git -C "$clone" log -1 --format='%h %s') in $clone"
if [ -n "$(git -C "$root" status --porcelain)" ]; then
  echo "clean-clone-check: note: $root has uncommitted changes; they are not part of this check"
fi
"$clone/scripts/test-all.sh" "$@"
