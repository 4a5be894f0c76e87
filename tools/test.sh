#!/usr/bin/env bash
# The test command: builds mmscale (CUDA too when nvcc is present) and runs the whole
# suite with CTest, builds and runs examples/consumer against an install of the
# library, then builds the CPU engine again under AddressSanitizer +
# UndefinedBehaviorSanitizer and runs the suite once more. CUDA tests report a skip
# on machines without a GPU.
#   bash tools/test.sh            both passes
#   MMS_SKIP_SANITIZE=1 bash tools/test.sh   the release pass only (quicker while iterating)
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install_deps.sh
jobs=$(nproc)

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs"

# The installed package: install into build/install-prefix, then configure, build and
# run the out-of-tree examples/consumer against it (find_package(mmscale) +
# mmscale::mmscale), so a missing header or link dependency in the export fails here.
rm -rf build/install-prefix build/consumer
cmake --install build --prefix build/install-prefix >/dev/null
prefix_path="$PWD/build/install-prefix"
if [ -d .deps ]; then prefix_path="$prefix_path;$PWD/.deps"; fi
cmake -S examples/consumer -B build/consumer -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix_path"
cmake --build build/consumer -j"$jobs"
build/consumer/consumer

if [ "${MMS_SKIP_SANITIZE:-0}" != "1" ]; then
  cmake -S . -B build-sanitize -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMMS_SANITIZE=ON \
        -DMMS_CUDA=OFF -DMMS_BUILD_EXAMPLES=OFF
  cmake --build build-sanitize -j"$jobs"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-sanitize --output-on-failure -j"$jobs"
fi
