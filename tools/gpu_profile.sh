#!/usr/bin/env bash
# Where a training step's GPU time goes: bench/step --profile (the engine's own event
# timeline, tensor/profile.h; no Nsight needed) for each MODE x B, into $OUT/profile.log.
# Needs a CUDA build in $BUILD (tools/gpu_check.sh makes one).
#   OUT=... MODES="bf16 fp32" BATCHES=32,128 bash tools/gpu_profile.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-./out}
BUILD=${BUILD:-build-gpu}
MODES=${MODES:-bf16}
BATCHES=${BATCHES:-32}
mkdir -p "$OUT"
for mode in $MODES; do
  echo "== mmscale step $mode B=$BATCHES --profile" | tee -a "$OUT/profile.log"
  timeout 120 "$BUILD/bin/step" --device cuda --mode "$mode" --batch-lists "$BATCHES" --warmup 3 --steps 5 --profile \
    2>&1 | tee -a "$OUT/profile.log"
done
