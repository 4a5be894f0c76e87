#!/usr/bin/env bash
# The CPU comparison of issue 8, ours and PyTorch's back to back, several rounds:
#   (a) the finetune default config's training step   bench/step --config default
#                                                     tools/bench_step_torch_cpu.py
#   (b) ViT-B/32 image / text tower forward            bench/clip_cpu
#                                                     tools/bench_clip_torch.py
#   (c) the image tower's linear shapes (GFLOP/s)      bench/cpu_ops (ViT rows)
#                                                     tools/bench_linear_torch.py
# Same thread count on both sides (THREADS, default 2). BASE=<another build dir> runs that
# build's binaries too, in the same rounds (an A/B against an older commit). Prints every
# run's line and the load average before each, so noisy rounds can be told apart; quote
# medians.
#   [BASE=build-old] tools/cpu_perf.sh [build-dir] [rounds]
set -euo pipefail
BUILD=${1:-build}
ROUNDS=${2:-3}
THREADS=${THREADS:-2}
export OMP_NUM_THREADS=$THREADS
builds=("$BUILD")
[[ -n "${BASE:-}" ]] && builds=("$BASE" "$BUILD")
for round in $(seq 1 "$ROUNDS"); do
  echo "== round $round, $(uptime | sed 's/.*load/load/')"
  for b in "${builds[@]}"; do
    "$b/bin/step" --device cpu --config default --steps 20 --warmup 3 2>/dev/null | grep "^{" | sed "s|^|$b |"
  done
  python3 tools/bench_step_torch_cpu.py --step "$BUILD/bin/step" --threads "$THREADS" --steps 20 --warmup 3
  for b in "${builds[@]}"; do
    "$b/bin/clip_cpu" --iters 5 | sed "s|^|$b |"
  done
  python3 tools/bench_clip_torch.py --threads "$THREADS" --iters 5
  for b in "${builds[@]}"; do
    "$b/bin/cpu_ops" | grep -E "runs|ViT" | sed "s|^|$b |"
  done
  python3 tools/bench_linear_torch.py --threads "$THREADS"
done
