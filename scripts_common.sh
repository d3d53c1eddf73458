# Shared by the run_*.sh wrappers and glue_process.sh, which source it after `cd` to the repository root.

# need VAR WHAT [PATH]: stop with status 2 when PATH (default: the value of VAR) does not exist,
# naming the variable to set and what it should point at. Wrappers check their inputs before
# anything else, so that a run with nothing downloaded says what to set instead of failing later.
need() {
  local name=$1 what=$2 value=${!1}
  local path=${3:-$value}
  if [ ! -e "$path" ]; then
    echo "error: $path does not exist: set $name (now '$value') to $what" >&2
    exit 2
  fi
}

# need_model VAR WHAT: as need, but a value without '/' is a name the script resolves itself
# (checkpoint.resolve_model_dir: models/NAME or a known model such as all-MiniLM-L6-v2).
need_model() {
  case "${!1}" in
    */*) need "$1" "$2" ;;
  esac
}

# use_python: PYTHON is the interpreter; unset, it is .venv/bin/python, after setup_env.sh has made
# or checked the venv (it returns at once when the venv matches requirements.txt).
use_python() {
  if [ -z "${PYTHON:-}" ]; then
    bash setup_env.sh
    PYTHON=.venv/bin/python
  fi
}

# launch SCRIPT ARGS...: run a training script as one process, or, when NPROC_PER_NODE or NNODES is
# above 1, under BACKEND's own launcher (torchrun for torch, oneflow.distributed.launch for oneflow),
# which starts NPROC_PER_NODE processes on this machine, this machine being NODE_RANK of NNODES,
# all meeting at MASTER_ADDR:MASTER_PORT. The global batch is BATCH_SIZE x processes (README).
launch() {
  local nproc=${NPROC_PER_NODE:-1} nnodes=${NNODES:-1}
  if [ "$nproc" = 1 ] && [ "$nnodes" = 1 ]; then
    "$PYTHON" "$@"
    return
  fi
  local module
  case "$BACKEND" in
    torch) module=torch.distributed.run ;;
    oneflow) module=oneflow.distributed.launch ;;
    *) echo "error: BACKEND='$BACKEND': oneflow or torch" >&2; exit 2 ;;
  esac
  "$PYTHON" -m "$module" --nproc_per_node "$nproc" --nnodes "$nnodes" --node_rank "${NODE_RANK:-0}" \
    --master_addr "${MASTER_ADDR:-127.0.0.1}" --master_port "${MASTER_PORT:-29500}" "$@"
}
