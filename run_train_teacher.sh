#!/usr/bin/env bash
# Fine-tune a pretrained BERT on one GLUE task: the teacher of task distillation.
set -euo pipefail
cd "$(dirname "$0")"
source scripts_common.sh

DATA_ROOT=${DATA_ROOT:-data/glue_data}                     # GLUE tsv (or OFRecord: data/glue_ofrecord)
dataset=${dataset:-SST-2}
BERT_BASE_DIR=${BERT_BASE_DIR:-models/bert-base-uncased}   # pretrained BERT (any weight format, see README)
TEACHER_DIR=${TEACHER_DIR:-models/finetuned_teacher/$dataset}
BACKEND=${BACKEND:-oneflow}
GPU=${GPU:-0}                                              # CUDA_VISIBLE_DEVICES
NPROC_PER_NODE=${NPROC_PER_NODE:-1}                        # processes (GPUs) on this machine; >1: the launcher
NNODES=${NNODES:-1}                                        # machines; this one is NODE_RANK
NODE_RANK=${NODE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}                      # where the processes meet (machine of NODE_RANK 0)
MASTER_PORT=${MASTER_PORT:-29500}
MAX_SEQ_LENGTH=${MAX_SEQ_LENGTH:-128}
LR=${LR:-2e-5}
EPOCHS=${EPOCHS:-3}
BATCH_SIZE=${BATCH_SIZE:-32}
OVERWRITE=${OVERWRITE:-0}                                  # 1: replace a non-empty TEACHER_DIR
EXTRA_ARGS=${EXTRA_ARGS:-}                                  # e.g. "--max_train_examples 4000 --eval_step 100"
PYTHON=${PYTHON:-}                                         # empty: .venv/bin/python (setup_env.sh makes it)

need DATA_ROOT "the GLUE root holding $dataset/ (python download_glue_data.py --data_dir data/glue_data)" \
  "$DATA_ROOT/$dataset"
need BERT_BASE_DIR "a pretrained BERT model directory (README: Weight formats)"
overwrite=(); [ "$OVERWRITE" = 1 ] && overwrite=(--overwrite)
use_python
CUDA_VISIBLE_DEVICES=$GPU launch task_distill.py --finetune \
  --task_name "$dataset" --data_dir "$DATA_ROOT/$dataset" \
  --student_model "$BERT_BASE_DIR" --output_dir "$TEACHER_DIR" \
  --max_seq_length "$MAX_SEQ_LENGTH" --train_batch_size "$BATCH_SIZE" \
  --learning_rate "$LR" --num_train_epochs "$EPOCHS" --weight_decay 0.01 \
  --serve_for_online "${overwrite[@]}" --backend "$BACKEND" $EXTRA_ARGS
