#!/usr/bin/env bash
# General distillation: a pretrained BERT teaches a TinyBERT student on the pregenerated data.
# The output directory is the student that task distillation starts from.
set -euo pipefail
cd "$(dirname "$0")"
source scripts_common.sh

PREGENERATED_DATA=${PREGENERATED_DATA:-data/pretrain_data_json}
BERT_BASE_DIR=${BERT_BASE_DIR:-models/bert-base-uncased}   # the teacher (a pretrained, not fine-tuned, BERT)
STUDENT=${STUDENT:-4L-312D}                                # 4L-312D | 6L-768D | a directory with config.json
OUTPUT_DIR=${OUTPUT_DIR:-models/general_tinybert_4L_312D}
BACKEND=${BACKEND:-oneflow}                                # oneflow | torch
GPU=${GPU:-0}                                              # CUDA device(s) to use
NPROC_PER_NODE=${NPROC_PER_NODE:-1}                        # processes (GPUs) on this machine; >1: the launcher
NNODES=${NNODES:-1}                                        # machines; this one is NODE_RANK
NODE_RANK=${NODE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}                      # where the processes meet (machine of NODE_RANK 0)
MASTER_PORT=${MASTER_PORT:-29500}
EPOCHS=${EPOCHS:-3}
BATCH_SIZE=${BATCH_SIZE:-256}
LEARNING_RATE=${LEARNING_RATE:-1e-4}
PYTHON=${PYTHON:-}                                         # empty: .venv/bin/python (setup_env.sh makes it)

need PREGENERATED_DATA "the epoch_N.json directory run_pregenerate_training_data.sh writes"
need_model BERT_BASE_DIR "a pretrained BERT model directory (README: Weight formats) or all-MiniLM-L6-v2"
use_python
CUDA_VISIBLE_DEVICES=$GPU launch general_distill.py \
  --pregenerated_data "$PREGENERATED_DATA" \
  --teacher_model "$BERT_BASE_DIR" \
  --student_model "$STUDENT" \
  --output_dir "$OUTPUT_DIR" \
  --backend "$BACKEND" \
  --num_train_epochs "$EPOCHS" \
  --train_batch_size "$BATCH_SIZE" \
  --learning_rate "$LEARNING_RATE" \
  "$@"
