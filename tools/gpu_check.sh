#!/usr/bin/env bash
# The one script for a GPU machine (issue 7). Builds mmscale with CUDA, runs the CUDA
# parity tests, the whole CTest suite, the kernel benchmarks, the CLIP parity on the
# GPU and a short fine-tune on CUDA, writes every log to $OUT and prints a table last.
# Budget: under 5 minutes on an H100 (sm_90 only, Release, all cores). The fine-tune's
# data cache and outputs go to $TMPDIR, not $OUT: the device tool returns only a few files.
#   OUT=/path/for/logs bash tools/gpu_check.sh
# Optional: BUILD (build dir, default build-gpu), JOBS (default nproc),
#           FINETUNE_STEPS (default 20), SKIP_CTEST=1 (only the CUDA test binary).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-./out}
BUILD=${BUILD:-build-gpu}
JOBS=${JOBS:-$(nproc)}
FINETUNE_STEPS=${FINETUNE_STEPS:-20}
# A hung CUDA test must not eat the session's device time: each test binary gets this long.
TEST_TIMEOUT=${TEST_TIMEOUT:-120}
mkdir -p "$OUT"
script_start=$(date +%s)
rows=()

# step NAME COMMAND...: runs COMMAND with its output in $OUT/NAME.log, records the result.
step() {
  local name=$1
  shift
  local t0 status
  t0=$(date +%s)
  echo "== $name: $*" | tee -a "$OUT/summary.log"
  if "$@" >"$OUT/$name.log" 2>&1; then status=PASS; else status="FAIL(rc=$?)"; fi
  rows+=("$name|$status|$(($(date +%s) - t0))s")
  tail -n 3 "$OUT/$name.log" | sed 's/^/   /' | tee -a "$OUT/summary.log"
}
skip() { rows+=("$1|SKIP|$2"); echo "== $1: skipped ($2)" | tee -a "$OUT/summary.log"; }

{ nvidia-smi || echo "nvidia-smi not available"; } >"$OUT/nvidia-smi.log" 2>&1
card=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)
card=${card:-unknown GPU}
echo "card: $card" | tee "$OUT/summary.log"

generator=(-G Ninja)
command -v ninja >/dev/null 2>&1 || generator=()
step configure cmake -S . -B "$BUILD" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DMMS_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES=90
# -k 0: keep building the other targets when one fails, so one broken example does
# not hide the CUDA tests.
step build cmake --build "$BUILD" -j"$JOBS" -- -k 0

if [ -x "$BUILD/tests/test_cuda_ops" ]; then
  # The CUDA suite on its own first, in full (every assertion's context on failure).
  step cuda_tests timeout "$TEST_TIMEOUT" "$BUILD/tests/test_cuda_ops"
  if grep -q "CUDA tests skipped: no GPU" "$OUT/cuda_tests.log" 2>/dev/null; then
    rows+=("cuda_tests_ran|FAIL|the CUDA tests skipped: no GPU visible")
  fi
  # Once more with a sync after every launch, so a fault is pinned to its kernel.
  step cuda_tests_debug_sync timeout "$TEST_TIMEOUT" env MMS_CUDA_DEBUG_SYNC=1 "$BUILD/tests/test_cuda_ops" -tc="*attention*,*AdamW*,*ListMLE*"
else
  skip cuda_tests "test binary missing (build failed?)"
fi
# A whole tiny-CLIP step on the GPU vs the CPU, and zero host waits inside the step.
if [ -x "$BUILD/tests/test_cuda_step" ]; then
  step cuda_step timeout "$TEST_TIMEOUT" "$BUILD/tests/test_cuda_step"
else
  skip cuda_step "test binary missing (build failed?)"
fi

if [ "${SKIP_CTEST:-0}" != "1" ]; then
  step ctest ctest --test-dir "$BUILD" --output-on-failure -j"$JOBS" --timeout "$TEST_TIMEOUT"
else
  skip ctest "SKIP_CTEST=1"
fi

if [ -x "$BUILD/bin/kernels" ]; then
  step bench_kernels "$BUILD/bin/kernels"
else
  skip bench_kernels "bench/kernels not built"
fi

# CLIP parity on the GPU: the parity suite's float32 CUDA case (both checkpoint
# variants, every output within 1e-4 of transformers' float64 reference). It prints
# "skipped: no CUDA device" when no GPU is visible, which this row then reports.
if [ -x "$BUILD/tests/test_clip_parity" ]; then
  step clip_parity_cuda "$BUILD/tests/test_clip_parity" -tc="*CUDA*"
  if grep -q "skipped: no CUDA device" "$OUT/clip_parity_cuda.log" 2>/dev/null; then
    rows+=("clip_parity_cuda_ran|FAIL|the CUDA parity case skipped: no GPU visible")
  fi
else
  skip clip_parity_cuda "test_clip_parity not built"
fi

# The short fine-tune runs under a watchdog: if it is still running after
# FINETUNE_TIMEOUT seconds, cuda-gdb prints every thread's stack before it is killed, so
# a hang says where it hangs instead of just timing out.
FINETUNE_TIMEOUT=${FINETUNE_TIMEOUT:-90}
run_finetune() {
  # a fresh --out: a run a timeout cut short leaves an unfinished checkpoint, which a
  # fresh run refuses to overwrite
  rm -rf "${TMPDIR:-/tmp}/mms-gpu-finetune"
  "$BUILD/bin/finetune" --device cuda --steps "$FINETUNE_STEPS" --cache-dir "${TMPDIR:-/tmp}/mms-gpu-cache" --out "${TMPDIR:-/tmp}/mms-gpu-finetune" &
  local pid=$! waited=0
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$waited" -ge "$FINETUNE_TIMEOUT" ]; then
      echo "finetune: still running after ${FINETUNE_TIMEOUT}s; thread stacks:"
      if command -v cuda-gdb >/dev/null 2>&1; then
        timeout 60 cuda-gdb -p "$pid" -batch -ex "thread apply all bt" 2>&1 | grep -v "^\[New Thread" | head -300
      fi
      kill "$pid" 2>/dev/null
      wait "$pid"
      return 124
    fi
    sleep 1
    waited=$((waited + 1))
  done
  wait "$pid"
}
if [ -x "$BUILD/bin/finetune" ]; then
  step finetune_cuda run_finetune
else
  skip finetune_cuda "examples/finetune not built"
fi

total=$(($(date +%s) - script_start))
{
  echo
  echo "gpu_check on: $card   (total ${total}s)"
  printf '%-24s %-14s %s\n' step result time
  for row in "${rows[@]}"; do
    IFS='|' read -r name status seconds <<<"$row"
    printf '%-24s %-14s %s\n' "$name" "$status" "$seconds"
  done
  if [ -f "$OUT/bench_kernels.log" ]; then
    echo
    echo "kernel benchmarks (from bench_kernels.log):"
    grep -E '^(kernel|peak|  )' "$OUT/bench_kernels.log" | head -60
  fi
} | tee "$OUT/table.txt"
