#!/usr/bin/env bash
# Evaluate a (distilled) model on a GLUE dev set: RESULT_DIR/results_eval.json (PREDICT=True: and
# the benchmark's test-set submission files beside it).
set -euo pipefail
cd "$(dirname "$0")"
source scripts_common.sh

DATA_ROOT=${DATA_ROOT:-data/glue_data}
dataset=${dataset:-SST-2}
STUDENT_DIR=${STUDENT_DIR:-models/student_model/$dataset}
RESULT_DIR=${RESULT_DIR:-}              # empty: STUDENT_DIR
BACKEND=${BACKEND:-oneflow}
GPU=${GPU:-0}
MAX_SEQ_LENGTH=${MAX_SEQ_LENGTH:-64}
PREDICT=${PREDICT:-False}               # True: also the GLUE test-set submission files (SST-2.tsv, ...)
PYTHON=${PYTHON:-}                      # empty: .venv/bin/python (setup_env.sh makes it)

need DATA_ROOT "the GLUE root holding $dataset/ (python download_glue_data.py --data_dir data/glue_data)" \
  "$DATA_ROOT/$dataset"
need STUDENT_DIR "the model to evaluate (run_train_student_tinybert.sh writes models/student_model/$dataset)"
predict=(); [ "$PREDICT" = "True" ] && predict=(--do_predict)
use_python
CUDA_VISIBLE_DEVICES=$GPU "$PYTHON" task_distill.py --do_eval "${predict[@]}" \
  --task_name "$dataset" --data_dir "$DATA_ROOT/$dataset" --student_model "$STUDENT_DIR" \
  --output_dir "${RESULT_DIR:-$STUDENT_DIR}" --max_seq_length "$MAX_SEQ_LENGTH" --backend "$BACKEND"
