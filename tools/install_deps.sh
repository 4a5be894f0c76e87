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

# With nvcc present the CUDA backend is built, and with it cuDNN's fused attention, which
# needs the cuDNN frontend's C++ headers (header-only; PyPI's nvidia-cudnn-frontend ships
# them under site-packages/include, where CMakeLists.txt looks). Pinned for reproducible
# builds. Without pip or the registry the build goes on without cuDNN attention.
cudnn_frontend_version=1.32.0
if command -v nvcc >/dev/null 2>&1 && [ ! -f .deps/include/cudnn_frontend.h ]; then
  purelib=$(python3 -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" 2>/dev/null || true)
  if [ -n "$purelib" ] && [ ! -f "$purelib/include/cudnn_frontend.h" ]; then
    echo "mmscale: installing nvidia-cudnn-frontend==$cudnn_frontend_version (headers for cuDNN attention)"
    python3 -m pip install --quiet --no-deps "nvidia-cudnn-frontend==$cudnn_frontend_version" ||
      echo "mmscale: could not install nvidia-cudnn-frontend; building without cuDNN attention"
  fi
fi
