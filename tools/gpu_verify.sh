#!/usr/bin/env bash
# A short follow-up GPU call (about 3 minutes on an H200) after tools/gpu_final.sh: it
# re-runs the CUDA op tests (after a test fix), profiles the float32 step at B = 32 with
# the engine's own timeline (bench/step --profile), and reads the hardware counters of
# the bf16 attention tiles with Nsight Compute (ncu) -- occupancy, stall reasons, memory
# throughput -- for one bf16 step at B = 32, so the next lever on attention is chosen
# from counters rather than guessed. Four files in $OUT.
#   OUT=$OUT bash tools/gpu_verify.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-./out}
BUILD=${BUILD:-build-gpu}
mkdir -p "$OUT"
t0=$(date +%s)
elapsed() { echo "$(($(date +%s) - t0))s"; }
generator=(); command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
{ cmake -S . -B "$BUILD" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DMMS_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 &&
  cmake --build "$BUILD" -j"$(nproc)" --target step test_cuda_ops; } >"$OUT/tests.log" 2>&1
echo "build rc=$? $(elapsed)" | tee "$OUT/summary.txt"
timeout 120 "$BUILD/tests/test_cuda_ops" >>"$OUT/tests.log" 2>&1
echo "test_cuda_ops rc=$? $(grep 'test cases' "$OUT/tests.log" | tail -1) $(elapsed)" | tee -a "$OUT/summary.txt"
step="$BUILD/bin/step --device cuda"
timeout 60 $step --mode fp32 --batch-lists 32 --warmup 3 --steps 5 --profile >"$OUT/profile.log" 2>&1
echo "fp32 profile rc=$? $(elapsed)" | tee -a "$OUT/summary.txt"
ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
if [ -n "$ncu" ]; then
  # every tiles launch of one bf16 step at B = 32: 24 forward (12 image layers with
  # 32 x 12 blocks, 12 text layers with 128 x 8) and 24 backward
  timeout 150 "$ncu" --clock-control none -k regex:tiles_ --launch-count 48 \
    --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
    --section MemoryWorkloadAnalysis --section SchedulerStats \
    $step --mode bf16 --batch-lists 32 --warmup 0 --steps 1 >"$OUT/ncu.log" 2>&1
  echo "ncu rc=$? $(elapsed)" | tee -a "$OUT/summary.txt"
else
  echo "ncu: not found" | tee -a "$OUT/summary.txt"
fi
echo "all done $(elapsed)" | tee -a "$OUT/summary.txt"
