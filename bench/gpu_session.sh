#!/usr/bin/env bash
# One device call: the benchmark, then the conformance suite at GPU sizes; logs under $OUT.
# Usage (on the GPU machine, repo root): bash bench/gpu_session.sh [BENCH_SECONDS] [TEST_SECONDS]
set -uo pipefail
OUT=${OUT:-results/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TRITON_PRINT_AUTOTUNING=1
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
timeout "${1:-330}" python3 -m bench.attention --out "$OUT" > "$OUT/bench.log" 2>&1
echo "bench exit $?"
grep -v "^Triton autotuning" "$OUT/bench.log" | grep -v '^{' | tail -60
timeout "${2:-220}" python3 -m pytest -q -p no:cacheprovider --durations=10 tests \
  > "$OUT/tests.log" 2>&1
echo "tests exit $?"
grep -h "^Triton autotuning" "$OUT/bench.log" "$OUT/tests.log" | sort | uniq -c | sort -rn \
  > "$OUT/autotune.txt"
grep -v "^Triton autotuning" "$OUT/tests.log" | grep -E "FAIL|Error|passed|failed|^[0-9.]+s " | tail -40
