#!/usr/bin/env bash
# One device call: the benchmark, then the conformance suite at GPU sizes; logs under $OUT.
# Usage (on the GPU machine, repo root): bash bench/gpu_session.sh BENCH_S TEST_S [STAGES...]
set -uo pipefail
OUT=${OUT:-results/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TRITON_PRINT_AUTOTUNING=1
bench_s=${1:-330}; test_s=${2:-220}; shift 2 || true
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
if [ "$bench_s" -gt 0 ]; then
  timeout "$bench_s" python3 -m bench.attention --out "$OUT" > "$OUT/bench.log" 2>&1
  echo "bench exit $?"
  grep -v "^Triton autotuning" "$OUT/bench.log" | grep -v '^{' | tail -70
fi
variants=(); for s in "${@:-v04 v03 v02 v01}"; do for v in $s; do variants+=(--variant "$v"); done; done
timeout -s INT "$test_s" python3 -m pytest -q -n 8 -p no:cacheprovider --durations=25 -rf \
  "${variants[@]}" tests > "$OUT/tests.log" 2>&1
echo "tests exit $?"
grep -h -A3 "^Triton autotuning" "$OUT"/*.log | grep -E "key as|best" > "$OUT/autotune.txt"
grep -v "^Triton autotuning\|^with key\|^finished after\|^best config" "$OUT/tests.log" | \
  grep -E "FAIL|Error|passed|failed|^[0-9.]+s " | tail -45
