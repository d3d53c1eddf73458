#!/usr/bin/env bash
# The GPU check, one command:  bash bench/gpu_check.sh
#
# 1. the GPU tests (tests/test_gpu.py: every stage on CUDA against the CPU, --fp16, --teacher_dtype bf16,
#    resume across devices, torchrun), with pytest when the Python has it, else as a plain script;
# 2. one table of GPU figures (bench/gpu_bench.py): task distillation examples/s (ours vs --reference_mode,
#    fp32 and bf16 teacher), augmentation sentences/s (batched vs the reference's procedure), inference
#    (teacher vs student, batch 32 x 128 and batch 1), peak GPU memory.
# Torch backend; nothing from outside the repository (no ../shared, no downloads, no OneFlow). Sized for
# under 8 minutes on one H100/H200-class GPU.
#
# It checks its own preconditions first and fails (exit 1) rather than pass having tested nothing:
# - a Python with every package the runs import (torch, transformers, tokenizers, safetensors, scikit-learn,
#   scipy, tqdm, matplotlib): $PYTHON if set, else the first of python3, python, .venv/bin/python that has
#   them all; none: it names what each lacks;
# - torch sees a CUDA GPU; where nvidia-smi lists one that torch cannot use, it says why (a CPU-only torch,
#   or a driver older than torch's CUDA build needs) and which build to install (docs/gpu.md);
# - no GPU at all: it checks that its own code imports, then fails: nothing was measured.
# Exit status: 0 when the tests passed and the table was printed.
set -uo pipefail
cd "$(dirname "$0")/.."

NEEDED="torch numpy transformers tokenizers safetensors sklearn scipy tqdm matplotlib"
lacks() {  # the modules of $NEEDED that Python $1 cannot import ("python?" when $1 does not run)
  command -v "$1" >/dev/null 2>&1 || { echo "python?"; return; }
  "$1" -c 'import importlib.util, sys; print(" ".join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))' \
    $NEEDED 2>/dev/null || echo "python?"
}
PY="" report=""
if [ -n "${PYTHON:-}" ]; then candidates=$PYTHON; else candidates="python3 python .venv/bin/python"; fi
for candidate in $candidates; do
  missing=$(lacks "$candidate")
  if [ -z "$missing" ]; then PY=$candidate; break; fi
  report="$report\n  $candidate lacks: $missing"
done
if [ -z "$PY" ]; then
  echo -e "gpu_check.sh: FAILED: no Python with every package the GPU runs need:$report" >&2
  echo "  pip install -r requirements-torch.txt into the Python with a CUDA torch (then PYTHON=that/python)," \
       "or BACKENDS=torch bash setup_env.sh (docs/gpu.md)" >&2
  exit 1
fi
export BACKEND=torch TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3 GLOG_minloglevel=2
started=$(date +%s)
about='import sys, torch; print(sys.executable, sys.version.split()[0], "torch", torch.__version__, "CUDA", torch.version.cuda)'
echo "gpu_check.sh: $("$PY" -c "$about")"

if ! "$PY" -c "import sys, torch; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
  why=$("$PY" -c 'import backend; print(backend.unusable_gpu(backend.framework("torch")) or "")')
  if [ -n "$why" ]; then
    echo "gpu_check.sh: FAILED: $why" >&2
    exit 1
  fi
  echo "gpu_check.sh: no CUDA GPU on this machine (nvidia-smi lists none). Checking that the check's own code imports:"
  "$PY" -c "import sys; sys.path[:0] = ['tests']; import test_gpu" || exit 1
  "$PY" bench/gpu_bench.py --check_imports || exit 1
  echo "gpu_check.sh: FAILED: no GPU, nothing was measured (the code above imports)" >&2
  exit 1
fi
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv
fi

echo; echo "== 1. GPU tests =="
# 14 tests, two of them launch torchrun, each stage run twice (GPU and CPU): not measured on a GPU yet,
# hence the generous limits; a limit reached says so (exit 124).
if "$PY" -c "import pytest" >/dev/null 2>&1; then
  timeout 420 "$PY" -m pytest -q -p no:cacheprovider -m gpu -rs tests/test_gpu.py
else
  timeout 420 "$PY" tests/test_gpu.py
fi
tests_rc=$?
[ "$tests_rc" -eq 124 ] && echo "gpu_check.sh: the GPU tests ran past 420 s and were stopped" >&2

echo; echo "== 2. GPU figures =="
timeout 240 "$PY" bench/gpu_bench.py
bench_rc=$?
[ "$bench_rc" -eq 124 ] && echo "gpu_check.sh: the figures ran past 240 s and were stopped" >&2

echo; echo "gpu_check.sh: tests exit $tests_rc, figures exit $bench_rc, $(( $(date +%s) - started )) s in all"
[ "$tests_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
