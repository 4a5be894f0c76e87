#!/usr/bin/env bash
# Installs the Debian packages mmscale builds with, when any is missing.
# The CUDA toolkit is not installed here: with nvcc on the machine the CUDA backend is
# built too (-DMMS_CUDA=AUTO), without it the CPU engine builds alone.
set -euo pipefail
packages=(build-essential cmake ninja-build pkg-config libeigen3-dev doctest-dev libstb-dev
          nlohmann-json3-dev libcli11-dev libutf8proc-dev zlib1g-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "mmscale: installing ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}"
fi
