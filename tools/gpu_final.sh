#!/usr/bin/env bash
# One short GPU call that checks and measures a change (381 s on an H200 before the B = 8
# sweep and the peer per mode and batch were added; an estimated 7-8 minutes with them):
# builds only what it runs (sm_90), runs the CUDA test binaries (cuDNN's attention and
# the tensor-core tiles also under MMS_CUDA_DEBUG_SYNC=1), bench/step over the issue's
# batch sweep B = 8, 32, 128 (bf16 eager with --profile, bf16 --graph, fp32, tf32), the
# A/B rows of the other attention paths (MMS_ATTENTION=cudnn as a graph, MMS_ATTENTION=gemm),
# the PyTorch peers for the same modes and batches in the same call (tools/peer_sweep.py:
# one process), 20-step CUDA fine-tunes (fp32, bf16), the kernel benches of the families
# changed last (copy, masked_softmax, attention, elementwise, linear_grad), the 200-step
# bf16-vs-fp32 loss, and last the torch.compile reduce-overhead peer at B = 32. Eight files
# in $OUT (the device tool returns about that many), most important first, so a timeout
# still leaves the key numbers.
#   OUT=$OUT bash tools/gpu_final.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-./out}
BUILD=${BUILD:-build-gpu}
PEER=${PEER_SCRIPT:-.devcarry/torch_step.py}
mkdir -p "$OUT"
t0=$(date +%s)
elapsed() { echo "$(($(date +%s) - t0))s"; }
generator=(); command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
tests=(test_cuda_ops test_cuda_step test_autocast test_dropout test_cuda_gemm_lt test_clip_parity test_fast_divider)
# (the build's log opens tests.log: one file fewer)
{ cmake -S . -B "$BUILD" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DMMS_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 &&
  cmake --build "$BUILD" -j"$(nproc)" --target step finetune kernels "${tests[@]}"; } >"$OUT/tests.log" 2>&1
echo "build rc=$? $(elapsed) $(grep -h 'cuDNN' "$OUT/tests.log" | head -1)" | tee "$OUT/summary.txt"
for t in "${tests[@]}"; do
  args=(); [ "$t" = test_clip_parity ] && args=(-tc="*CUDA*")
  timeout 120 "$BUILD/tests/$t" "${args[@]}" >>"$OUT/tests.log" 2>&1
  echo "$t rc=$? $(grep 'test cases' "$OUT/tests.log" | tail -1) $(elapsed)" | tee -a "$OUT/summary.txt"
done
MMS_CUDA_DEBUG_SYNC=1 timeout 60 "$BUILD/tests/test_cuda_ops" -tc="*cuDNN*,*masked softmax*,*tiles*" >>"$OUT/tests.log" 2>&1
echo "cuDNN + masked softmax + tiles under debug sync rc=$? $(grep 'test cases' "$OUT/tests.log" | tail -1) $(elapsed)" |
  tee -a "$OUT/summary.txt"
step="$BUILD/bin/step --device cuda"
timeout 90 $step --mode bf16 --batch-lists 8,32,128 --profile >"$OUT/ours.log" 2>&1
echo "ours bf16 rc=$? $(elapsed)" | tee -a "$OUT/summary.txt"
timeout 60 $step --mode bf16 --batch-lists 8,32,128 --graph >>"$OUT/ours.log" 2>&1
echo "ours bf16 graph rc=$? $(elapsed)" | tee -a "$OUT/summary.txt"
MMS_ATTENTION=cudnn timeout 60 $step --mode bf16 --batch-lists 32,128 --graph >>"$OUT/ours.log" 2>&1
echo "ours bf16 graph, cudnn attention rc=$? $(elapsed)" | tee -a "$OUT/summary.txt"
MMS_ATTENTION=gemm timeout 60 $step --mode bf16 --batch-lists 32,128 >>"$OUT/ours.log" 2>&1
echo "ours bf16 GEMM-path attention (A/B) rc=$? $(elapsed)" | tee -a "$OUT/summary.txt"
timeout 90 $step --mode fp32 --batch-lists 8,32,128 >>"$OUT/ours.log" 2>&1
timeout 60 $step --mode tf32 --batch-lists 8,32,128 >>"$OUT/ours.log" 2>&1
echo "ours done $(elapsed)" | tee -a "$OUT/summary.txt"
timeout 200 python3 tools/peer_sweep.py "$PEER" bf16:8 bf16:32 bf16:128 fp32:8 fp32:32 fp32:128 tf32:8 tf32:32 tf32:128 \
  2>&1 | grep '^{' >>"$OUT/peer.log"
echo "peers done $(elapsed)" | tee -a "$OUT/summary.txt"
grep -h '^{' "$OUT/ours.log" "$OUT/peer.log" >"$OUT/perf.log"
python3 tools/perf_table.py "$OUT/perf.log" >>"$OUT/summary.txt" 2>&1
rm -rf /tmp/mms-ft /tmp/mms-ft-bf16  # a timed-out earlier call leaves unfinished checkpoints a fresh run refuses
timeout 120 "$BUILD/bin/finetune" --device cuda --steps 20 --cache-dir /tmp/mms-cache --out /tmp/mms-ft >"$OUT/finetune.log" 2>&1
echo "finetune rc=$? $(elapsed)" | tee -a "$OUT/summary.txt"
timeout 60 "$BUILD/bin/finetune" --device cuda --precision bf16 --steps 20 --cache-dir /tmp/mms-cache --out /tmp/mms-ft-bf16 \
  >>"$OUT/finetune.log" 2>&1
echo "finetune --precision bf16 rc=$? $(elapsed)" | tee -a "$OUT/summary.txt"
timeout 90 "$BUILD/bin/kernels" copy masked_softmax attention elementwise linear_grad >"$OUT/kernels.log" 2>&1
echo "kernels rc=$? $(tail -1 "$OUT/kernels.log") $(elapsed)" | tee -a "$OUT/summary.txt"
for mode in fp32 bf16; do
  timeout 60 $step --mode "$mode" --batch-lists 8 --warmup 0 --steps 200 2>&1 | grep '^{' | sed 's/^{/{"run":"loss200",/' >>"$OUT/loss200.log"
done
echo "loss200 done $(elapsed)" | tee -a "$OUT/summary.txt"
timeout 150 python3 "$PEER" --mode bf16 --batch-lists 32 --compile reduce-overhead 2>&1 | grep '^{' >>"$OUT/peer.log"
grep -h '^{' "$OUT/ours.log" "$OUT/peer.log" >"$OUT/perf.log"
python3 tools/perf_table.py "$OUT/perf.log" >>"$OUT/summary.txt" 2>&1
echo "all done $(elapsed)" | tee -a "$OUT/summary.txt"
cat "$OUT/summary.txt"
