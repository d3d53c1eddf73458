#!/usr/bin/env bash
# Creates the Python environment; a second run only checks and returns.
#
#   bash setup_env.sh                     .venv with both backends: Python 3.10, requirements.txt (OneFlow 0.9,
#                                         PyTorch, TensorFlow-CPU for checkpoint conversion; ~11 GB)
#   BACKENDS=torch bash setup_env.sh      .venv with the PyTorch backend alone: any Python >= 3.10,
#                                         requirements-torch.txt (no OneFlow, no TensorFlow)
#
# VENV=DIR: another place than .venv (e.g. VENV=.venv-torch BACKENDS=torch for a second environment).
# BASE_PYTHON=python3.12: the interpreter of a torch-only venv (default: python3 on PATH, if >= 3.10).
#   (Not PYTHON: to the run_*.sh wrappers PYTHON is the interpreter that runs the scripts, see docs/wrappers.md.)
# TORCH_SPEC: pip arguments installed before the rest: a torch build PyPI's default does not give, e.g.
#   "torch --index-url https://download.pytorch.org/whl/cu126" (CUDA 12.6, for NVIDIA drivers older than
#   the 580 that PyPI's CUDA 13 build needs; docs/gpu.md) or ".../whl/cpu" (CPU only: a 0.18 GiB wheel
#   instead of 2.8 GiB of torch, nvidia-* and triton wheels), or pins (as .ci/run does). With the full
#   install (requirements.txt pins torch==2.14.1) name that version: "torch==2.14.1 --index-url ...".
#   It applies when the venv is made or its requirements change; to switch builds later, remove the venv.
# Without BACKENDS, an existing venv keeps the kind it was made as (the run_*.sh wrappers call this).
set -euo pipefail
cd "$(dirname "$0")"
VENV=${VENV:-.venv}
stamp="$VENV/.requirements.sha256"
recorded=$(cat "$stamp" 2>/dev/null || true)

kind() { case "$1" in torch:*) echo torch ;; *) echo all ;; esac; }  # of a stamp
BACKENDS=${BACKENDS:-$(kind "$recorded")}
case "$BACKENDS" in
  all)
    requirements=requirements.txt
    pins=(-c constraints.txt)  # the versions CI installed
    want=$(cat requirements.txt constraints.txt | sha256sum | cut -d' ' -f1) ;;
  torch)
    requirements=requirements-torch.txt
    pins=()  # any Python >= 3.10, numpy 1 or 2: no one set of versions fits them all
    want="torch:$(sha256sum requirements-torch.txt | cut -d' ' -f1)" ;;
  *)
    echo "setup_env.sh: BACKENDS=$BACKENDS: use BACKENDS=all (OneFlow + PyTorch + TensorFlow) or BACKENDS=torch" >&2
    exit 1 ;;
esac

if [ -x "$VENV/bin/python" ] && [ "$recorded" = "$want" ]; then
  exit 0
fi
if [ -x "$VENV/bin/python" ] && [ -n "$recorded" ] && [ "$(kind "$recorded")" != "$BACKENDS" ]; then
  echo "setup_env.sh: $VENV was made for the other kind of install than BACKENDS=$BACKENDS;" >&2
  echo "  remove it, or choose another directory with VENV=..." >&2
  exit 1
fi

python_ok() {  # python_ok PYTHON MIN_MINOR [MAX_MINOR]: a Python 3 between those minor versions
  "$1" -c "import sys; v = sys.version_info; sys.exit(not (v[0] == 3 and $2 <= v[1] <= ${3:-99}))" 2>/dev/null
}

find_python310() {
  local c
  for c in "${PYTHON310:-}" python3.10 "$(command -v pyenv >/dev/null 2>&1 && pyenv root)"/versions/3.10.*/bin/python \
           "$HOME"/.pyenv/versions/3.10.*/bin/python; do
    [ -n "$c" ] || continue
    if command -v "$c" >/dev/null 2>&1 && python_ok "$c" 10 10; then
      command -v "$c"; return 0
    fi
  done
  return 1
}

find_python() {  # the torch-only venv: $BASE_PYTHON, else the first python3 >= 3.10 found
  local c
  for c in "${BASE_PYTHON:-}" python3 python3.13 python3.12 python3.11 python3.10; do
    [ -n "$c" ] || continue
    if command -v "$c" >/dev/null 2>&1 && python_ok "$c" 10; then
      command -v "$c"; return 0
    fi
  done
  return 1
}

if [ ! -x "$VENV/bin/python" ]; then
  if [ "$BACKENDS" = all ]; then
    py=$(find_python310) || {
      echo "setup_env.sh: Python 3.10 not found (OneFlow 0.9.0 ships wheels for Python <= 3.10 only)." >&2
      echo "  Install it (e.g. 'pyenv install 3.10') or set PYTHON310=/path/to/python3.10;" >&2
      echo "  or BACKENDS=torch bash setup_env.sh for the PyTorch backend alone on any Python >= 3.10." >&2
      exit 1
    }
  else
    py=$(find_python) || {
      echo "setup_env.sh: no Python >= 3.10 found${BASE_PYTHON:+ (BASE_PYTHON=$BASE_PYTHON is not one)};" \
           "set BASE_PYTHON=/path/to/python3" >&2
      exit 1
    }
  fi
  echo "setup_env.sh: creating $VENV ($BACKENDS) with $py"
  "$py" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
if [ -n "${TORCH_SPEC:-}" ]; then
  # shellcheck disable=SC2086  # TORCH_SPEC is a list of pip arguments
  "$VENV/bin/python" -m pip install $TORCH_SPEC
fi
"$VENV/bin/python" -m pip install -r "$requirements" "${pins[@]}"
echo "$want" > "$stamp"
echo "setup_env.sh: $VENV ready ($requirements)"
