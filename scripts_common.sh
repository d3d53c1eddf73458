# Shared by the run_*.sh wrappers and glue_process.sh, which source it after `cd` to the repository root.
# docs/wrappers.md has the table of every wrapper variable and the script flag it becomes.

# Progress and log lines reach a log file as they are printed, not when the process ends.
export PYTHONUNBUFFERED=1

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

# need_task VAR WHAT: VAR (a GLUE root) must hold TASK_NAME/; when the root is there but not the task
# folder, it is TASK_NAME that names the folders the root does hold.
need_task() {
  local root=${!1}
  if [ -d "$root" ] && [ ! -e "$root/$TASK_NAME" ]; then
    local held
    held=$(find "$root" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' 2>/dev/null | sort | paste -sd ' ')
    echo "error: $root has no $TASK_NAME/: set TASK_NAME to a task it holds (${held:-none}), or $1 to" \
         "another GLUE root" >&2
    exit 2
  fi
  need "$1" "$2" "$root/$TASK_NAME"
}

# need_model VAR WHAT: as need, but a value without '/' is a name the script resolves itself
# (checkpoint.resolve_model_dir: models/NAME or a known model such as all-MiniLM-L6-v2).
need_model() {
  case "${!1}" in
    */*) need "$1" "$2" ;;
  esac
}

# is_yes VAR: true when VAR says yes (true/1/yes/y/on in any case), false when it says no (false/0/no/n/off or
# empty); any other value stops the wrapper naming VAR, so that a typo never silently means "no".
is_yes() {
  local value=${!1:-}
  case "${value,,}" in
    true | 1 | yes | y | on) return 0 ;;
    false | 0 | no | n | off | "") return 1 ;;
  esac
  echo "error: $1='$value': use yes or no (true/false, 1/0)" >&2
  exit 2
}

# rerun_args: AGAIN, what a training script gets about the output directory's earlier contents:
# --overwrite (OVERWRITE=yes: start afresh), else --resume (RESUME=yes, the default: continue the run there,
# or say that it finished, or name what differs from it), else nothing (a non-empty directory is refused).
rerun_args() {
  AGAIN=()
  if is_yes OVERWRITE; then
    AGAIN=(--overwrite)
  elif is_yes RESUME; then
    AGAIN=(--resume)
  fi
}

# task_name [OLD_NAME]: TASK_NAME, the one name of the GLUE task in every wrapper; the original's
# `dataset` (and a wrapper's older name, e.g. TASKS) is still read. Two names set to different tasks stop
# the wrapper rather than pick one silently.
task_name() {
  local name value
  for name in dataset "$@"; do
    value=${!name:-}
    [ -n "$value" ] || continue
    if [ -n "${TASK_NAME:-}" ] && [ "$TASK_NAME" != "$value" ]; then
      echo "error: TASK_NAME='$TASK_NAME' but $name='$value': set one of them (TASK_NAME is the name to use)" >&2
      exit 2
    fi
    TASK_NAME=$value
  done
  TASK_NAME=${TASK_NAME:-SST-2}
}

# general_tinybert: the General TinyBERT the earlier stages left, for GENERAL_TINYBERT_DIR's default:
# run_general_distill.sh's output or the converted download (docs/pipeline.md, stage 2); of both, the newer.
GENERAL_TINYBERT_DIRS="models/general_tinybert_4L_312D models/2nd_General_TinyBERT_4L_312D_oneflow"
general_tinybert() {
  local dir found=
  for dir in $GENERAL_TINYBERT_DIRS; do
    if [ -e "$dir/config.json" ] && { [ -z "$found" ] || [ "$dir/config.json" -nt "$found/config.json" ]; }; then
      found=$dir
    fi
  done
  echo "${found:-models/general_tinybert_4L_312D}"
}

# use_python: the interpreter the wrapper runs. PYTHON, when set, is used as it is, once it has shown that
# it can import the project's packages; otherwise the venv VENV (default .venv): made or brought up to date
# by setup_env.sh when it is .venv or one setup_env.sh made, used as it is when it is a venv you made
# yourself (no .requirements.sha256 in it: setup_env.sh never installs into it from a wrapper).
use_python() {
  if [ -n "${PYTHON:-}" ]; then
    local missing
    if ! missing=$("$PYTHON" -c 'import numpy, tqdm' 2>&1); then
      echo "error: PYTHON='$PYTHON' cannot run the scripts (${missing##*$'\n'}): unset PYTHON to use" \
           "${VENV:-.venv} (made by setup_env.sh), or point PYTHON at a Python with requirements.txt installed" >&2
      exit 2
    fi
    return
  fi
  local venv=${VENV:-.venv}
  if [ "$venv" != .venv ] && [ ! -x "$venv/bin/python" ]; then
    echo "error: VENV='$venv' holds no bin/python: make it with VENV=$venv BACKENDS=torch (or all) bash" \
         "setup_env.sh, or unset VENV to use .venv" >&2
    exit 2
  fi
  if [ "$venv" != .venv ] && [ ! -f "$venv/.requirements.sha256" ]; then
    PYTHON=$venv/bin/python
    return
  fi
  VENV=$venv bash setup_env.sh
  PYTHON=$venv/bin/python
}

# continue_with "COMMAND": what an interrupted script prints as the way to continue (training.py reads it);
# a wrapper's rerun continues every stage, so it names the wrapper rather than the script.
continue_with() {
  export TINYBERT_CONTINUE_WITH="$1"
}

# launch SCRIPT ARGS...: run a training script as one process, or, when NPROC_PER_NODE or NNODES is
# above 1, under BACKEND's own launcher (torchrun for torch, oneflow.distributed.launch for oneflow),
# which starts NPROC_PER_NODE processes on this machine, this machine being NODE_RANK of NNODES,
# all meeting at MASTER_ADDR:MASTER_PORT. The global batch is BATCH_SIZE x processes (docs/wrappers.md).
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
