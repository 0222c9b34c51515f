#!/usr/bin/env bash
# README command 1: on Debian 12, install what is needed, configure, build, and
# run tandem's main job on the embedded default model.
# Usage: scripts/demo.sh            (from anywhere; JOBS=N to override nproc)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

step "Installing Debian packages (scripts/install-deps.sh)"
scripts/install-deps.sh

step "Configuring (cmake --preset release -> build/release)"
cmake --preset release

# ---- the main job: the multi-device demo on the embedded model ---------------
# Three `tandem worker` processes on loopback, each holding a third of
# stories260K's blocks, joined in a ring over TLS 1.3 with a fresh cluster key;
# this process is the coordinator (tokenizer, sampling). Greedy, so the text is
# the model's known one.
job_target=tandem_cli
step "Building the tandem program (-j${JOBS})"
cmake --build --preset release -j "$JOBS" --target "$job_target"

step "Running the main job: tandem run --local-workers 3 (the embedded stories260K over 3 devices)"
build/release/bin/tandem run --local-workers 3 -n 120 "$@"
