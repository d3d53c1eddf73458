#!/usr/bin/env bash
# Fine-tune a pretrained BERT on one GLUE task: the teacher of task distillation.
# Every variable can be set from outside; extra arguments go to task_distill.py (e.g. --eval_step 100).
# A rerun continues the run in TEACHER_DIR, says it had finished, or names what differs (docs/wrappers.md).
set -euo pipefail
cd "$(dirname "$0")"
source scripts_common.sh
task_name

DATA_ROOT=${DATA_ROOT:-data/glue_data}                     # GLUE root: tsv (data/glue_data) or OFRecord (data/glue_ofrecord)
BERT_BASE_DIR=${BERT_BASE_DIR:-models/bert-base-uncased}   # pretrained BERT (any weight format, see docs/weights.md)
TEACHER_DIR=${TEACHER_DIR:-models/finetuned_teacher/$TASK_NAME}  # the fine-tuned teacher is written here
BACKEND=${BACKEND:-oneflow}                                # oneflow | torch
GPU=${GPU:-0}                                              # CUDA_VISIBLE_DEVICES
# several processes: NPROC_PER_NODE (on this machine), NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT (launch() in scripts_common.sh; default one process)
MAX_SEQ_LENGTH=${MAX_SEQ_LENGTH:-}                         # empty: OFRecord files' own, else the task's (64 / 128 pairs)
LEARNING_RATE=${LEARNING_RATE:-${LR:-2e-5}}                # (LR, the older name, is still read)
EPOCHS=${EPOCHS:-3}                                        # training epochs (fractions allowed)
BATCH_SIZE=${BATCH_SIZE:-32}                               # examples per step and process
OVERWRITE=${OVERWRITE:-no}                                 # yes: start afresh over what TEACHER_DIR holds
RESUME=${RESUME:-yes}                                      # yes: a rerun continues the run in TEACHER_DIR
EXTRA_ARGS=${EXTRA_ARGS:-}                                 # more task_distill.py flags (arguments after the wrapper do the same)
PYTHON=${PYTHON:-}                                         # empty: $VENV/bin/python (VENV default .venv, made by setup_env.sh)

need_task DATA_ROOT "the GLUE root holding $TASK_NAME/ (python download_glue_data.py --data_dir data/glue_data)"
need BERT_BASE_DIR "a pretrained BERT model directory (docs/weights.md)"
rerun_args
use_python
continue_with "bash run_train_teacher.sh (with the same variables)"
# shellcheck disable=SC2086  # EXTRA_ARGS is a list of flags
CUDA_VISIBLE_DEVICES=$GPU launch task_distill.py --finetune \
  --task_name "$TASK_NAME" --data_dir "$DATA_ROOT/$TASK_NAME" \
  --student_model "$BERT_BASE_DIR" --output_dir "$TEACHER_DIR" \
  ${MAX_SEQ_LENGTH:+--max_seq_length "$MAX_SEQ_LENGTH"} --train_batch_size "$BATCH_SIZE" \
  --learning_rate "$LEARNING_RATE" --num_train_epochs "$EPOCHS" --weight_decay 0.01 \
  --serve_for_online "${AGAIN[@]}" --backend "$BACKEND" $EXTRA_ARGS "$@"
echo "next: TASK_NAME=$TASK_NAME bash run_train_student_tinybert.sh   (the teacher: FT_BERT_BASE_DIR=$TEACHER_DIR)"
