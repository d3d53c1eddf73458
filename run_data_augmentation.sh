#!/usr/bin/env bash
# TinyBERT data augmentation: GLUE_DIR/TASK_NAME/train.tsv -> GLUE_DIR/TASK_NAME/train_aug.tsv.
# Rerunning after an interruption continues where it stopped. Each variable can be set from outside.
set -euo pipefail
cd "$(dirname "$0")"
source scripts_common.sh

BERT_DIR=${BERT_DIR:-models/bert-base-uncased}        # a BertForMaskedLM directory (any weight format, see README)
GLOVE_EMB=${GLOVE_EMB:-glove/glove.840B.300d.txt}     # GloVe text file; a binary cache is written beside it
GLUE_DIR=${GLUE_DIR:-data/glue_data}                  # one folder per task
TASK_NAME=${TASK_NAME:-SST-2}                         # CoLA, SST-2, MRPC, STS-B, QQP, MNLI, QNLI, RTE, WNLI
BACKEND=${BACKEND:-oneflow}                           # oneflow or torch
GPU=${GPU:-0}                                         # CUDA_VISIBLE_DEVICES
N=${N:-}                                              # sampling tries per sentence; empty: the task's (SST-2 20, ...)
M=${M:-15}                                            # candidates per word
P=${P:-0.4}                                           # probability of replacing a word
EXTRA_ARGS=${EXTRA_ARGS:-}                            # e.g. "--seed 1 --overwrite --glove_vocab_size 200000"
PYTHON=${PYTHON:-}                                    # empty: .venv/bin/python (setup_env.sh makes it)

need BERT_DIR "a BERT masked-LM model directory (README: Weight formats)"
need GLOVE_EMB "a GloVe text file, e.g. glove.840B.300d.txt (README: data augmentation)"
need GLUE_DIR "the GLUE root holding $TASK_NAME/ (python download_glue_data.py --data_dir data/glue_data)" \
  "$GLUE_DIR/$TASK_NAME"
use_python
CUDA_VISIBLE_DEVICES=$GPU "$PYTHON" data_augmentation.py \
  --pretrained_bert_model "$BERT_DIR" --glove_embs "$GLOVE_EMB" \
  --glue_dir "$GLUE_DIR" --task_name "$TASK_NAME" \
  ${N:+--N $N} --M "$M" --p "$P" --backend "$BACKEND" $EXTRA_ARGS
echo "next: GLUE_DIR=$GLUE_DIR TASKS=$TASK_NAME bash glue_process.sh && dataset=$TASK_NAME AUG_TRAIN=True bash run_train_student_tinybert.sh"
