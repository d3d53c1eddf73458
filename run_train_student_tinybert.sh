#!/usr/bin/env bash
# TinyBERT task distillation: stage 1 (intermediate layers) -> TMP_STUDENT_DIR, then stage 2 (prediction
# layer) -> STUDENT_DIR. Every variable can be set from outside; extra arguments go to both stages'
# task_distill.py. A rerun continues where it stopped; a stage 1 that trained again restarts stage 2.
set -euo pipefail
cd "$(dirname "$0")"
source scripts_common.sh
task_name

DATA_ROOT=${DATA_ROOT:-data/glue_data}                                      # GLUE root: tsv or OFRecord (data/glue_ofrecord)
FT_BERT_BASE_DIR=${FT_BERT_BASE_DIR:-models/finetuned_teacher/$TASK_NAME}   # the fine-tuned teacher (run_train_teacher.sh)
GENERAL_TINYBERT_DIR=${GENERAL_TINYBERT_DIR:-$(general_tinybert)}          # empty: the newer of run_general_distill.sh's output and the converted download
TMP_STUDENT_DIR=${TMP_STUDENT_DIR:-models/tmp_student_model/$TASK_NAME}     # stage 1's student (not inside STUDENT_DIR)
STUDENT_DIR=${STUDENT_DIR:-models/student_model/$TASK_NAME}                 # stage 2's student: the result
RESULT_DIR=${RESULT_DIR:-}                                                  # empty: STUDENT_DIR; else results_eval.json is copied there
SERVE_FOR_ONLINE=${SERVE_FOR_ONLINE:-no}                                    # yes: STUDENT_DIR keeps only what inference needs
AUG_TRAIN=${AUG_TRAIN:-no}                                                  # yes: train on train_aug (run_data_augmentation.sh)
BACKEND=${BACKEND:-oneflow}                                                 # oneflow | torch
GPU=${GPU:-0}                                                               # CUDA_VISIBLE_DEVICES, e.g. 0,1,2,3 with NPROC_PER_NODE=4
# several processes: NPROC_PER_NODE (on this machine), NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT (launch() in scripts_common.sh; default one process)
MAX_SEQ_LENGTH=${MAX_SEQ_LENGTH:-}                                          # empty: OFRecord files' own, else the task's (64 / 128 pairs)
BATCH_SIZE=${BATCH_SIZE:-32}                                                # examples per step and process
STAGE1_EPOCHS=${STAGE1_EPOCHS:-}                                            # empty: the task's default (SST-2 4, CoLA 100, MRPC 30, ...)
STAGE2_EPOCHS=${STAGE2_EPOCHS:-}                                            # empty: the task's default
STAGE1_LR=${STAGE1_LR:-}                                                    # empty: 5e-5 (the reference's stage-1 rate)
STAGE2_LR=${STAGE2_LR:-}                                                    # empty: the task's (SST-2 2e-5, CoLA 7e-5, ...)
TEMPERATURE=${TEMPERATURE:-1}                                               # softmax temperature of stage 2
OVERWRITE=${OVERWRITE:-no}                                                  # yes: start both stages afresh
RESUME=${RESUME:-yes}                                                       # yes: a rerun continues the runs there
EXTRA_ARGS=${EXTRA_ARGS:-}                                                  # more flags for both stages, e.g. "--layer_map 2,4,6"
PYTHON=${PYTHON:-}                                                          # empty: $VENV/bin/python (VENV default .venv, made by setup_env.sh)

need_task DATA_ROOT "the GLUE root holding $TASK_NAME/ (python download_glue_data.py --data_dir data/glue_data)"
need FT_BERT_BASE_DIR "the fine-tuned teacher (run_train_teacher.sh writes models/finetuned_teacher/$TASK_NAME)"
need GENERAL_TINYBERT_DIR "a general TinyBERT: run_general_distill.sh writes models/general_tinybert_4L_312D, the \
converted download is models/2nd_General_TinyBERT_4L_312D_oneflow (docs/pipeline.md, stage 2)"
case "$(realpath -m "$TMP_STUDENT_DIR")/" in
  "$(realpath -m "$STUDENT_DIR")"/*)
    echo "error: TMP_STUDENT_DIR ($TMP_STUDENT_DIR) lies inside STUDENT_DIR ($STUDENT_DIR): stage 2 writes" \
         "STUDENT_DIR and would find it not empty; set TMP_STUDENT_DIR to a folder of its own" >&2
    exit 2 ;;
esac
common=(--task_name "$TASK_NAME" --data_dir "$DATA_ROOT/$TASK_NAME" --teacher_model "$FT_BERT_BASE_DIR"
        ${MAX_SEQ_LENGTH:+--max_seq_length "$MAX_SEQ_LENGTH"} --train_batch_size "$BATCH_SIZE" --backend "$BACKEND")
is_yes AUG_TRAIN && common+=(--aug_train)
online=(); is_yes SERVE_FOR_ONLINE && online=(--serve_for_online)
rerun_args

use_python
export CUDA_VISIBLE_DEVICES=$GPU
continue_with "bash run_train_student_tinybert.sh (with the same variables)"
stage1_before=$(cat "$TMP_STUDENT_DIR/run.json" 2>/dev/null || true)
# shellcheck disable=SC2086  # EXTRA_ARGS is a list of flags
launch task_distill.py --intermediate_distill "${common[@]}" "${AGAIN[@]}" \
  --student_model "$GENERAL_TINYBERT_DIR" --output_dir "$TMP_STUDENT_DIR" \
  ${STAGE1_EPOCHS:+--num_train_epochs $STAGE1_EPOCHS} ${STAGE1_LR:+--learning_rate $STAGE1_LR} $EXTRA_ARGS "$@"

# stage 2 continues only a run made from this stage-1 student: if stage 1 has just trained (again), what
# STUDENT_DIR holds came from another one and is replaced
stage2=("${AGAIN[@]}")
if [ "${AGAIN[*]}" = --resume ] && [ "$(cat "$TMP_STUDENT_DIR/run.json" 2>/dev/null || true)" != "$stage1_before" ]; then
  stage2=(--overwrite)
fi
# shellcheck disable=SC2086
launch task_distill.py --pred_distill "${common[@]}" "${online[@]}" "${stage2[@]}" \
  --student_model "$TMP_STUDENT_DIR" --output_dir "$STUDENT_DIR" --temperature "$TEMPERATURE" \
  ${STAGE2_EPOCHS:+--num_train_epochs $STAGE2_EPOCHS} ${STAGE2_LR:+--learning_rate $STAGE2_LR} $EXTRA_ARGS "$@"

if [ -n "$RESULT_DIR" ] && [ "$RESULT_DIR" != "$STUDENT_DIR" ]; then
  mkdir -p "$RESULT_DIR" && cp "$STUDENT_DIR/results_eval.json" "$RESULT_DIR/"
fi
echo "student: $STUDENT_DIR   results: ${RESULT_DIR:-$STUDENT_DIR}/results_eval.json"
echo "next: TASK_NAME=$TASK_NAME bash run_eval_student_tinybert.sh"
