# Sourced by scripts/*.sh: strict mode, numbered progress banners with the
# elapsed time, a per-step timing summary, and a clear message on the first failure.
set -Eeuo pipefail

TANDEM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
JOBS="${JOBS:-$(nproc)}"

if [ -t 1 ]; then _bold=$'\033[1m'; _red=$'\033[1;31m'; _green=$'\033[1;32m'; _off=$'\033[0m'
else _bold=; _red=; _green=; _off=; fi

_t0=$SECONDS
_step=""
_step_t0=$SECONDS
_summary=()

_clock() { local s=$((SECONDS - $1)); printf '%d:%02d' $((s / 60)) $((s % 60)); }

_close_step() {
  if [ -n "$_step" ]; then _summary+=("$(printf '%7s  %s' "$(_clock "$_step_t0")" "$_step")"); fi
}

# step "what happens next": prints a banner; the previous step is timed.
step() {
  _close_step
  _step="$*"
  _step_t0=$SECONDS
  printf '\n%s==> [%s] %s%s\n' "$_bold" "$(_clock "$_t0")" "$*" "$_off"
}

# finish "message": closes the last step and prints the timing summary.
finish() {
  _close_step
  _step=""
  printf '\n%s==> %s (%s total)%s\n' "$_green" "$*" "$(_clock "$_t0")" "$_off"
  printf '%s\n' "${_summary[@]}"
}

_on_error() {
  local rc=$?
  trap - ERR
  printf '\n%sFAILED (exit %d) during: %s%s\n' "$_red" "$rc" "${_step:-setup}" "$_off" >&2
  printf '%sThe output above shows the cause; nothing after this step ran.%s\n' "$_red" "$_off" >&2
  exit "$rc"
}
trap _on_error ERR

cd "$TANDEM_ROOT"
