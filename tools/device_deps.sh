#!/usr/bin/env bash
# Copies the Debian-packaged build dependencies into .deps/ (a CMake prefix, ignored by
# git) so that they can travel to a machine that has a CUDA toolchain but no package
# registry (the lent GPU machine). CMakeLists.txt searches .deps/ first when it exists.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install_deps.sh
rm -rf .deps && mkdir -p .deps/include .deps/lib
cp -r /usr/include/eigen3 /usr/include/doctest /usr/include/nlohmann /usr/include/CLI /usr/include/stb .deps/include/
cp /usr/include/utf8proc.h /usr/include/zlib.h /usr/include/zconf.h .deps/include/
cp /usr/lib/x86_64-linux-gnu/libutf8proc.a /usr/lib/x86_64-linux-gnu/libz.a .deps/lib/
# the cuDNN frontend's headers (cuDNN attention; install_deps.sh installed them with pip)
purelib=$(python3 -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
if [ -f "$purelib/include/cudnn_frontend.h" ]; then
  cp -r "$purelib"/include/cudnn_frontend* "$purelib"/include/cudnn_backend_base.h .deps/include/
fi
du -sh .deps
