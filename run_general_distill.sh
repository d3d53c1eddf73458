#!/usr/bin/env bash
# General distillation: a pretrained BERT teaches a TinyBERT student on the pregenerated data.
# The output directory is the student that task distillation starts from (its GENERAL_TINYBERT_DIR default).
# Every variable can be set from outside; extra arguments go to general_distill.py (e.g. --max_steps 1000).
set -euo pipefail
cd "$(dirname "$0")"
source scripts_common.sh

PREGENERATED_DATA=${PREGENERATED_DATA:-data/pretrain_data_json}  # run_pregenerate_training_data.sh's OUTPUT_DIR
BERT_BASE_DIR=${BERT_BASE_DIR:-models/bert-base-uncased}   # the teacher (a pretrained, not fine-tuned, BERT)
STUDENT=${STUDENT:-4L-312D}                                # 4L-312D | 6L-768D | a directory with config.json
OUTPUT_DIR=${OUTPUT_DIR:-models/general_tinybert_4L_312D}  # the general TinyBERT is written here
BACKEND=${BACKEND:-oneflow}                                # oneflow | torch
GPU=${GPU:-0}                                              # CUDA device(s) to use
# several processes: NPROC_PER_NODE (on this machine), NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT (launch() in scripts_common.sh; default one process)
EPOCHS=${EPOCHS:-3}                                        # epochs (each reads its epoch_N.json)
BATCH_SIZE=${BATCH_SIZE:-256}                              # examples per step and process
LEARNING_RATE=${LEARNING_RATE:-1e-4}                       # peak learning rate (linear warm-up and decay)
OVERWRITE=${OVERWRITE:-no}                                 # yes: start afresh over what OUTPUT_DIR holds
RESUME=${RESUME:-yes}                                      # yes: a rerun continues the run in OUTPUT_DIR
EXTRA_ARGS=${EXTRA_ARGS:-}                                 # more general_distill.py flags (arguments after the wrapper do the same)
PYTHON=${PYTHON:-}                                         # empty: $VENV/bin/python (VENV default .venv, made by setup_env.sh)

need PREGENERATED_DATA "the epoch_N.json directory run_pregenerate_training_data.sh writes"
need_model BERT_BASE_DIR "a pretrained BERT model directory (docs/weights.md) or all-MiniLM-L6-v2"
rerun_args
use_python
continue_with "bash run_general_distill.sh (with the same variables)"
# shellcheck disable=SC2086  # EXTRA_ARGS is a list of flags
CUDA_VISIBLE_DEVICES=$GPU launch general_distill.py \
  --pregenerated_data "$PREGENERATED_DATA" \
  --teacher_model "$BERT_BASE_DIR" \
  --student_model "$STUDENT" \
  --output_dir "$OUTPUT_DIR" \
  --backend "$BACKEND" \
  --num_train_epochs "$EPOCHS" \
  --train_batch_size "$BATCH_SIZE" \
  --learning_rate "$LEARNING_RATE" \
  "${AGAIN[@]}" $EXTRA_ARGS "$@"
echo "next: TASK_NAME=SST-2 bash run_data_augmentation.sh, then run_train_teacher.sh (see docs/wrappers.md)"
