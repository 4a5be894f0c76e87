#!/usr/bin/env bash
# The CPU comparison of issue 8, ours and PyTorch's back to back, several rounds:
#   (a) the finetune default config's training step   bench/step --config default
#                                                     tools/bench_step_torch_cpu.py
#   (b) ViT-B/32 image / text tower forward            bench/clip_cpu
#                                                     tools/bench_clip_torch.py
# Same thread count on both sides (THREADS, default 2). Prints every run's line and the
# load average before each, so noisy rounds can be told apart; quote medians.
#   tools/cpu_perf.sh [build-dir] [rounds]
set -euo pipefail
BUILD=${1:-build}
ROUNDS=${2:-3}
THREADS=${THREADS:-2}
export OMP_NUM_THREADS=$THREADS
for round in $(seq 1 "$ROUNDS"); do
  echo "== round $round, $(uptime | sed 's/.*load/load/')"
  "$BUILD/bin/step" --device cpu --config default --steps 20 --warmup 3 2>/dev/null | grep "^{"
  python3 tools/bench_step_torch_cpu.py --step "$BUILD/bin/step" --threads "$THREADS" --steps 20 --warmup 3
  "$BUILD/bin/clip_cpu" --iters 5
  python3 tools/bench_clip_torch.py --threads "$THREADS" --iters 5
done
