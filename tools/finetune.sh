#!/usr/bin/env bash
# The main job: builds mmscale and runs the MM-SCALE fine-tune. With no arguments this
# is the built-in default (synthetic MM-SCALE stand-in generated once into
# ${XDG_CACHE_HOME:-~/.cache}/mmscale, a BPE vocabulary trained on it, a small random
# CLIP; a few minutes on 2 cores) ending with the test metrics table; outputs go to
# runs/finetune/. Any finetune option may be passed through: bash tools/finetune.sh --help
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install_deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target finetune
./build/bin/finetune "$@"
