#!/usr/bin/env bash
# The main job: builds mmscale and runs the engine's demo fit.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install_deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target mlp_demo
./build/bin/mlp_demo "$@"
