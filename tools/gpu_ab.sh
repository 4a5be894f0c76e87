#!/usr/bin/env bash
# A/B of a kernel change in one GPU call (about 2.5 minutes on an H200): builds the
# working tree and a base tree side by side, runs the CUDA op tests on the new build
# (and the tests named in DEBUG_SYNC_TESTS again under MMS_CUDA_DEBUG_SYNC=1), then
# alternates bench/kernels FAMILIES and bench/step STEP_ARGS between base and new for
# ROUNDS rounds, so both are timed on the same card in the same minutes.
# The base tree is a plain copy of the sources (no git on the device machine), made
# here and carried along, e.g.
#   mkdir -p .devcarry/base && git archive HEAD | tar -x -C .devcarry/base
# then: run(command="OUT=$OUT bash tools/gpu_ab.sh", carry=[".deps", ".devcarry"])
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-./out}
BASE_SRC=${BASE_SRC:-.devcarry/base}
FAMILIES=${FAMILIES:-attention}
STEP_ARGS=${STEP_ARGS:---mode bf16 --batch-lists 32,128 --graph}
ROUNDS=${ROUNDS:-2}
DEBUG_SYNC_TESTS=${DEBUG_SYNC_TESTS:-*tiles*}
mkdir -p "$OUT"
t0=$(date +%s)
elapsed() { echo "$(($(date +%s) - t0))s"; }
generator=(); command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
# the base tree finds the same Debian-package copies (.deps) as the working tree
[ -d .deps ] && [ ! -e "$BASE_SRC/.deps" ] && ln -s "$PWD/.deps" "$BASE_SRC/.deps"
build() {  # source dir, build dir, targets...
  local src=$1 dir=$2; shift 2
  cmake -S "$src" -B "$dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DMMS_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=90 && cmake --build "$dir" -j"$(nproc)" --target "$@"
}
build . build-gpu kernels step test_cuda_ops >"$OUT/build.log" 2>&1 &
new_pid=$!
build "$BASE_SRC" build-gpu-base kernels step >"$OUT/build_base.log" 2>&1
base_rc=$?
wait "$new_pid"
echo "build new rc=$? base rc=$base_rc $(elapsed)" | tee "$OUT/summary.txt"
timeout 120 build-gpu/tests/test_cuda_ops >"$OUT/tests.log" 2>&1
echo "test_cuda_ops rc=$? $(grep 'test cases' "$OUT/tests.log" | tail -1) $(elapsed)" | tee -a "$OUT/summary.txt"
MMS_CUDA_DEBUG_SYNC=1 timeout 60 build-gpu/tests/test_cuda_ops -tc="$DEBUG_SYNC_TESTS" >>"$OUT/tests.log" 2>&1
echo "under debug sync rc=$? $(grep 'test cases' "$OUT/tests.log" | tail -1) $(elapsed)" | tee -a "$OUT/summary.txt"
for round in $(seq "$ROUNDS"); do
  for side in base new; do
    dir=build-gpu; [ "$side" = base ] && dir=build-gpu-base
    echo "== round $round $side" >>"$OUT/kernels.log"
    # shellcheck disable=SC2086
    timeout 60 "$dir/bin/kernels" $FAMILIES >>"$OUT/kernels.log" 2>&1
    echo "== round $round $side" >>"$OUT/step.log"
    # shellcheck disable=SC2086
    timeout 60 "$dir/bin/step" --device cuda $STEP_ARGS >>"$OUT/step.log" 2>&1
    echo "round $round $side done $(elapsed)" | tee -a "$OUT/summary.txt"
  done
done
echo "all done $(elapsed)" | tee -a "$OUT/summary.txt"
