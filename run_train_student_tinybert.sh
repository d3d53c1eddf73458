#!/usr/bin/env bash
# TinyBERT task distillation: stage 1 (intermediate layers) then stage 2 (prediction layer).
set -euo pipefail
cd "$(dirname "$0")"
source scripts_common.sh

DATA_ROOT=${DATA_ROOT:-data/glue_data}                                      # GLUE tsv or OFRecord root
dataset=${dataset:-SST-2}
FT_BERT_BASE_DIR=${FT_BERT_BASE_DIR:-models/finetuned_teacher/$dataset}     # fine-tuned teacher
GENERAL_TINYBERT_DIR=${GENERAL_TINYBERT_DIR:-models/2nd_General_TinyBERT_4L_312D_oneflow}
TMP_STUDENT_DIR=${TMP_STUDENT_DIR:-models/student_model/$dataset/tmp}        # after stage 1
STUDENT_DIR=${STUDENT_DIR:-models/student_model/$dataset}                    # after stage 2
RESULT_DIR=${RESULT_DIR:-}                                                   # empty: STUDENT_DIR
SERVE_FOR_ONLINE=${SERVE_FOR_ONLINE:-False}
AUG_TRAIN=${AUG_TRAIN:-False}                                                # train on train_aug (data augmentation)
BACKEND=${BACKEND:-oneflow}
GPU=${GPU:-0}                          # CUDA_VISIBLE_DEVICES, e.g. 0,1,2,3 with NPROC_PER_NODE=4
NPROC_PER_NODE=${NPROC_PER_NODE:-1}                        # processes (GPUs) on this machine; >1: the launcher
NNODES=${NNODES:-1}                                        # machines; this one is NODE_RANK
NODE_RANK=${NODE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}                      # where the processes meet (machine of NODE_RANK 0)
MASTER_PORT=${MASTER_PORT:-29500}
MAX_SEQ_LENGTH=${MAX_SEQ_LENGTH:-64}
BATCH_SIZE=${BATCH_SIZE:-32}
STAGE1_EPOCHS=${STAGE1_EPOCHS:-}       # empty: the task's default (SST-2 4, CoLA 100, MRPC 30, ...)
STAGE2_EPOCHS=${STAGE2_EPOCHS:-}
STAGE1_LR=${STAGE1_LR:-}               # empty: 5e-5 (the reference's stage-1 rate)
STAGE2_LR=${STAGE2_LR:-}               # empty: the task's (SST-2 2e-5, CoLA 7e-5, ...)
TEMPERATURE=${TEMPERATURE:-1}
OVERWRITE=${OVERWRITE:-0}              # 1: replace non-empty TMP_STUDENT_DIR / STUDENT_DIR
EXTRA_ARGS=${EXTRA_ARGS:-}             # e.g. "--layer_map 2,4,6 --teacher_dtype bf16 --max_train_examples 8000"
PYTHON=${PYTHON:-}                     # empty: .venv/bin/python (setup_env.sh makes it)

need DATA_ROOT "the GLUE root holding $dataset/ (python download_glue_data.py --data_dir data/glue_data)" \
  "$DATA_ROOT/$dataset"
need FT_BERT_BASE_DIR "the fine-tuned teacher (run_train_teacher.sh writes models/finetuned_teacher/$dataset)"
need GENERAL_TINYBERT_DIR "a general TinyBERT (run_general_distill.sh, or a downloaded one converted, see README)"
common=(--task_name "$dataset" --data_dir "$DATA_ROOT/$dataset" --teacher_model "$FT_BERT_BASE_DIR"
        --max_seq_length "$MAX_SEQ_LENGTH" --train_batch_size "$BATCH_SIZE" --backend "$BACKEND")
[ "$AUG_TRAIN" = "True" ] && common+=(--aug_train)
[ "$OVERWRITE" = 1 ] && common+=(--overwrite)

use_python
export CUDA_VISIBLE_DEVICES=$GPU
launch task_distill.py --intermediate_distill "${common[@]}" \
  --student_model "$GENERAL_TINYBERT_DIR" --output_dir "$TMP_STUDENT_DIR" \
  ${STAGE1_EPOCHS:+--num_train_epochs $STAGE1_EPOCHS} ${STAGE1_LR:+--learning_rate $STAGE1_LR} $EXTRA_ARGS

online=(); [ "$SERVE_FOR_ONLINE" = "True" ] && online=(--serve_for_online)
launch task_distill.py --pred_distill "${common[@]}" "${online[@]}" \
  --student_model "$TMP_STUDENT_DIR" --output_dir "$STUDENT_DIR" --temperature "$TEMPERATURE" \
  ${STAGE2_EPOCHS:+--num_train_epochs $STAGE2_EPOCHS} ${STAGE2_LR:+--learning_rate $STAGE2_LR} $EXTRA_ARGS

if [ -n "$RESULT_DIR" ] && [ "$RESULT_DIR" != "$STUDENT_DIR" ]; then
  mkdir -p "$RESULT_DIR" && cp "$STUDENT_DIR/results_eval.json" "$RESULT_DIR/"
fi
echo "student: $STUDENT_DIR   results: ${RESULT_DIR:-$STUDENT_DIR}/results_eval.json"
