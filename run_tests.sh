#!/usr/bin/env bash
# The test command: sets up .venv when missing (see setup_env.sh), then runs the whole suite.
# Extra arguments go to pytest, e.g. `bash run_tests.sh -k modeling -x`.
set -euo pipefail
cd "$(dirname "$0")"
bash setup_env.sh
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3 GLOG_minloglevel=2 TOKENIZERS_PARALLELISM=false
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
