#!/usr/bin/env bash
# README command 1: on Debian 12, install what is needed, configure, build, and
# run tandem's main job on the embedded default model.
# Usage: scripts/demo.sh            (from anywhere; JOBS=N to override nproc)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

step "Installing Debian packages (scripts/install-deps.sh)"
scripts/install-deps.sh

step "Configuring (cmake --preset release -> build/release)"
cmake --preset release

# ---- the main job: the target to build and the command to run -----------------
job_target=tandem-inspect
step "Building ${job_target} (-j${JOBS})"
cmake --build --preset release -j "$JOBS" --target "$job_target"

step "Running the main job"
build/release/bin/tandem-inspect models/stories260K.gguf
