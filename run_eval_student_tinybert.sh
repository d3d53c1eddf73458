#!/usr/bin/env bash
# Evaluate a (distilled) model on a GLUE dev set: RESULT_DIR/results_eval.json.
set -euo pipefail
cd "$(dirname "$0")"

DATA_ROOT=${DATA_ROOT:-data/glue_data}
dataset=${dataset:-SST-2}
STUDENT_DIR=${STUDENT_DIR:-models/student_model/$dataset}
RESULT_DIR=${RESULT_DIR:-}              # empty: STUDENT_DIR
BACKEND=${BACKEND:-oneflow}
GPU=${GPU:-0}
MAX_SEQ_LENGTH=${MAX_SEQ_LENGTH:-64}

bash setup_env.sh
CUDA_VISIBLE_DEVICES=$GPU .venv/bin/python task_distill.py --do_eval \
  --task_name "$dataset" --data_dir "$DATA_ROOT/$dataset" --student_model "$STUDENT_DIR" \
  --output_dir "${RESULT_DIR:-$STUDENT_DIR}" --max_seq_length "$MAX_SEQ_LENGTH" --backend "$BACKEND"
