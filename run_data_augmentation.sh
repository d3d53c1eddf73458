#!/usr/bin/env bash
# TinyBERT data augmentation: GLUE_DIR/TASK_NAME/train.tsv -> GLUE_DIR/TASK_NAME/train_aug.tsv.
# Rerunning after an interruption continues where it stopped. Every variable can be set from outside;
# extra arguments go to data_augmentation.py (e.g. --seed 1 --overwrite).
set -euo pipefail
cd "$(dirname "$0")"
source scripts_common.sh
task_name

BERT_DIR=${BERT_DIR:-models/bert-base-uncased}        # a BertForMaskedLM directory (any weight format, see docs/weights.md)
GLOVE_EMB=${GLOVE_EMB:-glove/glove.840B.300d.txt}     # GloVe text file; a binary cache is written beside it
GLUE_DIR=${GLUE_DIR:-data/glue_data}                  # GLUE root: one tsv folder per task
BACKEND=${BACKEND:-oneflow}                           # oneflow | torch
GPU=${GPU:-0}                                         # CUDA_VISIBLE_DEVICES
N=${N:-}                                              # sampling tries per sentence; empty: the task's (SST-2 20, ...)
M=${M:-15}                                            # candidates per word
P=${P:-0.4}                                           # probability of replacing a word
EXTRA_ARGS=${EXTRA_ARGS:-}                            # more data_augmentation.py flags (arguments after the wrapper do the same)
PYTHON=${PYTHON:-}                                    # empty: $VENV/bin/python (VENV default .venv, made by setup_env.sh)

need BERT_DIR "a BERT masked-LM model directory (docs/weights.md)"
need GLOVE_EMB "a GloVe text file, e.g. glove.840B.300d.txt (docs/pipeline.md: data augmentation)"
need_task GLUE_DIR "the GLUE root holding $TASK_NAME/ (python download_glue_data.py --data_dir data/glue_data)"
use_python
# shellcheck disable=SC2086  # EXTRA_ARGS is a list of flags
CUDA_VISIBLE_DEVICES=$GPU "$PYTHON" data_augmentation.py \
  --bert_model "$BERT_DIR" --glove_embs "$GLOVE_EMB" \
  --glue_dir "$GLUE_DIR" --task_name "$TASK_NAME" \
  ${N:+--N $N} --M "$M" --p "$P" --backend "$BACKEND" $EXTRA_ARGS "$@"
echo "next: TASK_NAME=$TASK_NAME bash run_train_teacher.sh, then TASK_NAME=$TASK_NAME AUG_TRAIN=yes bash run_train_student_tinybert.sh"
echo "      (OFRecord input instead of tsv: TASK_NAME=$TASK_NAME bash glue_process.sh, then DATA_ROOT=data/glue_ofrecord)"
