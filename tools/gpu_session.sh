#!/usr/bin/env bash
# Everything a lent GPU session (15 minutes, all calls together) should run, in two
# calls of under 10 minutes each, so nothing is forgotten and each call can be rerun:
#   PHASE=1: tools/gpu_check.sh (build, CUDA tests incl. the graph and whole-step tests,
#            ctest, kernels, CLIP parity, CUDA fine-tune), then bench/step in fp32, tf32
#            and bf16 for B = 8, 32, 128, the --graph variants, the PyTorch eager peers,
#            and the 200-step bf16 vs fp32 loss check; prints tools/perf_table.py's table.
#   PHASE=2: the torch.compile peers (default and reduce-overhead, bf16, B = 32 and 128),
#            then the table again over both phases' lines.
# The peer script is copied into .devcarry/ beforehand (see README, "GPU runs").
# The device tool returns only a handful of files from $OUT, so at the end the tables go
# to $OUT/00-summary.txt (first by name) and every log into $OUT/logs.tgz.
#   OUT=$OUT PHASE=1 bash tools/gpu_session.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-./out}
PHASE=${PHASE:-1}
BUILD=${BUILD:-build-gpu}
PEER_SCRIPT=${PEER_SCRIPT:-.devcarry/torch_step.py}
[ -f "$PEER_SCRIPT" ] || PEER_SCRIPT=../shared/bench/torch_step.py
export OUT BUILD PEER_SCRIPT
mkdir -p "$OUT"

if [ "$PHASE" = 1 ]; then
  bash tools/gpu_check.sh
  MODES=bf16 BATCHES=32,128 bash tools/gpu_profile.sh >/dev/null  # where the step's GPU time goes
  MODES="fp32 tf32 bf16" BATCHES=8,32,128 GRAPH_MODES="tf32 bf16" GRAPH_BATCHES=8,32,128 \
    PEER_RUNS="fp32:32 tf32:32 bf16:32 bf16:128" bash tools/gpu_perf.sh
  # Issue 8: the final loss of a 200-step bf16 run against the fp32 run (<= 2% apart).
  for mode in fp32 bf16; do
    timeout 120 "$BUILD/bin/step" --device cuda --mode "$mode" --batch-lists 8 --warmup 0 --steps 200 \
      2>&1 | grep '^{' | tee -a "$OUT/loss_200.log"
  done
  python3 - "$OUT/loss_200.log" <<'PY'
import json, sys
rows = {r["mode"]: r["loss"] for r in map(json.loads, open(sys.argv[1]))}
if "fp32" in rows and "bf16" in rows:
    print(f'200-step final loss: fp32 {rows["fp32"]:.5f}, bf16 {rows["bf16"]:.5f}, '
          f'relative difference {abs(rows["bf16"] - rows["fp32"]) / abs(rows["fp32"]):.4%}')
PY
else
  MODES="" GRAPH_MODES="" PEER_RUNS="bf16:32:default bf16:32:reduce-overhead bf16:128:default" \
    bash tools/gpu_perf.sh
fi

# The few files that come back: the tables first, everything else packed.
{
  for f in table.txt perf_table.md; do [ -f "$OUT/$f" ] && cat "$OUT/$f" && echo; done
  [ -f "$OUT/loss_200.log" ] && grep -h '' "$OUT/loss_200.log" | cut -c1-200
} >"$OUT/00-summary.txt" 2>/dev/null
(cd "$OUT" && find . -maxdepth 1 -type f -name '*.log' -o -maxdepth 1 -type f -name '*.md' -o -maxdepth 1 -type f -name 'table.txt' |
  sed 's|^\./||' | sort >.packed && tar czf logs.tgz -T .packed && xargs rm -f <.packed && rm -f .packed)
