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
