#!/usr/bin/env bash
# The GPU check, one command:  bash bench/gpu_check.sh
#
# 1. the GPU tests (tests/test_gpu.py: every stage on CUDA against the CPU, --fp16, --teacher_dtype bf16,
#    resume across devices, torchrun), with pytest when the Python has it, else as a plain script;
# 2. one table of GPU figures (bench/gpu_bench.py): task distillation examples/s (ours vs --reference_mode,
#    fp32 and bf16 teacher), augmentation sentences/s (batched vs the reference's procedure), inference
#    (teacher vs student, batch 32 x 128 and batch 1), peak GPU memory.
# Torch backend; nothing from outside the repository (no ../shared, no downloads, no OneFlow). Python: $PYTHON,
# else python3 / python on PATH when it has torch, else .venv/bin/python. Sized for under 8 minutes on one
# H100/H200-class GPU. Without a CUDA GPU it says so, checks that its own code imports, and exits 0.
# Exit status: 0 when the tests passed and the table was printed.
set -uo pipefail
cd "$(dirname "$0")/.."

has_torch() { command -v "$1" >/dev/null 2>&1 && "$1" -c "import torch" >/dev/null 2>&1; }
PY=""
for candidate in "${PYTHON:-}" python3 python .venv/bin/python; do
  if [ -n "$candidate" ] && has_torch "$candidate"; then PY=$candidate; break; fi
done
if [ -z "$PY" ]; then
  echo "gpu_check.sh: no Python with torch found (set PYTHON=..., or BACKENDS=torch bash setup_env.sh)" >&2
  exit 1
fi
export BACKEND=torch TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3 GLOG_minloglevel=2
started=$(date +%s)
about='import sys, torch; print(sys.executable, sys.version.split()[0], "torch", torch.__version__)'
echo "gpu_check.sh: $("$PY" -c "$about")"

if ! "$PY" -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
  echo "gpu_check.sh: no CUDA GPU visible to this torch: nothing measured. Checking that the check's own code imports:"
  "$PY" -c "import sys; sys.path[:0] = ['tests']; import test_gpu" || exit 1
  "$PY" bench/gpu_bench.py --check_imports || exit 1
  "$PY" tests/test_gpu.py || exit 1   # reports that it skips
  exit 0
fi
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv
fi

echo; echo "== 1. GPU tests =="
if "$PY" -c "import pytest" >/dev/null 2>&1; then
  timeout 270 "$PY" -m pytest -q -p no:cacheprovider -m gpu -rs tests/test_gpu.py
else
  timeout 270 "$PY" tests/test_gpu.py
fi
tests_rc=$?

echo; echo "== 2. GPU figures =="
timeout 210 "$PY" bench/gpu_bench.py
bench_rc=$?

echo; echo "gpu_check.sh: tests exit $tests_rc, figures exit $bench_rc, $(( $(date +%s) - started )) s in all"
[ "$tests_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
