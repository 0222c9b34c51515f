#!/usr/bin/env bash
# Installs the Debian 12 packages that building, testing and the demos need.
# Idempotent: when every package is already installed it does not touch apt.
# Works as root (no sudo needed) or as a user with sudo.
set -euo pipefail

packages=(
  # toolchain and build
  build-essential cmake ninja-build pkg-config
  # libraries tandem's headers use
  libeigen3-dev libasio-dev libcereal-dev libglpk-dev libssl-dev
  # tests: doctest; sanitizers and libFuzzer with clang (the runtime is only a
  # Recommends of clang, so it is named here)
  doctest-dev clang libclang-rt-dev
  # arm64 cross build run under qemu, plots of benchmark results, netem links
  qemu-user g++-aarch64-linux-gnu gnuplot-nox iproute2
  # the arm64 build's libraries with code (Debian multiarch; header-only ones are shared)
  libssl-dev:arm64 libglpk-dev:arm64
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages already installed"
  exit 0
fi

if ! command -v apt-get >/dev/null; then
  echo "install-deps: missing ${missing[*]}, and apt-get is not available (tandem's scripts target Debian 12)" >&2
  exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null; then
    echo "install-deps: missing ${missing[*]}; run as root or install sudo" >&2
    exit 1
  fi
  sudo=(sudo)
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Packages of another architecture (name:arm64) need it enabled in dpkg first.
for p in "${missing[@]}"; do
  case "$p" in
    *:*)
      arch="${p##*:}"
      if [ "$arch" != "$(dpkg --print-architecture)" ] && ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
        echo "install-deps: enabling the $arch architecture (dpkg --add-architecture $arch)"
        "${sudo[@]}" dpkg --add-architecture "$arch"
      fi
      ;;
  esac
done
"${sudo[@]}" apt-get update
"${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
