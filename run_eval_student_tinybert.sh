#!/usr/bin/env bash
# Evaluate a (distilled) model on a GLUE dev set: RESULT_DIR/results_eval.json (PREDICT=yes: and the
# benchmark's test-set submission files beside it). Every variable can be set from outside; extra
# arguments go to task_distill.py --do_eval.
set -euo pipefail
cd "$(dirname "$0")"
source scripts_common.sh
task_name

DATA_ROOT=${DATA_ROOT:-data/glue_data}                      # GLUE root: tsv or OFRecord (data/glue_ofrecord)
STUDENT_DIR=${STUDENT_DIR:-models/student_model/$TASK_NAME} # the model to evaluate (a directory or an .onnx file)
RESULT_DIR=${RESULT_DIR:-}                                  # empty: STUDENT_DIR
BACKEND=${BACKEND:-oneflow}                                 # oneflow | torch
GPU=${GPU:-0}                                               # CUDA_VISIBLE_DEVICES
MAX_SEQ_LENGTH=${MAX_SEQ_LENGTH:-}                          # empty: OFRecord files' own, else the task's (64 / 128 pairs)
PREDICT=${PREDICT:-no}                                      # yes: also the GLUE test-set submission files (SST-2.tsv, ...)
EXTRA_ARGS=${EXTRA_ARGS:-}                                  # more task_distill.py flags (arguments after the wrapper do the same)
PYTHON=${PYTHON:-}                                          # empty: $VENV/bin/python (VENV default .venv, made by setup_env.sh)

need_task DATA_ROOT "the GLUE root holding $TASK_NAME/ (python download_glue_data.py --data_dir data/glue_data)"
need STUDENT_DIR "the model to evaluate (run_train_student_tinybert.sh writes models/student_model/$TASK_NAME)"
predict=(); is_yes PREDICT && predict=(--do_predict)
use_python
# shellcheck disable=SC2086  # EXTRA_ARGS is a list of flags
CUDA_VISIBLE_DEVICES=$GPU "$PYTHON" task_distill.py --do_eval "${predict[@]}" \
  --task_name "$TASK_NAME" --data_dir "$DATA_ROOT/$TASK_NAME" --student_model "$STUDENT_DIR" \
  --output_dir "${RESULT_DIR:-$STUDENT_DIR}" ${MAX_SEQ_LENGTH:+--max_seq_length "$MAX_SEQ_LENGTH"} \
  --backend "$BACKEND" $EXTRA_ARGS "$@"
