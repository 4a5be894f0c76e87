#!/usr/bin/env bash
# Issue 8's GPU measurement: bench/step (ours) and ../shared/bench/torch_step.py (the
# PyTorch peer) in the same run on the same card, one JSON line each, into $OUT.
# Run after tools/gpu_check.sh has built $BUILD (default build-gpu).
#   OUT=... MODES="fp32 tf32 bf16" BATCHES=8,32,128 GRAPH_MODES="bf16 tf32" GRAPH_BATCHES=32,128 \
#     PEER_SCRIPT=shared/bench/torch_step.py PEER_RUNS="bf16:32 bf16:32:reduce-overhead" bash tools/gpu_perf.sh
# PEER_RUNS entries are mode:B[:compile-mode]. The table at the end is tools/perf_table.py's.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-./out}
BUILD=${BUILD:-build-gpu}
MODES=${MODES:-"fp32 tf32 bf16"}
BATCHES=${BATCHES:-32}
GRAPH_MODES=${GRAPH_MODES:-""}
GRAPH_BATCHES=${GRAPH_BATCHES:-$BATCHES}
PEER_SCRIPT=${PEER_SCRIPT:-../shared/bench/torch_step.py}
PEER_RUNS=${PEER_RUNS:-"fp32:32 tf32:32 bf16:32"}
mkdir -p "$OUT"
for mode in $MODES; do
  echo "== mmscale step $mode B=$BATCHES"
  timeout 200 "$BUILD/bin/step" --device cuda --mode "$mode" --batch-lists "$BATCHES" 2>&1 | tee -a "$OUT/perf.log"
done
for mode in $GRAPH_MODES; do
  echo "== mmscale step $mode B=$GRAPH_BATCHES --graph"
  timeout 200 "$BUILD/bin/step" --device cuda --mode "$mode" --batch-lists "$GRAPH_BATCHES" --graph 2>&1 | tee -a "$OUT/perf.log"
done
if [ -f "$PEER_SCRIPT" ]; then
  for run in $PEER_RUNS; do
    mode=${run%%:*}; rest=${run#*:}; batch=${rest%%:*}; compile=""
    [ "$rest" != "$batch" ] && compile="--compile ${rest#*:}"
    echo "== pytorch step $mode B=$batch $compile"
    timeout 240 python3 "$PEER_SCRIPT" --mode "$mode" --batch-lists "$batch" $compile 2>&1 | tail -n 2 | tee -a "$OUT/perf.log"
  done
else
  echo "peer script $PEER_SCRIPT not found" | tee -a "$OUT/perf.log"
fi
python3 tools/perf_table.py "$OUT/perf.log" | tee "$OUT/perf_table.md"
